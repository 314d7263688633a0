"""The event log: events appended to a JSONL file, each line handed to the OS at once (`EventLog`), and the
sink that feeds it (`EventFile`, the sink of --events).
"""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path
from types import TracebackType
from typing import Self

from stream.errors import SinkError, os_reason
from stream.output import Output
from stream.types import Event

log = logging.getLogger(__name__)


def _last_byte(path: Path) -> bytes | None:
    """A file's last byte; None if it is empty or cannot be read."""
    try:
        with path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1)
    except OSError:
        return None


class EventLog:
    """Appends events to a JSONL file, one `Event.to_dict()` per line, each handed to the OS at once.

    The file is opened for appending when the log is made, so a bad path fails before the run starts and
    the events of earlier runs are kept. Each line goes out whole or not at all: a write that fails part
    way (a full disk) is cut back to the line's start, and raises SinkError naming the file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.events_written = 0
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        try:
            self._fd: int | None = os.open(self.path, flags, 0o666)
        except OSError as e:
            raise SinkError(f"cannot write event log {self.path}: {os_reason(e)}") from e
        # a half line left by an older run (or another program) must not swallow our first one
        if _last_byte(self.path) not in (None, b"\n"):
            log.warning("event log %s ends in an unfinished line; starting on a new line", self.path)
            try:
                self._write_all(b"\n")
            except OSError as e:
                self.close()
                raise SinkError(f"cannot write event log {self.path}: {os_reason(e)}") from e

    def write(self, event: Event) -> None:
        if self._fd is None:
            raise ValueError(f"event log {self.path} is closed")
        try:
            self._write_all((json.dumps(event.to_dict()) + "\n").encode("utf-8"))
        except OSError as e:
            raise SinkError(f"cannot write event log {self.path}: {os_reason(e)}") from e
        self.events_written += 1

    def _write_all(self, data: bytes) -> None:
        """One os.write of the whole line; if the OS takes only part of it (a disk filling up), the rest,
        and on any error the file is cut back to where the line began."""
        assert self._fd is not None
        start = os.lseek(self._fd, 0, os.SEEK_END)
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                if n <= 0:
                    raise OSError(errno.EIO, "the OS took no bytes")
                view = view[n:]
        except OSError:
            if len(view) < len(data):
                try:
                    os.ftruncate(self._fd, start)
                except OSError as e:
                    log.error("event log %s: could not remove a half-written line: %s", self.path, e)
            raise

    def close(self) -> None:
        """Idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class EventFile:
    """Every event of every camera, one JSON line each (with its camera and wall-clock time)."""

    def __init__(self, log_file: EventLog) -> None:
        self.log = log_file

    def write(self, output: Output) -> None:
        for event in output.events:
            self.log.write(event)

    def idle(self) -> None:
        pass

    def close(self) -> None:
        self.log.close()
