"""How a command-line run reports what stopped it: one line on stderr, and an exit code that tells a mistake
in what was asked (2) from a failure while doing it (1)."""

from __future__ import annotations

import sys

from engines.errors import EngineError
from glanet.cli import error_line
from stream.errors import StreamError

# what a command turns into one line: the runtime's, the engines' and the files' errors, and the ValueErrors
# of a bad value (UsageError, CheckpointError)
REPORTED = (EngineError, StreamError, ValueError, OSError)


def report(error: BaseException) -> int:
    """Say `error` in one line; its exit code: 1 for a source, sink, engine or file that failed, 2 for a
    bad value (a flag, a checkpoint that is not one)."""
    print(f"glanet: {error_line(error)}", file=sys.stderr)
    return 1 if isinstance(error, StreamError | EngineError | OSError) else 2
