"""glanet's main job: recognise actions live from a webcam, an RTSP camera, a video file or the
built-in demo source, with the SA/LA attention overlaid.

    python run_camera.py --source demo

The streaming runtime (`stream/`) is not built yet: this command says so and exits with code 1.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Real-time action recognition with GLANet.")
    parser.add_argument(
        "--source", default="demo", help="webcam | <device index> | rtsp://... | <video file> | demo"
    )
    parser.add_argument("--checkpoint", help="a glanet checkpoint (default: the committed demo model)")
    parser.add_argument("--headless", action="store_true", help="no window, even where a display exists")
    parser.parse_args(argv)
    print(
        "glanet: live streaming is not available yet: the model, its checkpoints and tests are built; "
        "sources, the recognizer loop and overlays come next (see README, 'Status').",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
