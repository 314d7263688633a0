"""Official HMDB51 / UCF101 split files → `path nframes label` lists, with the authors' label order.

    python -m glanet.data.splits hmdb51 --splits DIR --frames ROOT --split 1 --out DIR
    python -m glanet.data.splits ucf101 --splits DIR --frames ROOT --split 1 --out DIR

writes `<dataset>_split<k>_train.txt`, `<dataset>_split<k>_test.txt` and `classes.txt` in --out.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from glanet.cli import Parser
from glanet.data.lists import VideoRecord, write_class_names, write_list

log = logging.getLogger(__name__)

HMDB_PREFIX = "HMDB"
UCF_PREFIX = "UCF101"
_FRAME_NAME = re.compile(r"^(\d+)\.jpg$")

# The frame count for a list path; None (missing) or a reason string when the video cannot be used.
CountFrames = Callable[[str], "int | str | None"]


class SplitError(ValueError):
    """Split files that are missing or malformed; the message names the file and line."""


@dataclass
class SplitLists:
    """The lists for one split: records, class names (index = label) and the videos left out, with why."""

    train: list[VideoRecord]
    test: list[VideoRecord]
    classes: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def count_frames_in(folder: str | os.PathLike[str]) -> int | str:
    """Number of frames `0.jpg … (n-1).jpg` in `folder`, or why it cannot be used."""
    try:
        indices = [int(m.group(1)) for e in os.scandir(folder) if (m := _FRAME_NAME.match(e.name))]
    except FileNotFoundError:
        return "frame folder missing"
    except NotADirectoryError:
        return "frame folder is a file"
    if not indices:
        return "frame folder holds no <i>.jpg frames"
    n = len(indices)
    if max(indices) != n - 1 or len(set(indices)) != n:
        return f"frames are not numbered 0..{n - 1} ({n} files, highest {max(indices)})"
    return n


def frame_counter(frames_root: str | os.PathLike[str]) -> CountFrames:
    """A CountFrames that looks at `<frames_root>/<list path>`."""
    root = Path(frames_root)
    return lambda path: count_frames_in(root / path)


def _read_lines(file: Path) -> list[tuple[int, str]]:
    try:
        text = file.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        raise SplitError(f"split file not found: {file}") from None
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _add(
    out: list[VideoRecord], skipped: list[tuple[str, str]], path: str, label: int, count: CountFrames
) -> None:
    n = count(path)
    if n is None:
        skipped.append((path, "frame folder missing"))
    elif isinstance(n, str):
        skipped.append((path, n))
    elif n < 1:
        skipped.append((path, "no frames"))
    else:
        out.append(VideoRecord(path, n, label))


def hmdb51_classes(split_files: Sequence[str]) -> list[str]:
    """Class names in the authors' label order: the order of the SORTED split-file names.

    Sorting `<class>_test_split<k>.txt` puts `climb_stairs_…` before `climb_…` ('_s' < '_t'), so the
    labels differ from sorting the class names: climb_stairs = 5, climb = 6.
    """
    names = []
    for name in sorted(split_files):
        m = re.fullmatch(r"(.+)_test_split(\d+)\.txt", name)
        if not m:
            raise SplitError(f"{name!r} is not an HMDB51 split file name '<class>_test_split<k>.txt'")
        names.append(m.group(1))
    return names


def hmdb51_lists(
    splits_dir: str | os.PathLike[str], split: int, count: CountFrames, prefix: str = HMDB_PREFIX
) -> SplitLists:
    """Read `<class>_test_split<k>.txt` (lines `<video>.avi <id>`: 1 train, 2 test, 0 unused)."""
    splits_dir = Path(splits_dir)
    if not splits_dir.is_dir():
        raise SplitError(f"split folder not found: {splits_dir}")
    files = [p.name for p in splits_dir.iterdir() if p.name.endswith(f"_test_split{split}.txt")]
    if not files:
        raise SplitError(f"no '<class>_test_split{split}.txt' files in {splits_dir}")
    classes = hmdb51_classes(files)
    result = SplitLists([], [], classes)
    for label, name in enumerate(classes):
        file = splits_dir / f"{name}_test_split{split}.txt"
        for number, line in _read_lines(file):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise SplitError(f"{file}:{number}: expected '<video>.avi <0|1|2>', got {line!r}")
            if parts[1] == "0":
                continue
            path = f"{prefix}/{name}/{Path(parts[0]).stem}"
            _add(result.train if parts[1] == "1" else result.test, result.skipped, path, label, count)
    return result


def ucf101_classes(class_ind: str | os.PathLike[str]) -> list[str]:
    """`classInd.txt`: lines `<1-based index> <class>`; returns names with label = index - 1."""
    file = Path(class_ind)
    by_index: dict[int, str] = {}
    for number, line in _read_lines(file):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise SplitError(f"{file}:{number}: expected '<index> <class>', got {line!r}")
        by_index[int(parts[0])] = parts[1]
    if sorted(by_index) != list(range(1, len(by_index) + 1)):
        raise SplitError(f"{file}: class indices must run 1..{len(by_index)} without gaps")
    return [by_index[i] for i in range(1, len(by_index) + 1)]


def ucf101_lists(
    splits_dir: str | os.PathLike[str], split: int, count: CountFrames, prefix: str = UCF_PREFIX
) -> SplitLists:
    """Read `classInd.txt`, `trainlist0<k>.txt` (`<class>/<video>.avi <index>`), `testlist0<k>.txt`."""
    splits_dir = Path(splits_dir)
    classes = ucf101_classes(splits_dir / "classInd.txt")
    index = {name: i for i, name in enumerate(classes)}
    result = SplitLists([], [], classes)
    for kind, out in (("train", result.train), ("test", result.test)):
        file = splits_dir / f"{kind}list{split:02d}.txt"
        for number, line in _read_lines(file):
            parts = line.split()
            video = parts[0] if parts else ""
            folder, _, name = video.partition("/")
            if len(parts) not in (1, 2) or not name or folder not in index:
                raise SplitError(f"{file}:{number}: expected '<class>/<video>.avi [index]', got {line!r}")
            label = index[folder]
            if len(parts) == 2 and parts[1] != str(label + 1):
                raise SplitError(
                    f"{file}:{number}: index {parts[1]} disagrees with class {folder!r} "
                    f"(classInd.txt gives {label + 1})"
                )
            _add(out, result.skipped, f"{prefix}/{folder}/{Path(name).stem}", label, count)
    return result


def write_split(lists: SplitLists, out_dir: str | os.PathLike[str], dataset: str, split: int) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [
        write_list(out / f"{dataset}_split{split}_train.txt", lists.train),
        write_list(out / f"{dataset}_split{split}_test.txt", lists.test),
        write_class_names(out / "classes.txt", lists.classes),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(prog="python -m glanet.data.splits", description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=("hmdb51", "ucf101"))
    parser.add_argument("--splits", required=True, help="folder holding the official split files")
    parser.add_argument(
        "--frames", required=True, help="frames root: frames are <frames>/<list path>/<i>.jpg"
    )
    parser.add_argument("--split", type=int, default=1, choices=(1, 2, 3), help="which official split")
    parser.add_argument("--out", required=True, help="folder for the list files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if not Path(args.frames).is_dir():
        parser.error(f"--frames {args.frames}: folder not found")
    reader = hmdb51_lists if args.dataset == "hmdb51" else ucf101_lists
    try:
        lists = reader(args.splits, args.split, frame_counter(args.frames))
    except SplitError as e:
        parser.error(str(e))
    for path, why in lists.skipped[:20]:
        log.warning("skipped %s: %s", path, why)
    if len(lists.skipped) > 20:
        log.warning("… and %d more skipped", len(lists.skipped) - 20)
    files = write_split(lists, args.out, args.dataset, args.split)
    log.info(
        "%s split %d: %d train, %d test, %d classes, %d skipped → %s",
        args.dataset,
        args.split,
        len(lists.train),
        len(lists.test),
        len(lists.classes),
        len(lists.skipped),
        ", ".join(str(f) for f in files),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
