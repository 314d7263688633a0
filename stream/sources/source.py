"""What every frame source is (`Source`: open, read, close, from one capture thread), the check of a frame
it reads, and `redact`: a source's text safe to print and log."""

from __future__ import annotations

import re

import numpy as np

from stream.errors import DecodeError

# Matched anywhere in a query key (percent-decoded, any case): api_key, access_token, X-Amz-Signature...
# A scheme and what follows it, typos included: rtsp://, rtsp:/, rtsp:///, rtsp// all start a URL.
URL_START = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*(?://|:/+|//+)")


def redact(text: str) -> str:
    """`text` safe to print and log: user/password, every query value and the #fragment
    become ***. Works on mistyped URLs too (rtsp:/user:pw@host, rtsp//user:pw@host, user:pw@host/x);
    a plain path without '@' comes back unchanged."""
    start = URL_START.match(text)
    prefix, rest = (start.group(), text[start.end() :]) if start else ("", text)
    if start is None and "@" not in rest:
        return text  # a path, a device index, 'demo': nothing that can hold a secret
    if "@" in rest:
        # Cut at the last '@', not where urlsplit would: a password typed raw may hold '/', '?' or '#',
        # and urlsplit would then show it whole. An '@' later in the URL only hides a little more.
        rest = "***@" + rest.rpartition("@")[2]
    rest, hash_, fragment = rest.partition("#")
    base, question, query = rest.partition("?")
    if question:
        query = _redact_query(query)
    return f"{prefix}{base}{question}{query}{hash_}{'***' if fragment else ''}"


def _redact_query(query: str) -> str:
    """Pair by pair, as typed (& or ; between pairs): every value becomes *** (a key shows what was set,
    its value may be a secret whatever the key is called: ?s=..., ?k=...); nothing is re-encoded."""
    parts = re.split(r"([&;])", query)
    for i in range(0, len(parts), 2):
        key, eq, _ = parts[i].partition("=")
        if eq:
            parts[i] = f"{key}=***"
    return "".join(parts)


class Source:
    """The interface. `live`: frames come at the source's pace and may be dropped; otherwise every
    frame is wanted (files, folders). A source may change `live` in `open` (an http URL that turns out
    to be a file); the capture reads it after each open. `fps`: the nominal rate (None when unknown)."""

    name: str = "source"
    live: bool = False
    fps: float | None = None

    def open(self) -> None:
        raise NotImplementedError

    def read(self) -> tuple[np.ndarray, float] | None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def check_image(image: np.ndarray | None) -> np.ndarray:
    if image is None or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise DecodeError("a frame that is not a 3-channel image")
    return image
