"""The command line's checks, before anything loads: each flag's range, the cameras, the model's files, that
no output is an input and every output can be written. A mistake is one line (UsageError: exit 2), told
before the model loads (seconds) rather than after."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from stream.runtime.model import DEFAULT_CHECKPOINT, ModelChoice

if TYPE_CHECKING:
    from stream.cluster.address import ClusterAddress
    from stream.runtime.events import EventConfig
    from stream.sinks.mqtt import MqttConfig
    from stream.sources.cameras import CameraConfig, CameraDefaults
    from stream.sources.readers import SourceSpec
    from stream.web.options import ServeOptions


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
    p.add_argument("--engine", type=Path, help="an export folder (glanet export) to run from")
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
# flags a camera may override (--watchdog, --demo-size, ...) take their ranges from stream.sources.cameras'
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
    from stream.sources.cameras import CAMERA_RANGES

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
    """cpu, cuda or cuda:N; whether that CUDA device exists is known once torch loads."""
    if device is not None and not _DEVICE.match(device):
        raise UsageError(f"--device {device!r}: give cpu, cuda or cuda:N (N the index of a GPU)")


def validate(args: argparse.Namespace) -> Checked:
    """Everything that can be checked before the model loads, without importing torch or OpenVINO: the
    numbers, the device's spelling, the cameras and their sources (parsed, not opened), the checkpoint or
    export folder, and the outputs (writable, and none of them an input). Raises UsageError (exit 2),
    SourceError, EngineError or SinkError (exit 1), each with one line."""
    from stream.errors import SourceError
    from stream.sources.cameras import (
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
    missing: list[str] = []  # the cameras that are webcams not on this machine, each with its line
    for i, camera in enumerate(cameras):
        source = camera_source_spec(camera, parse_defaults)  # a SourceError names the camera
        if source.kind == "webcam":
            missing += _missing_webcam(camera.name, source, len(cameras) > 1)
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
    # a run with nothing but absent webcams would fail when they open, after the model has loaded (seconds);
    # a cluster's nodes open their own cameras, and with the web view the run goes on for the API's cameras
    if missing and len(missing) == len(cameras) and args.cluster is None and args.serve is None:
        raise SourceError("; ".join(missing))
    check_model_paths(model_choice(args))
    check_outputs(args, cameras, inputs)
    if len(cameras) > args.serve_max_cameras:
        raise UsageError(f"{len(cameras)} cameras, but --serve-max-cameras is {args.serve_max_cameras}")
    return Checked(cameras, defaults, serve_options(args), mqtt_config(args), cluster_address(args))


def _missing_webcam(name: str, source: SourceSpec, several: bool) -> list[str]:
    """[the line saying the camera's webcam is not on this machine], or [] where it may be there."""
    from stream.sources.readers import OpenCVSource, missing_webcam

    reader = source.factory()  # an OpenCVSource: made, not opened
    why = missing_webcam(int(reader.target)) if isinstance(reader, OpenCVSource) else None
    if why is None:
        return []
    return [f"camera {name!r}: {why}" if several else why]


def cluster_address(args: argparse.Namespace) -> ClusterAddress | None:
    """--cluster, checked; what a cluster run cannot do is said now (no Ray import)."""
    from stream.cluster.address import parse_cluster_address

    if args.cluster is None:
        return None
    try:
        address = parse_cluster_address(args.cluster)
    except ValueError as error:
        raise UsageError(str(error)) from None
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
    from stream.sinks.mqtt import MqttConfig, parse_address, password_from_env

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


def check_model_paths(choice: ModelChoice) -> None:
    """The export folder, and the checkpoint where it will be read, exist (their contents: when loaded)."""
    from engines.errors import EngineError

    if choice.engine is not None:
        if not choice.engine.exists():
            raise EngineError(f"{choice.engine}: export directory not found (make one with glanet export)")
        if not choice.engine.is_dir():
            raise EngineError(f"{choice.engine}: --engine takes the folder glanet export writes, not a file")
    # as main: the checkpoint is read without an export folder, when given, or for the torch-run backends
    if choice.needs_checkpoint():
        path = choice.checkpoint or DEFAULT_CHECKPOINT
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
    from stream.errors import SinkError

    inputs = list(inputs)
    if args.sources is not None:
        inputs.append((f"--sources {args.sources}", args.sources))
    if args.checkpoint is not None:
        inputs.append((f"--checkpoint {args.checkpoint}", args.checkpoint))
    else:
        inputs.append((f"the default checkpoint {DEFAULT_CHECKPOINT}", DEFAULT_CHECKPOINT))
    if args.engine is not None:
        inputs.append((f"--engine {args.engine}", args.engine))
    several = len(cameras) > 1 or args.cluster is not None  # a cluster's --save: a folder, parts in it
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
                raise SinkError(
                    f"--save {save}: with several cameras or --cluster give a folder (one <camera>.mp4 each)"
                )
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
    from stream.errors import SinkError

    if path.is_dir():
        raise SinkError(f"{what} {path}: it is a folder (give {give})")
    _check_parent(path, f"{what} {path}")
    why = _cannot_write_in(path.parent) if atomic else _cannot_write_file(path)
    if why:
        raise SinkError(f"{what} {path}: {why}")


def _check_parent(path: Path, what: str) -> None:
    from stream.errors import SinkError

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


def model_choice(args: argparse.Namespace) -> ModelChoice:
    """The model flags (--checkpoint, --engine, --backend, --precision, --device, --threads)."""
    return ModelChoice(args.checkpoint, args.engine, args.backend, args.precision, args.device, args.threads)


def camera_events(camera: CameraConfig, args: argparse.Namespace) -> EventConfig | None:
    """The camera's event thresholds where it overrides any (over the command line's others), else None."""
    from stream.runtime.events import EventConfig

    if all(v is None for v in (camera.enter, camera.exit, camera.min_duration_s)):
        return None
    return EventConfig(
        args.enter if camera.enter is None else camera.enter,
        args.exit if camera.exit is None else camera.exit,
        args.min_duration if camera.min_duration_s is None else camera.min_duration_s,
    )
