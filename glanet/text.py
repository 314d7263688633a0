"""Text from files that reaches a terminal, a log or an overlay: class names of a checkpoint or an export.

A class name is data from a file anyone may have written; printed raw, an escape sequence in it
("\\x1b[2J", "\\x1b]0;...\\x07") would drive the user's terminal. `safe_label` makes such text inert.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

# Not category Cc but as dangerous on a terminal or in a log: line/paragraph separators and the bidi
# embeddings, overrides and isolates, which reorder what is shown ("Trojan Source").
_FORMAT_CONTROLS = frozenset("\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _unsafe(ch: str) -> bool:
    return unicodedata.category(ch) == "Cc" or ch in _FORMAT_CONTROLS  # Cc: C0, DEL and C1


def safe_label(text: str) -> str:
    """`text` with every control character (C0 including ESC, DEL, C1, line separators and bidi controls)
    written as a visible escape: "\\x1b[31mred" -> "\\\\x1b[31mred" (the four characters \\, x, 1, b).

    Printable text, non-ASCII letters included, comes back unchanged.
    """
    text = str(text)
    if not any(_unsafe(ch) for ch in text):
        return text
    out = []
    for ch in text:
        if not _unsafe(ch):
            out.append(ch)
        elif ord(ch) <= 0xFF:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}")
    return "".join(out)


def safe_labels(names: Iterable[str]) -> tuple[str, ...]:
    """Each of `names` through `safe_label`, as a tuple."""
    return tuple(safe_label(n) for n in names)
