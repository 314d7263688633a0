"""Running numbers: rates over a sliding window, percentiles of the recent samples."""

from __future__ import annotations

import math

import pytest

from stream.stats import Percentiles, RateMeter


def test_rate_counts_events_per_second_in_the_window():
    meter = RateMeter(window_s=2.0)
    assert meter.rate(now=0.0) == 0.0
    for i in range(21):  # 10 per second for 2 s
        meter.tick(now=i * 0.1)
    assert meter.rate(now=2.0) == pytest.approx(10.0)
    # 1.5 s later the ticks older than 2 s are gone: 6 remain (1.5 .. 2.0) over 0.5 s
    assert meter.rate(now=3.5) == pytest.approx(10.0)
    assert meter.last == pytest.approx(2.0)
    assert meter.rate(now=10.0) == 0.0 and meter.last is None


def test_percentiles_keep_the_recent_samples_and_the_maximum_of_all():
    p = Percentiles(size=100)
    assert math.isnan(p.percentile(50))
    for v in range(1000):
        p.add(float(v))
    assert p.percentile(50) == pytest.approx(949.5)  # the last 100: 900..999
    assert p.percentile(0) == 900.0
    assert p.count == 1000 and p.maximum == 999.0
