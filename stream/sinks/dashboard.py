"""A live terminal dashboard (rich) for one stream, or a summary line every few seconds off a terminal.

Frames the model did not take (the source runs faster than the model's frame rate) are "not sampled", not
lost; losses are "dropped" (the capture buffer) and "decode errors"."""

from __future__ import annotations

import collections
import datetime
import math
import time
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Self

import numpy as np
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from stream.output import Output
from stream.types import Event, Prediction, SourceStatus, StatsSnapshot

SUMMARY_INTERVAL_S = 5.0  # at most one summary line this often when the console is not a terminal
EVENTS_SHOWN = 3  # a lone camera's panel lists its last few events
_BAR_WIDTH = 30
# a camera in one of these delivers nothing more: it shows 0 fps and is left out of the totals
_FINISHED = (SourceStatus.ENDED, SourceStatus.FAILED, SourceStatus.STOPPED)

_STATUS_STYLE = {
    SourceStatus.CONNECTING: "yellow",
    SourceStatus.LIVE: "bold green",
    SourceStatus.RECONNECTING: "bold yellow",
    SourceStatus.ENDED: "cyan",
    SourceStatus.FAILED: "bold red",
    SourceStatus.STOPPED: "dim",
}


class Dashboard:
    """Shows the pipeline's stats and the current top-5.

    On a terminal (and unless enabled=False) it is a `rich.live.Live` view redrawn at most
    `refresh_per_second` times a second. Otherwise (CI, output piped to a file, or enabled=False) nothing
    is redrawn: a one-line summary is printed at most every SUMMARY_INTERVAL_S seconds, and a final one on
    `close()`. `update` only stores its arguments unless a redraw or a line is due, so it can be called
    per frame. The default console writes to stderr, next to the logs, leaving stdout free.
    """

    def __init__(
        self,
        source_name: str,
        console: Console | None = None,
        enabled: bool | None = None,
        refresh_per_second: float = 4,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not refresh_per_second > 0:
            raise ValueError(f"refresh_per_second ({refresh_per_second}) must be positive")
        self.source_name = source_name
        self.console = console if console is not None else Console(stderr=True)
        self.live_view = enabled is not False and self.console.is_terminal
        self._interval = 1.0 / refresh_per_second if self.live_view else SUMMARY_INTERVAL_S
        self._clock = clock
        self._live: Live | None = None
        self._last_draw = clock()  # the first summary line comes one interval after the start
        self._rows: dict[str, tuple[StatsSnapshot, Prediction | None]] = {}  # camera -> its newest numbers
        self._events: dict[str, collections.deque[str]] = {}  # camera -> its last events, as lines
        self.order: tuple[str, ...] = ()  # the cameras' order on screen (the command line's)
        self._closed = False

    @property
    def _stats(self) -> StatsSnapshot | None:
        return next(iter(self._rows.values()))[0] if self._rows else None

    def update(
        self,
        stats: StatsSnapshot,
        prediction: Prediction | None,
        camera: str = "",
        events: Iterable[Event] = (),
    ) -> None:
        """Record a camera's latest numbers (and the events that fired at this frame); redraw (or print a
        line) only when one is due."""
        if self._closed:
            return
        for event in events:
            self._events.setdefault(camera, collections.deque(maxlen=EVENTS_SHOWN)).append(_fmt_event(event))
        if camera not in self._rows and self.order:
            rows = {**self._rows, camera: (stats, prediction)}
            rank = {name: i for i, name in enumerate(self.order)}
            self._rows = dict(sorted(rows.items(), key=lambda kv: rank.get(kv[0], len(rank))))
        self._rows[camera] = (stats, prediction)
        now = self._clock()
        if self.live_view and self._live is None:
            self._live = Live(self._view(), console=self.console, auto_refresh=False)
            self._live.start(refresh=True)
            self._last_draw = now
        else:
            self.redraw(now)

    def forget(self, camera: str) -> None:
        """A camera taken out of the run: its row goes at the next redraw."""
        self._rows.pop(camera, None)
        self._events.pop(camera, None)

    def redraw(self, now: float | None = None) -> None:
        """Redraw if one is due (called when there is nothing new, so a stalled camera still shows)."""
        now = self._clock() if now is None else now
        if not self._closed and now - self._last_draw >= self._interval:
            self._last_draw = now
            self._draw()

    def _view(self) -> RenderableType:
        if len(self._rows) == 1:
            camera, (stats, prediction) = next(iter(self._rows.items()))
            return self.render(stats, prediction, self._events.get(camera, ()))
        return self.render_table(self._rows)

    def _lines(self) -> list[str]:
        if len(self._rows) == 1:
            stats, prediction = next(iter(self._rows.values()))
            return [self.summary(stats, prediction)]
        return [self.summary(s, p, camera) for camera, (s, p) in self._rows.items()]

    def _draw(self) -> None:
        if not self._rows:
            return
        if self._live is not None:
            self._live.update(self._view(), refresh=True)
        else:
            for line in self._lines():
                self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def close(self, final: bool = True) -> None:
        """Draw the last numbers (a final summary line when not live, unless `final` is False) and stop.
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        if not final and self._live is None:
            return
        if self._live is not None:
            self._draw()
            self._live.stop()
            self._live = None
        elif self._rows:
            for line in self._lines():
                self.console.print("final: " + line, markup=False, highlight=False, soft_wrap=True)
        else:
            self.console.print(f"final: {self.source_name} | no frames", markup=False, highlight=False)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- what is shown ---------------------------------------------------------------------------------

    def render(
        self, stats: StatsSnapshot, prediction: Prediction | None, events: Sequence[str] = ()
    ) -> RenderableType:
        """The live view: status, stats, the top-5 and the last events (lines of `_fmt_event`; where none
        were recorded, the snapshot's last event), as one rich panel."""
        header = Text()
        header.append(stats.status.value, style=_STATUS_STYLE.get(stats.status, ""))
        if stats.status_message:
            header.append(f"  {stats.status_message}")
        header.append(f"   elapsed {_fmt_elapsed(stats.elapsed_s)}", style="dim")

        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        grid.add_row("fps", _fmt_fps(_shown_fps(stats)) or "-")
        grid.add_row("latency", f"p50 {_fmt_ms(stats.latency_p50_ms)}   p95 {_fmt_ms(stats.latency_p95_ms)}")
        grid.add_row(
            "frames",
            f"captured {stats.frames_captured}   dropped {stats.frames_dropped}   "
            f"not sampled {stats.frames_skipped}   decode errors {stats.decode_errors}",
        )
        grid.add_row("reconnects", str(stats.reconnects))
        grid.add_row("model frames", f"{stats.model_frames}   reused {stats.model_reused} (still scene)")

        parts: list[RenderableType] = [header, grid, Text()]
        if prediction is None:
            parts.append(Text("no prediction yet", style="yellow"))
        else:
            if not prediction.warm:
                parts.append(Text(f"warming up {prediction.history}/{prediction.window}", style="yellow"))
            top = Table.grid(padding=(0, 2))
            top.add_column()
            top.add_column()
            top.add_column(justify="right")
            for i, (name, p) in enumerate(prediction.top(5)):
                top.add_row(
                    Text(name, style="bold" if i == 0 else ""),
                    Text(_bar(p), style="green" if i == 0 else "blue"),
                    f"{100 * p:.1f}%",
                )
            parts.append(top)
            if prediction.frame.truth is not None:
                right = prediction.top(1)[0][0] == prediction.frame.truth
                parts.append(Text(f"truth: {prediction.frame.truth}", style="green" if right else "yellow"))
            parts.append(Text(_fmt_branches(prediction), style="dim"))
        parts.append(Text())
        lines = list(events) or ([stats.last_event] if stats.last_event else [])
        if lines:
            parts.append(Text("last events" if len(lines) > 1 else "last event", style="bold"))
            parts += [Text(f"  {line}") for line in lines[-EVENTS_SHOWN:]]
        else:
            parts.append(Text("no events yet", style="dim"))
        return Panel(Group(*parts), title=f"glanet: {self.source_name}", title_align="left", expand=False)

    def render_table(self, rows: dict[str, tuple[StatsSnapshot, Prediction | None]]) -> RenderableType:
        """Several cameras: a row each (status, fps, latency p95, top-1 and the truth where known, last
        event) and a line of totals. A finished camera (ended, failed, stopped) shows 0 fps, and the
        totals' fps and worst p95 are those of the cameras still running."""
        table = Table(expand=False, pad_edge=False, box=None, padding=(0, 2))
        for name, justify in (("camera", "left"), ("status", "left"), ("fps", "right"), ("p95", "right"),
                              ("dropped", "right"), ("reconnects", "right"), ("top-1", "left"),
                              ("last event", "left")):  # fmt: skip
            table.add_column(name, justify=justify, style="bold" if name == "camera" else "")
        fps_total = 0.0
        p95s = []
        dropped = 0
        finished = 0
        for camera, (stats, prediction) in rows.items():
            fps = _shown_fps(stats).get("model", 0.0)
            if stats.status in _FINISHED:
                finished += 1
            else:
                fps_total += fps
                if math.isfinite(stats.latency_p95_ms):
                    p95s.append(stats.latency_p95_ms)
            dropped += stats.frames_dropped
            table.add_row(
                camera,
                Text(stats.status.value, style=_STATUS_STYLE.get(stats.status, "")),
                f"{fps:.1f}",
                _fmt_ms(stats.latency_p95_ms),
                str(stats.frames_dropped),
                str(stats.reconnects),
                _fmt_top(prediction),
                stats.last_event or "-",
            )
        elapsed = max((s.elapsed_s for s, _ in rows.values()), default=0.0)
        worst = max(p95s, default=math.nan)
        count = f"{len(rows)} cameras" + (f" ({finished} finished)" if finished else "")
        totals = Text(
            f"{count}   model fps {fps_total:.1f}   worst p95 {_fmt_ms(worst)}   "
            f"dropped {dropped}   elapsed {_fmt_elapsed(elapsed)}",
            style="dim",
        )
        return Panel(Group(table, Text(), totals), title=f"glanet: {self.source_name}", title_align="left",
                     expand=False)  # fmt: skip

    def summary(self, stats: StatsSnapshot, prediction: Prediction | None, camera: str = "") -> str:
        """One line for logs."""
        message = stats.status_message if stats.status_message != stats.status.value else ""
        status = stats.status.value + (f" ({message})" if message else "")
        fields = [
            camera or self.source_name,
            status,
            _fmt_elapsed(stats.elapsed_s),
            f"fps {_fmt_fps(_shown_fps(stats)) or '-'}",
            f"latency p50 {_fmt_ms(stats.latency_p50_ms)} p95 {_fmt_ms(stats.latency_p95_ms)}",
            f"frames {stats.frames_captured} dropped {stats.frames_dropped} "
            f"not sampled {stats.frames_skipped} decode errors {stats.decode_errors}",
            f"reconnects {stats.reconnects}",
            f"model frames {stats.model_frames} reused {stats.model_reused}",
        ]
        if prediction is None:
            fields.append("no prediction yet")
        else:
            fields.append(f"top {_fmt_top(prediction)}")
            if not prediction.warm:
                fields.append(f"warming up {prediction.history}/{prediction.window}")
        if stats.last_event:
            fields.append(f"last event {stats.last_event}")
        return " | ".join(fields)


def _shown_fps(stats: StatsSnapshot) -> dict[str, float]:
    """The rates to show: 0 for every stage of a finished camera (its snapshot keeps its last rates)."""
    if stats.status in _FINISHED:
        return dict.fromkeys(stats.fps, 0.0)
    return stats.fps


def _fmt_event(event: Event) -> str:
    """'12:04:31  wave_one_hand ended at 14.2 s (1.8 s, peak 91%)': wall clock (local), source clock."""
    when = ""
    if event.wall_time is not None:
        when = datetime.datetime.fromtimestamp(event.wall_time).strftime("%H:%M:%S") + "  "
    if event.kind == "end" and event.end_ts is not None:
        took, peak = event.end_ts - event.start_ts, 100 * event.peak
        return f"{when}{event.label} ended at {event.end_ts:.1f} s ({took:.1f} s, peak {peak:.0f}%)"
    return f"{when}{event.label} started at {event.start_ts:.1f} s"


def _fmt_elapsed(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _fmt_ms(v: float) -> str:
    return "-" if not math.isfinite(v) else f"{v:.1f} ms"


def _fmt_fps(fps: dict[str, float]) -> str:
    return "  ".join(f"{name} {v:.1f}" for name, v in fps.items())


def _fmt_branches(prediction: Prediction) -> str:
    sp = np.asarray(prediction.branch_probs)
    out = []
    for s, name in enumerate(prediction.branch_names[: sp.shape[0]]):
        i = int(np.argmax(sp[s]))
        out.append(f"{name} {prediction.class_names[i]} {100 * sp[s, i]:.0f}%")
    return "branches: " + "   ".join(out)


def _fmt_top(prediction: Prediction | None) -> str:
    if prediction is None:
        return "-"
    name, p = prediction.top(1)[0]
    text = f"{name} {100 * p:.1f}%"
    if prediction.frame.truth is not None:
        text += f" (truth {prediction.frame.truth})"
    return text


def _bar(p: float) -> str:
    filled = round(_BAR_WIDTH * min(max(p, 0.0), 1.0))
    return "█" * filled + "░" * (_BAR_WIDTH - filled)


class DashboardSink:
    """The terminal dashboard: one camera as a panel, several as a table with totals."""

    def __init__(self, dashboard: Dashboard, cameras: Sequence[str] = ()) -> None:
        self.dashboard = dashboard
        dashboard.order = tuple(cameras)

    def write(self, output: Output) -> None:
        if output.removed:
            self.dashboard.forget(output.camera)
        else:
            self.dashboard.update(output.stats, output.prediction, camera=output.camera, events=output.events)

    def idle(self) -> None:
        self.dashboard.redraw()

    def close(self) -> None:
        pass  # the app closes the dashboard last, with the final numbers
