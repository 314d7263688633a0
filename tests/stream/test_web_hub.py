"""The web hub on its own: its pictures carry no text, each event keeps a small JPEG of its peak frame
within a count and a byte bound (the oldest go first), an end names its start."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
from fake_prediction import fake_prediction

from stream.output import Output, View
from stream.overlay import draw_overlay, overlay_size
from stream.types import Event, SourceStatus, StatsSnapshot, StatusUpdate
from stream.web import hub as hub_module
from stream.web.hub import WebHub

NAMES = ("wave", "clap", "run")


def prediction(seed: int, size: tuple[int, int] = (120, 160), noise: bool = True):
    rng = np.random.default_rng(seed)
    if noise:  # a JPEG as large as it gets
        image = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
    else:
        ramp = np.linspace(0, 255, size[1], dtype=np.uint8)
        image = np.ascontiguousarray(np.broadcast_to(ramp[None, :, None], (*size, 3)))
    maps = rng.random((7, 7)).astype(np.float32)
    return fake_prediction(
        np.array([0.7, 0.2, 0.1], np.float32), NAMES, image=image, sa_map=maps / maps.sum(),
        la_map=maps / maps.sum(), box=(20.0, 0.0, 140.0, 120.0), camera="cam",
    )  # fmt: skip


def event(kind: str, peak, start_ts: float = 1.0) -> Event:
    end = None if kind == "start" else start_ts + 2.0
    return Event(kind, "wave", 0, "demo", start_ts, end, 0.7, start_ts, 3, "cam", 1e9, peak)


def output(events: list[Event], pred=None) -> Output:
    pred = pred or prediction(0)
    return Output("cam", pred.frame, pred, True, StatusUpdate(SourceStatus.LIVE), StatsSnapshot(), events)


def make_hub(**kwargs) -> WebHub:
    return WebHub(("sa", "la"), View(("sa", "la"), "sa"), **kwargs)


def test_the_picture_is_the_heat_map_and_the_box_without_text():
    hub = make_hub()
    out = output([], prediction(0, noise=False))
    hub.write(out)
    _, jpeg = hub.jpeg("cam", "sa")
    picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    plain = draw_overlay(out.frame.image, out.prediction, attention="sa", text=False)
    burned = draw_overlay(out.frame.image, out.prediction, attention="sa", stats=out.stats)
    assert picture.shape == plain.shape == (360, 480, 3)  # enlarged for the screen, no panel beside it
    assert overlay_size(160, 120) != plain.shape[1::-1]  # the window's picture has its panel beside it
    assert burned.shape != plain.shape
    assert np.abs(picture.astype(int) - plain.astype(int)).mean() < 6  # the JPEG of it, no more


def test_a_player_gets_the_picture_with_its_text_burned_in():
    """The MJPEG stream (and snapshot.jpg?text=1) is for players that show only the picture: the window's
    overlay, text and panel; encoded once apart from the page's picture."""
    hub = make_hub()
    out = output([], prediction(0, noise=False))
    hub.write(out)
    _, with_text = hub.jpeg("cam", "sa", text=True)
    picture = cv2.imdecode(np.frombuffer(with_text, np.uint8), cv2.IMREAD_COLOR)
    burned = draw_overlay(out.frame.image, out.prediction, attention="sa", stats=out.stats, status=out.status)
    assert picture.shape == burned.shape
    assert np.abs(picture.astype(int) - burned.astype(int)).mean() < 6
    _, plain = hub.jpeg("cam", "sa")
    assert plain != with_text and hub.jpeg("cam", "sa", text=True)[1] is with_text  # each cached


def test_an_events_peak_frame_is_kept_small_and_an_end_names_its_start():
    hub = make_hub()
    peak = prediction(1)
    hub.write(output([event("start", peak)]))
    hub.write(output([event("end", peak)]))
    start, end = hub.events_since(0)
    assert start["thumbnail"] and end["thumbnail"]
    assert (start["end_id"], end["start_id"], end["start_time"]) == (end["id"], start["id"], start["time"])
    image = cv2.imdecode(np.frombuffer(hub.thumbnail(end["id"]), np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (144, 192, 3)  # 4:3 fitted into 192 x 144
    assert hub.thumbnail(end["id"] + 1) is None
    # an event without its peak (a cluster's: the frame stays on its shard) has none
    hub.write(output([event("start", None, 9.0)]))
    assert hub.events_since(0)[-1]["thumbnail"] is False


def test_the_thumbnails_are_bounded_by_count_and_by_bytes(monkeypatch):
    monkeypatch.setattr(hub_module, "EVENTS_KEPT", 5)
    hub = make_hub()
    for i in range(8):
        hub.write(output([event("start", prediction(i), float(i))]))
    assert list(hub.thumbnails) == [4, 5, 6, 7, 8] and hub.thumbnail(1) is None
    one = len(hub.thumbnail(8))
    small = make_hub(thumbnails_bytes=3 * one + one // 2)
    for i in range(8):
        small.write(output([event("start", prediction(i), float(i))]))
    assert len(small.thumbnails) <= 4 and small.thumbnail_total <= small.thumbnails_bytes
    assert max(small.thumbnails) == 8 and small.thumbnail(1) is None
    assert small.thumbnail_total == sum(len(j) for j in small.thumbnails.values())


def test_events_a_page_back_and_of_one_camera():
    hub = make_hub()
    for i in range(6):
        ev = event("start", None, float(i))
        hub.write(output([dataclasses.replace(ev, camera="other") if i % 2 else ev]))
    assert [e["id"] for e in hub.events_since(0, 2)] == [5, 6]
    assert [e["id"] for e in hub.events_since(0, 2, before=5)] == [3, 4]
    assert [e["id"] for e in hub.events_since(0, 10, camera="other")] == [2, 4, 6]
    assert [e["id"] for e in hub.events_since(2, 10, before=6, camera="cam")] == [3, 5]
