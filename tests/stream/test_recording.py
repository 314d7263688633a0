"""Recordings that survive: a killed process keeps all but its last second; a full disk is an error naming the
file, not a silent exit 0 with an unplayable file. VideoSink (sinks/video.py) on sinks/recording.py."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from stream.errors import SinkError
from stream.sinks import recording
from stream.sinks.eventlog import EventLog
from stream.sinks.video import VideoSink
from stream.types import Event

REPO = Path(__file__).resolve().parents[2]
FPS = 25


def numbered_frame(i: int, width: int = 160, height: int = 120) -> np.ndarray:
    """A frame whose left half's grey level says its index (0..84 → 0..252), decodable after lossy coding."""
    image = np.full((height, width, 3), 128, np.uint8)
    image[:, : width // 2] = 3 * i
    return image


def index_of(image: np.ndarray) -> int:
    return round(float(image[:, : image.shape[1] // 2].mean()) / 3)


def decoded_indices(path: Path) -> list[int]:
    """The numbered frames OpenCV (FFmpeg) decodes from `path`, in order."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"OpenCV cannot open {path}"
    out = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        out.append(index_of(image))
    cap.release()
    return out


# --- the file format --------------------------------------------------------------------------------------


def test_video_is_h264_in_a_fragmented_mp4_with_a_keyframe_each_second(tmp_path):
    path = tmp_path / "out.mp4"
    with VideoSink(path, fps=FPS) as sink:
        for i in range(3 * FPS):
            sink.write(numbered_frame(i))
    data = path.read_bytes()
    assert data[4:8] == b"ftyp" and data.count(b"moof") >= 3  # fragments: an index up front, one per second
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name in {"h264", "mpeg4"}  # mpeg4 only where libx264 is missing
        assert stream.codec_context.pix_fmt == "yuv420p"
        keyframes = [i for i, frame in enumerate(container.decode(stream)) if frame.key_frame]
    assert keyframes[:3] == [0, FPS, 2 * FPS]
    assert decoded_indices(path) == list(range(3 * FPS))


def test_default_codec_is_libx264_where_available():
    assert recording.video_codec() == ("libx264" if "libx264" in av.codecs_available else "mpeg4")


def test_mpeg4_fallback_writes_a_playable_file(tmp_path):
    path = tmp_path / "mpeg4.mp4"
    writer = recording.FragmentedMp4Writer(path, FPS, 160, 120, codec="mpeg4")
    for i in range(2 * FPS):
        writer.write(numbered_frame(i))
    writer.close()
    writer.close()  # idempotent
    assert decoded_indices(path) == list(range(2 * FPS))


def test_odd_frame_sizes_are_cropped_to_even(tmp_path):
    path = tmp_path / "odd.mp4"
    with VideoSink(path, fps=10) as sink:
        for i in range(5):
            sink.write(numbered_frame(i, width=161, height=121))
        assert sink.size == (161, 121)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (160, 120)
    assert decoded_indices(path) == list(range(5))


# --- kill -9 -----------------------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path[:0] = [{repo!r}, {tests!r}]
    from test_recording import numbered_frame
    from stream.sinks.video import VideoSink
    sink = VideoSink({path!r}, fps={fps})
    for i in range({n}):
        sink.write(numbered_frame(i))
    print("written", flush=True)
    time.sleep(60)  # killed here, without close()
    """
)


def test_a_killed_recording_keeps_all_but_its_last_second(tmp_path):
    path = tmp_path / "killed.mp4"
    n = 3 * FPS  # 3 s of video
    code = CHILD.format(repo=str(REPO), tests=str(Path(__file__).parent), path=str(path), fps=FPS, n=n)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "written"
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    got = decoded_indices(path)
    # every frame up to the last keyframe (one second before the kill) is there, in order
    assert got == list(range(len(got))) and len(got) >= n - FPS, got


# --- a full disk -------------------------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path) -> Iterator[Path]:
    """A 200 KiB tmpfs (needs root); skipped, visibly, where it cannot be mounted."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount_point)],
            check=True,
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"full-disk test: cannot mount a tmpfs here ({e}) — this test has NOT run")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False, capture_output=True, timeout=30)


def noisy_frame(i: int, rng: np.random.Generator) -> np.ndarray:
    image = numbered_frame(i, width=320, height=240)
    image[:, 160:] = rng.integers(0, 256, (240, 160, 3), dtype=np.uint8)  # incompressible half
    return image


def test_a_full_disk_is_an_error_naming_the_video(tiny_disk):
    path = tiny_disk / "out.mp4"
    rng = np.random.default_rng(0)
    sink = VideoSink(path, fps=FPS)
    with pytest.raises(SinkError) as info:
        for i in range(40 * FPS):  # far more than 200 KiB
            sink.write(noisy_frame(i % 80, rng))
        sink.close()
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and os.strerror(errno.ENOSPC) in message, message
    with pytest.raises(SinkError, match=re.escape(str(path))):  # and it stays failed
        sink.write(noisy_frame(0, rng))
    sink.close()  # already reported: closing is quiet


def test_a_full_disk_at_close_is_an_error_naming_the_video(tiny_disk):
    """The last fragment goes out at close: a disk that fills then must not end in a silent exit 0."""
    filler = tiny_disk / "filler"
    path = tiny_disk / "out.mp4"
    rng = np.random.default_rng(1)
    sink = VideoSink(path, fps=FPS)
    for i in range(FPS // 2):  # less than one fragment: nothing but the header reaches the disk yet
        sink.write(noisy_frame(i, rng))
    with contextlib.suppress(OSError), filler.open("wb") as f:  # now fill the disk
        while True:
            f.write(b"\0" * 4096)
            f.flush()
    with pytest.raises(SinkError, match=re.escape(str(path))):
        sink.close()


def test_a_folder_that_cannot_be_written_fails_at_once(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
            check=True,
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"read-only folder test: cannot mount a tmpfs here ({e}) — this test has NOT run")
    try:
        with pytest.raises(SinkError, match=re.escape(str(folder / "out.mp4"))):
            VideoSink(folder / "out.mp4", fps=FPS)
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True, timeout=30)


def test_event_log_on_a_full_disk_leaves_no_half_line(tiny_disk):
    path = tiny_disk / "events.jsonl"
    event = Event("start", "a" * 300, 3, "cam 1", 1.25, None, 0.8, 1.5, 40)  # ~400-byte lines
    with EventLog(path) as log, pytest.raises(SinkError) as info:
        for _ in range(10_000):  # 4 MB: far more than the disk holds
            log.write(event)
    assert str(path) in str(info.value) and os.strerror(errno.ENOSPC) in str(info.value)
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    lines = text.splitlines()
    assert len(lines) == log.events_written > 100
    assert all(json.loads(line) == event.to_dict() for line in lines)
