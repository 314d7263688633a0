"""run_camera.py's checks before the model loads: every numeric flag, the device's spelling, the cameras, the
model files and the outputs (writable, none of them an input), in process through `run_camera.validate`,
and, in a subprocess, that all of it runs without importing torch and answers in well under the seconds
torch takes to import."""

from __future__ import annotations

import errno
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engines.errors import EngineError
from stream.errors import SinkError, SourceError, StreamError
from stream.runtime.events import EventConfig
from stream.runtime.model import DEFAULT_CHECKPOINT, check_cuda_device

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from run_camera import parse_args  # noqa: E402
from stream.cli.checks import UsageError, validate  # noqa: E402

pytestmark = pytest.mark.timeout(60)

CLI = [sys.executable, str(ROOT / "run_camera.py")]


def problem(*argv: str | Path, kind: type[Exception] | tuple[type[Exception], ...] = Exception) -> str:
    """The one-line error that validate() raises for these arguments."""
    with pytest.raises((UsageError, StreamError, SinkError, EngineError)) as info:
        validate(parse_args([str(a) for a in argv]))
    assert isinstance(info.value, kind), repr(info.value)
    text = str(info.value)
    assert "\n" not in text
    return text


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """A file that stands for a video: validate() only parses sources, it never opens them."""
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"not opened")
    return path


@pytest.fixture
def read_only_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder nothing can be written in: chmod 500, or where that does not stop us (root), os.open
    refusing to write there as a read-only folder would."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o500)
        yield folder
        folder.chmod(0o700)
        return
    real_open = os.open

    def guarded(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        writes = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        if writes and Path(os.path.abspath(path)).is_relative_to(folder):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded)
    yield folder


# --- numbers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--threads", "0", "must be at least 1"),
        ("--folder-fps", "0", "must be in (0, 240]"),
        ("--folder-fps", "nan", "finite"),
        ("--folder-fps", "inf", "finite"),
        ("--demo-size", "31", "must be in [32, 1024] (pixels)"),
        ("--demo-size", "4096", "must be in [32, 1024] (pixels)"),
        ("--demo-fps", "0", "(0, 240]"),
        ("--demo-fps", "-inf", "finite"),
        ("--demo-seed", "-1", "[0, 4294967295]"),
        ("--min-duration", "-0.1", "[0, 3600] (seconds)"),
        ("--min-duration", "inf", "finite"),
        ("--min-duration", "nan", "finite"),
        ("--enter", "0", "(0, 1]"),
        ("--enter", "1.5", "(0, 1]"),
        ("--enter", "nan", "finite"),
        ("--exit", "nan", "finite"),
        ("--exit", "-0.2", "(0, 1]"),
        ("--smoothing", "1", "[0, 1)"),
        ("--smoothing", "-0.1", "[0, 1)"),
        ("--smoothing", "nan", "finite"),
        ("--watchdog", "0", "(0, 600] (seconds)"),
        ("--watchdog", "1e12", "(0, 600] (seconds)"),
        ("--watchdog", "inf", "finite"),
        ("--open-timeout", "-1", "(0, 600] (seconds)"),
        ("--open-timeout", "1e10", "(0, 600] (seconds)"),
        ("--open-timeout", "nan", "finite"),
        ("--max-frames", "0", "at least 1"),
        ("--duration", "0", "above 0"),
        ("--duration", "nan", "finite"),
        ("--max-reconnects", "-1", "[0, 1000000]"),
    ],
)
def test_a_bad_number_is_one_line_naming_its_flag(flag, value, needle):
    line = problem(f"{flag}={value}", kind=UsageError)  # "=": argparse reads -inf as a flag otherwise
    assert line.startswith(f"{flag} ") and needle in line


def test_exit_above_enter_names_both():
    line = problem("--enter", "0.5", "--exit", "0.7", kind=UsageError)
    assert "--exit 0.7" in line and "--enter 0.5" in line


def test_the_edges_of_each_range_pass():
    checked = validate(parse_args(
        ["--threads", "1", "--demo-size", "32", "--min-duration", "0", "--enter", "1", "--exit", "1",
         "--smoothing", "0", "--max-reconnects", "0", "--max-frames", "1", "--demo-seed", "0"]
    ))  # fmt: skip
    assert [c.source for c in checked.cameras] == ["demo"]


# --- device, attention -----------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["banana", "gpu0", "cuda:", "cuda:x", "CPU", "cuda 0"])
def test_a_device_that_is_not_cpu_or_cuda_fails_before_loading(device):
    assert "--device" in problem("--device", device, kind=UsageError)


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:0", "cuda:3"])
def test_cpu_cuda_and_cuda_n_are_accepted_before_loading(device):
    validate(parse_args(["--device", device]))


def test_cuda_without_a_cuda_device_is_one_line(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"--device cuda: no CUDA device"):
        check_cuda_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"--device cuda:3: there is no CUDA device 3"):
        check_cuda_device("cuda:3")
    check_cuda_device("cuda:0")
    check_cuda_device("cpu")


def test_an_unknown_attention_map_fails_before_loading():
    assert "--attention 'heat'" in problem("--attention", "heat", kind=UsageError)


# --- event thresholds ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("enter", "exit_", "min_duration"),
    [(math.nan, 0.4, 0.5), (0.6, math.nan, 0.5), (0.6, 0.4, math.nan), (0.6, 0.4, math.inf), (0.6, 0.4, -1)],
)
def test_event_config_rejects_nan_and_infinite_values(enter, exit_, min_duration):
    with pytest.raises(ValueError):
        EventConfig(enter, exit_, min_duration)


def test_a_camera_whose_enter_falls_under_the_command_lines_exit_is_one_line(tmp_path):
    cams = tmp_path / "cams.toml"
    cams.write_text('[[camera]]\nname = "door"\nsource = "demo"\nenter = 0.3\n')
    line = problem("--sources", cams, "--exit", "0.4", kind=UsageError)
    assert "camera 'door'" in line and "exit (0.4)" in line


# --- cameras and model files -----------------------------------------------------------------------------


def test_a_missing_source_fails_before_loading(tmp_path):
    assert "nope.mp4" in problem("--source", tmp_path / "nope.mp4", kind=SourceError)


def test_a_bad_sources_file_value_fails_before_loading(tmp_path):
    cams = tmp_path / "cams.toml"
    cams.write_text('[[camera]]\nname = "a"\nsource = "demo"\nwatchdog = nan\n')
    line = problem("--sources", cams, kind=SourceError)
    assert "watchdog" in line and "finite" in line


# a device index no machine has: /dev/video987 (the fast path's check is on the real /dev)
ABSENT = 987
linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="webcams are /dev/video<N> on Linux"
)


@pytest.fixture
def no_video_capture(monkeypatch):
    """cv2.VideoCapture made to fail the test: the fast path must not reach OpenCV's backends."""
    import cv2

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError(f"cv2.VideoCapture{args} was constructed: the fast path was not taken")

    monkeypatch.setattr(cv2, "VideoCapture", refuse)


@linux_only
@pytest.mark.parametrize("given", [str(ABSENT), f"cam={ABSENT}"])
def test_a_missing_webcam_fails_before_loading_without_asking_opencv(given, no_video_capture):
    line = problem("--source", given, kind=SourceError)
    assert line.endswith(
        f"no webcam {ABSENT}: /dev/video{ABSENT} does not exist (no camera on this machine?)"
    )


@linux_only
def test_webcam_is_index_0_and_checked_the_same_way(monkeypatch, no_video_capture):
    from stream.sources import readers

    asked = []
    monkeypatch.setattr(readers, "missing_webcam", lambda index: asked.append(index) or f"no webcam {index}")
    assert problem("--source", "webcam", kind=SourceError) == "no webcam 0"
    assert asked == [0]


@linux_only
def test_several_missing_webcams_are_one_line_naming_each(no_video_capture):
    line = problem("--source", f"front={ABSENT}", "--source", f"back={ABSENT + 1}", kind=SourceError)
    assert f"camera 'front': no webcam {ABSENT}" in line and f"camera 'back': no webcam {ABSENT + 1}" in line


@linux_only
@pytest.mark.parametrize(
    "extra",
    [["--source", "demo"], ["--serve", "0"], ["--cluster", "local:1"]],
    ids=["another camera", "web view", "cluster"],
)
def test_a_missing_webcam_is_the_runs_own_business_where_the_run_goes_on(extra, no_video_capture):
    """Beside another camera (which runs on), with the web view (which takes cameras over the API), or on a
    cluster (whose nodes have cameras of their own) it fails as a camera of the run does, when it opens."""
    checked = validate(parse_args(["--source", str(ABSENT), *extra]))
    assert any(c.source == str(ABSENT) for c in checked.cameras)


@linux_only
def test_a_missing_webcam_on_the_command_line_is_one_line_before_torch():
    code = (
        "import sys\n"
        "import run_camera\n"
        f"rc = run_camera.main(['--source', '{ABSENT}', '--headless'])\n"
        "print('rc', rc, 'torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.stdout.split() == ["rc", "1", "False"], proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [
        f"glanet: no webcam {ABSENT}: /dev/video{ABSENT} does not exist (no camera on this machine?)"
    ]


def test_the_webcam_check_leaves_macos_and_windows_to_opencv():
    from stream.sources.readers import missing_webcam

    assert missing_webcam(ABSENT, platform="darwin") is None
    assert missing_webcam(ABSENT, platform="win32") is None


def test_a_file_that_is_not_a_checkpoint_says_so_in_one_line():
    proc = subprocess.run(
        [*CLI, "--checkpoint", str(ROOT / "README.md"), "--headless", "--max-frames", "1"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and "README.md: not a glanet checkpoint: it is a text file" in lines[0], (
        proc.stderr
    )
    assert "pickled" not in lines[0]


def test_a_missing_checkpoint_or_export_folder_fails_before_loading(tmp_path, clip):
    assert "checkpoint not found" in problem("--checkpoint", tmp_path / "gone.pt", kind=UsageError)
    assert "is a folder" in problem("--checkpoint", tmp_path, kind=UsageError)
    line = problem("--engine", tmp_path / "export", kind=EngineError)
    assert "export directory not found" in line
    assert "not a file" in problem("--engine", clip, kind=EngineError)


# --- an output that is an input --------------------------------------------------------------------------


def test_save_over_the_source_video_is_refused_naming_both(clip):
    line = problem("--source", clip, "--save", clip, kind=UsageError)
    assert line.count(str(clip)) == 2 and "--save" in line and "--source" in line


def test_the_same_file_by_another_path_or_a_link_is_refused(tmp_path, clip, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    assert "would write over the input" in problem("--source", "clip.mp4", "--save", "sub/../clip.mp4")
    link = tmp_path / "link.mp4"
    link.symlink_to(clip)
    assert "would write over the input" in problem("--source", clip, "--save", link, kind=UsageError)


def test_save_on_a_frame_folder_source_is_refused(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    line = problem("--source", frames, "--save", frames, kind=UsageError)
    assert "--save" in line and "--source" in line


def test_several_cameras_saving_over_one_of_their_videos_is_refused(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "front.mp4").write_bytes(b"x")
    line = problem(
        "--source",
        f"front={videos / 'front.mp4'}",
        "--source",
        "back=demo",
        "--save",
        videos,
        kind=UsageError,
    )
    assert "camera 'front' writes" in line and "--source front=" in line


def test_events_or_summary_over_an_input_file_is_refused(tmp_path):
    cams = tmp_path / "cams.toml"
    cams.write_text('[[camera]]\nname = "a"\nsource = "demo"\n')
    line = problem("--sources", cams, "--events", cams, kind=UsageError)
    assert f"--events {cams}" in line and f"--sources {cams}" in line
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"weights")
    line = problem("--checkpoint", ckpt, "--summary-json", ckpt, kind=UsageError)
    assert "--summary-json" in line and "--checkpoint" in line
    line = problem("--summary-json", DEFAULT_CHECKPOINT, kind=UsageError)
    assert "default checkpoint" in line


def test_two_outputs_on_one_file_are_refused(tmp_path):
    out = tmp_path / "out.json"
    line = problem("--events", out, "--summary-json", out, kind=UsageError)
    assert "--events" in line and "--summary-json" in line and "same file" in line


# --- outputs that cannot be written ----------------------------------------------------------------------


def test_save_problems_each_have_their_own_line(tmp_path, read_only_dir):
    assert "does not exist" in problem("--save", tmp_path / "no" / "out.mp4", kind=SinkError)
    assert "is a folder" in problem("--save", tmp_path, kind=SinkError)
    line = problem("--save", read_only_dir / "out.mp4", kind=SinkError)
    assert "cannot write video" in line and "ermission denied" in line


def test_save_with_several_cameras_needs_a_writable_folder(tmp_path, read_only_dir):
    two = ["--source", "a=demo", "--source", "b=demo"]
    assert "give a folder" in problem(*two, "--save", tmp_path / "out.mp4", kind=SinkError)
    a_file = tmp_path / "videos"
    a_file.write_text("x")
    assert "is a file" in problem(*two, "--save", a_file, kind=SinkError)
    line = problem(*two, "--save", read_only_dir / "videos", kind=SinkError)
    assert "cannot write videos into" in line and "ermission denied" in line


def test_events_and_summary_problems_fail_before_loading(tmp_path, read_only_dir):
    assert "does not exist" in problem("--events", tmp_path / "no" / "e.jsonl", kind=SinkError)
    assert "is a folder" in problem("--events", tmp_path, kind=SinkError)
    line = problem("--events", read_only_dir / "e.jsonl", kind=SinkError)
    assert "cannot write event log" in line and "ermission denied" in line
    assert "does not exist" in problem("--summary-json", tmp_path / "no" / "s.json", kind=SinkError)
    line = problem("--summary-json", read_only_dir / "s.json", kind=SinkError)
    assert "cannot write summary" in line and "ermission denied" in line


def test_checking_the_outputs_leaves_nothing_behind(tmp_path, clip):
    events, summary, video = tmp_path / "e.jsonl", tmp_path / "s.json", tmp_path / "out.mp4"
    before = sorted(tmp_path.iterdir())
    validate(parse_args(["--source", str(clip), "--save", str(video), "--events", str(events),
                         "--summary-json", str(summary)]))  # fmt: skip
    validate(parse_args(["--source", "a=demo", "--source", "b=demo", "--save", str(tmp_path / "videos")]))
    assert sorted(tmp_path.iterdir()) == before


def test_an_existing_event_log_is_kept_as_it_is(tmp_path):
    events = tmp_path / "e.jsonl"
    events.write_text('{"event": "start"}\n')
    validate(parse_args(["--events", str(events)]))
    assert events.read_text() == '{"event": "start"}\n'


# --- no torch, and fast ----------------------------------------------------------------------------------


def test_validation_imports_neither_torch_nor_openvino(tmp_path, clip):
    cams = tmp_path / "cams.toml"
    cams.write_text(f'[[camera]]\nname = "file"\nsource = "{clip}"\nenter = 0.7\n')
    argv = ["--source", "front=demo", "--sources", str(cams), "--save", str(tmp_path / "videos"),
            "--events", str(tmp_path / "e.jsonl"), "--summary-json", str(tmp_path / "s.json"),
            "--device", "cuda:1", "--threads", "2"]  # fmt: skip
    code = (
        "import json, sys\n"
        "import run_camera\n"
        f"checked = run_camera.validate(run_camera.parse_args({argv!r}))\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'openvino', 'torchvision'))\n"
        "print(json.dumps({'cameras': [c.name for c in checked.cameras], 'heavy': heavy}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out == {"cameras": ["front", "file"], "heavy": []}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--threads", "0"], "--threads 0"),
        (["--device", "banana"], "--device 'banana'"),
        (["--save", "/nonexistent-folder/out.mp4"], "/nonexistent-folder does not exist"),
    ],
)
def test_a_bad_value_on_the_command_line_fails_in_well_under_torchs_import_time(args, needle):
    t0 = time.monotonic()
    proc = subprocess.run([*CLI, *args, "--headless"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    elapsed = time.monotonic() - t0
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("glanet: ") and needle in lines[0], proc.stderr
    assert elapsed < 2.5, f"{elapsed:.1f} s: the error should come before torch is imported"
