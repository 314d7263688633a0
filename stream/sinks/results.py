"""An archive's result folders, written so that nothing of the user's is ever lost.

Each video's results are written into a fresh staging folder beside the others (`--out/.glanet-staging-*`)
and renamed into place. A results folder carries a marker the archive wrote (`.glanet-results`); an
existing folder without it is never written into or removed (the run refuses it, in one line), unless it
holds nothing but the archive's own files (a results folder of an older glanet). Replacing a result touches
only the files the archive writes: `done.json` is removed first and put back last, so a stop in between
leaves a result that is done again, and whatever else the folder holds stays.

A video counts as done when its `done.json` names the same file: the same size and a digest of its head,
middle and tail (a file replaced by another of the same size and time is noticed; an edit of the bytes in
between is not — see `content_digest`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from stream.errors import StreamError

MARKER = ".glanet-results"
STAGING_PREFIX = ".glanet-staging-"
DONE, FAILED, TIMELINE = "done.json", "failed.json", "timeline.png"
# every file the archive writes into a results folder (and so the only ones it may replace or remove)
OURS = ("events.jsonl", "predictions.csv", TIMELINE, FAILED, DONE, MARKER)
SAMPLE = 1 << 20  # bytes read at each of the head, middle and tail for the digest
_KIND = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}


class ResultsError(StreamError):
    """A results folder the archive may not write: one line for the user."""


def content_digest(path: Path) -> str:
    """A digest of the file's size and of 1 MiB at its head, middle and tail (the whole file when it is
    under 3 MiB). Reading 3 MiB costs milliseconds whatever the video's size, so a rerun over a large
    archive checks every video quickly; a full hash would read the whole archive again on every run
    (`benchmarks/archive_digest.py` measures both)."""
    size = path.stat().st_size
    h = hashlib.blake2b(digest_size=16)
    h.update(str(size).encode())
    with open(path, "rb") as f:
        if size <= 3 * SAMPLE:
            h.update(f.read())
        else:
            for offset in (0, size // 2 - SAMPLE // 2, size - SAMPLE):
                f.seek(offset)
                h.update(f.read(SAMPLE))
    return f"blake2b-3x1MiB:{h.hexdigest()}"


def not_a_file(path: Path) -> str | None:
    """Why `path` is not a regular file to read (following links), or None. Never opens it: a FIFO would
    block the reader for good, a device would read for ever."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a broken link" if path.is_symlink() else "not found"
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if stat.S_ISREG(mode):
        return None
    kind = _KIND.get(stat.S_IFMT(mode), "not a regular file")
    return f"{kind} (through a link)" if path.is_symlink() else kind


def inside(path: Path, folder: Path) -> bool:
    """`path` is `folder` or below it (both resolved: links and `..` followed)."""
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


# what a results folder held before the marker existed (the timeline came after it): such a folder is ours
# only with its done.json or failed.json, so that a user's folder of run_camera.py's events.jsonl, or of a
# picture named timeline.png, is never taken for one
LEGACY = ("events.jsonl", "predictions.csv", FAILED, DONE)


def is_ours(folder: Path) -> bool:
    """A folder the archive wrote: it has the marker, or is one an older glanet wrote (only its files,
    its done.json or failed.json among them)."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    marker = folder / MARKER
    if marker.is_file() and not marker.is_symlink():
        return True
    entries = list(folder.iterdir())
    names = {e.name for e in entries}
    plain = all(e.name in LEGACY and e.is_file() and not e.is_symlink() for e in entries)
    return plain and bool(names & {DONE, FAILED})


def foreign(out: Path, names: Iterable[str]) -> list[Path]:
    """The results folders of `names` that exist in `out` and are not the archive's (never to be touched)."""
    found = []
    for name in names:
        dest = out / name
        if (dest.exists() or dest.is_symlink()) and not is_ours(dest):
            found.append(dest)
    return found


def check_destinations(out: Path, names: Sequence[str]) -> None:
    """Refuse, before any work, a run whose results would land in a folder (or on a file) of the user's."""
    taken = foreign(out, names)
    if taken:
        more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
        raise ResultsError(
            f"--out {out}: {taken[0]} exists and was not written by the archive (it has no {MARKER}){more}: "
            "move it, or give another --out"
        )


def clean_staging(out: Path) -> None:
    """The staging folders a stopped run left behind: their own files removed, the folder if then empty."""
    for entry in out.iterdir() if out.is_dir() else ():
        if entry.name.startswith(STAGING_PREFIX) and is_ours(entry):
            _remove_ours(entry)


def _remove_ours(folder: Path) -> None:
    for name in OURS:
        (folder / name).unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError as error:  # something else is in it: it stays, with what is in it
        if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with open(path, "x") as f:
        f.write(json.dumps(data) + "\n")


class Staged:
    """One video's results being written: files go into `folder`, then `place()` puts them at `dest`."""

    def __init__(self, out: Path, name: str) -> None:
        self.dest = out / name
        self.folder = out / f"{STAGING_PREFIX}{secrets.token_hex(6)}"
        self.folder.mkdir()
        _write_json(self.folder / MARKER, {"glanet": "archive results", "video": name})

    def path(self, name: str) -> Path:
        if name not in OURS:
            raise ValueError(f"{name!r} is not a file the archive writes ({', '.join(OURS)})")
        return self.folder / name

    def place(self) -> None:
        """Into place: a rename where nothing is there yet; over an earlier result of the archive's, its
        own files replaced one by one (done.json removed first and put back last), nothing else touched."""
        dest = self.dest
        if not (dest.exists() or dest.is_symlink()):
            try:  # atomic; an empty folder made meanwhile is replaced (it holds nothing)
                os.rename(self.folder, dest)
                return
            except OSError as error:
                if error.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                    raise
        if not is_ours(dest):  # made while this video ran: the user's
            self.discard()
            raise ResultsError(f"{dest} appeared while its video ran and is not the archive's: left as it is")
        (dest / DONE).unlink(missing_ok=True)
        new = {p.name for p in self.folder.iterdir()}
        for name in OURS:
            if name == DONE:
                continue
            if name in new:
                os.replace(self.folder / name, dest / name)
            else:
                (dest / name).unlink(missing_ok=True)  # e.g. failed.json of a run that failed
        if DONE in new:
            os.replace(self.folder / DONE, dest / DONE)
        self.folder.rmdir()

    def discard(self) -> None:
        _remove_ours(self.folder)


__all__ = [
    "DONE",
    "FAILED",
    "MARKER",
    "STAGING_PREFIX",
    "TIMELINE",
    "ResultsError",
    "Staged",
    "check_destinations",
    "clean_staging",
    "content_digest",
    "inside",
    "is_ours",
    "not_a_file",
]
