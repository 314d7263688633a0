"""What a run is given: its cameras (`CameraSpec`: a name, a source, what it overrides) and its options
(`StreamOptions`), the same for a run in this process and one on a cluster."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stream.runtime.events import EventConfig
from stream.runtime.session import RecognizerConfig
from stream.sources.readers import SourceSpec
from stream.types import Prediction


@dataclass(frozen=True)
class CameraSpec:
    """One camera of a run: its name, its source and what it overrides of the run's options."""

    name: str
    source: SourceSpec
    fast: bool | None = None
    watchdog_s: float | None = None
    max_reconnects: int | None = None
    recognizer: RecognizerConfig | None = None
    events: EventConfig | None = None


@dataclass(frozen=True)
class StreamOptions:
    fast: bool = False  # files/folders/demo: every frame as fast as possible instead of real time
    headless: bool | None = None  # None: headless when there is no display
    save: Path | None = None  # one camera: this .mp4; several: a folder, <name>.mp4 each
    events: Path | None = None
    max_frames: int | None = None  # source frames to process per camera, then that camera stops
    duration_s: float | None = None  # wall seconds, then stop
    attention: str | None = None  # the map shown first (None: the model's first)
    dashboard: bool | None = None  # None: a live dashboard on a terminal, one line every 5 s otherwise
    quiet: bool = False  # no dashboard, no lines and no final numbers on stderr (the caller reports)
    recognizer: RecognizerConfig = field(default_factory=RecognizerConfig)
    events_config: EventConfig = field(default_factory=EventConfig)
    watchdog_s: float = 5.0
    max_reconnects: int | None = None
    buffer_capacity: int = 0  # 0: the capture default (4 live and real-time files, 64 with --fast)
    max_wait_s: float | None = None  # batch gathering deadline (None: half a model frame interval)
    note: str = ""  # a line about the model on every overlay (e.g. "trained on synthetic actions only")
    announce: str = ""  # said once on stderr at the first prediction (a bad source stays one line)
    # go on when every camera has ended, until a stop (the web view: cameras may be added at run time)
    keep_alive: bool = False
    # the sinks' queue blocks the model instead of dropping (None: when every camera is read --fast and
    # none may come at run time); a cluster shard reading files --fast sets it, for cameras it is given
    block_sinks: bool | None = None
    label_cameras: bool = True  # each camera's name on its overlay (False: a lone camera, as run alone)
    # called on the model thread with every prediction (benchmarks, embedding): keep it cheap
    on_prediction: Callable[[Prediction], None] | None = None
