"""The sinks' queue: live, a slow sink costs outputs (counted) but never an event; --fast, it holds the model
back and nothing is lost; the window mosaic and the viewer's choices."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from stream.output import Output, View
from stream.runtime.dispatch import Dispatcher
from stream.sinks.window import mosaic
from stream.types import Event, Frame, SourceStatus, StatsSnapshot, StatusUpdate


def output(i: int, events: list[Event] | None = None) -> Output:
    frame = Frame(np.zeros((8, 8, 3), np.uint8), i, i / 25, 0.0, camera="cam")
    return Output("cam", frame, None, False, StatusUpdate(SourceStatus.LIVE), StatsSnapshot(), events or [])


def event(label: str) -> Event:
    return Event("start", label, 0, "src", 0.0, None, 0.9, 0.0, 0, "cam", 0.0)


class Recording:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.seen: list[Output] = []
        self.delay_s = delay_s
        self.closed = False

    def write(self, o: Output) -> None:
        time.sleep(self.delay_s)
        self.seen.append(o)

    def idle(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def test_live_a_full_queue_drops_the_oldest_output_but_keeps_its_events():
    sink = Recording()
    d = Dispatcher([sink], block=False, capacity=2)
    d.put(output(0, [event("wave")]))
    d.put(output(1))
    d.put(output(2))  # drops 0: its event moves to 1
    d.put(output(3, [event("jump")]))  # drops 1 (with the wave event): it moves to 2
    d.finish()
    d.drain()
    d.close()
    assert d.dropped == 2 and [o.frame.index for o in sink.seen] == [2, 3]
    assert [e.label for o in sink.seen for e in o.events] == ["wave", "jump"]
    assert sink.closed


@pytest.mark.timeout(20)
def test_fast_a_slow_sink_holds_the_model_back_and_loses_nothing():
    sink = Recording(delay_s=0.01)
    d = Dispatcher([sink], block=True, capacity=2)

    def model() -> None:
        for i in range(20):
            d.put(output(i))
        d.finish()

    t = threading.Thread(target=model)
    t.start()
    d.drain()
    t.join()
    assert d.dropped == 0 and [o.frame.index for o in sink.seen] == list(range(20))


def test_mosaic_is_a_near_square_grid_with_black_for_missing_tiles():
    tiles = [np.full((100, 160, 3), v, np.uint8) for v in (50, 100, 150)]
    grid = mosaic(tiles, 3)
    assert grid.shape == (200, 320, 3)
    assert grid[50, 80, 0] == 50 and grid[50, 240, 0] == 100 and grid[150, 80, 0] == 150
    assert not grid[150, 240].any()  # the fourth tile: no camera
    wide = mosaic([np.zeros((1080, 1920, 3), np.uint8)] * 4, 4, max_width=1920)
    assert wide.shape[1] <= 1920  # scaled to fit


def test_the_view_cycles_the_models_maps_and_off():
    view = View(("sa", "la"), "la")
    seen = []
    for _ in range(3):
        view.cycle_attention()
        seen.append(view.attention)
    assert seen == ["none", "sa", "la"]
    view.toggle_pause()
    assert view.paused.is_set()
    with pytest.raises(ValueError, match="attention 'xx' must be one of sa, la, none"):
        View(("sa", "la"), "xx")
