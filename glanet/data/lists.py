"""Video lists: the authors' `path nframes label` frame-folder lists, video CSVs and class folders.

A frame-folder list names one video a line; its frames are `<root>/<path>/<i>.jpg`, i = 0 … nframes−1.
"""

from __future__ import annotations

import csv
import io
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm")
_CSV_HEADER_FIRST = ("path", "video", "file", "filename", "video_path")


class ListError(ValueError):
    """A list, CSV or class file that cannot be read; the message names the file and the line."""


@dataclass(frozen=True)
class VideoRecord:
    """One video of a frame-folder list: frames `<root>/<path>/<i>.jpg` for i < num_frames."""

    path: str
    num_frames: int
    label: int


@dataclass(frozen=True)
class VideoFileRecord:
    """One video file; `start`/`end` (seconds) trim it, Kinetics style; None means the file's start/end."""

    path: str
    label: int
    start: float | None = None
    end: float | None = None


def _is_skipped(line: str) -> bool:
    text = line.strip()
    return not text or text.startswith("#")


def parse_list_line(line: str, where: str = "<line>") -> VideoRecord:
    """Parse `path nframes label`; the path may hold spaces, so the last two fields are split off."""
    text = line.strip()
    parts = text.rsplit(None, 2)
    if len(parts) != 3:
        raise ListError(f"{where}: expected 'path nframes label', got {text!r}")
    path, frames_text, label_text = parts
    try:
        num_frames = int(frames_text)
        label = int(label_text)
    except ValueError:
        raise ListError(
            f"{where}: nframes and label must be integers, got {frames_text!r} and {label_text!r} in {text!r}"
        ) from None
    if num_frames < 1:
        raise ListError(f"{where}: nframes = {num_frames} must be at least 1 in {text!r}")
    if label < 0:
        raise ListError(f"{where}: label = {label} must be >= 0 in {text!r}")
    return VideoRecord(path, num_frames, label)


def read_text(file: Path, what: str) -> str:
    """A list, CSV or class file's text; a missing file, a folder or a binary file is a ListError."""
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ListError(f"{what} not found: {file}") from None
    except IsADirectoryError:
        raise ListError(f"{what} {file} is a folder, not a file") from None
    except UnicodeDecodeError as e:
        raise ListError(f"{what} {file} is not UTF-8 text (byte {e.start}): a binary file?") from None


def read_list(file: str | os.PathLike[str]) -> list[VideoRecord]:
    """Read a `path nframes label` list; blank lines and lines starting with `#` are skipped."""
    file = Path(file)
    text = read_text(file, "list file")
    return [
        parse_list_line(line, f"{file}:{number}")
        for number, line in enumerate(text.splitlines(), start=1)
        if not _is_skipped(line)
    ]


def format_record(record: VideoRecord) -> str:
    path = record.path
    if not path or path != path.strip() or "\n" in path or "\r" in path or path.startswith("#"):
        raise ValueError(
            f"path {path!r} cannot be written to a list: it must be non-empty, not start with '#', "
            "and have no surrounding whitespace or line breaks"
        )
    if record.num_frames < 1 or record.label < 0:
        raise ValueError(
            f"{path}: num_frames ({record.num_frames}) must be >= 1 and label ({record.label}) >= 0"
        )
    return f"{path} {record.num_frames} {record.label}"


def write_text_atomic(file: str | os.PathLike[str], text: str) -> Path:
    """Write `text` to `file` via a temporary file and a rename, so a crash never leaves half a file."""
    file = Path(file)
    tmp = file.with_name(f".{file.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, file)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return file


def write_list(file: str | os.PathLike[str], records: Iterable[VideoRecord]) -> Path:
    """Write records as a `path nframes label` list, atomically."""
    lines = [format_record(r) for r in records]
    return write_text_atomic(file, "".join(f"{line}\n" for line in lines))


def read_class_names(file: str | os.PathLike[str]) -> list[str]:
    """One class name a line (blank lines and `#` comments skipped); the line order is the label order."""
    file = Path(file)
    lines = read_text(file, "class file").splitlines()
    names = [line.strip() for line in lines if not _is_skipped(line)]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ListError(f"{file}: class {name!r} is listed twice")
        seen.add(name)
    return names


def write_class_names(file: str | os.PathLike[str], names: Sequence[str]) -> Path:
    return write_text_atomic(file, "".join(f"{name}\n" for name in names))


def _float_or_none(text: str, where: str, name: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ListError(f"{where}: {name} = {text!r} is not a number of seconds") from None
    if value < 0:
        raise ListError(f"{where}: {name} = {value} must be >= 0")
    return value


def read_video_csv(
    file: str | os.PathLike[str],
    class_names: Sequence[str] | None = None,
    root: str | os.PathLike[str] | None = None,
) -> tuple[list[VideoFileRecord], tuple[str, ...]]:
    """Read rows `path,label[,start,end]` (a header row is optional); returns (records, class names).

    A label is an integer or a class name. Names map through `class_names` when given; without it the
    classes are the sorted distinct names in the file (the Kinetics convention). Relative paths are
    resolved against `root` (default: the CSV's folder). The class names returned are `class_names`,
    the sorted names, or () when every label was an integer and no names were given.
    """
    file = Path(file)
    base = Path(root) if root is not None else file.parent
    rows = list(enumerate(csv.reader(io.StringIO(read_text(file, "video CSV"), newline="")), start=1))
    rows = [(n, row) for n, row in rows if row and not (len(row) == 1 and _is_skipped(row[0]))]
    if rows and rows[0][1][0].strip().lower() in _CSV_HEADER_FIRST:
        rows = rows[1:]

    parsed: list[tuple[str, str, float | None, float | None, str]] = []
    for number, row in rows:
        where = f"{file}:{number}"
        if len(row) not in (2, 4):
            raise ListError(
                f"{where}: expected 'path,label' or 'path,label,start,end', got {','.join(row)!r}"
            )
        path, label = row[0].strip(), row[1].strip()
        if not path or not label:
            raise ListError(f"{where}: empty path or label in {','.join(row)!r}")
        start = end = None
        if len(row) == 4:
            start = _float_or_none(row[2], where, "start")
            end = _float_or_none(row[3], where, "end")
            if start is not None and end is not None and end <= start:
                raise ListError(f"{where}: end ({end}) must be after start ({start})")
        parsed.append((path, label, start, end, where))

    names = tuple(class_names) if class_names is not None else None
    if names is None:
        text_labels = sorted({label for _, label, _, _, _ in parsed if not _is_int(label)})
        names = tuple(text_labels) if text_labels else ()
        if text_labels and any(_is_int(label) for _, label, _, _, _ in parsed):
            raise ListError(f"{file}: labels mix integers and class names; give the class list to map them")
    index = {name: i for i, name in enumerate(names)}

    records = []
    for path, label, start, end, where in parsed:
        if _is_int(label):
            value = int(label)
            if value < 0 or (names and value >= len(names)):
                raise ListError(f"{where}: label {value} is outside 0..{max(len(names), 1) - 1}")
        elif label in index:
            value = index[label]
        else:
            raise ListError(f"{where}: class {label!r} is not in the class list")
        full = Path(path) if Path(path).is_absolute() else base / path
        records.append(VideoFileRecord(str(full), value, start, end))
    return records, names


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def scan_video_folder(root: str | os.PathLike[str]) -> tuple[list[VideoFileRecord], tuple[str, ...]]:
    """Find `<root>/<class>/<video>.mp4|avi|mkv|webm`; labels are indices into the sorted class names."""
    root = Path(root)
    if not root.is_dir():
        raise ListError(f"video folder not found: {root}")
    classes = tuple(sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")))
    records = []
    for label, name in enumerate(classes):
        for video in sorted((root / name).iterdir()):
            if video.is_file() and video.suffix.lower() in VIDEO_EXTENSIONS:
                records.append(VideoFileRecord(str(video), label))
    return records, classes
