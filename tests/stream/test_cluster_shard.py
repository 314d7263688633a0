"""A shard and what travels from it, without a cluster: the records rebuild the outputs (probabilities,
events, the picture and its maps, the frame's size), and a shard that is not polled for its lease stops
its cameras by itself (what keeps a camera off two shards at once)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from stream.cluster.shard import Shard, ShardConfig
from stream.cluster.wire import Rebuilder, to_record
from stream.runtime.model import ModelChoice
from stream.runtime.spec import CameraSpec, StreamOptions
from stream.sources.readers import parse_source

MODEL = ModelChoice(backend="openvino", precision="fp32")


def demo(name: str, seed: int) -> CameraSpec:
    return CameraSpec(name, parse_source("demo", demo_seed=seed, demo_size=96, demo_fps=15.0))


@pytest.fixture(scope="module")
def shard_config(tmp_path_factory):
    return ShardConfig(
        name="test", model=MODEL, options=StreamOptions(headless=True, dashboard=False, quiet=True),
        max_batch=2, lease_s=1.0, picture_fps=5.0,
    )  # fmt: skip


@pytest.mark.timeout(120)
def test_a_shard_not_polled_for_its_lease_stops_its_cameras(shard_config, monkeypatch, tmp_path):
    monkeypatch.setenv("GLANET_CACHE_DIR", str(tmp_path))
    shard = Shard(shard_config)
    shard.add(demo("a", 1))
    shard.add(demo("b", 2))
    records = []
    t_end = time.monotonic() + 3.0
    while time.monotonic() < t_end:  # polled well within the lease
        answer = shard.poll()
        assert not answer.fenced and answer.error is None
        records += answer.records
        time.sleep(0.2)
    fresh = [r for r in records if r.fresh]
    assert {r.camera for r in fresh} == {"a", "b"}
    assert any(r.jpeg is not None for r in records)  # pictures, at most picture_fps a camera
    pictures = [r for r in records if r.jpeg is not None and r.camera == "a"]
    assert len(pictures) <= 5.0 * 3.0 + 2
    time.sleep(2.0)  # no poll: the lease (1 s) runs out
    assert shard.fenced and shard.app.stopping
    shard._thread.join(timeout=10)
    assert not shard._thread.is_alive(), "the fenced shard's run did not end"
    assert not any(t.is_alive() for c in shard.app.cameras for t in c.capture._threads)  # captures closed
    late = shard.poll()
    assert late.fenced
    frames_then = {name: s.summary.frames for name, s in late.cameras.items()}
    time.sleep(0.5)
    assert {name: s.summary.frames for name, s in shard.poll().cameras.items()} == frames_then


@pytest.mark.timeout(120)
def test_records_rebuild_the_outputs(shard_config, monkeypatch, tmp_path):
    from stream.output import Output
    from stream.types import Event, Frame, Prediction, SourceStatus, StatsSnapshot, StatusUpdate

    ys, xs = np.mgrid[0:120, 0:160]
    image = np.stack([xs * 255 // 160, ys * 255 // 120, (xs + ys) % 256], axis=2).astype(np.uint8)
    frame = Frame(image, 7, 0.5, time.monotonic(), 1, "cam")
    probs = np.array([0.1, 0.7, 0.2], np.float32)
    pred = Prediction(
        frame, 3, 3, 8, probs, probs, np.stack([probs] * 3), ("GP", "SA", "LA"), ("x", "y", "z"),
        {"sa": np.full((7, 7), 1 / 49, np.float32)}, (10.0, 0.0, 130.0, 120.0), 0.02, 3,
    )  # fmt: skip
    event = Event("start", "y", 1, "demo", 0.2, None, 0.7, 0.5, 7, "cam", 1.0)
    status = StatusUpdate(SourceStatus.LIVE)
    out = Output("cam", frame, pred, True, status, StatsSnapshot(), [event])
    rebuild = Rebuilder(("x", "y", "z"), ("GP", "SA", "LA"))
    plain = rebuild.output(to_record(out, picture=False))
    assert not plain.display and plain.frame.image.shape == image.shape  # its size, not its pixels
    assert plain.prediction.maps == {} and np.array_equal(plain.prediction.probs, probs)
    assert plain.events == [event] and plain.fresh and plain.prediction.frame.index == 7
    shown = rebuild.output(to_record(out, picture=True, quality=95))
    assert shown.display and shown.frame.image.shape == image.shape
    assert np.abs(shown.frame.image.astype(int) - image).mean() < 3  # a JPEG of it
    assert set(shown.prediction.maps) == {"sa"}
    from stream.output import View

    drawn = shown.overlay(View(("sa",), "sa"))  # the overlay draws on the rebuilt picture
    assert drawn.shape[2] == 3
