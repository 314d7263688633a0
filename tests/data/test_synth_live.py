"""SynthActions' live demo source: endless segments, close from another thread, and a light import."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time

import numpy as np

from glanet.data.synth_live import LiveSynth
from glanet.data.synth_render import CLASSES


def test_live_source_chains_segments_and_stops_on_close() -> None:
    source = LiveSynth(seed=1, size=64, fps=10.0, segment_seconds=(0.3, 0.6))
    frames = [frame for frame, _ in zip(source, range(40), strict=False)]
    assert [f.index for f in frames] == list(range(40))
    assert np.all(np.diff([f.timestamp_s for f in frames]) > 0)
    assert all(f.image.shape == (64, 64, 3) and f.name == CLASSES[f.label] for f in frames)
    changes = [(a, b) for a, b in itertools.pairwise(frames) if a.segment != b.segment]
    assert len(changes) >= 5 and all(a.label != b.label for a, b in changes)
    source.close()
    assert next(source, None) is None


def test_live_source_close_interrupts_a_realtime_wait() -> None:
    with LiveSynth(seed=2, size=48, fps=0.5, realtime=True) as source:  # next frame due in 2 s
        assert next(source).index == 0
        threading.Timer(0.1, source.close).start()
        start = time.monotonic()
        assert next(source, None) is None
        assert time.monotonic() - start < 1.0


def test_the_live_source_loads_the_renderer_but_not_the_data_set_writer() -> None:
    code = (
        "import sys, glanet.data.synth_live; "
        "print(sorted(m for m in ('glanet.data.synth', 'glanet.cli', 'multiprocessing') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
