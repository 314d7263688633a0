"""glanet's main job: recognise actions live from a webcam, an RTSP camera, a video file, a folder of frames
or the built-in demo source, with the SA/LA attention overlaid (`glanet run`, or `python run_camera.py`).

    glanet run --source demo
    glanet run --source rtsp://user:pass@camera/stream --events events.jsonl
    glanet run --source clip.mp4 --fast --headless --save out.mp4
    glanet run --source front=rtsp://cam1/s --source back=rtsp://cam2/s --save videos/
    glanet run --sources cameras.toml --events events.jsonl --summary-json summary.json

A mistake (missing file, corrupt video, no camera, unreachable URL, not a checkpoint) is one line on
stderr and a non-zero exit code. What can be checked without the model (every flag's value, the cameras
and their sources, the model files' paths, the outputs: writable, none of them an input) is checked before
torch is imported, so such a mistake is told at once. Ctrl-C or SIGTERM stops at once, also while the
model loads; the saved video and events are kept.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from stream.cli.checks import Checked, add_model_flags, camera_events, model_choice, validate
from stream.runtime.model import model_fps
from stream.runtime.still import DEFAULT_SHARE

if TYPE_CHECKING:
    import socket

    from stream.runtime.loop import Run
    from stream.runtime.model import ModelInfo
    from stream.runtime.spec import CameraSpec, StreamOptions
    from stream.runtime.summary import RunSummary
    from stream.sources.cameras import CameraConfig, CameraDefaults
    from stream.web.server import WebServer

# the committed demo model, shipped inside the package (so `glanet run` works from an installed wheel)
# the backends that run (part of) the torch model, so read the checkpoint even beside an export folder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from glanet.cli import Parser  # cheap: no torch

    p = Parser(description="Real-time action recognition on one camera or many in one process.")
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
    add_model_flags(p)
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
        "--attention",
        default=None,
        help="heat map shown first: one of the model's maps (GLANet: sa, la; SMNet: se) or none; key a "
        "cycles (default: the model's first map)",
    )
    p.add_argument(
        "--smoothing", type=float, default=0.0, help="exponential smoothing of the probabilities, [0, 1)"
    )
    p.add_argument(
        "--static-gate",
        type=float,
        default=DEFAULT_SHARE,
        help="a frame where less than this share of the scene changed since the last frame through the "
        "backbone reuses that frame's features (a still scene costs no backbone; GLANet only); 0: off",
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
    p.add_argument("--demo-seed", type=int, default=0, help="seed of the demo source's actions")
    p.add_argument("--demo-size", type=int, default=224, help="side of the demo source's frames in pixels")
    p.add_argument("--demo-fps", type=float, default=15.0, help="frame rate of the demo source")
    p.add_argument(
        "--no-dashboard", action="store_true", help="no live terminal dashboard (a line every 5 s instead)"
    )
    web = p.add_argument_group("web view and events to other systems")
    web.add_argument(
        "--serve",
        metavar="[HOST:]PORT",
        help="serve the web view, the HTTP API and /metrics here (host 127.0.0.1 unless given; port 0: any "
        "free one); the run then goes on after its cameras end, until Ctrl-C or --duration",
    )
    web.add_argument(
        "--serve-token",
        help="the token every request but /healthz must carry (or set GLANET_TOKEN); needed to serve on any "
        "address but the loopback",
    )
    web.add_argument(
        "--serve-allow-files",
        action="store_true",
        help="let the API add file and folder sources (they read this machine's disk)",
    )
    web.add_argument(
        "--serve-allow-webcams",
        action="store_true",
        help="let the API add this machine's webcams (webcam, or a device index): anyone with the API could "
        "otherwise turn on a camera in the room and watch it",
    )
    web.add_argument(
        "--serve-allow-private",
        action="store_true",
        help="let the API add network cameras at this machine's own (loopback), link-local, multicast or "
        "reserved addresses; cameras on the LAN (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7) and "
        "beyond are allowed without it",
    )
    web.add_argument(
        "--serve-host",
        action="append",
        metavar="NAME",
        default=None,
        help="a name the web view is reached by, beside the loopback's and the --serve address (a request "
        "naming another Host is refused: DNS rebinding); repeat for more",
    )
    web.add_argument(
        "--serve-max-cameras",
        type=int,
        default=16,
        help="the most cameras at once, with those added over the API",
    )
    web.add_argument("--serve-fps", type=float, default=15.0, help="the most pictures a second to one viewer")
    web.add_argument(
        "--mqtt",
        metavar="HOST[:PORT]",
        help="publish events to <topic>/<camera>/events and each camera's status to <topic>/<camera>/status "
        "on this MQTT broker",
    )
    web.add_argument(
        "--mqtt-user", help="MQTT user name (the password comes from the environment: GLANET_MQTT_PASSWORD)"
    )
    web.add_argument("--mqtt-topic", default="glanet", help="the MQTT topics' prefix")
    scale = p.add_argument_group("scale-out over a Ray cluster")
    scale.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="shard the cameras over a Ray cluster: auto (the cluster `ray start` runs here), "
        "ray://HOST:PORT (Ray Client) or local:N[xC] (start N nodes of C CPUs on this machine, to try it); "
        "each node runs its cameras with its own engine, opening their sources itself",
    )
    scale.add_argument(
        "--cluster-lease",
        type=float,
        default=3.0,
        help="a shard not heard from for this many seconds (and one more) is lost: its cameras move",
    )
    p.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="what is logged to stderr",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.log_level != "DEBUG":
        # OpenCV's and FFmpeg's own warnings ("moov atom not found") would bury our one line
        os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    restore = _catch_termination()
    try:
        return _main(args)
    except KeyboardInterrupt:  # a Ctrl-C that reached Python (outside the main thread's handlers)
        print("glanet: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    finally:
        restore()


def _leave_now(signum: int, _frame: object) -> None:
    """Ctrl-C or SIGTERM before the run has started (checking, importing, loading the model): nothing is
    open that needs finishing, so say so in one line and leave at once. Raising instead would unwind
    through whatever native code is running (torch's imports), which can abort the process."""
    name = "interrupted" if signum == signal.SIGINT else "stopped by SIGTERM"
    os.write(2, f"glanet: {name}\n".encode())
    os._exit(128 + signum)


def _catch_termination() -> Callable[[], None]:
    """Ctrl-C and SIGTERM leave at once with one line until the run's own handlers are in place; the
    returned function puts back what was there."""
    try:
        saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        if saved[signal.SIGTERM] == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _leave_now)
        if saved[signal.SIGINT] is signal.default_int_handler:
            signal.signal(signal.SIGINT, _leave_now)
    except ValueError:  # not the main thread: signals are not ours to handle
        return lambda: None

    def restore() -> None:
        for signum, handler in saved.items():
            if handler is not None:
                with contextlib.suppress(ValueError):
                    signal.signal(signum, handler)

    return restore


def _main(args: argparse.Namespace) -> int:
    from stream.cli.failures import REPORTED, report

    try:
        checked = validate(args)
        if sys.stderr.isatty():  # a person waits: say why nothing happens for a few seconds
            print(f"glanet: loading model {model_choice(args).describe()} ...", file=sys.stderr, flush=True)
        sock = None
        if checked.serve is not None:  # a taken port is told now, not after the model has loaded
            from stream.web.options import bind

            sock = bind(checked.serve.host, checked.serve.port)
        summary = _run(args, checked, sock)
    except REPORTED as error:
        return report(error)
    if summary.error is not None:
        print(f"glanet: {summary.error}", file=sys.stderr)
        return 1
    if len(summary.cameras) > 1:
        for name, s in summary.cameras.items():
            print(f"glanet: {name}: {s.error or s.line()}", file=sys.stderr)
    print(f"glanet: {summary.line()}", file=sys.stderr)
    return 0


def _run(args: argparse.Namespace, checked: Checked, sock: socket.socket | None = None) -> RunSummary:
    """Load the model and run the cameras `validate` checked (imports torch: seconds)."""
    from stream.runtime.app import StreamApp

    if checked.cluster is not None:
        return _run_cluster(args, checked, sock)
    cameras = checked.cameras
    # the most frames one round encodes (TensorRT's profile): with the web view, cameras may be added
    most = max(len(cameras), checked.serve.max_cameras if checked.serve else 1)
    from stream.runtime.model import open_model

    model = open_model(model_choice(args), max_batch=most)
    info = model.info
    defaults = checked.defaults
    if not defaults.folder_fps:
        defaults = dataclasses.replace(defaults, folder_fps=model_fps(info))
    specs = [camera_spec(camera, defaults, args) for camera in cameras]
    note = synthetic_note(info)
    options = stream_options(args, checked, note)
    app = StreamApp(specs, info, model.backend, options, backend_note=model.why)
    return _serve_and_run(app, args, checked, defaults, info, sock)


def stream_options(args: argparse.Namespace, checked: Checked, note: str) -> StreamOptions:
    """The command line's options of a run."""
    from stream.runtime.events import EventConfig
    from stream.runtime.recognizer import RecognizerConfig
    from stream.runtime.spec import StreamOptions

    return StreamOptions(
        fast=args.fast,
        headless=True if args.headless else None,
        save=args.save,
        events=args.events,
        max_frames=args.max_frames,
        duration_s=args.duration,
        attention=args.attention,
        dashboard=False if args.no_dashboard else None,
        recognizer=RecognizerConfig(smoothing=args.smoothing, static_gate=args.static_gate),
        events_config=EventConfig(args.enter, args.exit, args.min_duration),
        watchdog_s=args.watchdog,
        max_reconnects=args.max_reconnects,
        note=note,
        # said once, when the model first speaks (a bad source stays one line), and on every overlay
        announce=SYNTHETIC_ANNOUNCE if note else "",
        keep_alive=checked.serve is not None,
        # a lone unnamed source keeps the look of a single-camera run: no camera name on its overlay
        # (with the web view cameras may come, and each tile is named)
        label_cameras=not (
            len(checked.cameras) == 1 and not checked.cameras[0].named and checked.serve is None
        ),
    )


def _run_cluster(args: argparse.Namespace, checked: Checked, sock: socket.socket | None) -> RunSummary:
    """The cameras sharded over a Ray cluster (imports Ray; every node loads the model)."""
    from stream.cluster.controller import ClusterApp

    assert checked.cluster is not None
    defaults = checked.defaults

    def specs_at(fps: float) -> list[CameraSpec]:
        # every camera has a name: it keys its shard (a lone source is "demo", "camera" ...)
        d = defaults if defaults.folder_fps else dataclasses.replace(defaults, folder_fps=fps)
        return [camera_spec(camera, d, args) for camera in checked.cameras]

    specs = specs_at(25.0)
    most = max(len(specs), checked.serve.max_cameras if checked.serve else 1)
    options = stream_options(args, checked, "")
    options = dataclasses.replace(options, headless=True)
    app = ClusterApp(
        specs, checked.cluster, model_choice(args), options, max_batch=most, lease_s=args.cluster_lease,
        picture_fps=checked.serve.max_fps if checked.serve is not None else 0.0,
        jpeg_quality=checked.serve.jpeg_quality if checked.serve is not None else 80,
    )  # fmt: skip
    try:
        app.start()
        fps = model_fps(app)
        app.specs = specs_at(fps)  # a folder's frame rate is the model's, known now
        if not defaults.folder_fps:
            defaults = dataclasses.replace(defaults, folder_fps=fps)
        note = synthetic_note(app)
        if note:
            app.view.note = note  # type: ignore[union-attr]
            app.options = dataclasses.replace(app.options, note=note, announce=SYNTHETIC_ANNOUNCE)
        return _serve_and_run(app, args, checked, defaults, app, sock)
    finally:
        app.close()


def _serve_and_run(
    app: Run,
    args: argparse.Namespace,
    checked: Checked,
    defaults: CameraDefaults,
    info: ModelInfo,
    sock: socket.socket | None,
) -> RunSummary:
    """Run `app` (in this process or on a cluster) with the signals, MQTT and the web view wired."""
    from engines.manifest import write_json_atomic

    def stop(signum: int, _frame: object) -> None:
        if not app.stopping:
            app.request_stop(f"stopped by {signal.Signals(signum).name}")
            return
        os._exit(130)  # a second Ctrl-C: leave now

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    with contextlib.ExitStack() as stack:
        if checked.mqtt is not None:
            from stream.sinks.mqtt import MqttSink

            app.sinks.append(MqttSink.connect(checked.mqtt))  # closed with the other sinks
        if checked.serve is not None:
            server = web_server(app, checked, args, defaults, info, app.backend.describe(), sock)
            stack.callback(server.stop)
            server.start()
            print(f"glanet: web view at {server.url}", file=sys.stderr, flush=True)
        summary = app.run()
    if args.summary_json is not None:
        write_json_atomic(args.summary_json, summary.to_dict())
    return summary


def web_server(
    app: Run,
    checked: Checked,
    args: argparse.Namespace,
    defaults: CameraDefaults,
    info: ModelInfo,
    backend: str,
    sock: socket.socket | None,
) -> WebServer:
    """The web view over the run: its sink joins the run's, and cameras added over the API are made as
    the command line's are (its defaults; a demo camera gets a scene of its own)."""
    from stream.web.hub import WebHub
    from stream.web.server import WebServer

    assert checked.serve is not None
    hub = WebHub(app.backend.spec.maps, app.view, checked.serve.jpeg_quality)
    app.sinks.append(hub)

    # a camera added over the API that fails to open says only that (the reason goes to the log): its
    # status must not tell an API client which ports of a host answer
    api_defaults = dataclasses.replace(defaults, explain_failures=False)

    def make_camera(camera: CameraConfig) -> CameraSpec:
        if camera.source.strip() == "demo" and camera.demo_seed is None:
            camera = dataclasses.replace(camera, demo_seed=args.demo_seed + len(app.specs))
        return camera_spec(camera, api_defaults, args)

    model = {"classes": list(info.class_names), "backend": backend, "note": app.view.note}
    return WebServer(app, hub, checked.serve, make_camera, sock, model)


def camera_spec(camera: CameraConfig, defaults: CameraDefaults, args: argparse.Namespace) -> CameraSpec:
    """A camera of the command line or the sources file, as the runtime takes it: always named (a lone
    source after itself: demo, the file's stem), so its events, MQTT topics and summary say which it is."""
    from stream.runtime.session import RecognizerConfig
    from stream.runtime.spec import CameraSpec
    from stream.sources.cameras import camera_source_spec

    events = camera_events(camera, args)
    recognizer = None  # the run's, unless the camera sets its own smoothing or gate
    if camera.smoothing is not None or camera.static_gate is not None:
        recognizer = RecognizerConfig(
            smoothing=args.smoothing if camera.smoothing is None else camera.smoothing,
            static_gate=args.static_gate if camera.static_gate is None else camera.static_gate,
        )
    source = camera_source_spec(camera, defaults)
    return CameraSpec(
        camera.name, source, camera.fast, camera.watchdog_s, camera.max_reconnects, recognizer, events
    )


SYNTHETIC_NOTE = "model: SynthActions only"
SYNTHETIC_ANNOUNCE = (
    "glanet: note: this model was trained on SynthActions (synthetic figures) only: it knows those 12 "
    "generated actions, not real footage (train on your own data: see the README)"
)


def synthetic_note(info: ModelInfo) -> str:
    """A short line saying the model knows only SynthActions' synthetic figures, when it does."""
    from glanet.data.synth_render import CLASSES

    return SYNTHETIC_NOTE if set(info.class_names) == set(CLASSES) else ""


if __name__ == "__main__":
    sys.exit(main())
