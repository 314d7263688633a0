"""What the command-line tools share: a user's mistake becomes one line on stderr."""

from __future__ import annotations


def error_line(error: BaseException) -> str:
    """One line for the command line: the error itself, also when it was raised in a DataLoader worker."""
    text = str(error).strip()
    if "Original Traceback" in text:  # raised in a DataLoader worker: its last line is the error itself
        text = text.splitlines()[-1]
    return text.splitlines()[0] if text else type(error).__name__
