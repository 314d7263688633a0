"""Sinks: key mapping, display detection, the mp4 writer and the JSONL event log.

Crash and full-disk tests on real files (kill -9, a tiny tmpfs) are in test_recording.py."""

from __future__ import annotations

import errno
import json
import os
import re
import sys

import cv2
import numpy as np
import pytest

from stream.errors import SinkError
from stream.sinks import display, eventlog, recording, video, window
from stream.sinks.display import has_display
from stream.sinks.eventlog import EventLog
from stream.sinks.video import VideoSink
from stream.sinks.window import WindowSink, key_action
from stream.types import Event

# --- window --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "action"),
    [
        (ord("q"), "quit"),
        (27, "quit"),
        (ord(" "), "pause"),
        (ord("p"), "pause"),
        (ord("a"), "attention"),
        (-1, None),  # no key pressed
        (ord("x"), None),
        (ord("Q"), None),  # some toolkits' left arrow, masked to its low byte
        (0xFF51, None),
    ],
)
def test_key_action(key, action):
    assert key_action(key) == action


@pytest.fixture
def linux_without_display(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)


def test_no_display_without_display_variables(linux_without_display):
    assert has_display() is False


def test_window_sink_fails_clearly_without_a_display(linux_without_display):
    with pytest.raises(SinkError, match="no display"):
        WindowSink("glanet")


PAD = " " * 20
NEW_GUI = f"  Video I/O:\n\n  GUI:{PAD}{{}}\n    GTK+:{PAD}NO\n\n  Media I/O:\n"  # OpenCV >= 4.6
OLD_GUI = f"  GUI: \n    GTK+:{PAD}{{}}\n    VTK support:{PAD}NO\n\n  Media I/O:\n"


@pytest.mark.parametrize(
    ("build_info", "expected"),
    [
        (NEW_GUI.format("QT5"), True),
        (NEW_GUI.format("GTK3"), True),
        (NEW_GUI.format("NONE"), False),  # opencv-python-headless
        (OLD_GUI.format("YES (ver 3.24.20)"), True),
        (OLD_GUI.format("NO"), False),
        ("no GUI section at all", False),
    ],
)
def test_display_needs_an_opencv_gui_backend(monkeypatch, build_info, expected):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(display, "x_server_reachable", lambda *_args, **_kwargs: True)
    monkeypatch.setattr(window.cv2, "getBuildInformation", lambda: build_info)
    assert has_display() is expected


def test_has_display_never_raises(monkeypatch):
    monkeypatch.setenv("DISPLAY", ":0")

    def broken() -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(window.cv2, "getBuildInformation", broken)
    assert has_display() is False


# --- video ---------------------------------------------------------------------------------------------


def frames(n: int, width: int = 64, height: int = 48) -> list[np.ndarray]:
    out = []
    for i in range(n):
        image = np.zeros((height, width, 3), np.uint8)
        image[:, : (i + 1) * width // n] = (40, 160, 220)
        out.append(image)
    return out


def read_back(path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    out = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        out.append(image)
    cap.release()
    return out


def test_video_sink_writes_every_frame(tmp_path):
    path = tmp_path / "out.mp4"
    sink = VideoSink(path, fps=15)
    written = frames(12)
    for image in written:
        sink.write(image)
    assert sink.frames_written == 12 and sink.size == (64, 48)
    sink.close()
    sink.close()  # idempotent
    back = read_back(path)
    assert len(back) == 12
    assert all(image.shape == (48, 64, 3) for image in back)
    # lossy, but the content is there: the coloured part grows frame by frame
    assert np.abs(back[-1].astype(int) - written[-1]).mean() < 20


def test_video_sink_context_manager_finalises(tmp_path):
    path = tmp_path / "ctx.mp4"
    with VideoSink(path, fps=10) as sink:
        for image in frames(5):
            sink.write(image)
    assert len(read_back(path)) == 5
    with pytest.raises(ValueError, match="closed"):
        sink.write(frames(1)[0])


def test_video_sink_resizes_frames_of_another_size(tmp_path):
    path = tmp_path / "mixed.mp4"
    with VideoSink(path, fps=10) as sink:
        for image in frames(3) + frames(3, width=32, height=24):
            sink.write(image)
    back = read_back(path)
    assert len(back) == 6 and all(image.shape == (48, 64, 3) for image in back)


def test_video_sink_without_frames_creates_no_file(tmp_path):
    VideoSink(tmp_path / "none.mp4", fps=10).close()
    assert not (tmp_path / "none.mp4").exists()


def test_video_sink_error_names_the_path(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(SinkError, match=re.escape(str(tmp_path / "a_file" / "out.mp4"))):
        VideoSink(blocker / "out.mp4", fps=10)
    with pytest.raises(ValueError, match="fps"):
        VideoSink(tmp_path / "x.mp4", fps=0)


def test_video_sink_rejects_non_images(tmp_path):
    with VideoSink(tmp_path / "x.mp4", fps=10) as sink, pytest.raises(ValueError, match="uint8"):
        sink.write(np.zeros((48, 64), np.uint8))


def enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["write", "close"])
def test_video_sink_write_error_is_a_sink_error_naming_the_file(tmp_path, monkeypatch, where):
    path = tmp_path / "out.mp4"
    sink = VideoSink(path, fps=10)
    sink.write(frames(1)[0])
    monkeypatch.setattr(recording.FragmentedMp4Writer, where, enospc)
    with pytest.raises(SinkError) as info:
        sink.write(frames(2)[1])
        sink.close()
    assert str(info.value) == f"cannot write video {path}: No space left on device"
    assert sink.frames_written == (1 if where == "write" else 2)
    with pytest.raises(SinkError, match=re.escape(str(path))):  # a failed recording stays failed
        sink.write(frames(1)[0])
    sink.close()  # already reported


def test_video_sink_error_opening_the_file_names_it(tmp_path, monkeypatch):
    path = tmp_path / "out.mp4"
    sink = VideoSink(path, fps=10)
    monkeypatch.setattr(recording.FragmentedMp4Writer, "__init__", enospc)
    with pytest.raises(SinkError, match=re.escape(f"cannot write video {path}: No space left")):
        sink.write(frames(1)[0])


def test_video_sink_fails_at_once_on_a_folder_it_cannot_write(tmp_path, monkeypatch):
    def denied(*_args, **_kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(video.tempfile, "TemporaryFile", denied)
    with pytest.raises(SinkError, match=re.escape(f"cannot write video {tmp_path / 'x.mp4'}: folder")):
        VideoSink(tmp_path / "x.mp4", fps=10)
    with pytest.raises(SinkError, match="is a folder"):
        VideoSink(tmp_path, fps=10)


# --- events --------------------------------------------------------------------------------------------


def make_events() -> list[Event]:
    start = Event("start", "wave", 3, "demo", 1.25, None, 0.8, 1.5, 40)
    end = Event("end", "wave", 3, "demo", 1.25, 4.125, 0.93, 2.0, 124)
    other = Event("start", "café", 0, "cam 1", 10.0, None, 0.7, 10.0, 300)
    return [start, end, other]


def test_event_log_lines_parse_back(tmp_path):
    path = tmp_path / "events.jsonl"
    events = make_events()
    with EventLog(path) as log:
        for event in events:
            log.write(event)
        assert log.events_written == 3
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [e.to_dict() for e in events]


def test_event_log_flushes_each_event_at_once(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    log.write(make_events()[0])
    assert json.loads(path.read_text()) == make_events()[0].to_dict()  # before close
    log.close()
    log.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        log.write(make_events()[1])


def test_event_log_appends(tmp_path):
    path = tmp_path / "events.jsonl"
    for event in make_events()[:2]:
        with EventLog(path) as log:
            log.write(event)
    assert len(path.read_text().splitlines()) == 2


def test_event_log_fails_early_naming_the_path(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(SinkError, match=re.escape(str(tmp_path / "a_file" / "events.jsonl"))):
        EventLog(blocker / "events.jsonl")


def test_event_log_full_disk_leaves_no_half_line(tmp_path, monkeypatch):
    """The OS takes part of a line, then refuses the rest (ENOSPC): the part is taken back."""
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    first, second = make_events()[:2]
    log.write(first)
    real_write = os.write

    def half_then_full(fd: int, data) -> int:
        if fd != log._fd:
            return real_write(fd, data)
        if len(data) > 10:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(eventlog.os, "write", half_then_full)
    with pytest.raises(SinkError) as info:
        log.write(second)
    assert str(info.value) == f"cannot write event log {path}: No space left on device"
    monkeypatch.undo()
    assert log.events_written == 1
    assert path.read_text().splitlines() == [json.dumps(first.to_dict())]
    log.write(second)  # space again: the log goes on, whole lines only
    log.close()
    assert [json.loads(line) for line in path.read_text().splitlines()] == [first.to_dict(), second.to_dict()]


def test_event_log_writes_each_line_in_one_call(tmp_path, monkeypatch):
    path = tmp_path / "events.jsonl"
    calls = []
    real_write = os.write

    def recording_write(fd: int, data) -> int:
        calls.append(bytes(data))
        return real_write(fd, data)

    with EventLog(path) as log:
        monkeypatch.setattr(eventlog.os, "write", recording_write)
        for event in make_events():
            log.write(event)
    assert calls == [(json.dumps(e.to_dict()) + "\n").encode() for e in make_events()]


def test_event_log_starts_a_new_line_after_an_unfinished_one(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"kind": "start"}\n{"kind": "st')  # an older run cut off mid-line
    with EventLog(path) as log:
        log.write(make_events()[0])
    lines = path.read_text().splitlines()
    assert lines[1] == '{"kind": "st' and json.loads(lines[2]) == make_events()[0].to_dict()
