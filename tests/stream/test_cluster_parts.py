"""--save on a shard, without a cluster: a camera's part goes to the file the driver named, with every frame,
finalised when the camera ends and reported once so; a part whose file cannot be written fails alone (the
camera and the other parts go on); a shard that cannot write the folder fails as it starts. The real
2-node runs (every frame of 3 cameras, a node killed mid-recording) are in test_cluster.py."""

from __future__ import annotations

import dataclasses
import time

import cv2
import numpy as np
import pytest
from web_helpers import write_demo_video

from stream.cluster.parts import ClusterSummary, Part, PartRecorder, PartState, part_file
from stream.cluster.shard import Shard, ShardConfig
from stream.errors import SinkError
from stream.output import Output, View
from stream.runtime.model import ModelChoice
from stream.runtime.spec import CameraSpec, StreamOptions
from stream.runtime.summary import Summary
from stream.sources.readers import parse_source
from stream.types import Frame, SourceStatus, StatsSnapshot, StatusUpdate

MODEL = ModelChoice(backend="openvino", precision="fp32")


def frames_in(path) -> int:
    capture, n = cv2.VideoCapture(str(path)), 0
    while capture.read()[0]:
        n += 1
    return n


def test_part_files_and_the_summary_that_lists_them():
    assert part_file("front", 1) == "front.mp4"  # as in one process
    assert part_file("front", 3) == "front.part3.mp4"
    part = Part("front", 2, "node-a", "10.0.0.2", "abc", "/v/front.part2.mp4")
    part.update(PartState("front", 2, "/v/front.part2.mp4", frames=40, closed=False))
    part.lost()
    assert (part.frames, part.state) == (40, "node lost")
    done = Part("front", 3, "node-b", "10.0.0.3", "def", "/v/front.part3.mp4")
    done.update(PartState("front", 3, "/v/front.part3.mp4", frames=9, closed=True))
    done.lost()  # a finalised part stays so
    summary = ClusterSummary.of(Summary(frames=49, saved_frames=49, shard="node-b", moves=1), [part, done])
    d = summary.to_dict()
    assert d["frames"] == 49 and d["moves"] == 1
    assert [(r["part"], r["node"], r["state"]) for r in d["recordings"]] == [
        (2, "10.0.0.2", "node lost"), (3, "10.0.0.3", "finalised"),
    ]  # fmt: skip


@pytest.mark.timeout(120)
def test_a_shard_records_a_camera_into_the_part_it_was_given(monkeypatch, tmp_path):
    monkeypatch.setenv("GLANET_CACHE_DIR", str(tmp_path / "cache"))
    video = write_demo_video(tmp_path / "clip.mp4", 2, seed=5, fps=7.5, size=96)
    folder = tmp_path / "videos" / "new"  # made by the shard
    options = StreamOptions(fast=True, headless=True, dashboard=False, quiet=True, save=folder)
    shard = Shard(ShardConfig(name="test", model=MODEL, options=options, max_batch=2, lease_s=30.0))
    try:
        shard.add(CameraSpec("cam", parse_source(str(video), folder_fps=7.5)), 2)
        said: list[PartState] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            answer = shard.poll()
            said += answer.parts
            if any(r.final for r in answer.records):
                break
            time.sleep(0.05)
        said += shard.stop().parts
    finally:
        shard.app.request_stop("test over")
    path = folder / "cam.part2.mp4"
    assert sorted(p.name for p in folder.iterdir()) == ["cam.part2.mp4"]
    source = frames_in(video)
    assert source == 15 and frames_in(path) == source
    closed = [s for s in said if s.closed]
    assert len(closed) == 1, said  # told once
    assert (closed[0].path, closed[0].frames, closed[0].part, closed[0].error) == (str(path), source, 2, None)
    assert shard._states()["cam"].summary.saved_frames == source


def test_a_shard_that_cannot_write_the_folder_fails_as_it_starts(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    options = StreamOptions(headless=True, dashboard=False, quiet=True, save=blocker / "videos")
    with pytest.raises(SinkError, match="cannot write videos into"):
        Shard(ShardConfig(name="test", model=MODEL, options=options, max_batch=1))


def output(camera: str, index: int, *, final: bool = False) -> Output:
    image = np.full((64, 64, 3), index * 10 % 256, np.uint8)
    frame = Frame(image, index, index / 10, time.monotonic(), 0, camera)
    return Output(camera, frame, None, False, StatusUpdate(SourceStatus.LIVE), StatsSnapshot(),
                  display=not final, final=final)  # fmt: skip


def test_a_part_that_cannot_be_written_fails_alone(monkeypatch, tmp_path):
    from stream.sinks import video as video_module

    real = video_module.VideoSink

    class FullDisk(real):
        def write(self, image):
            if "bad" in str(self.path):
                raise SinkError(f"cannot write video {self.path}: No space left on device")
            super().write(image)

    monkeypatch.setattr("stream.cluster.parts.VideoSink", FullDisk)
    recorder = PartRecorder(tmp_path, lambda: View((), "none"), lambda _: 10.0)
    recorder.begin("bad", 1)
    recorder.begin("good", 4)
    for i in range(12):
        recorder.write(output("bad", i))
        recorder.write(output("good", i))
    recorder.write(output("good", 12, final=True))
    told = {p.camera: p for p in recorder.report()}
    assert told["bad"].error and "No space left" in told["bad"].error and not told["bad"].closed
    assert told["good"].closed and told["good"].frames == 12
    assert frames_in(tmp_path / "good.part4.mp4") == 12
    assert [p.camera for p in recorder.report()] == ["bad"]  # an ended part is told once; the open one again
    recorder.close()
    assert [dataclasses.astuple(p)[:2] for p in recorder.report()] == [("bad", 1)]
