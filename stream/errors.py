"""The streaming runtime's exceptions: a short hierarchy whose messages are one line for the user."""

from __future__ import annotations


class StreamError(Exception):
    """Anything the streaming runtime reports to the user in one line."""


class SourceError(StreamError):
    """A source that cannot be opened: missing file, not a video, no camera, unreachable URL."""


class SourceLost(StreamError):
    """A live source that was open and stopped delivering (the capture thread reconnects)."""


class DecodeError(StreamError):
    """One frame that could not be decoded: counted and skipped."""


class SinkError(StreamError):
    """A sink could not be opened or written; the message is one line naming the path."""


def os_reason(e: BaseException) -> str:
    """An OSError's or FFmpeg error's reason, without the path the message names already."""
    reason = getattr(e, "strerror", None)
    return str(reason) if reason else str(e) or type(e).__name__
