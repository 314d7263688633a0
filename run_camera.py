"""glanet's main job: recognise actions live from a webcam, an RTSP camera, a video file, a folder of frames
or the built-in demo source, with the SA/LA attention overlaid.

    python run_camera.py --source demo
    python run_camera.py --source rtsp://user:pass@camera/stream --events events.jsonl
    python run_camera.py --source clip.mp4 --fast --headless --save out.mp4
    python run_camera.py --source front=rtsp://cam1/s --source back=rtsp://cam2/s --save videos/
    python run_camera.py --sources cameras.toml --events events.jsonl --summary-json summary.json

A mistake (missing file, corrupt video, no camera, unreachable URL, not a checkpoint) is one line on
stderr and a non-zero exit code. Ctrl-C or SIGTERM stops at once; the saved video and events are kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stream.app import CameraSpec, ModelInfo
    from stream.cameras import CameraConfig, CameraDefaults

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "models" / "glanet_synthactions_demo.pt"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Real-time action recognition with GLANet, on one camera or many in one process.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--source",
        action="append",
        default=None,
        help="[NAME=]SOURCE, SOURCE one of demo | webcam | <device index> | rtsp://... | <video file> | "
        "<frame folder>; repeat for more cameras (default: demo)",
    )
    p.add_argument(
        "--sources",
        type=Path,
        help="a TOML file of [[camera]] tables (name, source and per-camera overrides), beside or "
        "instead of --source",
    )
    p.add_argument(
        "--summary-json", type=Path, help="write the final per-camera summary (frames, latency, ...) here"
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="a glanet checkpoint (default: the committed demo model)",
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "torch", "openvino", "tensorrt", "torch_tensorrt"],
        help="inference engine; auto: TensorRT on CUDA, else torch on CUDA, else OpenVINO, else torch CPU",
    )
    p.add_argument("--engine", type=Path, help="an export folder (python -m engines.export) to run from")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16", "int8"], help="default: the backend's own")
    p.add_argument(
        "--device", default=None, help="torch/CUDA device (cpu, cuda, cuda:1); default: the backend's"
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument(
        "--fast", action="store_true", help="files, folders, demo: every frame as fast as possible"
    )
    p.add_argument("--headless", action="store_true", help="no window, even where a display exists")
    p.add_argument(
        "--save",
        type=Path,
        help="write every processed frame with the overlay to this .mp4 (several cameras: a folder, "
        "<name>.mp4 each)",
    )
    p.add_argument("--events", type=Path, help="append action events (start/end) to this JSONL file")
    p.add_argument("--max-frames", type=int, help="stop each camera after this many source frames")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument(
        "--attention", default=None, help="heat map shown first: sa, la or none (key a cycles); default sa"
    )
    p.add_argument(
        "--smoothing", type=float, default=0.0, help="exponential smoothing of the probabilities, [0, 1)"
    )
    p.add_argument("--enter", type=float, default=0.6, help="an event starts at this probability ...")
    p.add_argument("--exit", type=float, default=0.4, help="... and ends under this one")
    p.add_argument(
        "--min-duration", type=float, default=0.5, help="seconds above --enter before an event starts"
    )
    p.add_argument(
        "--watchdog", type=float, default=5.0, help="live: reconnect after this many seconds with no frame"
    )
    p.add_argument(
        "--max-reconnects", type=int, default=None, help="live: give up after this many (default: never)"
    )
    p.add_argument("--open-timeout", type=float, default=10.0, help="network: seconds to connect")
    p.add_argument(
        "--folder-fps",
        type=float,
        default=None,
        help="frame rate of a folder of frames (default: the model's)",
    )
    p.add_argument("--demo-seed", type=int, default=0)
    p.add_argument("--demo-size", type=int, default=224)
    p.add_argument("--demo-fps", type=float, default=15.0)
    p.add_argument(
        "--no-dashboard", action="store_true", help="no live terminal dashboard (a line every 5 s instead)"
    )
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.log_level != "DEBUG":
        # OpenCV's and FFmpeg's own warnings ("moov atom not found") would bury our one line
        os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    # Imported here so that --help and argument errors are instant.
    import torch

    from engines.errors import EngineError
    from engines.manifest import read_manifest, write_json_atomic
    from engines.openvino_backend import best_built_precision
    from engines.select import choose_backend, make_backend
    from glanet.checkpoint import CheckpointError, load_checkpoint
    from glanet.cli import error_line
    from stream.app import StreamApp, StreamOptions
    from stream.cameras import CameraDefaults, check_cameras, load_cameras_file, parse_camera_arg
    from stream.errors import StreamError
    from stream.events import EventConfig
    from stream.recognizer import RecognizerConfig
    from stream.sinks import SinkError

    app: StreamApp | None = None
    try:
        defaults = CameraDefaults(
            folder_fps=args.folder_fps or 0.0,
            demo_seed=args.demo_seed,
            demo_size=args.demo_size,
            demo_fps=args.demo_fps,
            open_timeout_s=args.open_timeout,
            watchdog_s=args.watchdog,
        )
        cameras = [parse_camera_arg(text) for text in args.source or ([] if args.sources else ["demo"])]
        if args.sources is not None:
            cameras += load_cameras_file(args.sources)
        cameras = check_cameras(cameras)
        if args.threads:
            torch.set_num_threads(args.threads)
        backend_name, why = choose_backend(args.backend)
        # an export folder carries the model's metadata; the checkpoint is read when the backend runs
        # (part of) the torch model, or when there is no export folder
        ck = None
        if (
            args.engine is None
            or args.checkpoint is not None
            or backend_name in ("torch", "tensorrt", "torch_tensorrt")
        ):
            path = args.checkpoint or DEFAULT_CHECKPOINT
            if not Path(path).exists():
                raise CheckpointError(path, "checkpoint not found")
            ck = load_checkpoint(path, map_location="cpu")
        info = read_manifest(args.engine) if args.engine is not None else ck
        assert info is not None
        model_fps = float(info.sampling.get("fps") or 25.0)
        if not defaults.folder_fps:
            defaults = dataclasses.replace(defaults, folder_fps=model_fps)
        # several demo cameras show different scenes: seeds demo_seed, demo_seed + 1, ... unless given
        demos = [i for i, c in enumerate(cameras) if c.source.strip() == "demo" and c.demo_seed is None]
        for k, i in enumerate(demos[1:], start=1):
            cameras[i] = dataclasses.replace(cameras[i], demo_seed=args.demo_seed + k)
        specs = [camera_spec(camera, defaults, args, one=len(cameras) == 1) for camera in cameras]
        note = synthetic_note(info)
        options = StreamOptions(
            fast=args.fast,
            headless=True if args.headless else None,
            save=args.save,
            events=args.events,
            max_frames=args.max_frames,
            duration_s=args.duration,
            attention=args.attention,
            dashboard=False if args.no_dashboard else None,
            recognizer=RecognizerConfig(smoothing=args.smoothing),
            events_config=EventConfig(args.enter, args.exit, args.min_duration),
            watchdog_s=args.watchdog,
            max_reconnects=args.max_reconnects,
            note=note,
            # said once, when the model first speaks (a bad source stays one line), and on every overlay
            announce=(
                "glanet: note: this model was trained on SynthActions (synthetic figures) only: it knows "
                "those 12 generated actions, not real footage (train on your own data: see the README)"
            )
            if note
            else "",
        )
        precision = args.precision
        if args.engine is not None and precision is None and backend_name == "openvino":
            precision, reason = best_built_precision(read_manifest(args.engine))
            print(f"glanet: {args.engine}: {reason}", file=sys.stderr)
        backend = make_backend(
            backend_name, ck, args.engine, precision, args.device, max_batch=max(1, len(specs))
        )
        logging.getLogger("glanet").info("backend %s (%s)", backend.describe(), why)
        app = StreamApp(specs, info, backend, options, backend_note=why)

        def stop(signum: int, _frame: object) -> None:
            if app is not None and not app.stopping:
                app.request_stop(f"stopped by {signal.Signals(signum).name}")
                return
            os._exit(130)  # a second Ctrl-C: leave now

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        summary = app.run()
        if args.summary_json is not None:
            write_json_atomic(args.summary_json, summary.to_dict())
    except KeyboardInterrupt:
        print("glanet: interrupted", file=sys.stderr)
        return 130
    except (CheckpointError, EngineError, StreamError, SinkError, ValueError, OSError) as error:
        print(f"glanet: {error_line(error)}", file=sys.stderr)
        return 1 if isinstance(error, StreamError | SinkError | EngineError | OSError) else 2
    if summary.error is not None:
        print(f"glanet: {summary.error}", file=sys.stderr)
        return 1
    if len(summary.cameras) > 1:
        for name, s in summary.cameras.items():
            print(f"glanet: {name}: {s.error or s.line()}", file=sys.stderr)
    print(f"glanet: {summary.line()}", file=sys.stderr)
    return 0


def camera_spec(
    camera: CameraConfig, defaults: CameraDefaults, args: argparse.Namespace, *, one: bool
) -> CameraSpec:
    """A camera of the command line or the sources file, as the runtime takes it."""
    from stream.app import CameraSpec
    from stream.cameras import camera_source_spec
    from stream.events import EventConfig
    from stream.session import RecognizerConfig

    events = None
    if any(v is not None for v in (camera.enter, camera.exit, camera.min_duration_s)):
        events = EventConfig(
            args.enter if camera.enter is None else camera.enter,
            args.exit if camera.exit is None else camera.exit,
            args.min_duration if camera.min_duration_s is None else camera.min_duration_s,
        )
    smoothing = None if camera.smoothing is None else RecognizerConfig(smoothing=camera.smoothing)
    source = camera_source_spec(camera, defaults)
    # a lone unnamed source keeps the look of a single-camera run: no camera name on the overlay
    name = "" if one and not camera.named else camera.name
    return CameraSpec(name, source, camera.fast, camera.watchdog_s, camera.max_reconnects, smoothing, events)


SYNTHETIC_NOTE = "model: SynthActions only"


def synthetic_note(info: ModelInfo) -> str:
    """A short line saying the model knows only SynthActions' synthetic figures, when it does."""
    from glanet.data.synth import CLASSES

    return SYNTHETIC_NOTE if set(info.class_names) == set(CLASSES) else ""


if __name__ == "__main__":
    sys.exit(main())
