"""Events with hysteresis: enter threshold held for a minimum time, exit threshold, peak, source times."""

from __future__ import annotations

import numpy as np
import pytest

from stream.runtime.events import EventConfig, EventDetector

NAMES = ("walk", "run", "jump")


def probs(p_walk: float, p_run: float) -> np.ndarray:
    return np.array([p_walk, p_run, max(0.0, 1 - p_walk - p_run)])


def feed(det: EventDetector, seq: list[tuple[float, float]], dt: float = 0.1):
    out = []
    for i, (a, b) in enumerate(seq):
        out += det.update(probs(a, b), i * dt, i)
    return out


def test_an_event_starts_after_the_minimum_time_and_ends_under_exit():
    det = EventDetector(NAMES, "cam", EventConfig(enter=0.6, exit=0.4, min_duration_s=0.25))
    seq = [(0.3, 0.3), (0.7, 0.1), (0.8, 0.1), (0.65, 0.1), (0.9, 0.05), (0.5, 0.2), (0.45, 0.3), (0.2, 0.7)]
    events = feed(det, seq)
    start, end = events[0], events[1]
    assert start.kind == "start" and start.label == "walk" and start.source == "cam"
    assert start.start_ts == pytest.approx(0.1)  # when it first passed `enter`
    assert start.frame_index == 4  # fired at 0.4 s: 0.3 s above enter >= 0.25 s
    assert end.kind == "end" and end.end_ts == pytest.approx(0.7)  # 0.5 and 0.45 are above exit: hysteresis
    assert end.peak == pytest.approx(0.9) and end.peak_ts == pytest.approx(0.4)
    assert end.to_dict()["duration_s"] == pytest.approx(0.6)
    assert len(events) == 2 and det.active is None  # run at 0.7 is only a candidate yet


def test_a_blip_shorter_than_the_minimum_is_no_event():
    det = EventDetector(NAMES, "cam", EventConfig(min_duration_s=0.5))
    assert feed(det, [(0.9, 0.0), (0.9, 0.0), (0.1, 0.0), (0.9, 0.0), (0.9, 0.0)]) == []


def test_a_change_of_candidate_restarts_the_clock():
    det = EventDetector(NAMES, "cam", EventConfig(min_duration_s=0.2))
    events = feed(det, [(0.7, 0.2), (0.7, 0.2), (0.2, 0.7), (0.2, 0.7), (0.2, 0.7)])
    # walk held 0.1 s only; run's clock starts at 0.2 s, not at walk's 0.0 s
    assert [(e.kind, e.label, e.frame_index) for e in events] == [("start", "run", 4)]
    assert events[0].start_ts == pytest.approx(0.2)


def test_finish_closes_the_open_event_at_the_last_time_seen():
    det = EventDetector(NAMES, "cam", EventConfig(min_duration_s=0.0))
    feed(det, [(0.9, 0.0), (0.8, 0.1)])
    (end,) = det.finish()
    assert end.kind == "end" and end.end_ts == pytest.approx(0.1) and end.frame_index == 1
    assert det.finish() == []


def test_thresholds_are_checked():
    with pytest.raises(ValueError, match="exit"):
        EventConfig(enter=0.4, exit=0.6)
    with pytest.raises(ValueError, match="duration"):
        EventConfig(min_duration_s=-1)
