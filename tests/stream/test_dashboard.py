"""The terminal dashboard: what it shows, and how often it draws on a terminal and in logs."""

from __future__ import annotations

import dataclasses
import datetime
import io
import re

import numpy as np
import pytest
from fake_prediction import fake_prediction
from rich.console import Console

from stream.output import Output
from stream.sinks.dashboard import Dashboard, DashboardSink
from stream.types import Event, Prediction, SourceStatus, StatsSnapshot, StatusUpdate

CLASSES = ("walk", "run", "jump", "wave", "clap", "sit", "stand", "box", "throw", "catch", "kick", "push")


def make_prediction(*, top: int = 0, history: int = 30, window: int = 30) -> Prediction:
    """K=12 classes, streams GS/GL/GP, 3×3 attention maps; class `top` first, then the next four."""
    probs = np.array([0.4, 0.25, 0.15, 0.1, 0.05] + [0.05 / 7] * 7, np.float32)
    probs = np.roll(probs, top)
    sa = np.full((3, 3), 1 / 9, np.float32)
    image = np.zeros((128, 128, 3), np.uint8)
    return fake_prediction(
        probs, CLASSES, image=image, sa_map=sa, la_map=sa, box=(0.0, 0.0, 128.0, 128.0), history=history,
        window=window, index=3, latency_s=0.05,
    )  # fmt: skip


STATS = StatsSnapshot(
    fps={"capture": 29.7, "model": 14.8, "display": 25.3},
    latency_p50_ms=45.2,
    latency_p95_ms=81.6,
    frames_captured=1234,
    frames_dropped=17,
    frames_skipped=611,
    decode_errors=3,
    reconnects=2,
    model_frames=606,
    status=SourceStatus.RECONNECTING,
    status_message="connection lost",
    elapsed_s=65.0,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def render_text(dashboard: Dashboard, stats: StatsSnapshot, prediction: Prediction | None) -> str:
    console = Console(record=True, width=120, file=io.StringIO())
    console.print(dashboard.render(stats, prediction))
    return console.export_text()


def test_render_shows_the_numbers_the_top5_and_warm_up():
    dashboard = Dashboard("rtsp://cam-7/stream", console=Console(file=io.StringIO()))
    text = render_text(dashboard, STATS, make_prediction(top=2, history=12))
    for expected in (
        "rtsp://cam-7/stream",
        "reconnecting",
        "connection lost",
        "0:01:05",
        "capture 29.7",
        "model 14.8",
        "display 25.3",
        "p50 45.2 ms",
        "p95 81.6 ms",
        "captured 1234",
        "dropped 17",
        "not sampled 611",
        "decode errors 3",
        "warming up 12/30",
        "40.0%",
        "25.0%",
    ):
        assert expected in text, expected
    lines = text.splitlines()
    assert "reconnects" in text and any("reconnects" in line and "2" in line for line in lines)
    assert any("model frames" in line and "606" in line for line in lines)
    top5 = [line for line in lines if "%" in line and "branches" not in line]
    assert [next(n for n in CLASSES if f" {n} " in line) for line in top5] == [
        "jump",
        "wave",
        "clap",
        "sit",
        "stand",
    ]


def test_render_when_warm_or_without_a_prediction():
    dashboard = Dashboard("demo", console=Console(file=io.StringIO()))
    assert "warming up" not in render_text(dashboard, STATS, make_prediction(history=30))
    text = render_text(dashboard, StatsSnapshot(), None)
    assert "no prediction yet" in text and "connecting" in text


def test_not_a_terminal_prints_one_line_per_interval_and_a_final_line():
    out = io.StringIO()
    clock = FakeClock()
    dashboard = Dashboard("demo", console=Console(file=out, width=300), clock=clock)
    assert not dashboard.live_view
    for i in range(130):  # 13 s of updates at 10 per second
        clock.now = 1000.0 + i * 0.1
        dashboard.update(STATS, make_prediction(history=12))
    dashboard.close()
    dashboard.close()  # idempotent
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # at 5 s and 10 s, then the final one
    assert lines[-1].startswith("final: demo | reconnecting (connection lost)")
    for line in lines:
        assert "model 14.8" in line and "p95 81.6 ms" in line and "dropped 17" in line
        assert "top walk 40.0%" in line and "warming up 12/30" in line


def test_disabled_on_a_terminal_prints_lines_too():
    out = io.StringIO()
    dashboard = Dashboard("demo", console=Console(file=out, force_terminal=True, width=300), enabled=False)
    assert not dashboard.live_view
    dashboard.update(STATS, None)
    dashboard.close()
    assert out.getvalue().splitlines() == ["final: " + dashboard.summary(STATS, None)]
    assert "no prediction yet" in out.getvalue()


def test_live_view_redraws_at_most_refresh_per_second(monkeypatch):
    clock = FakeClock()
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    dashboard = Dashboard("demo", console=console, refresh_per_second=4, clock=clock)
    assert dashboard.live_view
    renders = []
    render = dashboard.render
    monkeypatch.setattr(dashboard, "render", lambda *a: renders.append(1) or render(*a))
    for i in range(200):  # 2 s of updates at 100 per second
        clock.now = 1000.0 + i * 0.01
        dashboard.update(STATS, make_prediction())
    assert 7 <= len(renders) <= 9
    dashboard.close()
    assert "walk" in console.file.getvalue()


# --- finished cameras, frames not sampled, a lone camera's events ------------------------------------------


def render_rows(dashboard: Dashboard, rows: dict[str, tuple[StatsSnapshot, Prediction | None]]) -> str:
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(dashboard.render_table(rows))
    return console.export_text()


def live_stats(model_fps: float, p95: float) -> StatsSnapshot:
    return dataclasses.replace(
        STATS,
        fps={"capture": 2 * model_fps, "model": model_fps},
        latency_p95_ms=p95,
        status=SourceStatus.LIVE,
    )


@pytest.mark.parametrize("status", [SourceStatus.ENDED, SourceStatus.FAILED, SourceStatus.STOPPED])
def test_a_finished_camera_shows_0_fps_and_is_left_out_of_the_totals(status: SourceStatus) -> None:
    """Its snapshot keeps the rates it last had: the dashboard must not show them as if it still ran."""
    dashboard = Dashboard("3 cameras", console=Console(file=io.StringIO()))
    finished = dataclasses.replace(live_stats(25.1, 900.0), status=status, status_message="end of stream")
    rows = {
        "front": (live_stats(7.5, 40.0), None),
        "gone": (finished, None),
        "back": (live_stats(7.0, 60.0), None),
    }
    text = render_rows(dashboard, rows)
    gone = next(line for line in text.splitlines() if line.lstrip("│ ").startswith("gone"))
    assert status.value in gone and " 0.0 " in gone and "25.1" not in gone
    assert "3 cameras (1 finished)" in text
    assert "model fps 14.5" in text  # 7.5 + 7.0, not + 25.1
    assert "worst p95 60.0 ms" in text  # not its 900 ms
    single = render_text(dashboard, finished, None)
    assert "capture 0.0  model 0.0" in single and "25.1" not in single
    assert "fps capture 0.0  model 0.0" in dashboard.summary(finished, None)


def test_a_running_camera_keeps_its_rates() -> None:
    dashboard = Dashboard("demo", console=Console(file=io.StringIO()))
    for status in (SourceStatus.LIVE, SourceStatus.RECONNECTING, SourceStatus.CONNECTING):
        stats = dataclasses.replace(live_stats(7.5, 40.0), status=status)
        assert "model 7.5" in render_text(dashboard, stats, None)
        assert "model fps 7.5" in render_rows(dashboard, {"a": (stats, None), "b": (StatsSnapshot(), None)})


def test_frames_the_model_did_not_take_are_not_sampled_not_skipped() -> None:
    dashboard = Dashboard("demo", console=Console(file=io.StringIO()))
    panel, line = render_text(dashboard, STATS, None), dashboard.summary(STATS, None)
    for text in (panel, line):
        assert "not sampled 611" in text and "skipped" not in text


def event(kind: str, label: str, start: float, end: float | None = None, peak: float = 0.9) -> Event:
    return Event(kind, label, 0, "demo", start, end, peak, start, 3, camera="demo", wall_time=1_700_000_000.0)


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_a_lone_camera_shows_its_last_events() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    dashboard = Dashboard("demo", console=console)
    sink = DashboardSink(dashboard, ["demo"])
    prediction = make_prediction()
    fired = [
        event("start", "walk", 1.0),
        event("end", "walk", 1.0, 2.5, peak=0.81),
        event("start", "clap", 3.0),
        event("end", "clap", 3.0, 4.2, peak=0.93),
    ]
    for ev in fired:  # one event per frame, as a run fires them
        sink.write(
            Output("demo", prediction.frame, prediction, True, StatusUpdate(SourceStatus.LIVE), STATS, [ev])
        )
    dashboard.close()
    text = strip_ansi(console.file.getvalue())
    last = text[text.rindex("glanet: demo") :]  # the last drawing of the panel
    assert "last events" in last
    assert "walk ended at 2.5 s (1.5 s, peak 81%)" in last
    assert "clap started at 3.0 s" in last and "clap ended at 4.2 s (1.2 s, peak 93%)" in last
    assert "walk started at 1.0 s" not in last  # only the last EVENTS_SHOWN (3)
    when = datetime.datetime.fromtimestamp(1_700_000_000.0).strftime("%H:%M:%S")
    assert f"{when}  clap ended" in last


def test_a_lone_camera_without_events_says_so_and_its_log_line_names_the_last() -> None:
    dashboard = Dashboard("demo", console=Console(file=io.StringIO()))
    assert "no events yet" in render_text(dashboard, STATS, make_prediction())
    stats = dataclasses.replace(STATS, last_event="clap end at 4.2 s")
    assert "clap end at 4.2 s" in render_text(dashboard, stats, make_prediction())  # no event lines kept
    assert dashboard.summary(stats, None).endswith("| last event clap end at 4.2 s")
