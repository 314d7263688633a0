"""glanet's main job: recognise actions live from a webcam, an RTSP camera, a video file, a folder of frames
or the built-in demo source, with the SA/LA attention overlaid (`glanet run`, or `python run_camera.py`).

    python run_camera.py --source demo
    python run_camera.py --source rtsp://user:pass@camera/stream --events events.jsonl
    python run_camera.py --source clip.mp4 --fast --headless --save out.mp4
    python run_camera.py --source front=rtsp://cam1/s --source back=rtsp://cam2/s --save videos/
    python run_camera.py --sources cameras.toml --events events.jsonl --summary-json summary.json

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
import math
import os
import re
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glanet.package_data import DEMO_CHECKPOINT

if TYPE_CHECKING:
    import socket

    from engines.backend import Backend
    from stream.app import CameraSpec, ModelInfo, RunSummary, StreamApp, StreamOptions
    from stream.cameras import CameraConfig, CameraDefaults
    from stream.cluster.address import ClusterAddress
    from stream.events import EventConfig
    from stream.mqtt import MqttConfig
    from stream.web.options import ServeOptions
    from stream.web.server import WebServer

# the committed demo model, shipped inside the package (so `glanet run` works from an installed wheel)
DEFAULT_CHECKPOINT = DEMO_CHECKPOINT
# the backends that run (part of) the torch model, so read the checkpoint even beside an export folder
TORCH_RUN = ("torch", "tensorrt", "torch_tensorrt")


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


def add_model_flags(p: argparse.ArgumentParser) -> None:
    """The model and its engine: --checkpoint, --backend, --engine, --precision, --device, --threads."""
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


class UsageError(ValueError):
    """A bad command-line value, a missing model file or an output that is an input: one line, exit 2."""


@dataclasses.dataclass(frozen=True)
class Checked:
    """What `validate` found, before the model loads: the cameras, named and with their demo seeds, and the
    command line's values for their sources (folder_fps 0.0: the model's frame rate, known once it loads)."""

    cameras: list[CameraConfig]
    defaults: CameraDefaults
    serve: ServeOptions | None = None
    mqtt: MqttConfig | None = None
    cluster: ClusterAddress | None = None


VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")
ATTENTION = ("sa", "la", "se", "none")  # every map a shipped model has; the loaded model narrows it
_DEVICE = re.compile(r"^(cpu|cuda(:[0-9]+)?)$")

# flag, attribute, test, rule: each numeric flag's range (None, the default of some, is not checked). The
# flags a camera may override (--watchdog, --demo-size, ...) take their ranges from stream.cameras'
# CAMERA_RANGES instead: one table for the command line, the cameras file and the web API.
_NUMBER_RULES: tuple[tuple[str, str, Callable[[float], bool], str], ...] = (
    ("--threads", "threads", lambda v: v >= 1, "must be at least 1"),
    ("--max-frames", "max_frames", lambda v: v >= 1, "must be at least 1"),
    ("--duration", "duration", lambda v: v > 0, "must be above 0 (seconds)"),
    # each camera holds threads, sockets and buffers, and the web server's connection cap is what is
    # left of the file limit after them
    ("--serve-max-cameras", "serve_max_cameras", lambda v: 1 <= v <= 256, "must be in [1, 256]"),
    ("--serve-fps", "serve_fps", lambda v: 0 < v <= 60, "must be in (0, 60]"),
    ("--cluster-lease", "cluster_lease", lambda v: 0.5 <= v <= 600, "must be 0.5 to 600 (seconds)"),
)


def check_numbers(args: argparse.Namespace) -> None:
    """Every numeric flag finite and in its range, else UsageError naming the flag."""
    from stream.cameras import CAMERA_RANGES

    for key, allowed in CAMERA_RANGES.items():  # the flags named as the [[camera]] keys
        value = getattr(args, key)
        problem = None if value is None else allowed.problem(value)
        if problem:
            shown = f"{value:g}" if isinstance(value, float) else str(value)
            raise UsageError(f"--{key.replace('_', '-')} {shown}: {problem}")
    for flag, attr, ok, rule in _NUMBER_RULES:
        value = getattr(args, attr)
        if value is None:
            continue
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"{flag} {shown}: must be a finite number")
        if not ok(value):
            raise UsageError(f"{flag} {shown}: {rule}")
    if args.exit > args.enter:
        raise UsageError(f"--exit {args.exit:g} must not be above --enter {args.enter:g}")


def check_device(device: str | None) -> None:
    """cpu, cuda or cuda:N; whether that CUDA device exists is `check_cuda_device`'s, once torch loads."""
    if device is not None and not _DEVICE.match(device):
        raise UsageError(f"--device {device!r}: give cpu, cuda or cuda:N (N the index of a GPU)")


def check_cuda_device(device: str | None) -> None:
    """A --device cuda[:N] that this machine has (imports torch)."""
    if device is None or not device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no CUDA device here (torch sees none); use --device cpu")
    index, count = int(device.partition(":")[2] or 0), torch.cuda.device_count()
    if index >= count:
        raise UsageError(f"--device {device}: there is no CUDA device {index} ({count} found, from cuda:0)")


def validate(args: argparse.Namespace) -> Checked:
    """Everything that can be checked before the model loads, without importing torch or OpenVINO: the
    numbers, the device's spelling, the cameras and their sources (parsed, not opened), the checkpoint or
    export folder, and the outputs (writable, and none of them an input). Raises UsageError (exit 2),
    SourceError, EngineError or SinkError (exit 1), each with one line."""
    from stream.cameras import (
        CameraDefaults,
        camera_source_spec,
        check_cameras,
        load_cameras_file,
        parse_camera_arg,
    )

    check_numbers(args)
    check_device(args.device)
    if args.attention is not None and args.attention not in ATTENTION:  # the model's own are checked on load
        raise UsageError(f"--attention {args.attention!r}: give one of {', '.join(ATTENTION)}")
    defaults = CameraDefaults(
        folder_fps=args.folder_fps or 0.0,
        demo_seed=args.demo_seed,
        demo_size=args.demo_size,
        demo_fps=args.demo_fps,
        open_timeout_s=args.open_timeout,
        watchdog_s=args.watchdog,
    )
    given = [parse_camera_arg(text) for text in args.source or ([] if args.sources else ["demo"])]
    cameras = given + (load_cameras_file(args.sources) if args.sources is not None else [])
    cameras = check_cameras(cameras)
    # several demo cameras show different scenes: seeds demo_seed, demo_seed + 1, ... unless given
    demos = [i for i, c in enumerate(cameras) if c.source.strip() == "demo" and c.demo_seed is None]
    for k, i in enumerate(demos[1:], start=1):
        cameras[i] = dataclasses.replace(cameras[i], demo_seed=args.demo_seed + k)
    # the folder rate is the model's unless given: any valid one does to parse the sources now
    parse_defaults = defaults if defaults.folder_fps else dataclasses.replace(defaults, folder_fps=25.0)
    inputs: list[tuple[str, Path]] = []
    for i, camera in enumerate(cameras):
        source = camera_source_spec(camera, parse_defaults)  # a SourceError names the camera
        try:
            camera_events(camera, args)
        except ValueError as error:
            raise UsageError(f"camera {camera.name!r}: {error}") from None
        if source.kind in ("file", "folder"):
            if i < len(given):
                origin = (
                    f"--source {camera.name}={camera.source}" if camera.named else f"--source {camera.source}"
                )
            else:
                origin = f"camera {camera.name!r} of {args.sources}"
            inputs.append((origin, Path(camera.source)))
    check_model_paths(args)
    check_outputs(args, cameras, inputs)
    if len(cameras) > args.serve_max_cameras:
        raise UsageError(f"{len(cameras)} cameras, but --serve-max-cameras is {args.serve_max_cameras}")
    return Checked(cameras, defaults, serve_options(args), mqtt_config(args), cluster_address(args))


def cluster_address(args: argparse.Namespace) -> ClusterAddress | None:
    """--cluster, checked; what a cluster run cannot do is said now (no Ray import)."""
    from stream.cluster.address import parse_cluster_address

    if args.cluster is None:
        return None
    try:
        address = parse_cluster_address(args.cluster)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.save is not None:
        raise UsageError("--save with --cluster: videos are not written by a cluster run (use --events)")
    return address


def serve_options(args: argparse.Namespace) -> ServeOptions | None:
    """--serve and its flags, checked (a token where the address is not the loopback), or None."""
    from stream.web.options import ServeOptions, check_host_name, parse_serve_address, resolve_token

    for flag, given in (
        ("--serve-token", args.serve_token),
        ("--serve-allow-files", args.serve_allow_files),
        ("--serve-allow-webcams", args.serve_allow_webcams),
        ("--serve-allow-private", args.serve_allow_private),
        ("--serve-host", args.serve_host),
    ):
        if given and args.serve is None:
            raise UsageError(f"{flag} is for the web view: give --serve [HOST:]PORT too")
    if args.serve is None:
        return None
    host, port = parse_serve_address(args.serve)
    return ServeOptions(
        host=host,
        port=port,
        token=resolve_token(host, args.serve_token),
        allow_files=args.serve_allow_files,
        allow_webcams=args.serve_allow_webcams,
        allow_private=args.serve_allow_private,
        hosts=tuple(check_host_name(name) for name in args.serve_host or ()),
        max_cameras=args.serve_max_cameras,
        max_fps=args.serve_fps,
    )


def mqtt_config(args: argparse.Namespace) -> MqttConfig | None:
    from stream.mqtt import MqttConfig, parse_address, password_from_env

    if args.mqtt is None:
        if args.mqtt_user is not None:
            raise UsageError("--mqtt-user is for MQTT: give --mqtt HOST[:PORT] too")
        return None
    topic = args.mqtt_topic.strip("/")
    if not topic or any(c in topic for c in "+#"):
        raise UsageError(f"--mqtt-topic {args.mqtt_topic!r}: give a topic prefix without + or #")
    host, port = parse_address(args.mqtt)
    # the password only with a user: a stray GLANET_MQTT_PASSWORD alone is not an MQTT login
    password = password_from_env() if args.mqtt_user else None
    return MqttConfig(host, port, user=args.mqtt_user, password=password, topic=topic)


def check_model_paths(args: argparse.Namespace) -> None:
    """The export folder, and the checkpoint where it will be read, exist (their contents: when loaded)."""
    from engines.errors import EngineError

    if args.engine is not None:
        if not args.engine.exists():
            raise EngineError(
                f"{args.engine}: export directory not found (make one with python -m engines.export)"
            )
        if not args.engine.is_dir():
            raise EngineError(
                f"{args.engine}: --engine takes the folder of python -m engines.export, not a file"
            )
    # as main: the checkpoint is read without an export folder, when given, or for the torch-run backends
    if args.engine is None or args.checkpoint is not None or args.backend in TORCH_RUN:
        path = args.checkpoint or DEFAULT_CHECKPOINT
        if not path.exists():
            raise UsageError(f"{path}: checkpoint not found")
        if path.is_dir():
            raise UsageError(f"{path}: is a folder, not a checkpoint (give a .pt file)")


def same_path(a: Path, b: Path) -> bool:
    """Whether `a` and `b` are one file: samefile where both exist, else their resolved paths."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist (yet)
        pass
    try:
        ra, rb = a.resolve(), b.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        ra, rb = Path(os.path.abspath(a)), Path(os.path.abspath(b))
    return os.path.normcase(ra) == os.path.normcase(rb)


def check_outputs(
    args: argparse.Namespace, cameras: list[CameraConfig], inputs: list[tuple[str, Path]]
) -> None:
    """--save, --events and --summary-json: none of them an input or another output, each writable."""
    from stream.sinks import SinkError

    inputs = list(inputs)
    if args.sources is not None:
        inputs.append((f"--sources {args.sources}", args.sources))
    if args.checkpoint is not None:
        inputs.append((f"--checkpoint {args.checkpoint}", args.checkpoint))
    else:
        inputs.append((f"the default checkpoint {DEFAULT_CHECKPOINT}", DEFAULT_CHECKPOINT))
    if args.engine is not None:
        inputs.append((f"--engine {args.engine}", args.engine))
    several = len(cameras) > 1
    outputs: list[tuple[str, Path]] = []
    if args.save is not None:
        outputs.append((f"--save {args.save}", args.save))
        if several:
            for camera in cameras:
                path = args.save / f"{camera.name}.mp4"
                outputs.append((f"--save {args.save} (camera {camera.name!r} writes {path})", path))
    if args.events is not None:
        outputs.append((f"--events {args.events}", args.events))
    if args.summary_json is not None:
        outputs.append((f"--summary-json {args.summary_json}", args.summary_json))
    for k, (what, path) in enumerate(outputs):
        for source, input_path in inputs:
            if same_path(path, input_path):
                raise UsageError(
                    f"{what} would write over the input {source}: give the output a path of its own"
                )
        for other, other_path in outputs[k + 1 :]:
            if same_path(path, other_path):
                raise UsageError(f"{what} and {other} are the same file: give each output a path of its own")

    if args.save is not None:
        save = args.save
        if not several:
            if save.is_dir():
                raise SinkError(f"--save {save} is a folder: with one camera give the .mp4 file to write")
            _check_parent(save, f"cannot write video {save}")
            why = _cannot_write_file(save)
            if why:
                raise SinkError(f"cannot write video {save}: {why}")
        else:
            if save.suffix.lower() in VIDEO_SUFFIXES:
                raise SinkError(f"--save {save}: with several cameras give a folder (one <camera>.mp4 each)")
            if save.exists() and not save.is_dir():
                raise SinkError(
                    f"--save {save} is a file: with several cameras give a folder (one <camera>.mp4 each)"
                )
            base = _nearest_existing(save)
            why = f"{base} is a file, not a folder" if not base.is_dir() else _cannot_write_in(base)
            if why:
                raise SinkError(f"cannot write videos into {save}: {why}")
            for camera in cameras:
                path = save / f"{camera.name}.mp4"
                why = (
                    ("it is a folder" if path.is_dir() else _cannot_write_file(path))
                    if path.exists()
                    else None
                )
                if why:
                    raise SinkError(f"cannot write video {path}: {why}")
    if args.events is not None:
        _check_output_file(args.events, "cannot write event log", "a .jsonl file")
    if args.summary_json is not None:
        # written atomically: a temporary file in its folder, renamed
        _check_output_file(args.summary_json, "cannot write summary", "a .json file", atomic=True)


def _check_output_file(path: Path, what: str, give: str, *, atomic: bool = False) -> None:
    """A file an output goes to: not a folder, its folder there and writable, and the file itself
    writable unless it is written atomically (beside, then renamed)."""
    from stream.sinks import SinkError

    if path.is_dir():
        raise SinkError(f"{what} {path}: it is a folder (give {give})")
    _check_parent(path, f"{what} {path}")
    why = _cannot_write_in(path.parent) if atomic else _cannot_write_file(path)
    if why:
        raise SinkError(f"{what} {path}: {why}")


def _check_parent(path: Path, what: str) -> None:
    from stream.sinks import SinkError

    parent = path.parent
    if not parent.exists():
        raise SinkError(f"{what}: folder {parent} does not exist")
    if not parent.is_dir():
        raise SinkError(f"{what}: {parent} is not a folder")


def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _cannot_write_file(path: Path) -> str | None:
    """Why `path` cannot be written, or None: opened for appending (nothing changes), made and removed
    where it is new."""
    existed = path.exists()
    flags = os.O_WRONLY | os.O_APPEND | (0 if existed else os.O_CREAT | os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as error:
        return error.strerror or str(error)
    os.close(fd)
    if not existed:
        with contextlib.suppress(OSError):
            path.unlink()
    return None


def _cannot_write_in(folder: Path) -> str | None:
    """Why no file can be made in `folder`, or None (a file is made there and removed)."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".glanet-write-test-")
    except OSError as error:
        return error.strerror or str(error)
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return None


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
    from engines.errors import EngineError
    from glanet.cli import error_line
    from stream.errors import StreamError
    from stream.sinks import SinkError

    try:
        checked = validate(args)
        if sys.stderr.isatty():  # a person waits: say why nothing happens for a few seconds
            what = args.engine or args.checkpoint or DEFAULT_CHECKPOINT
            print(f"glanet: loading model {what} ...", file=sys.stderr, flush=True)
        sock = None
        if checked.serve is not None:  # a taken port is told now, not after the model has loaded
            from stream.web.options import bind

            sock = bind(checked.serve.host, checked.serve.port)
        summary = _run(args, checked, sock)
    except (EngineError, StreamError, SinkError, ValueError, OSError) as error:
        # CheckpointError and UsageError are ValueErrors, ManifestError an EngineError
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


def open_model(
    args: argparse.Namespace, max_batch: int, threads: int | None = None
) -> tuple[ModelInfo, Backend, str]:
    """The model of --checkpoint / --engine on the chosen backend: its metadata, the backend, and why that
    backend (imports torch: seconds). `max_batch`: the most frames one round encodes; `threads`: OpenVINO's
    inference threads (a cluster shard: its node's CPUs; None: OpenVINO's choice)."""
    import torch

    from engines.manifest import read_manifest
    from engines.openvino_backend import best_built_precision
    from engines.select import choose_backend, make_backend
    from glanet.checkpoint import CheckpointError, load_checkpoint
    from glanet.models import live_problem

    check_cuda_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    backend_name, why = choose_backend(args.backend)
    # an export folder carries the model's metadata; the checkpoint is read when the backend runs
    # (part of) the torch model, or when there is no export folder
    ck = None
    if args.engine is None or args.checkpoint is not None or backend_name in TORCH_RUN:
        path = args.checkpoint or DEFAULT_CHECKPOINT
        if not Path(path).exists():
            raise CheckpointError(path, "checkpoint not found")
        ck = load_checkpoint(path, map_location="cpu")
        problem = live_problem(ck.model)
        if problem:
            raise CheckpointError(path, problem)
    info = read_manifest(args.engine) if args.engine is not None else ck
    assert info is not None
    precision = args.precision
    if args.engine is not None and precision is None and backend_name == "openvino":
        precision, reason = best_built_precision(read_manifest(args.engine))
        print(f"glanet: {args.engine}: {reason}", file=sys.stderr)
    backend = make_backend(
        backend_name, ck, args.engine, precision, args.device, max_batch=max_batch, threads=threads
    )
    logging.getLogger("glanet").info("backend %s (%s)", backend.describe(), why)
    return info, backend, why


def _run(args: argparse.Namespace, checked: Checked, sock: socket.socket | None = None) -> RunSummary:
    """Load the model and run the cameras `validate` checked (imports torch: seconds)."""
    from stream.app import StreamApp

    if checked.cluster is not None:
        return _run_cluster(args, checked, sock)
    cameras = checked.cameras
    # the most frames one round encodes (TensorRT's profile): with the web view, cameras may be added
    most = max(len(cameras), checked.serve.max_cameras if checked.serve else 1)
    info, backend, why = open_model(args, max_batch=most)
    model_fps = float(info.sampling.get("fps") or 25.0)
    defaults = checked.defaults
    if not defaults.folder_fps:
        defaults = dataclasses.replace(defaults, folder_fps=model_fps)
    specs = [camera_spec(camera, defaults, args) for camera in cameras]
    note = synthetic_note(info)
    options = stream_options(args, checked, note)
    app = StreamApp(specs, info, backend, options, backend_note=why)
    return _serve_and_run(app, args, checked, defaults, info, sock)


def stream_options(args: argparse.Namespace, checked: Checked, note: str) -> StreamOptions:
    """The command line's options of a run."""
    from stream.app import StreamOptions
    from stream.events import EventConfig
    from stream.recognizer import RecognizerConfig

    return StreamOptions(
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
    model = {k: getattr(args, k) for k in ("checkpoint", "engine", "backend", "precision", "device")}
    most = max(len(specs), checked.serve.max_cameras if checked.serve else 1)
    options = stream_options(args, checked, "")
    options = dataclasses.replace(options, headless=True)
    app = ClusterApp(
        specs, checked.cluster, model, options, max_batch=most, lease_s=args.cluster_lease,
        picture_fps=checked.serve.max_fps if checked.serve is not None else 0.0,
        jpeg_quality=checked.serve.jpeg_quality if checked.serve is not None else 80,
    )  # fmt: skip
    try:
        app.start()
        fps = float(app.sampling.get("fps") or 25.0)
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
    app: Any,
    args: argparse.Namespace,
    checked: Checked,
    defaults: CameraDefaults,
    info: ModelInfo,
    sock: socket.socket | None,
) -> RunSummary:
    """Run `app` (a StreamApp or a ClusterApp) with the signals, MQTT and the web view wired."""
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
            from stream.mqtt import MqttSink

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
    app: StreamApp,
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


def camera_events(camera: CameraConfig, args: argparse.Namespace) -> EventConfig | None:
    """The camera's event thresholds where it overrides any (over the command line's others), else None."""
    from stream.events import EventConfig

    if all(v is None for v in (camera.enter, camera.exit, camera.min_duration_s)):
        return None
    return EventConfig(
        args.enter if camera.enter is None else camera.enter,
        args.exit if camera.exit is None else camera.exit,
        args.min_duration if camera.min_duration_s is None else camera.min_duration_s,
    )


def camera_spec(camera: CameraConfig, defaults: CameraDefaults, args: argparse.Namespace) -> CameraSpec:
    """A camera of the command line or the sources file, as the runtime takes it: always named (a lone
    source after itself: demo, the file's stem), so its events, MQTT topics and summary say which it is."""
    from stream.app import CameraSpec
    from stream.cameras import camera_source_spec
    from stream.session import RecognizerConfig

    events = camera_events(camera, args)
    smoothing = None if camera.smoothing is None else RecognizerConfig(smoothing=camera.smoothing)
    source = camera_source_spec(camera, defaults)
    return CameraSpec(
        camera.name, source, camera.fast, camera.watchdog_s, camera.max_reconnects, smoothing, events
    )


SYNTHETIC_NOTE = "model: SynthActions only"
SYNTHETIC_ANNOUNCE = (
    "glanet: note: this model was trained on SynthActions (synthetic figures) only: it knows those 12 "
    "generated actions, not real footage (train on your own data: see the README)"
)


def synthetic_note(info: ModelInfo) -> str:
    """A short line saying the model knows only SynthActions' synthetic figures, when it does."""
    from glanet.data.synth import CLASSES

    return SYNTHETIC_NOTE if set(info.class_names) == set(CLASSES) else ""


if __name__ == "__main__":
    sys.exit(main())
