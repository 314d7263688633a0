"""The terminal dashboard: what it shows, and how often it draws on a terminal and in logs."""

from __future__ import annotations

import io

import numpy as np
from fake_prediction import fake_prediction
from rich.console import Console

from stream.sinks.dashboard import Dashboard
from stream.types import Prediction, SourceStatus, StatsSnapshot

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
        "skipped 611",
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
    monkeypatch.setattr(dashboard, "render", lambda s, p: renders.append(1) or render(s, p))
    for i in range(200):  # 2 s of updates at 100 per second
        clock.now = 1000.0 + i * 0.01
        dashboard.update(STATS, make_prediction())
    assert 7 <= len(renders) <= 9
    dashboard.close()
    assert "walk" in console.file.getvalue()
