"""run_camera.py end to end, as a user runs it: the demo, a file played --fast, stops by signal, and every bad
input as one line on stderr with a non-zero exit code."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, str(ROOT / "run_camera.py")]


@pytest.fixture(scope="module", autouse=True)
def _private_engine_cache(tmp_path_factory):
    """The auto backend (OpenVINO here) exports the demo model once into this cache, not the user's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("GLANET_CACHE_DIR", str(tmp_path_factory.mktemp("engine_cache")))
    yield
    mp.undo()


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def count_frames(path: Path) -> tuple[int, tuple[int, int]]:
    cap = cv2.VideoCapture(str(path))
    n, size = 0, (0, 0)
    while True:
        ok, image = cap.read()
        if not ok:
            break
        n, size = n + 1, image.shape[:2]
    cap.release()
    return n, size


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("glanet: ")
    return lines[0]


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """50 frames at 25 fps of a moving square: a small real mp4."""
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (160, 120))
    for i in range(50):
        image = np.full((120, 160, 3), 40, np.uint8)
        cv2.rectangle(image, (10 + 2 * i, 30), (40 + 2 * i, 90), (255, 255, 255), -1)
        out.write(image)
    out.release()
    return path


@pytest.mark.timeout(180)
def test_demo_runs_headless_with_saved_video_and_events(tmp_path):
    save, events = tmp_path / "demo.mp4", tmp_path / "events.jsonl"
    proc = run("--source", "demo", "--fast", "--headless", "--max-frames", "90", "--save", str(save),
               "--events", str(events), "--no-dashboard")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "max frames reached: 90 frames" in proc.stderr
    assert "backend openvino" in proc.stderr  # auto: no CUDA here, OpenVINO is installed
    n, (h, w) = count_frames(save)
    assert n == 90 and h >= 224 and w >= 224
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert lines, "the demo should fire at least one event in 6 s of actions"
    assert {"event", "label", "start_ts", "end_ts", "peak", "source"} <= set(lines[0])
    assert lines[-1]["event"] == "end"  # the open event is closed when the run stops


@pytest.mark.timeout(180)
def test_file_fast_yields_every_frame_once_and_ends_cleanly(tmp_path, video):
    save = tmp_path / "out.mp4"
    proc = run("--source", str(video), "--fast", "--headless", "--save", str(save), "--no-dashboard")
    assert proc.returncode == 0, proc.stderr
    assert "end of stream: 50 frames" in proc.stderr
    n, _ = count_frames(save)
    assert n == 50


@pytest.mark.timeout(120)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_at_once_keeps_the_video_and_closes_the_open_event(tmp_path, signum):
    save, events = tmp_path / "live.mp4", tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [*CLI, "--source", "demo", "--headless", "--save", str(save), "--events", str(events),
         "--no-dashboard"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip

    def lines() -> list[dict]:
        return [json.loads(x) for x in events.read_text().splitlines()] if events.exists() else []

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not (lines() and lines()[-1]["event"] == "start"):
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.05)
    assert lines() and lines()[-1]["event"] == "start", "no event started within 90 s"
    t0 = time.monotonic()
    proc.send_signal(signum)  # while that event is open
    _, err = proc.communicate(timeout=20)
    assert time.monotonic() - t0 < 5
    assert proc.returncode == 0, err
    assert f"stopped by {signal.Signals(signum).name}" in err
    n, _ = count_frames(save)
    assert n > 0  # finalised: readable
    kinds = [e["event"] for e in lines()]
    assert kinds == ["start", "end"] * (len(kinds) // 2), kinds  # the open event got its end line
    assert all(e["camera"] == "demo" for e in lines())  # a lone source is named after itself


def _read_pty(fd: int, until: bytes | None, timeout: float) -> bytes:
    """What the child wrote to the terminal `fd`: up to `until`, or all of it (until it closes)."""
    out, deadline = b"", time.monotonic() + timeout
    while (until is None or until not in out) and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child is gone and the terminal closed
            break
        if not chunk:
            break
        out += chunk
    return out


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("signum", "last", "code"),
    [(signal.SIGINT, "glanet: interrupted", 130), (signal.SIGTERM, "glanet: stopped by SIGTERM", 143)],
)
def test_a_signal_while_the_model_loads_is_one_clean_line(signum, last, code):
    # stderr on a terminal: a person waits, so the run says it is loading the model (never on a pipe)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*CLI, "--source", "demo", "--headless", "--no-dashboard"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, cwd=ROOT,
    )  # fmt: skip
    os.close(slave)
    try:
        seen = _read_pty(master, b"loading model", 30)
        assert b"glanet: loading model" in seen, seen
        time.sleep(0.5)  # importing torch and loading the model take seconds
        proc.send_signal(signum)
        proc.wait(timeout=30)
        seen += _read_pty(master, None, 10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    text = seen.decode(errors="replace").replace("\r", "")
    lines = [line for line in text.splitlines() if line.strip()]
    assert proc.returncode == code, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    assert len(lines) == 2 and lines[0].startswith("glanet: loading model") and lines[1] == last, text


@pytest.mark.timeout(180)
@pytest.mark.parametrize("backend", ["torch", "openvino"])
def test_each_cpu_backend_runs_the_stream(tmp_path, backend):
    proc = run("--source", "demo", "--fast", "--headless", "--max-frames", "24", "--backend", backend,
               "--no-dashboard")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"backend {backend}" in proc.stderr and "12 predictions" in proc.stderr


@pytest.mark.timeout(120)
def test_a_gpu_backend_here_is_one_line():
    line = one_line_error(run("--backend", "tensorrt", "--headless"))
    assert "no CUDA device" in line


@pytest.mark.timeout(120)
def test_missing_file_is_one_line(tmp_path):
    line = one_line_error(run("--source", str(tmp_path / "nope.mp4"), "--headless"))
    assert "nope.mp4" in line


@pytest.mark.timeout(120)
def test_corrupt_video_is_one_line(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video\n" * 100)
    line = one_line_error(run("--source", str(bad), "--headless", "--no-dashboard"))
    assert "bad.mp4" in line


@pytest.mark.timeout(120)
def test_no_webcam_is_one_line():
    line = one_line_error(run("--source", "7", "--headless", "--no-dashboard"))
    assert "webcam 7" in line


@pytest.mark.timeout(120)
def test_unreachable_rtsp_is_one_line_without_credentials():
    proc = run("--source", "rtsp://admin:hunter2@127.0.0.1:1/stream", "--open-timeout", "2", "--headless",
               "--no-dashboard")  # fmt: skip
    line = one_line_error(proc)
    assert "127.0.0.1" in line and "hunter2" not in proc.stderr + proc.stdout


@pytest.mark.timeout(120)
def test_a_file_that_is_not_a_checkpoint_is_one_line(tmp_path):
    not_ckpt = tmp_path / "model.pt"
    not_ckpt.write_text("hello")
    line = one_line_error(run("--checkpoint", str(not_ckpt), "--headless"))
    assert "model.pt" in line
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}, "arch": "smnet"}, other)
    one_line_error(run("--checkpoint", str(other), "--headless"))
    one_line_error(run("--checkpoint", str(tmp_path / "missing.pt"), "--headless"))


# -- many cameras -----------------------------------------------------------------------------------------


def test_two_named_cameras_save_a_video_each_and_a_summary(tmp_path, video):
    out, summary = tmp_path / "videos", tmp_path / "summary.json"
    proc = run(
        "--source", f"one={video}", "--source", f"two={video}", "--fast", "--headless", "--no-dashboard",
        "--save", str(out), "--summary-json", str(summary), "--backend", "torch",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(summary.read_text())
    assert set(data["cameras"]) == {"one", "two"}
    for name in ("one", "two"):
        cam = data["cameras"][name]
        assert cam["frames"] == 50 and cam["saved_frames"] == 50 and cam["reason"] == "end of stream"
        assert count_frames(out / f"{name}.mp4")[0] == 50
    assert "2 cameras" in proc.stderr.splitlines()[-1]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--source", "a=demo", "--source", "a=demo"], "given twice"),
        (["--source", "bad name!=demo"], "source not found"),
        (["--sources", "missing.toml"], "missing.toml"),
    ],
)
def test_bad_cameras_are_one_line(args, needle):
    assert needle in one_line_error(run(*args, "--headless", "--max-frames", "1"))


def test_a_bad_sources_file_is_one_line(tmp_path):
    cams = tmp_path / "cams.toml"
    cams.write_text('[[camera]]\nname = "a"\nsource = "demo"\nwatchdg = 3\n')
    line = one_line_error(run("--sources", str(cams), "--headless"))
    assert "watchdg" in line and "cams.toml" in line


def test_a_display_with_no_x_server_falls_back_to_headless(tmp_path, video):
    env = {**os.environ, "DISPLAY": ":93", "GLANET_CACHE_DIR": os.environ.get("GLANET_CACHE_DIR", "")}
    args = ["--source", str(video), "--fast", "--no-dashboard", "--backend", "torch", "--max-frames", "10"]
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "no window" in line]
    assert len(warnings) == 1 and ":93" in warnings[0]
