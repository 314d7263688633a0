"""H.264 MP4 files served as live RTSP cameras on 127.0.0.1, for benchmarks/multicam.py's `--rtsp-*` parts.

    /usr/bin/python3 benchmarks/rtsp_files.py --port 8554 --file act=A.mp4 --file still=S.mp4 --copies 64

Mounts /act0 ... /act63 and /still0 ... /still63: every client gets its own pipeline from the file's start
(not shared), demuxed and packetised without re-encoding (the server costs almost no CPU, so the cameras'
decoding is the benchmark's, not the server's), sent in real time (the RTSP sink keeps the clock). Prints
"ready <port>" once listening; SIGTERM or SIGINT stops it. Runs on the system python3, which has
GStreamer's RTSP server (python3-gi, gir1.2-gst-rtsp-server-1.0; .ci/run installs them).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

HOST = "127.0.0.1"


def launch_line(path: Path) -> str:
    # the location is quoted for gst_parse_launch; a file name holding a double quote is refused in main
    return (
        f'( filesrc location="{path}" ! qtdemux ! h264parse config-interval=-1 '
        "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--file", action="append", required=True, help="NAME=PATH (an H.264 MP4), repeatable")
    p.add_argument("--copies", type=int, default=64, help="mounts per file: /NAME0 ... /NAME<copies-1>")
    args = p.parse_args(argv)
    files: dict[str, Path] = {}
    for item in args.file:
        name, sep, path = item.partition("=")
        file = Path(path).resolve()
        if not sep or not name.isalnum() or not file.is_file() or '"' in str(file):
            p.error(f"--file {item!r}: give NAME=PATH, NAME letters and digits, PATH an existing file")
        files[name] = file
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(HOST)
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for name, file in files.items():
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch_line(file))
        factory.set_shared(False)
        for i in range(args.copies):
            mounts.add_factory(f"/{name}{i}", factory)
    if server.attach(None) == 0:
        print(f"rtsp_files: cannot listen on {HOST}:{args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, lambda *_: (loop.quit(), False)[1])
    print(f"ready {args.port}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
