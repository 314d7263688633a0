"""python -m stream.cli.archive: a folder or list of videos through the recognizer, resumable, a corrupt video
reported and skipped; its events equal run_camera.py's on the same video."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from web_helpers import ROOT, write_demo_video

ARCHIVE = [sys.executable, "-m", "stream.cli.archive"]


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


def no_time(events, also=()):
    return [{k: v for k, v in e.items() if k not in ("time", *also)} for e in events]


def read_events(path: Path):
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.mark.timeout(600)
def test_a_folder_gives_results_per_video_and_skips_a_corrupt_one(footage, tmp_path, env):
    out = tmp_path / "results"
    proc = archive("--videos", str(footage), "--out", str(out), "--no-progress", env=env)
    assert proc.returncode == 1, proc.stderr  # one video failed
    assert "Traceback" not in proc.stderr
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert names == ["broken", "cam1", "cam2", "day2__cam1", "day2__cam10"]
    assert sorted(p.name for p in out.iterdir() if not p.is_dir()) == ["index.html", "summary.csv"]
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
    # the report: a row per video, in the folders' natural order (cam1 before cam10); its pictures exist
    rows = list(csv.DictReader((out / "summary.csv").open(newline="")))
    assert [r["video"] for r in rows] == names
    assert [r["status"] for r in rows] == ["failed", "done", "done", "done", "done"]
    assert all(float(r["duration_s"]) == pytest.approx(6.0) and r["frames"] == "90" for r in rows[1:])
    assert all(r["model"] == "glanet_synthactions_demo.pt" and r["top_action"] for r in rows[1:])
    for r in rows[1:]:
        starts = sum(json.loads(x)["event"] == "start" for x in (out / r["video"] / "events.jsonl").open())
        assert int(r["events"]) == starts == sum(int(v) for k, v in r.items() if k.startswith("events:"))
    page = (out / "index.html").read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert sorted(sources) == [f"{n}/timeline.png" for n in names[1:]]
    assert all((out / s).is_file() for s in sources)
    HTMLParser().feed(page)
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
    archived = read_events(out / "cam2" / "events.jsonl")
    assert no_time(archived, also=("video_s", "recorded_at")) == expected  # run_camera.py's keys, kept
    assert [e["video_s"] for e in archived] == [e["end_ts"] or e["start_ts"] for e in expected]


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


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line(proc, needle: str) -> str:
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and needle in lines[0], proc.stderr
    return lines[0]


@pytest.mark.timeout(600)
def test_the_users_files_survive_every_run(tmp_path, env):
    """The archive's attacks on the user's folders, one after another, each refused or harmless."""
    videos, out = tmp_path / "v", tmp_path / "out"
    (videos / "cam").mkdir(parents=True)
    write_demo_video(videos / "notes.mp4", 2, seed=3)
    write_demo_video(videos / "cam.mp4", 3, seed=4)
    write_demo_video(videos / "cam" / "old.mp4", 2, seed=5)  # a source in a folder named as a result
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "todo.txt").write_text("x")  # the user's folder where notes.mp4's results would go
    (out / "mine").mkdir()
    (out / "mine" / "a.txt").write_text("keep")
    sources, users = files_under(videos), files_under(out)

    # a results folder of the user's in the way: refused before any work, nothing written
    line = one_line(archive("--videos", str(videos), "--out", str(out), env=env, timeout=60), "notes exists")
    assert "not written by the archive" in line
    # --out where the sources are (v/cam.mp4's results would be v/cam/, which holds old.mp4) or below them
    one_line(archive("--videos", str(videos), "--out", str(videos), env=env, timeout=60), "inside --videos")
    one_line(
        archive("--videos", str(videos), "--out", str(videos / "res"), env=env, timeout=60), "inside --videos"
    )
    # a list whose video lies in --out
    listing = tmp_path / "list.txt"
    listing.write_text(f"{videos / 'cam.mp4'}\n{videos / 'cam' / 'old.mp4'}\n")
    one_line(archive("--videos", str(listing), "--out", str(videos), env=env, timeout=60), "holds the video")
    assert files_under(videos) == sources and files_under(out) == users

    # the way cleared; a FIFO, a link to /dev/zero and a broken link beside the videos: one line each
    (videos / "notes.mp4").rename(tmp_path / "notes.mp4")
    os.mkfifo(videos / "pipe.mp4")
    (videos / "zero.mp4").symlink_to("/dev/zero")
    (videos / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")
    proc = archive("--videos", str(videos), "--out", str(out), "--no-progress", env=env)
    assert proc.returncode == 1, proc.stderr  # something was skipped
    assert "Traceback" not in proc.stderr
    for name, why in [
        ("pipe.mp4", "a FIFO"),
        ("zero.mp4", "a character device"),
        ("gone.mp4", "broken link"),
    ]:
        assert sum(name in x and why in x and "skipped" in x for x in proc.stderr.splitlines()) == 1, name
    assert "2 videos done, 0 failed, 3 skipped" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "cam", "cam__old", "index.html", "mine", "notes", "summary.csv"
    ]  # fmt: skip
    after = files_under(out)
    assert {k: v for k, v in after.items() if k in users} == users

    # the same run again: nothing redone; then cam.mp4 replaced by a file of the same size and time
    stamps = {n: (out / n / "done.json").stat().st_mtime_ns for n in ("cam", "cam__old")}
    again = archive("--videos", str(videos), "--out", str(out), "--no-progress", env=env)
    assert "2 of 2 videos already done" in again.stderr, again.stderr
    video = videos / "cam.mp4"
    data, st = bytearray(video.read_bytes()), video.stat()
    data[len(data) // 2] ^= 0x01  # inside its frames
    video.write_bytes(data)
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns))
    redo = archive("--videos", str(videos), "--out", str(out), "--no-progress", env=env)
    assert "1 of 2 videos already done" in redo.stderr, redo.stderr
    assert (out / "cam" / "done.json").stat().st_mtime_ns != stamps["cam"]
    assert (out / "cam__old" / "done.json").stat().st_mtime_ns == stamps["cam__old"]
    assert {k: v for k, v in files_under(out).items() if k in users} == users
    assert not [p for p in out.iterdir() if p.name.startswith(".glanet-staging")]


@pytest.mark.timeout(600)
def test_results_made_with_other_settings_are_redone_and_force_redoes_all(tmp_path, env):
    """done.json records what the results were made with; a rerun with another model or other thresholds
    redoes the videos, saying why in one line, and --force redoes every one."""
    videos, out = tmp_path / "v", tmp_path / "out"
    videos.mkdir()
    for i in range(2):
        write_demo_video(videos / f"cam{i}.mp4", 3, seed=40 + i)
    first = archive("--videos", str(videos), "--out", str(out), "--no-progress", env=env)
    assert first.returncode == 0, first.stderr
    made = json.loads((out / "cam0" / "done.json").read_text())
    assert made["settings"]["events"] == {"enter": 0.6, "exit": 0.4, "min_duration": 0.5}
    assert made["settings"]["model"]["checkpoint_digest"] and made["settings"]["glanet"]
    assert len(made["classes"]) == 12

    def rerun(*more):
        proc = archive("--videos", str(videos), "--out", str(out), "--no-progress", *more, env=env)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        return proc.stderr

    assert "2 of 2 videos already done" in rerun()
    said = rerun("--enter", "0.9")
    assert "2 videos redone: event thresholds changed" in said and "already done" not in said
    assert json.loads((out / "cam1" / "done.json").read_text())["settings"]["events"]["enter"] == 0.9
    said = rerun("--enter", "0.9", "--checkpoint", str(ROOT / "models" / "smnet_synthactions_demo.pt"))
    assert "2 videos redone: model changed" in said
    said = rerun(
        "--enter", "0.9", "--checkpoint", str(ROOT / "models" / "smnet_synthactions_demo.pt"), "--force"
    )
    assert "already done" not in said and "redone" not in said
    assert "2 videos done" in said
