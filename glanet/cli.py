"""What the command-line tools share: a user's mistake becomes one line on stderr, and every flag's help
says its default. Cheap to import (no torch), so a command can check its arguments before loading a model."""

from __future__ import annotations

import argparse
import difflib
import math
import re
import sys
from collections.abc import Callable
from typing import Any


def error_line(error: BaseException) -> str:
    """One line for the command line: the error itself, also when it was raised in a DataLoader worker."""
    text = str(error).strip()
    if "Original Traceback" in text:  # raised in a DataLoader worker: its last line is the error itself
        text = text.splitlines()[-1]
    return text.splitlines()[0] if text else type(error).__name__


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: X)" to a flag's help, unless there is nothing to say (None, False, []) or the
    help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        nothing = action.default is None or action.default is False or action.default == []
        if "default" in text or nothing or action.default == argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse for every glanet command: errors are one line and exit 2 (no usage block), defaults are
    shown, and a flag without help text is a bug caught when the parser is built."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        if not args:  # prog is the first positional argument of ArgumentParser
            kwargs = _as_invoked(kwargs)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        if not kwargs.get("help") and args and args[0].startswith("-"):
            raise TypeError(f"{self.prog}: flag {args[0]} has no help text")
        return super().add_argument(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}{self._suggestion(message)}\n")

    def _suggestion(self, message: str) -> str:
        """'; did you mean --source?' for a mistyped flag (argparse of Python 3.11 says only that it is
        unknown)."""
        found = re.match(r"unrecognized arguments: (\S+)", message)
        if not found:
            return ""
        typed = found.group(1).split("=", 1)[0]
        flags = [s for action in self._actions for s in action.option_strings if s.startswith("--")]
        close = did_you_mean(typed, flags)
        return f"; did you mean {close}?" if close else ""


def _as_invoked(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The parser's name as the user typed the command. Under `glanet <command>` (glanet.commands sets
    sys.argv[0] to "glanet <command>") a parser named "python -m <module>[ <sub>]" is named
    "glanet <command>[ <sub>]", in its usage, description and epilog too; run as `python -m <module>` with
    no name given, it is that (argparse alone would say "archive.py")."""
    invoked = sys.argv[0] if sys.argv else ""
    prog = kwargs.get("prog")
    if prog is None:
        main = sys.modules.get("__main__")
        spec = getattr(main, "__spec__", None)
        if invoked.startswith("glanet "):
            kwargs["prog"] = invoked
        elif spec is not None and spec.name != "glanet.commands" and not spec.name.endswith("__main__"):
            kwargs["prog"] = f"python -m {spec.name}"
        return kwargs
    found = re.match(r"python -m [\w.]+", prog)
    if not found or not invoked.startswith("glanet "):
        return kwargs
    module_form = found.group(0)
    for key in ("prog", "usage", "description", "epilog"):
        if isinstance(kwargs.get(key), str):
            kwargs[key] = kwargs[key].replace(module_form, invoked)
    return kwargs


def did_you_mean(typed: str, choices: list[str]) -> str | None:
    """The one choice close to what was typed (a typo), if there is one."""
    close = difflib.get_close_matches(typed, choices, n=1, cutoff=0.6)
    return close[0] if close else None


def number(kind: type, low: float | None = None, high: float | None = None, above: bool = False) -> Callable:
    """An argparse `type` for a finite int or float in [low, high] (or (low, high] with `above`), so that
    `--threads -3` or `--lr nan` is one line naming the value, not a traceback or silent nonsense."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            kind_name = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind_name}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number")
        if low is not None and (value <= low if above else value < low):
            raise argparse.ArgumentTypeError(f"{text}: must be {'above' if above else 'at least'} {low:g}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{text}: must be at most {high:g}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse
