"""Sources: credentials never shown, `--source` parsing, video files (good, missing, corrupt, truncated),
webcams that are not there, folders of frames, and a file and a folder through Capture."""

from __future__ import annotations

import fractions
import logging
import os
import socket
import struct
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from capture_helpers import BITS, drain, index_image, read_index

from stream.errors import DecodeError, SourceError
from stream.sources.capture import Capture, CaptureConfig
from stream.sources.readers import DemoSource, FolderSource, OpenCVSource, parse_source, redact
from stream.types import SourceStatus

pytestmark = pytest.mark.timeout(20)  # a hang fails the test; tests that wait say so themselves

VIDEO_FRAMES, VIDEO_FPS = 40, 25


@pytest.fixture(autouse=True)
def _keep_ffmpeg_options():
    """parse_source sets OPENCV_FFMPEG_CAPTURE_OPTIONS for RTSP URLs; leave the environment as it was."""
    saved = os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS")
    yield
    if saved is None:
        os.environ.pop("OPENCV_FFMPEG_CAPTURE_OPTIONS", None)
    else:
        os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = saved


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40-frame 64x48 mp4v file at 25 fps with each frame's index drawn in it."""
    path = tmp_path_factory.mktemp("video") / "count.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), VIDEO_FPS, (64, 48))
    assert writer.isOpened()
    for i in range(VIDEO_FRAMES):
        writer.write(index_image(i))
    writer.release()
    assert path.stat().st_size > 0
    return path


def read_all(source: OpenCVSource | FolderSource, limit: int = 1000) -> list[tuple[np.ndarray, float]]:
    items = []
    for _ in range(limit):
        item = source.read()
        if item is None:
            return items
        items.append(item)
    raise AssertionError(f"no end after {limit} reads")


def one_line(error: BaseException) -> str:
    text = str(error)
    assert text and "\n" not in text
    return text


# --- redact ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rtsp://admin:hunter2@10.0.0.5:554/stream1", "rtsp://***@10.0.0.5:554/stream1"),
        ("rtsps://admin:hunter2@cam.example.com/live", "rtsps://***@cam.example.com/live"),
        ("http://user:pa%40ss@cam.local/video.mjpg", "http://***@cam.local/video.mjpg"),
        ("https://viewer@cam.local/live", "https://***@cam.local/live"),
        ("https://cam.local/live?token=abc123&channel=2", "https://cam.local/live?token=***&channel=***"),
        ("rtsp://cam.local/x?password=hunter2&subtype=0", "rtsp://cam.local/x?password=***&subtype=***"),
        ("http://cam.local/x?api_key=k1&sig=s1&auth=a1", "http://cam.local/x?api_key=***&sig=***&auth=***"),
        ("https://cam.local/live?Token=abc#top", "https://cam.local/live?Token=***#***"),
        # mistyped URLs: a missing or doubled slash, or no scheme at all, still hide the password
        ("rtsp:/admin:hunter2@10.0.0.5/x", "rtsp:/***@10.0.0.5/x"),
        ("rtsp//admin:hunter2@10.0.0.5", "rtsp//***@10.0.0.5"),
        ("rtsp:///admin:hunter2@10.0.0.5/x", "rtsp:///***@10.0.0.5/x"),
        ("admin:hunter2@10.0.0.5/stream", "***@10.0.0.5/stream"),
        ("rtsp:admin:hunter2@10.0.0.5/x", "***@10.0.0.5/x"),
        # more secret-looking query keys, any case, percent-encoded, ';' between pairs; and fragments
        (
            "http://c/x?api_key=1&APIKEY=2&access_token=3&Auth=4&sig=5&signature=6&session=7&channel=2",
            "http://c/x?api_key=***&APIKEY=***&access_token=***&Auth=***&sig=***&signature=***&session=***"
            "&channel=***",
        ),
        (
            "http://c/x?secret=1;pwd=2;pass=3;X-Amz-Credential=4",
            "http://c/x?secret=***;pwd=***;pass=***;X-Amz-Credential=***",
        ),
        ("http://c/x?api%5Fkey=1", "http://c/x?api%5Fkey=***"),
        ("https://cam.local/live#access_token=abc", "https://cam.local/live#***"),
        ("rtsp:/cam.local/x?token=abc", "rtsp:/cam.local/x?token=***"),
        # passwords typed raw, with characters that end the host part for urlsplit
        ("rtsp://admin:pa#ss@10.0.0.5/x", "rtsp://***@10.0.0.5/x"),
        ("rtsp://admin:pa?ss@10.0.0.5/x", "rtsp://***@10.0.0.5/x"),
        ("rtsp://admin:pa/ss@10.0.0.5/x", "rtsp://***@10.0.0.5/x"),
        ("rtsp://admin:p[ss@10.0.0.5/x", "rtsp://***@10.0.0.5/x"),
        ("rtsp://admin:p@ss@[::1]:554/x", "rtsp://***@[::1]:554/x"),
    ],
)
def test_redact_hides_credentials(url, expected):
    assert redact(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://10.0.0.5:554/stream1",
        "http://cam.local/video.mjpg",
        "https://cam.local/live?flag&keyless",
        "RTSP://cam.local/live",
        "videos/clip.mp4",
        "demo",
    ],
)
def test_redact_leaves_plain_urls_and_paths_unchanged(url):
    assert redact(url) == url


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://cam.local/live?s=hunter2", "https://cam.local/live?s=***"),  # a secret under any key
        ("https://cam.local/live?channel=2&subtype=0", "https://cam.local/live?channel=***&subtype=***"),
        ("https://cam.local/live?name=a%20b&flag", "https://cam.local/live?name=***&flag"),
    ],
)
def test_redact_hides_every_query_value_and_keeps_the_keys(url, expected):
    assert redact(url) == expected


def test_network_source_names_never_hold_the_password():
    spec = parse_source("rtsp://user:secret@cam.local:554/stream?token=tok3n")
    assert spec.kind == "network" and spec.live
    for name in (spec.name, spec.factory().name):
        assert "secret" not in name and "tok3n" not in name
        assert "cam.local:554/stream" in name


@pytest.mark.timeout(20)
def test_failed_connection_message_never_holds_the_password():
    # given a URL with credentials to a port that refuses at once
    spec = parse_source("rtsp://user:secret@127.0.0.1:1/x", open_timeout_s=1.0)
    source = spec.factory()
    # when it is opened
    with pytest.raises(SourceError) as caught:
        source.open()
    # then the one-line error names the redacted URL and not the password
    text = one_line(caught.value)
    assert "secret" not in text
    assert "rtsp://***@127.0.0.1:1/x" in text


@pytest.mark.timeout(20)
def test_refused_connection_says_refused_not_a_timeout():
    # given a port where nothing listens: refused at once, long before the 10 s open timeout
    source = parse_source("rtsp://127.0.0.1:1/x", open_timeout_s=10.0).factory()
    t0 = time.monotonic()
    with pytest.raises(SourceError) as caught:
        source.open()
    # then the error says it was refused, and does not claim a 10 s wait that never happened
    text = one_line(caught.value)
    assert time.monotonic() - t0 < 5.0
    assert "refused" in text and "127.0.0.1:1" in text
    assert "within" not in text and "10 s" not in text


@pytest.mark.timeout(20)
def test_silent_server_says_timed_out_after_the_wait():
    # given a port that accepts TCP connections but never answers
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        port = server.getsockname()[1]
        source = parse_source(f"rtsp://user:secret@127.0.0.1:{port}/x", open_timeout_s=1.0).factory()
        with pytest.raises(SourceError) as caught:
            source.open()
    # then the error says it timed out, and after how long
    text = one_line(caught.value)
    assert "timed out after 1." in text and "secret" not in text


# --- parse_source ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "live", "name"),
    [
        ("demo", "demo", True, "demo (SynthActions, seed 0)"),
        ("webcam", "webcam", True, "webcam 0"),
        ("0", "webcam", True, "webcam 0"),
        ("2", "webcam", True, "webcam 2"),
        (" 2 ", "webcam", True, "webcam 2"),
        ("rtsp://cam.local/live", "network", True, "rtsp://cam.local/live"),
        ("rtsps://cam.local/live", "network", True, "rtsps://cam.local/live"),
        ("http://cam.local/video.mjpg", "network", True, "http://cam.local/video.mjpg"),
        ("https://cam.local/video.m3u8", "network", True, "https://cam.local/video.m3u8"),
        ("RTSP://cam.local/live", "network", True, "RTSP://cam.local/live"),
    ],
)
def test_parse_source_kinds(text, kind, live, name):
    spec = parse_source(text)
    assert (spec.kind, spec.live, spec.name) == (kind, live, name)
    source = spec.factory()
    assert source.live is live
    assert source.name == name


def test_parse_source_device_index_is_the_webcam_index():
    source = parse_source("2").factory()
    assert isinstance(source, OpenCVSource)
    assert source.kind == "webcam" and source.target == 2


def test_parse_source_factory_makes_a_fresh_source_per_connection():
    spec = parse_source("demo")
    assert spec.factory() is not spec.factory()


@pytest.mark.parametrize(
    "text",
    [
        "rtsp:/admin:secret@10.0.0.5/stream",
        "rtsp//admin:secret@10.0.0.5/stream",
        "admin:secret@10.0.0.5/stream",
        "admin:secret@host://stream",
        "rtsp:/10.0.0.5/stream?token=secret",
    ],
)
def test_parse_source_errors_on_mistyped_urls_never_hold_the_password(text):
    # given a URL typed wrong (one slash, no colon, no scheme), so that it reads as a path
    # when parsed, then the one-line error names it redacted, and says how a URL is written
    with pytest.raises(SourceError) as caught:
        parse_source(text)
    message = one_line(caught.value)
    assert "secret" not in message
    assert "scheme://" in message


@pytest.mark.parametrize("text", ["ftp://x", "file:///tmp/a.mp4", "ftp://user:secret@host/a.mp4"])
def test_parse_source_rejects_unsupported_schemes(text):
    with pytest.raises(SourceError, match="unsupported URL scheme") as caught:
        parse_source(text)
    assert "secret" not in one_line(caught.value)


@pytest.mark.parametrize("text", ["", "   "])
def test_parse_source_empty_is_an_error(text):
    with pytest.raises(SourceError, match="empty"):
        parse_source(text)


def test_parse_source_missing_path_is_named(tmp_path):
    missing = tmp_path / "nope" / "clip.mp4"
    with pytest.raises(SourceError) as caught:
        parse_source(str(missing))
    assert str(missing) in one_line(caught.value)


def test_parse_source_folder_and_file(tmp_path, video):
    folder = parse_source(str(tmp_path), folder_fps=10.0)
    assert (folder.kind, folder.live, folder.name) == ("folder", False, str(tmp_path))
    assert isinstance(folder.factory(), FolderSource)
    assert folder.factory().fps == 10.0
    file = parse_source(str(video))
    assert (file.kind, file.live, file.name) == ("file", False, str(video))
    source = file.factory()
    assert isinstance(source, OpenCVSource) and source.kind == "file" and not source.live


# --- video files --------------------------------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_video_file_reads_every_frame_with_its_timestamp(video):
    # given a 40-frame, 25 fps mp4
    source = OpenCVSource(str(video), kind="file")
    # when opened and read to the end
    source.open()
    try:
        items = read_all(source)
        assert source.read() is None  # stays at the end
    finally:
        source.close()
    # then frames 0..39 came, in order, stamped i / 25
    assert source.fps == VIDEO_FPS
    assert [read_index(image) for image, _ in items] == list(range(VIDEO_FRAMES))
    assert [ts for _, ts in items] == pytest.approx([i / VIDEO_FPS for i in range(VIDEO_FRAMES)])
    assert all(image.shape == (48, 64, 3) and image.dtype == np.uint8 for image, _ in items)


@pytest.mark.timeout(20)
def test_video_file_through_capture_gives_every_frame_then_ends(video):
    spec = parse_source(str(video))
    capture = Capture(spec.factory, spec.name, CaptureConfig(live=spec.live, realtime=False, capacity=4))
    with capture:
        frames = drain(capture)
    assert [f.index for f in frames] == list(range(VIDEO_FRAMES))
    assert [read_index(f.image) for f in frames] == list(range(VIDEO_FRAMES))
    assert [f.source_ts for f in frames] == pytest.approx([i / VIDEO_FPS for i in range(VIDEO_FRAMES)])
    assert capture.status.status is SourceStatus.ENDED
    assert capture.error is None and capture.decode_errors == 0
    assert capture.nominal_fps == VIDEO_FPS


def test_missing_video_file_is_a_clear_error(tmp_path):
    path = tmp_path / "missing.mp4"
    with pytest.raises(SourceError) as caught:
        OpenCVSource(str(path), kind="file").open()
    text = one_line(caught.value)
    assert "not found" in text and str(path) in text


def test_video_path_that_is_a_folder_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="not a file"):
        OpenCVSource(str(tmp_path), kind="file").open()


@pytest.mark.timeout(20)
def test_text_file_named_mp4_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    with pytest.raises(SourceError) as caught:
        OpenCVSource(str(path), kind="file").open()
    text = one_line(caught.value)
    assert str(path) in text and "corrupt" in text


@pytest.mark.timeout(20)
def test_truncated_video_fails_cleanly(tmp_path, video):
    # given the first half of an mp4's bytes
    path = tmp_path / "truncated.mp4"
    data = video.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    source = OpenCVSource(str(path), kind="file")
    # when it is opened and read
    # then the only exception is a SourceError at open (OpenCV's mp4v writer puts the index, the
    # 'moov' atom, at the end, so half a file has none: FFmpeg says "moov atom not found"); should
    # FFmpeg ever open it, reading must still end, with at most DecodeErrors on the way
    try:
        source.open()
    except SourceError as error:
        assert str(path) in one_line(error)
        return
    try:
        frames, errors = 0, 0
        for _ in range(200):
            try:
                item = source.read()
            except DecodeError:
                errors += 1
                continue
            if item is None:
                break
            frames += 1
        else:
            raise AssertionError("reading a truncated file did not end")
        assert frames < VIDEO_FRAMES
    finally:
        source.close()


def test_read_before_open_is_a_source_error(video):
    with pytest.raises(SourceError, match="not open"):
        OpenCVSource(str(video), kind="file").read()
    with pytest.raises(SourceError, match="not open"):
        DemoSource().read()


def test_unknown_opencv_kind_is_a_value_error():
    with pytest.raises(ValueError, match="'camera'"):
        OpenCVSource(0, kind="camera")


@pytest.mark.skipif(Path("/dev/video7").exists(), reason="this machine has a /dev/video7")
def test_missing_webcam_names_the_device():
    source = parse_source("7").factory()
    with pytest.raises(SourceError) as caught:
        source.open()
    text = one_line(caught.value)
    assert "webcam 7" in text and "/dev/video7" in text


# --- folders of frames --------------------------------------------------------------------------------------


def write_images(folder: Path, names_and_levels: dict[str, int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, level in names_and_levels.items():
        assert cv2.imwrite(str(folder / name), np.full((8, 8, 3), level, np.uint8))


def test_folder_reads_images_in_natural_order_and_skips_other_files(tmp_path):
    # given 0, 1, 2 and 10 .jpg (grey 0, 10, 20, 100), an uppercase .PNG, a text file and a subfolder
    write_images(tmp_path, {"10.jpg": 100, "2.jpg": 20, "0.jpg": 0, "1.jpg": 10, "11.PNG": 110})
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / "sub").mkdir()
    source = FolderSource(tmp_path, fps=10.0)
    # when read
    source.open()
    items = read_all(source)
    # then 0, 1, 2, 10, 11 in that order (not 0, 1, 10, 11, 2), at i / fps
    assert [round(float(image.mean()) / 10) for image, _ in items] == [0, 1, 2, 10, 11]
    assert [ts for _, ts in items] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert source.read() is None


def test_folder_with_a_corrupt_image_raises_decode_error_for_it(tmp_path):
    write_images(tmp_path, {"0.jpg": 0, "2.jpg": 20})
    (tmp_path / "1.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    source = FolderSource(tmp_path, fps=25.0)
    source.open()
    assert source.read() is not None
    with pytest.raises(DecodeError, match=r"1\.jpg"):
        source.read()
    image, ts = source.read()
    assert round(float(image.mean())) == 20 and ts == pytest.approx(2 / 25)
    assert source.read() is None


@pytest.mark.timeout(10)
def test_capture_counts_a_corrupt_image_and_goes_on(tmp_path):
    write_images(tmp_path, {"0.jpg": 0, "2.jpg": 20, "3.jpg": 30})
    (tmp_path / "1.jpg").write_bytes(b"garbage")
    spec = parse_source(str(tmp_path), folder_fps=25.0)
    capture = Capture(spec.factory, spec.name, CaptureConfig(live=False, realtime=False))
    with capture:
        frames = drain(capture)
    assert [round(float(f.image.mean())) for f in frames] == [0, 20, 30]
    assert [f.index for f in frames] == [0, 1, 2]
    assert [f.source_ts for f in frames] == pytest.approx([0.0, 2 / 25, 3 / 25])
    assert capture.decode_errors == 1
    assert capture.status.status is SourceStatus.ENDED and capture.error is None


def test_empty_folder_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="no images") as caught:
        FolderSource(tmp_path, fps=25.0).open()
    assert str(tmp_path) in one_line(caught.value)


def test_folder_without_images_is_a_source_error(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(SourceError, match="no images"):
        FolderSource(tmp_path, fps=25.0).open()


def test_missing_folder_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="not found"):
        FolderSource(tmp_path / "gone", fps=25.0).open()


@pytest.mark.parametrize("fps", [0.0, -5.0])
def test_folder_fps_must_be_positive(tmp_path, fps):
    with pytest.raises(ValueError, match="fps"):
        FolderSource(tmp_path, fps=fps)


# --- damaged, odd and variable-rate files -------------------------------------------------------------------

NOISY_FRAMES = 60


def noisy_index_image(i: int) -> np.ndarray:
    """A frame that is mostly noise (so the mp4's data, not its index, is most of the file), its index
    drawn in the top rows."""
    image = np.random.default_rng(i).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    image[:24] = 96
    for bit in range(BITS):
        image[8:16, 8 * bit : 8 * bit + 8] = 255 if i >> bit & 1 else 0
    return image


def mp4_atoms(data: bytes) -> dict[bytes, tuple[int, int]]:
    """The top-level atoms of an mp4: type -> (start of its payload, end)."""
    atoms, offset = {}, 0
    while offset + 8 <= len(data):
        size = struct.unpack(">I", data[offset : offset + 4])[0]
        atoms[data[offset + 4 : offset + 8]] = (offset + 8, offset + size)
        offset += size
    return atoms


@pytest.fixture(scope="module")
def corrupt_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 60-frame 25 fps mp4v file whose media data has a block of garbage 40% of the way in."""
    path = tmp_path_factory.mktemp("corrupt") / "corrupt.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), VIDEO_FPS, (128, 96))
    assert writer.isOpened()
    for i in range(NOISY_FRAMES):
        writer.write(noisy_index_image(i))
    writer.release()
    data = bytearray(path.read_bytes())
    start, end = mp4_atoms(bytes(data))[b"mdat"]
    a = start + (end - start) * 2 // 5
    b = a + (end - start) // 10
    data[a:b] = bytes((i * 7919 + 13) % 256 for i in range(b - a))
    path.write_bytes(bytes(data))
    return path


@pytest.mark.timeout(30)
def test_corrupt_stretch_mid_file_is_skipped_and_counted_not_the_end(corrupt_video):
    # given an mp4 whose middle tenth is garbage (the frames after it decode fine)
    spec = parse_source(str(corrupt_video))
    capture = Capture(spec.factory, spec.name, CaptureConfig(live=False, realtime=False))
    # when played through a capture
    with capture:
        frames = drain(capture)
    # then the run went on past the damage to the real end: the last frames are there, the damaged
    # ones were counted as decode errors, and it ended cleanly
    indices = [read_index(f.image) for f in frames]
    assert indices[-10:] == list(range(NOISY_FRAMES - 10, NOISY_FRAMES))
    assert capture.decode_errors > 0
    assert len(frames) + capture.decode_errors == NOISY_FRAMES
    assert capture.status.status is SourceStatus.ENDED and capture.error is None
    # and the frames after the gap keep their own time (not stamped as if the gap were not there)
    assert frames[-1].source_ts == pytest.approx((NOISY_FRAMES - 1) / VIDEO_FPS)


@pytest.mark.timeout(20)
def test_variable_frame_rate_file_uses_the_container_timestamps(tmp_path):
    av = pytest.importorskip("av", reason="PyAV builds the variable-frame-rate file")
    # given an mp4 whose frames are at 0, 40, 80, 200, 240, 500 and 1000 ms (average rate ~7 fps)
    path = tmp_path / "vfr.mp4"
    stamps_ms = [0, 40, 80, 200, 240, 500, 1000]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = fractions.Fraction(1, 1000)
        for i, ms in enumerate(stamps_ms):
            frame = av.VideoFrame.from_ndarray(index_image(i), format="bgr24")
            frame.pts, frame.time_base = ms, fractions.Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    # when read
    source = OpenCVSource(str(path), kind="file")
    source.open()
    try:
        items = read_all(source)
    finally:
        source.close()
    # then each frame carries its own timestamp, not index / average fps
    assert [read_index(image) for image, _ in items] == list(range(len(stamps_ms)))
    assert [ts for _, ts in items] == pytest.approx([ms / 1000 for ms in stamps_ms], abs=1e-3)


class NoTimestampCapture:
    """A cv2.VideoCapture stand-in whose container gives no timestamps (0 ms for every frame)."""

    def __init__(self, frames: int) -> None:
        self.frames, self.read_count = frames, 0

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.read_count >= self.frames:
            return False, None
        self.read_count += 1
        return True, index_image(self.read_count - 1)

    def get(self, prop: int) -> float:
        return {cv2.CAP_PROP_POS_MSEC: 0.0, cv2.CAP_PROP_FRAME_COUNT: float(self.frames)}.get(prop, 0.0)

    def release(self) -> None:
        pass


def test_timestamps_fall_back_to_index_over_fps_without_container_times(video):
    # given a file source whose container reports 0 ms for every frame
    source = OpenCVSource(str(video), kind="file")
    source.open()
    source.close()
    source._cap, source.fps, source.frame_count = NoTimestampCapture(5), 10.0, 5  # type: ignore[assignment]
    # when read, then the frames are stamped index / fps, and the file ends at its end
    assert [ts for _, ts in read_all(source)] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_image_file_as_a_video_says_it_is_a_single_frame(tmp_path, caplog):
    # given a JPEG given as a video source
    path = tmp_path / "photo.jpg"
    assert cv2.imwrite(str(path), index_image(3))
    source = parse_source(str(path)).factory()
    # when read to its end
    source.open()
    with caplog.at_level(logging.WARNING, logger="stream.sources.readers"):
        items = read_all(source)
        assert source.read() is None
    source.close()
    # then one frame came, and one warning line said it was a single image
    assert len(items) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "single image/frame" in warnings[0] and str(path) in warnings[0]


@pytest.mark.timeout(20)
def test_truncated_video_that_opens_warns_where_it_ended(tmp_path, caplog):
    # given the first half of a 60-frame MJPG .avi (its header still says 60 frames)
    full = tmp_path / "full.avi"
    writer = cv2.VideoWriter(str(full), cv2.VideoWriter_fourcc(*"MJPG"), VIDEO_FPS, (128, 96))
    for i in range(NOISY_FRAMES):
        writer.write(noisy_index_image(i))
    writer.release()
    path = tmp_path / "cut.avi"
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    source = OpenCVSource(str(path), kind="file")
    # when read to its end
    source.open()
    with caplog.at_level(logging.WARNING, logger="stream.sources.readers"):
        items = read_all(source)
    source.close()
    # then reading ended, and one warning line said where, of how many, and that it looks truncated
    assert 0 < len(items) < NOISY_FRAMES
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"{path} ended at frame {len(items)} of {NOISY_FRAMES}: truncated?"]


@pytest.mark.timeout(60)
def test_rtsp_stream_stays_live(rtsp_server):
    # given the real RTSP test server: RTSP is always a live stream, whatever it reports
    source = parse_source(rtsp_server.url, open_timeout_s=5.0, read_timeout_s=2.0).factory()
    source.open()
    try:
        assert source.live and source.frame_count is None
        assert source.read() is not None
    finally:
        source.close()
