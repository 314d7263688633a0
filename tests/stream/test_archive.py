"""python -m stream.archive: a folder or list of videos through the recognizer, resumable, a corrupt video
reported and skipped; its events equal run_camera.py's on the same video."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from web_helpers import ROOT, write_demo_video

ARCHIVE = [sys.executable, "-m", "stream.archive"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return {**os.environ, "GLANET_CACHE_DIR": str(tmp_path_factory.mktemp("cache"))}


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    """Four 6-second SynthActions videos (two in a subfolder) and a corrupt one."""
    folder = tmp_path_factory.mktemp("footage")
    (folder / "day2").mkdir()
    for i, rel in enumerate(["cam1.mp4", "cam2.mp4", "day2/cam1.mp4", "day2/cam10.mp4"]):
        write_demo_video(folder / rel, 6, seed=20 + i)
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
    return folder


def archive(*args, env, timeout=300):
    return subprocess.run(
        [*ARCHIVE, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout
    )


def no_time(events):
    return [{k: v for k, v in e.items() if k != "time"} for e in events]


def read_events(path: Path):
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.mark.timeout(600)
def test_a_folder_gives_results_per_video_and_skips_a_corrupt_one(footage, tmp_path, env):
    out = tmp_path / "results"
    proc = archive("--videos", str(footage), "--out", str(out), "--no-progress", env=env)
    assert proc.returncode == 1, proc.stderr  # one video failed
    assert "Traceback" not in proc.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["broken", "cam1", "cam2", "day2__cam1", "day2__cam10"]
    assert json.loads((out / "broken" / "failed.json").read_text())["error"]
    assert any("broken.mp4" in line and "skipped" in line for line in proc.stderr.splitlines())
    for name in names[1:]:
        done = json.loads((out / name / "done.json").read_text())
        assert done["frames"] == 90 and done["seconds"] == pytest.approx(6.0)
        rows = list(csv.reader((out / name / "predictions.csv").open()))
        assert rows[0][:4] == ["second", "top1", "confidence", "predictions"] and len(rows[0]) == 4 + 12
        assert [int(r[0]) for r in rows[1:]] == list(range(6))
        assert all(abs(sum(float(x) for x in r[4:]) - 1) < 1e-2 for r in rows[1:])
    assert "4 videos done, 1 failed" in proc.stderr
    # run again: nothing to do but the failed one, which fails again (it is still broken)
    again = archive("--videos", str(footage), "--out", str(out), "--no-progress", env=env)
    assert "4 of 5 videos already done" in again.stderr and again.returncode == 1


@pytest.mark.timeout(300)
def test_its_events_are_run_camera_s(tmp_path, env):
    video = write_demo_video(tmp_path / "cam2.mp4", 20, seed=5)  # several actions, so several events
    listing = tmp_path / "one.txt"
    listing.write_text(f"# one video\n{video}\n")
    out = tmp_path / "results"
    proc = archive("--videos", str(listing), "--out", str(out), "--no-progress", env=env)
    assert proc.returncode == 0, proc.stderr
    events = tmp_path / "run_camera.jsonl"
    live = subprocess.run(
        [sys.executable, "run_camera.py", "--source", f"cam2={video}", "--fast", "--headless",
         "--no-dashboard", "--events", str(events)],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=200,
    )  # fmt: skip
    assert live.returncode == 0, live.stderr
    expected = no_time(read_events(events))
    assert expected, "the video fired no event"
    assert no_time(read_events(out / "cam2" / "events.jsonl")) == expected


@pytest.mark.timeout(600)
def test_a_killed_run_resumes_and_redoes_the_half_written_video(footage, tmp_path, env):
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(str(footage / r) for r in ["cam1.mp4", "cam2.mp4", "day2/cam1.mp4"]) + "\n")
    out = tmp_path / "results"
    proc = subprocess.Popen(
        [*ARCHIVE, "--videos", str(listing), "--out", str(out), "--batch", "1", "--no-progress"],
        cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 200
    while not (out / "cam1" / "done.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    stamp = (out / "cam1" / "done.json").stat().st_mtime_ns
    done_before = sorted(p.parent.name for p in out.glob("*/done.json"))
    assert len(done_before) < 3
    again = archive("--videos", str(listing), "--out", str(out), "--no-progress", env=env)
    assert again.returncode == 0, again.stderr
    assert f"{len(done_before)} of 3 videos already done" in again.stderr
    assert (out / "cam1" / "done.json").stat().st_mtime_ns == stamp  # not redone
    assert sorted(p.parent.name for p in out.glob("*/done.json")) == ["cam1", "cam2", "day2__cam1"]


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda d: d / "missing", "not found"),
        (lambda d: d, "no video in it"),
    ],
)
def test_bad_videos_are_one_line(tmp_path, env, make, needle):
    proc = archive("--videos", str(make(tmp_path)), "--out", str(tmp_path / "out"), env=env, timeout=60)
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and needle in lines[0], proc.stderr
