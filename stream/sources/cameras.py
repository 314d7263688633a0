"""The cameras of a multi-camera run: `--source [NAME=]SOURCE` values and a TOML file of `[[camera]]`
tables become named `CameraConfig`s, checked without opening any source."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream.errors import SourceError
from stream.sources.readers import SourceSpec, is_device_index, parse_source, redact

NAME_MAX = 64
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]+")
_NAME_RULE = f"letters, digits, '_' or '-', at most {NAME_MAX}"


@dataclass(frozen=True)
class CameraConfig:
    """One camera. The overrides are None where the command line's value applies."""

    name: str  # letters, digits, '_' or '-', at most NAME_MAX characters
    source: str  # as given: may hold credentials, so only ever shown through redact()
    fast: bool | None = None
    watchdog_s: float | None = None
    max_reconnects: int | None = None
    open_timeout_s: float | None = None
    enter: float | None = None
    exit: float | None = None
    min_duration_s: float | None = None
    smoothing: float | None = None
    static_gate: float | None = None
    folder_fps: float | None = None
    demo_seed: int | None = None
    demo_size: int | None = None
    demo_fps: float | None = None
    named: bool = True  # False: the name was derived from the source, and may get a -2, -3 suffix


@dataclass(frozen=True)
class CameraDefaults:
    """The command line's values for what a camera may override in how its source is made."""

    folder_fps: float = 25.0
    demo_seed: int = 0
    demo_size: int = 224
    demo_fps: float = 15.0
    open_timeout_s: float = 10.0
    watchdog_s: float = 5.0
    # a failed network open says why (refused, no answer, answered without a stream); False for cameras
    # added over the API, whose status would otherwise tell an API client which ports answer
    explain_failures: bool = True


# TOML key -> (CameraConfig field, type). The keys are the command-line flags without their dashes.
_OVERRIDES: dict[str, tuple[str, type]] = {
    "fast": ("fast", bool),
    "watchdog": ("watchdog_s", float),
    "max_reconnects": ("max_reconnects", int),
    "open_timeout": ("open_timeout_s", float),
    "enter": ("enter", float),
    "exit": ("exit", float),
    "min_duration": ("min_duration_s", float),
    "smoothing": ("smoothing", float),
    "static_gate": ("static_gate", float),
    "folder_fps": ("folder_fps", float),
    "demo_seed": ("demo_seed", int),
    "demo_size": ("demo_size", int),
    "demo_fps": ("demo_fps", float),
}
_KEYS = ("name", "source", *_OVERRIDES)


@dataclass(frozen=True)
class Range:
    """Where a number may lie: `low`..`high`, each end included unless it is open; `unit` for the message."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False
    unit: str = ""

    def problem(self, value: float) -> str | None:
        """None where `value` lies in the range, else what is wrong with it ("must be in (0, 600] ...")."""
        if isinstance(value, float) and not math.isfinite(value):  # nan passes every comparison unnoticed
            return "must be a finite number"
        too_low = value <= self.low if self.low_open else value < self.low
        too_high = value >= self.high if self.high_open else value > self.high
        return f"must be in {self}" if too_low or too_high else None

    def __str__(self) -> str:
        low, high = _number(self.low), _number(self.high)
        span = f"{'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        return f"{span} ({self.unit})" if self.unit else span


# The range of every number a camera may override, and of the command-line flag of the same name (run.py's
# --watchdog, --demo-size, ...): one table, so a cameras file, the web API and the command line agree. The
# upper bounds keep one request from costing the machine: a demo frame is size² x 3 bytes, held a few times
# over (1024: 3 MB each; 4096 took 1.2 GB a camera), and FFmpeg takes its timeouts in microseconds.
CAMERA_RANGES: dict[str, Range] = {
    # seconds without a frame before a reconnect: beyond 10 minutes the camera is gone, not slow
    "watchdog": Range(0, 600, low_open=True, unit="seconds"),
    "max_reconnects": Range(0, 1_000_000),  # leave it out to reconnect for ever
    # seconds to connect: a slow VPN takes seconds, none takes minutes
    "open_timeout": Range(0, 600, low_open=True, unit="seconds"),
    "enter": Range(0, 1, low_open=True),
    "exit": Range(0, 1, low_open=True),
    "min_duration": Range(0, 3600, unit="seconds"),
    "smoothing": Range(0, 1, high_open=True),
    "static_gate": Range(0, 1),  # 0: off
    "folder_fps": Range(0, 240, low_open=True, unit="frames a second"),  # 240: high-speed cameras
    "demo_seed": Range(0, 2**32 - 1),
    "demo_size": Range(32, 1024, unit="pixels"),
    "demo_fps": Range(0, 240, low_open=True, unit="frames a second"),
}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def source_kind(text: str) -> str:
    """demo | webcam | network | path: what kind of source `text` names, read from the text alone, in the
    order parse_source reads it, without touching the file system (a path may be a file or a folder, or
    nothing: only parse_source looks)."""
    text = text.strip()
    if text == "demo":
        return "demo"
    if text == "webcam" or is_device_index(text):
        return "webcam"
    return "network" if "://" in text else "path"


def is_valid_name(name: str) -> bool:
    return bool(_NAME.match(name)) and len(name) <= NAME_MAX


def _sanitise(text: str) -> str:
    name = _NOT_NAME.sub("-", text).strip("-")[:NAME_MAX].strip("-")
    return name or "cam"


def derive_name(source: str) -> str:
    """A camera name from its source: demo, webcam<N>, a URL's host, a file's stem or a folder's name."""
    source = source.strip()
    if source == "demo":
        return "demo"
    if source == "webcam":
        return "webcam0"
    if is_device_index(source):
        return f"webcam{int(source)}"
    if "://" in source:
        rest = source.partition("://")[2]
        # Cut at the last '@', as redact() does: a raw password may hold '/', '?' or '#', and must
        # never end up in a name.
        rest = rest.rpartition("@")[2]
        authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
        if authority.startswith("["):  # [IPv6]:port
            host = authority[1:].partition("]")[0]
        else:
            host = authority.partition(":")[0]
        return _sanitise(host)
    path = Path(source)
    if path.is_dir():
        return _sanitise(path.name or path.resolve().name)
    return _sanitise(path.stem)


def parse_camera_arg(text: str) -> CameraConfig:
    """One `--source` value: `SOURCE` or `NAME=SOURCE`. It is `NAME=SOURCE` only where the text before the
    first '=' is a valid name and the whole text is not an existing file or folder."""
    text = text.strip()
    if not text:
        raise SourceError("--source is empty: give demo, webcam, a device index, a URL, a file or a folder")
    head, eq, tail = text.partition("=")
    if eq and not Path(text).exists():
        if not head:
            raise SourceError(
                f"--source {redact(text)}: the camera name before '=' is empty (give NAME=SOURCE, or SOURCE)"
            )
        if _NAME.match(head):
            if len(head) > NAME_MAX:
                raise SourceError(
                    f"--source: camera name {head[:16]}... is {len(head)} characters (use at most {NAME_MAX})"
                )
            source = tail.strip()
            if not source:
                raise SourceError(f"--source {head}=: camera {head!r} has no source (give {head}=SOURCE)")
            return CameraConfig(name=head, source=source)
    return CameraConfig(name=derive_name(text), source=text, named=False)


def check_cameras(cameras: Sequence[CameraConfig]) -> list[CameraConfig]:
    """The cameras with unique names: a name given twice is an error; derived names that collide get
    -2, -3, ... Names are compared ignoring case, as they may name files on a case-insensitive disk."""
    if not cameras:
        raise SourceError(
            "no camera: give --source (demo, webcam, a URL, a file, a folder) or a cameras file"
        )
    taken: set[str] = set()
    for camera in cameras:
        if camera.named:
            if camera.name.lower() in taken:
                raise SourceError(
                    f"camera name {camera.name!r} is given twice (case is ignored): "
                    "give each camera a name of its own"
                )
            taken.add(camera.name.lower())
    out = []
    for camera in cameras:
        if not camera.named:
            name, k = camera.name, 2
            while name.lower() in taken:
                suffix = f"-{k}"
                name, k = camera.name[: NAME_MAX - len(suffix)] + suffix, k + 1
            taken.add(name.lower())
            camera = dataclasses.replace(camera, name=name)
        out.append(camera)
    return out


def camera_source_spec(camera: CameraConfig, defaults: CameraDefaults) -> SourceSpec:
    """The camera's source, parsed (not opened), with its overrides over the command line's values."""

    def pick(override: Any, default: Any) -> Any:
        return default if override is None else override

    watchdog_s = pick(camera.watchdog_s, defaults.watchdog_s)
    try:
        return parse_source(
            camera.source,
            folder_fps=pick(camera.folder_fps, defaults.folder_fps),
            demo_seed=pick(camera.demo_seed, defaults.demo_seed),
            demo_size=pick(camera.demo_size, defaults.demo_size),
            demo_fps=pick(camera.demo_fps, defaults.demo_fps),
            open_timeout_s=pick(camera.open_timeout_s, defaults.open_timeout_s),
            read_timeout_s=max(0.5, watchdog_s / 3),  # as run_camera.py: FFmpeg waits ~3x its read timeout
            explain_failures=defaults.explain_failures,
        )
    except SourceError as error:
        raise SourceError(f"camera {camera.name!r}: {error}") from error


# --- the cameras file ------------------------------------------------------------------------------------


def load_cameras_file(path: str | os.PathLike[str]) -> list[CameraConfig]:
    """The `[[camera]]` tables of a TOML file, each with `name`, `source` and any overrides."""
    where = f"cameras file {path}"
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise SourceError(f"{where} not found (give the path of a TOML file of [[camera]] tables)") from None
    except IsADirectoryError:
        raise SourceError(
            f"{where} is a folder (give the path of a TOML file of [[camera]] tables)"
        ) from None
    except OSError as error:
        raise SourceError(f"cannot read {where}: {error.strerror or error}") from error
    except tomllib.TOMLDecodeError as error:
        detail = " ".join(str(error).split())
        raise SourceError(f"{where} is not valid TOML: {detail} (fix it there)") from error
    except UnicodeDecodeError as error:
        raise SourceError(f"{where} is not UTF-8 text (save it as UTF-8)") from error

    for key in data:
        if key != "camera":
            raise SourceError(f"{where}: unknown top-level key {key!r} (only [[camera]] tables are allowed)")
    tables = data.get("camera")
    if isinstance(tables, dict):
        raise SourceError(f"{where}: write [[camera]] (one table per camera), not [camera]")
    if not tables:
        raise SourceError(f"{where} has no [[camera]] table (add one per camera, with name and source)")
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise SourceError(f"{where}: 'camera' must be [[camera]] tables, each with name and source")

    cameras: list[CameraConfig] = []
    seen: dict[str, int] = {}
    for index, table in enumerate(tables, start=1):
        camera = camera_from_table(table, f"{where}: camera #{index}")
        first = seen.setdefault(camera.name.lower(), index)
        if first != index:
            raise SourceError(
                f"{where}: camera #{index} is named {camera.name!r} as camera #{first} is "
                "(give each camera its own name)"
            )
        cameras.append(camera)
    return cameras


def camera_from_table(table: dict[str, Any], where: str) -> CameraConfig:
    """One camera's table (of the cameras file, or a JSON object of the web API), checked; `where` names it
    in the error."""
    name = table.get("name")
    if isinstance(name, str):
        if not is_valid_name(name):
            raise SourceError(f"{where}: name {name!r} is not a valid camera name (use {_NAME_RULE})")
        where = f"{where} ({name!r})"
    for key in table:
        if key not in _KEYS:
            raise SourceError(f"{where}: unknown key {key!r} (allowed: {', '.join(_KEYS)})")
    if name is None:
        raise SourceError(f'{where}: no name (add name = "...", {_NAME_RULE})')
    if not isinstance(name, str):
        raise SourceError(f'{where}: name must be a string, not {name!r} (write name = "...")')
    source = table.get("source")
    if source is None:
        raise SourceError(f'{where}: no source (add source = "demo", "webcam", a URL, a file or a folder)')
    # Not echoed: a source may hold credentials, and a wrong-typed one is not worth the risk.
    if not isinstance(source, str):
        raise SourceError(f'{where}: source must be a string (write source = "...", quoted)')
    if not source.strip():
        raise SourceError(f"{where}: source is empty (give demo, webcam, a URL, a file or a folder)")
    values: dict[str, Any] = {}
    for key, (field, kind) in _OVERRIDES.items():
        if key in table:
            values[field] = _checked(key, table[key], kind, where)
    enter, exit_ = values.get("enter"), values.get("exit")
    if enter is not None and exit_ is not None and exit_ > enter:
        raise SourceError(f"{where}: exit ({exit_:g}) must not be above enter ({enter:g})")
    return CameraConfig(name=name, source=source.strip(), **values)


def _checked(key: str, value: Any, kind: type, where: str) -> Any:
    """The value of one override key, of its type and in its range."""
    if kind is bool:
        if not isinstance(value, bool):
            raise SourceError(f"{where}: {key} must be true or false, not {_shown(value)}")
        return value
    # bool is an int in Python, but `watchdog = true` is a mistake, not 1.
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise SourceError(f"{where}: {key} must be a whole number, not {_shown(value)}")
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SourceError(f"{where}: {key} must be a number, not {_shown(value)}")
        if not math.isfinite(value):
            raise SourceError(f"{where}: {key} must be a finite number, not {value!r}")
        value = float(value)
    problem = _range_problem(key, value)
    if problem:
        raise SourceError(f"{where}: {key} = {_shown(value)} {problem}")
    return value


def _shown(value: Any, most: int = 40) -> str:
    """`value` as Python writes it, cut short: a JSON body may hold a 60 000-digit number or a long list."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**most:
        return f"a number of {value.bit_length()} bits"  # str() of a huge int may itself refuse
    text = repr(value)
    return text if len(text) <= most else f"{text[: most - 3]}..."


def _range_problem(key: str, value: float) -> str | None:
    return CAMERA_RANGES[key].problem(value)
