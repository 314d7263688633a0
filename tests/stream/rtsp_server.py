"""A live test-pattern RTSP server on 127.0.0.1 for the stream tests (run by the system python3)."""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

HOST = "127.0.0.1"


def _has(*names: str) -> bool:
    return all(Gst.ElementFactory.find(name) is not None for name in names)


def _launch(width: int, height: int, fps: int) -> tuple[str, str]:
    """The media factory's launch line and the encoder's name: H.264 where x264enc exists, else MJPEG."""
    if not _has("videotestsrc", "videoconvert"):
        raise SystemExit("rtsp_server: videotestsrc/videoconvert missing (gstreamer1.0-plugins-base)")
    # pattern=ball moves every frame, so consecutive frames differ; a clock is drawn where pango is installed.
    caps = f"video/x-raw,width={width},height={height},framerate={fps}/1"
    src = f"videotestsrc is-live=true pattern=ball ! {caps}"
    if _has("timeoverlay"):
        src += " ! timeoverlay"
    if _has("x264enc", "rtph264pay"):
        enc = (
            f"videoconvert ! video/x-raw,format=I420 ! x264enc tune=zerolatency speed-preset=ultrafast "
            f"key-int-max={fps} ! rtph264pay name=pay0 config-interval=1 pt=96"
        )
        return f"( {src} ! {enc} )", "h264"
    if _has("jpegenc", "rtpjpegpay"):
        enc = "videoconvert ! video/x-raw,format=I420 ! jpegenc ! rtpjpegpay name=pay0 pt=26"
        return f"( {src} ! {enc} )", "mjpeg"
    raise SystemExit("rtsp_server: no encoder: need x264enc+rtph264pay or jpegenc+rtpjpegpay")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/test")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    path = args.path if args.path.startswith("/") else "/" + args.path

    Gst.init(None)
    launch, encoder = _launch(width, height, args.fps)

    server = GstRtspServer.RTSPServer()
    server.set_address(HOST)
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(True)  # one pipeline for every client
    server.get_mount_points().add_factory(path, factory)

    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, signum, lambda *_: loop.quit() or GLib.SOURCE_REMOVE)

    # attach() binds the socket (GStreamer binds its listening socket with SO_REUSEADDR); 0 means it failed.
    if server.attach(None) == 0:
        print(f"rtsp_server: cannot listen on {HOST}:{args.port}", file=sys.stderr, flush=True)
        return 1
    print(f"rtsp_server: encoder={encoder} size={width}x{height} fps={args.fps}", file=sys.stderr, flush=True)
    print(f"READY rtsp://{HOST}:{args.port}{path}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
