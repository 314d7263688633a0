"""Cameras: `--source [NAME=]SOURCE`, derived names and their collisions, the TOML cameras file and its
one-line errors, and each camera's source parsed (never opened) with its overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.errors import SourceError, StreamError
from stream.sources.cameras import (
    CameraConfig,
    CameraDefaults,
    camera_source_spec,
    check_cameras,
    derive_name,
    load_cameras_file,
    parse_camera_arg,
)

pytestmark = pytest.mark.timeout(20)

SECRET_URL = "rtsp://admin:hunter2@cam.example.com:8554/live?token=abc"


@pytest.fixture(autouse=True)
def _keep_ffmpeg_options(monkeypatch):
    """parse_source sets OPENCV_FFMPEG_CAPTURE_OPTIONS for RTSP URLs; monkeypatch restores it afterwards."""
    monkeypatch.delenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", raising=False)


def one_line_error(call, *args) -> str:
    with pytest.raises(SourceError) as info:
        call(*args)
    text = str(info.value)
    assert "\n" not in text
    assert isinstance(info.value, StreamError)
    return text


# --- --source [NAME=]SOURCE ----------------------------------------------------------------------------


def test_name_equals_source_gives_a_named_camera():
    camera = parse_camera_arg("front=rtsp://10.0.0.5/stream")
    assert camera == CameraConfig(name="front", source="rtsp://10.0.0.5/stream", named=True)


def test_a_url_with_a_query_is_a_source_not_a_name():
    # given the text before the first '=' is "rtsp://h/s?a", which is not a name
    camera = parse_camera_arg("rtsp://h/s?a=b")
    assert (camera.source, camera.name, camera.named) == ("rtsp://h/s?a=b", "h", False)


def test_an_existing_file_whose_name_holds_equals_stays_a_file(tmp_path, monkeypatch):
    # given a real file "clip=1.mp4" in the working folder
    monkeypatch.chdir(tmp_path)
    Path("clip=1.mp4").write_bytes(b"x")
    # when it is given as --source
    camera = parse_camera_arg("clip=1.mp4")
    # then it is that file, not a camera "clip" with source "1.mp4"
    assert camera.source == "clip=1.mp4"
    assert not camera.named
    assert camera.name == "clip-1"


def test_name_equals_file_when_that_file_does_not_exist_as_a_whole(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("1.mp4").write_bytes(b"x")
    camera = parse_camera_arg("clip=1.mp4")
    assert (camera.name, camera.source, camera.named) == ("clip", "1.mp4", True)


@pytest.mark.parametrize("text", ["=demo", f"={SECRET_URL}"])
def test_an_empty_name_is_an_error(text):
    message = one_line_error(parse_camera_arg, text)
    assert "name before '=' is empty" in message
    assert "hunter2" not in message and "admin" not in message


def test_an_empty_source_is_an_error():
    message = one_line_error(parse_camera_arg, "front=")
    assert "'front' has no source" in message


def test_an_empty_argument_is_an_error():
    assert "empty" in one_line_error(parse_camera_arg, "  ")


def test_a_too_long_name_is_an_error():
    message = one_line_error(parse_camera_arg, "a" * 65 + "=demo")
    assert "65 characters" in message and "64" in message


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("demo", "demo"),
        ("webcam", "webcam0"),
        ("2", "webcam2"),
        ("rtsp://10.0.0.5:8554/stream", "10-0-0-5"),
        (SECRET_URL, "cam-example-com"),
        ("rtsp://user:pa/ss?#@host.lan/s", "host-lan"),  # a raw password with '/', '?' and '#'
        ("http://[::1]:8080/video", "1"),
        ("videos/my clip.mp4", "my-clip"),
        ("???.mp4", "cam"),
    ],
)
def test_derived_names(source, name):
    camera = parse_camera_arg(source)
    assert (camera.name, camera.named, camera.source) == (name, False, source)


def test_a_folder_is_named_by_its_last_component(tmp_path):
    folder = tmp_path / "door cam"
    folder.mkdir()
    assert derive_name(str(folder)) == "door-cam"
    assert derive_name(str(folder) + "/") == "door-cam"


def test_credentials_never_reach_a_name_or_an_error():
    camera = parse_camera_arg(SECRET_URL)
    assert "hunter2" not in camera.name and "admin" not in camera.name
    bad = CameraConfig(name="x", source="rtspx://admin:hunter2@cam/s")
    message = one_line_error(camera_source_spec, bad, CameraDefaults())
    assert "hunter2" not in message and "admin" not in message


# --- unique names --------------------------------------------------------------------------------------


def test_colliding_derived_names_get_suffixes():
    cameras = check_cameras([parse_camera_arg(t) for t in ("demo", "demo", "0", "webcam", "demo")])
    assert [c.name for c in cameras] == ["demo", "demo-2", "webcam0", "webcam0-2", "demo-3"]


def test_a_derived_name_gives_way_to_an_explicit_one():
    cameras = check_cameras([parse_camera_arg("demo"), parse_camera_arg("demo=webcam")])
    assert [(c.name, c.source) for c in cameras] == [("demo-2", "demo"), ("demo", "webcam")]


@pytest.mark.parametrize("second", ["front=demo", "FRONT=demo"])
def test_explicit_duplicates_are_an_error(second):
    message = one_line_error(check_cameras, [parse_camera_arg("front=webcam"), parse_camera_arg(second)])
    assert "given twice" in message and "front" in message.lower()


def test_no_camera_is_an_error():
    assert "no camera" in one_line_error(check_cameras, [])


# --- source specs --------------------------------------------------------------------------------------


def test_source_spec_uses_the_overrides_over_the_defaults():
    defaults = CameraDefaults(demo_seed=1, demo_size=64, demo_fps=10.0)
    spec = camera_source_spec(CameraConfig(name="d", source="demo", demo_seed=7), defaults)
    source = spec.factory()
    assert (spec.kind, source.seed, source.size, source.fps) == ("demo", 7, 64, 10.0)


def test_source_spec_of_a_folder_uses_its_folder_fps(tmp_path):
    spec = camera_source_spec(CameraConfig(name="f", source=str(tmp_path), folder_fps=5), CameraDefaults())
    assert (spec.kind, spec.factory().fps) == ("folder", 5.0)


def test_source_spec_of_a_network_camera_uses_its_timeouts():
    camera = CameraConfig(name="n", source="rtsp://h/s", open_timeout_s=3.0, watchdog_s=9.0)
    source = camera_source_spec(camera, CameraDefaults()).factory()
    assert (source.open_timeout_s, source.read_timeout_s) == (3.0, 3.0)


def test_a_missing_source_names_the_camera(tmp_path):
    camera = CameraConfig(name="front", source=str(tmp_path / "nope.mp4"))
    message = one_line_error(camera_source_spec, camera, CameraDefaults())
    assert message.startswith("camera 'front': source not found: ")


def test_an_unsupported_scheme_names_the_camera():
    message = one_line_error(camera_source_spec, CameraConfig(name="x", source="ftp://h/a"), CameraDefaults())
    assert message.startswith("camera 'x': unsupported URL scheme 'ftp'")


# --- the cameras file ----------------------------------------------------------------------------------

GOOD = """
[[camera]]
name = "front"
source = "rtsp://admin:hunter2@10.0.0.5/stream"
watchdog = 3
max_reconnects = 0
open_timeout = 2.5
enter = 0.7
exit = 0.7

[[camera]]
name = "demo_1"
source = "demo"
fast = true
demo_seed = 3
demo_size = 32
demo_fps = 12
smoothing = 0.5
min_duration = 0

[[camera]]
name = "frames"
source = "frames/"
folder_fps = 30.0
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cameras.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_file_round_trips(tmp_path):
    cameras = load_cameras_file(write(tmp_path, GOOD))
    assert cameras == [
        CameraConfig(
            name="front",
            source="rtsp://admin:hunter2@10.0.0.5/stream",
            watchdog_s=3.0,
            max_reconnects=0,
            open_timeout_s=2.5,
            enter=0.7,
            exit=0.7,
        ),
        CameraConfig(
            name="demo_1",
            source="demo",
            fast=True,
            demo_seed=3,
            demo_size=32,
            demo_fps=12.0,
            smoothing=0.5,
            min_duration_s=0.0,
        ),
        CameraConfig(name="frames", source="frames/", folder_fps=30.0),
    ]
    assert isinstance(cameras[0].watchdog_s, float)  # an int in TOML, a float here
    assert check_cameras(cameras) == cameras


def camera_file_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    message = one_line_error(load_cameras_file, path)
    assert str(path) in message
    assert "hunter2" not in message
    return message


def test_a_missing_file(tmp_path):
    message = one_line_error(load_cameras_file, tmp_path / "nope.toml")
    assert "nope.toml not found" in message


def test_a_folder_instead_of_a_file(tmp_path):
    assert "is a folder" in one_line_error(load_cameras_file, tmp_path)


def test_invalid_toml_gives_its_line_and_column(tmp_path):
    message = camera_file_error(tmp_path, '[[camera]]\nname = "a"\nsource = \n')
    assert "not valid TOML" in message and "line 3" in message


def test_not_utf8(tmp_path):
    path = tmp_path / "cameras.toml"
    path.write_bytes(b'[[camera]]\nname = "\xff"\n')
    assert "UTF-8" in one_line_error(load_cameras_file, path)


@pytest.mark.parametrize("text", ["", "# nothing\n", "camera = []\n"])
def test_no_camera_table(tmp_path, text):
    assert "no [[camera]] table" in camera_file_error(tmp_path, text)


def test_a_single_table_instead_of_an_array(tmp_path):
    assert "not [camera]" in camera_file_error(tmp_path, '[camera]\nname = "a"\nsource = "demo"\n')


def test_camera_not_tables(tmp_path):
    assert "must be [[camera]] tables" in camera_file_error(tmp_path, 'camera = ["demo"]\n')


def test_an_unknown_top_level_key(tmp_path):
    message = camera_file_error(tmp_path, 'fps = 3\n[[camera]]\nname = "a"\nsource = "demo"\n')
    assert "unknown top-level key 'fps'" in message


def test_an_unknown_camera_key_lists_the_allowed_ones(tmp_path):
    text = '[[camera]]\nname = "a"\nsource = "demo"\n[[camera]]\nname = "b"\nsource = "demo"\nwatchdg = 3\n'
    message = camera_file_error(tmp_path, text)
    assert "camera #2 ('b')" in message and "unknown key 'watchdg'" in message
    assert "allowed: name, source, fast, watchdog," in message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('source = "demo"', "camera #1: no name"),
        ('name = "a"', "camera #1 ('a'): no source"),
        ('name = 3\nsource = "demo"', "name must be a string"),
        ('name = "a"\nsource = 5', "source must be a string"),
        ('name = "a"\nsource = " "', "source is empty"),
        ('name = "front door"\nsource = "demo"', "name 'front door' is not a valid camera name"),
        (f'name = "{"a" * 65}"\nsource = "demo"', "at most 64"),
    ],
)
def test_name_and_source_errors(tmp_path, body, expected):
    assert expected in camera_file_error(tmp_path, f"[[camera]]\n{body}\n")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('fast = "yes"', "fast must be true or false, not 'yes'"),
        ('watchdog = "5"', "watchdog must be a number, not '5'"),
        ("watchdog = true", "watchdog must be a number, not True"),
        ("watchdog = inf", "watchdog must be a finite number"),
        ("max_reconnects = 1.5", "max_reconnects must be a whole number, not 1.5"),
        ("demo_seed = false", "demo_seed must be a whole number, not False"),
        ("watchdog = 0", "watchdog = 0.0 must be in (0, 600] (seconds)"),
        ("open_timeout = -1", "open_timeout = -1.0 must be in (0, 600] (seconds)"),
        ("enter = 0", "enter = 0.0 must be in (0, 1]"),
        ("exit = 1.5", "exit = 1.5 must be in (0, 1]"),
        ("enter = 0.4\nexit = 0.6", "exit (0.6) must not be above enter (0.4)"),
        ("smoothing = 1", "smoothing = 1.0 must be in [0, 1)"),
        ("smoothing = -0.1", "smoothing = -0.1 must be in [0, 1)"),
        ("folder_fps = 0", "folder_fps = 0.0 must be in (0, 240] (frames a second)"),
        ("demo_fps = -2", "demo_fps = -2.0 must be in (0, 240] (frames a second)"),
        ("max_reconnects = -1", "max_reconnects = -1 must be in [0, 1000000]"),
        ("min_duration = -1", "min_duration = -1.0 must be in [0, 3600] (seconds)"),
        ("demo_size = 31", "demo_size = 31 must be in [32, 1024] (pixels)"),
        ("demo_size = 4096", "demo_size = 4096 must be in [32, 1024] (pixels)"),
    ],
)
def test_override_type_and_range_errors(tmp_path, line, expected):
    text = f'[[camera]]\nname = "cam7"\nsource = "{SECRET_URL}"\n{line}\n'
    message = camera_file_error(tmp_path, text)
    assert "camera #1 ('cam7')" in message
    assert expected in message


def test_duplicate_names_in_a_file(tmp_path):
    text = '[[camera]]\nname = "a"\nsource = "demo"\n[[camera]]\nname = "A"\nsource = "0"\n'
    message = camera_file_error(tmp_path, text)
    assert "camera #2 is named 'A' as camera #1 is" in message


@pytest.mark.parametrize(
    "line",
    ["enter = nan", "exit = -nan", "min_duration = inf", "smoothing = nan", "folder_fps = +inf",
     "demo_fps = nan", "open_timeout = inf", "watchdog = -inf"],
)  # fmt: skip
def test_nan_and_infinite_values_in_the_file_are_errors(tmp_path, line):
    text = f'[[camera]]\nname = "cam7"\nsource = "demo"\n{line}\n'
    message = camera_file_error(tmp_path, text)
    assert f"{line.split()[0]} must be a finite number" in message


def test_the_range_check_itself_rejects_nan_and_infinity():
    from stream.sources.cameras import _range_problem

    for key in ("watchdog", "enter", "exit", "smoothing", "min_duration", "folder_fps", "demo_fps"):
        for value in (float("nan"), float("inf"), float("-inf")):
            assert _range_problem(key, value) == "must be a finite number", (key, value)
    assert _range_problem("min_duration", 0.0) is None


def test_a_negative_demo_seed_is_an_error(tmp_path):
    message = camera_file_error(tmp_path, '[[camera]]\nname = "d"\nsource = "demo"\ndemo_seed = -1\n')
    assert "demo_seed = -1 must be in [0, 4294967295]" in message
