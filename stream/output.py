"""What the model thread hands on for each processed frame (`Output`) and what the viewer chose
(`View`: the map shown, paused). Light to import: the model thread needs these, not the sinks.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from stream.overlay import ATTENTION_OFF, draw_overlay
from stream.types import Event, Frame, Prediction, StatsSnapshot, StatusUpdate


class View:
    """What the viewer chose: the heat map shown (a map name or "none"), paused. Shared by the window's keys,
    the sinks that draw, and the runner (which stops taking frames while paused)."""

    def __init__(
        self, maps: Sequence[str], attention: str, note: str = "", *, label_cameras: bool = True
    ) -> None:
        self.modes = (*maps, ATTENTION_OFF)
        if attention not in self.modes:
            raise ValueError(f"attention {attention!r} must be one of {', '.join(self.modes)}")
        self.attention = attention
        self.note = note  # a line about the model, on every overlay
        self.label_cameras = label_cameras  # the camera's name on its overlay
        self.paused = threading.Event()

    def cycle_attention(self) -> None:
        self.attention = self.modes[(self.modes.index(self.attention) + 1) % len(self.modes)]

    def toggle_pause(self) -> None:
        if self.paused.is_set():
            self.paused.clear()
        else:
            self.paused.set()


@dataclass
class Output:
    """One processed frame of one camera, with what the viewer should see at that frame."""

    camera: str
    frame: Frame | None  # None only on the `removed` output, which has no picture
    prediction: Prediction | None  # the camera's newest prediction (made on this frame when `fresh`)
    fresh: bool
    status: StatusUpdate  # the source's status as of this frame (not the capture's, which may be ahead)
    stats: StatsSnapshot
    events: list[Event] = field(default_factory=list)
    display: bool = True  # False: the camera's final numbers only, no new picture (it has ended)
    removed: bool = False  # the camera was taken out of the run: nothing more of it comes; let it go
    final: bool = False  # the camera has finished (its source ended or failed, max frames): its last output
    # the camera starts over (a cluster moved it to another shard): its source and state restart, so what
    # a sink gathered of it by position in the source (an archive's per-second predictions) is superseded
    restart: bool = False
    _drawn: dict[tuple[str, bool], np.ndarray] = field(default_factory=dict, repr=False)

    def overlay(self, view: View) -> np.ndarray:
        """The frame with the overlay as the viewer sees it now, drawn once whichever sinks ask."""
        key = (view.attention, view.paused.is_set())
        if self.frame is None:
            raise ValueError(f"camera {self.camera!r}: this output has no picture")
        if key not in self._drawn:
            self._drawn[key] = draw_overlay(
                self.frame.image, self.prediction, attention=view.attention, stats=self.stats,
                status=self.status, paused=key[1], note=view.note, label_camera=view.label_cameras,
            )  # fmt: skip
        return self._drawn[key]
