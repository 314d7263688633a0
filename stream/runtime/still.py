"""The static-scene gate: no backbone for a frame that shows nothing new.

Most monitoring cameras show an empty corridor most of the day. Before a frame goes to the engine, a small
grey, blurred copy of it (64 pixels on its long side, stream/sources/thumbnail.py, made on the capture
thread) is compared with the copy of the last frame that
was *encoded* (not the previous frame, so that a slow drift adds up and is encoded in the end). Where less
than `share` of the copy's pixels differ by more than `PIXEL` grey levels, the frame shows nothing new: its
model tick reuses the last encoded features and maps, and the temporal step runs as usual (the clip goes on,
the events fire as before).

The copy is made by area averaging (a 320x240 frame: 5x5 pixels per copy pixel) and a 3x3 blur, so sensor
noise of a few grey levels is averaged far below `PIXEL`, while a person entering a corridor changes
hundreds of the copy's pixels. Only for a model whose `encode` keeps no state (GLANet): a backbone with
state (SMNet) must see every frame, and is never gated.
"""

from __future__ import annotations

import numpy as np

from stream.sources.thumbnail import small_copy
from stream.types import Frame

PIXEL = 12  # grey levels (of 255) a copy pixel must change by to count as changed
DEFAULT_SHARE = 0.002  # of the copy's pixels (0.2%: 6 of a 64x48 copy; a person 25x50 px of 320x240 is 1.6%)


def changed_share(a: np.ndarray, b: np.ndarray) -> float:
    """The share of pixels that differ by more than `PIXEL` between two small copies (1.0: other sizes)."""
    if a.shape != b.shape:
        return 1.0
    return float(np.count_nonzero(np.abs(a - b) > PIXEL)) / a.size


class StillGate:
    """One camera's gate: `shows_nothing_new(image)` says whether this frame may reuse the last encoded
    features; `encoded()` makes it the new reference once it has been encoded."""

    def __init__(self, share: float = DEFAULT_SHARE) -> None:
        if not 0.0 < share <= 1.0:
            raise ValueError(f"the static-scene gate's share ({share}) must be in (0, 1]")
        self.share = share
        self._reference: np.ndarray | None = None  # the small copy of the last encoded frame
        self._candidate: np.ndarray | None = None  # this frame's copy, kept for `encoded`

    def shows_nothing_new(self, frame: Frame) -> bool:
        copy = frame.small if frame.small is not None else small_copy(frame.image)
        self._candidate = copy
        return self._reference is not None and changed_share(copy, self._reference) < self.share

    def encoded(self) -> None:
        """The frame last asked about was encoded: it is what later frames are compared with."""
        self._reference, self._candidate = self._candidate, None

    def forget(self) -> None:
        """No reference (after a reset, a new connection): the next frame is encoded."""
        self._reference = self._candidate = None


__all__ = ["DEFAULT_SHARE", "StillGate", "changed_share"]
