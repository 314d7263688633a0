"""The archive's events on the video's own clock, and its report (stream/sinks/report.py, timeline.py): a
summary.csv with a row per video, an index.html that parses, shows only pictures that exist by relative
links, and escapes every name, and a report file of the user's never replaced."""

from __future__ import annotations

import csv
import datetime
import json
import os
import subprocess
import sys
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import av
import numpy as np
import pytest
from web_helpers import ROOT, write_demo_video

from glanet.data.synth_render import CLASSES, render_frames
from stream.cli.video_time import parse_start, with_video_time
from stream.runtime.events import EventConfig, EventDetector
from stream.sinks.report import GENERATOR, INDEX, SUMMARY, check_report_destinations, write_report
from stream.sinks.results import DONE, MARKER, TIMELINE, ResultsError
from stream.sinks.timeline import actions, draw_timeline, write_timeline

ARCHIVE = [sys.executable, "-m", "stream.cli.archive"]
HOSTILE = "<img src=x onerror=alert(1)>"
MODEL_STEP_S = 1 / 7.5  # the demo model samples its input at 7.5 frames a second


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return {**os.environ, "GLANET_CACHE_DIR": str(tmp_path_factory.mktemp("cache"))}


def archive(*args, env, timeout=300):
    return subprocess.run(
        [*ARCHIVE, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout
    )


def write_actions(
    path: Path, segments: list[tuple[str, float, int]], fps: int = 12, creation_time: str | None = None
) -> Path:
    """SynthActions segments (class, seconds, seed) one after another in an H.264 mp4, its container's
    creation_time set where given."""
    with av.open(str(path), "w") as out:
        if creation_time is not None:
            out.metadata["creation_time"] = creation_time
        stream = out.add_stream("libx264", rate=Fraction(fps))
        stream.width = stream.height = 160
        stream.pix_fmt = "yuv420p"
        for label, seconds, seed in segments:
            for image, _, _ in render_frames(label, seed, num_frames=round(seconds * fps), size=160, fps=fps):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:, :, ::-1]), format="rgb24")
                out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


class Page(HTMLParser):
    """Every start tag of a page with its attributes, and its text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for t, attrs in self.tags if t == tag]


def parse_page(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text())
    page.close()
    return page


def check_page(out: Path) -> Page:
    """index.html parses; every picture and link in it is relative and every picture exists; no markup
    came from a name (no script, no event handler, no picture but the timelines)."""
    page = parse_page(out / INDEX)
    assert page.all("meta") and any(m.get("content") == GENERATOR for m in page.all("meta"))
    assert not page.all("script") and not page.all("iframe")
    for tag, attrs in page.tags:
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
    for attrs in page.all("img") + page.all("a"):
        link = attrs.get("src") or attrs.get("href") or ""
        parts = urlsplit(link)
        assert not parts.scheme and not parts.netloc and not link.startswith("/"), link
        assert (out / unquote(parts.path)).exists(), link
    for attrs in page.all("img"):
        assert unquote(attrs["src"] or "").endswith(f"/{TIMELINE}"), attrs
    return page


def read_summary(out: Path) -> list[dict[str, str]]:
    with open(out / SUMMARY, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.timeout(300)
def test_events_carry_the_videos_own_time(tmp_path, env):
    """A spin that starts 6 s into a video is found at about 6 s of video (the model sees it a few of its
    steps later), whatever the processing took; the time of day is the container's creation_time plus
    that, and a video whose container says no creation time gets none."""
    videos, out = tmp_path / "v", tmp_path / "out"
    videos.mkdir()
    # 12 frames a second, not the model's 7.5: a time counted in frames at the wrong rate is far off
    write_actions(
        videos / "dated.mp4", [("punch", 6, 17), ("spin", 4, 27)], creation_time="2026-05-01T10:00:00Z"
    )
    write_actions(videos / "undated.mp4", [("punch", 6, 17), ("spin", 4, 27)])
    proc = archive("--videos", str(videos), "--out", str(out), "--no-progress", env=env)
    assert proc.returncode == 0, proc.stderr
    for name in ("dated", "undated"):
        lines = [json.loads(x) for x in (out / name / "events.jsonl").read_text().splitlines()]
        spin = [e for e in lines if e["label"] == "spin" and e["event"] == "start"]
        assert spin, lines
        # the model needs a few of its steps of the new action (~0.4 s here) to cross --enter
        assert 6.0 - MODEL_STEP_S <= spin[0]["video_s"] <= 6.0 + 1.0, spin[0]
        for e in lines:
            assert e["video_s"] == pytest.approx(
                e["end_ts"] if e["event"] == "end" else e["start_ts"], abs=1e-3
            )
            assert e["time"].endswith("Z")  # run_camera.py's key: still the wall clock it was made at
        done = json.loads((out / name / DONE).read_text())
        if name == "dated":
            assert done["recording_start"] == "2026-05-01T10:00:00.000Z"
            assert done["recording_start_tag"] == "creation_time"
            start = datetime.datetime(2026, 5, 1, 10, tzinfo=datetime.UTC)
            for e in lines:
                at = datetime.datetime.fromisoformat(e["recorded_at"])
                assert (at - start).total_seconds() == pytest.approx(e["video_s"], abs=1e-3)
        else:
            assert done["recording_start"] is None
            assert not [e for e in lines if "recorded_at" in e]
    rows = {r["video"]: r for r in read_summary(out)}
    assert (
        rows["dated"]["recording_start"] == "2026-05-01T10:00:00.000Z"
        and rows["undated"]["recording_start"] == ""
    )


def test_a_start_is_timed_where_the_action_began_not_where_its_event_fired():
    """The detector, fed at the model's steps: the start line's video_s is within one step of the step
    where the action began (its event fires --min-duration later, at the frame that passed it)."""
    detector = EventDetector(tuple(CLASSES), "clip.mp4", EventConfig(0.6, 0.4, 0.5))
    begins = 3.0
    lines = []
    for step in range(60):
        ts = 0.25 + step * MODEL_STEP_S  # a video whose first frame is not at 0
        probs = np.full(len(CLASSES), 0.02)
        probs[11 if ts >= begins else 0] = 0.78
        lines += [with_video_time(e.to_dict(), None) for e in detector.update(probs, ts, step * 2)]
    lines += [with_video_time(e.to_dict(), None) for e in detector.finish()]
    spin = [x for x in lines if x["label"] == "spin"]
    assert [x["event"] for x in spin] == ["start", "end"]
    assert begins <= spin[0]["video_s"] < begins + MODEL_STEP_S
    fired_at = spin[0]["frame_index"] / 2 * MODEL_STEP_S + 0.25
    assert fired_at >= spin[0]["video_s"] + 0.5 - 1e-9  # it fired later; the line says when it began
    assert spin[1]["video_s"] == pytest.approx(0.25 + 59 * MODEL_STEP_S, abs=1e-3)  # the end of the video


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("2026-05-01T10:00:00.000000Z", "2026-05-01T10:00:00+00:00"),
        ("2023-05-01T12:00:00+0200", "2023-05-01T10:00:00+00:00"),  # Apple's, with its offset
        ("2023-05-01 10:00:00", "2023-05-01T10:00:00+00:00"),  # no zone: UTC, as MP4 stores it
        ("1904-01-01T00:00:00Z", None),  # a camera whose clock was never set: unknown, not 1904
        ("1970-01-01T00:00:00.000000Z", None),
        ("yesterday", None),
        ("9999-12-31T23:00:00-05:00", None),  # past datetime's range in UTC: it overflowed, stopping the run
        ("9999-12-31T23:59:59Z", None),  # in range, but not once the video's seconds are added
    ],
)
def test_a_recording_start_is_read_only_where_the_container_states_one(tag, expected):
    when = parse_start(tag)
    assert (None if when is None else when.isoformat()) == expected


@pytest.mark.timeout(300)
def test_a_hostile_name_is_text_in_the_report_and_the_synthactions_model_is_said(tmp_path, env):
    videos, out = tmp_path / "v", tmp_path / "out"
    videos.mkdir()
    write_demo_video(videos / f"{HOSTILE}.mp4", 3, seed=7)
    write_demo_video(videos / "plain #1.mp4", 2, seed=8)  # a '#' in a link would cut it short
    proc = archive("--videos", str(videos), "--out", str(out), "--no-progress", env=env)
    assert proc.returncode == 0, proc.stderr
    said = [x for x in proc.stderr.splitlines() if "SynthActions" in x]
    assert len(said) == 1 and proc.stderr.splitlines().index(said[0]) < next(
        i for i, x in enumerate(proc.stderr.splitlines()) if "frames," in x
    ), proc.stderr  # once, before the first video's line
    page = check_page(out)
    assert len(page.all("img")) == 2
    assert HOSTILE in page.text  # shown as the name it is
    assert "model: SynthActions only" in "".join(page.text)
    raw = (out / INDEX).read_text()
    assert HOSTILE not in raw and "&lt;img src=x onerror=alert(1)&gt;" in raw
    rows = read_summary(out)
    assert [r["video"] for r in rows] == [HOSTILE, "plain #1"]
    assert {r["model_note"] for r in rows} == {"model: SynthActions only"}
    assert json.loads((out / HOSTILE / DONE).read_text())["note"] == "model: SynthActions only"


def fake_result(out: Path, name: str, classes: list[str], events: list[dict], seconds: float = 4.0) -> None:
    """A result folder as the archive writes it, from made-up predictions."""
    folder = out / name
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("{}\n")
    times = np.arange(0, seconds, MODEL_STEP_S)
    probs = np.full((len(times), len(classes)), 0.1)
    probs[:, 0] = 0.9
    with open(folder / "predictions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["second", "top1", "confidence", "predictions", *classes])
        for s in range(int(seconds)):
            writer.writerow([s, classes[0], "0.9", 7, *["0.1"] * len(classes)])
    (folder / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    write_timeline(folder / TIMELINE, draw_timeline(times, probs, actions(events), seconds, [0, 1], 0.6))
    model = {"checkpoint": "/m/<b>bold</b>.pt", "checkpoint_digest": "blake2b-3x1MiB:00ff", "engine": None,
             "engine_digest": None, "backend": "torch", "precision": None}  # fmt: skip
    done = {
        "video": f"/v/{name}.mp4", "frames": int(seconds * 15), "seconds": seconds, "recording_start": None,
        "settings": {"model": model, "events": {"enter": 0.6, "exit": 0.4, "min_duration": 0.5}},
        "classes": classes, "timeline": {"file": TIMELINE, "classes": [0, 1]}, "wall_s": 0.1,
    }  # fmt: skip
    (folder / DONE).write_text(json.dumps(done))


def event(kind: str, label: str, index: int, start: float, end: float | None) -> dict:
    return {"event": kind, "label": label, "class_index": index, "start_ts": start, "end_ts": end,
            "peak": 0.9, "video_s": end if kind == "end" else start}  # fmt: skip


def test_class_and_model_names_are_escaped_and_spreadsheet_formulas_defused(tmp_path):
    classes = ["<script>alert(1)</script>", '=HYPERLINK("http://x")', "ok"]
    events = [event("start", classes[0], 0, 1.0, None), event("end", classes[0], 0, 1.0, 2.5)]
    fake_result(tmp_path, "cam", classes, events)
    fake_result(tmp_path, "=1+1", classes, [])
    (tmp_path / "mine").mkdir()  # the user's (no marker, a file of theirs in it): not a result
    (tmp_path / "mine" / DONE).write_text("{not json")
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    rows = write_report(tmp_path)
    assert [r.name for r in rows] == ["=1+1", "cam"]
    page = check_page(tmp_path)
    raw = (tmp_path / INDEX).read_text()
    assert "<script>" not in raw and "<b>bold" not in raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in raw
    assert classes[0] in page.text and "2.5 s" in page.text  # the event's row: its label, its end
    summary = list(csv.reader((tmp_path / SUMMARY).open(newline="")))
    assert summary[1][0] == "'=1+1" and summary[2][0] == "cam"  # a spreadsheet shows it, never runs it
    assert 'events:\'=HYPERLINK("http://x")' in summary[0]
    counts = dict(zip(summary[0], summary[2], strict=True))
    assert counts[f"events:{classes[0]}"] == "1" and counts["events:ok"] == "0" and counts["events"] == "1"


def test_a_report_file_of_the_users_is_never_replaced(tmp_path, env):
    (tmp_path / INDEX).write_text("<html>my own page</html>")
    with pytest.raises(ResultsError, match=r"index.html exists and was not written by the archive"):
        check_report_destinations(tmp_path, ["cam"])
    with pytest.raises(ResultsError, match="appeared during the run"):
        write_report(tmp_path)
    assert (tmp_path / INDEX).read_text() == "<html>my own page</html>"
    (tmp_path / INDEX).unlink()
    with pytest.raises(ResultsError, match="where the archive writes its report"):
        check_report_destinations(tmp_path, ["summary.csv"])  # a video named summary.csv.mp4
    write_report(tmp_path)
    check_report_destinations(tmp_path, ["cam"])  # its own report: replaced on the next run
    # from the command line: one line, before any work
    videos = tmp_path / "v"
    videos.mkdir()
    write_demo_video(videos / "cam.mp4", 1, seed=1)
    out = tmp_path / "out"
    out.mkdir()
    (out / SUMMARY).write_text("my,numbers\n1,2\n")
    proc = archive("--videos", str(videos), "--out", str(out), env=env, timeout=60)
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and "summary.csv exists" in lines[0], proc.stderr
    assert (
        sorted(p.name for p in out.iterdir()) == [SUMMARY]
        and (out / SUMMARY).read_text() == "my,numbers\n1,2\n"
    )


@pytest.mark.timeout(300)
def test_results_of_an_older_glanet_are_redone_and_the_report_follows(tmp_path, env):
    """Results without a timeline (an older glanet's) are redone, said in one line; a video added later
    joins the report of the ones before."""
    videos, out = tmp_path / "v", tmp_path / "out"
    videos.mkdir()
    write_demo_video(videos / "a.mp4", 2, seed=1)
    assert archive("--videos", str(videos), "--out", str(out), "--no-progress", env=env).returncode == 0
    (out / "a" / TIMELINE).unlink()
    write_demo_video(videos / "b.mp4", 2, seed=2)
    proc = archive("--videos", str(videos), "--out", str(out), "--no-progress", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "1 video redone: made by an older glanet (no timeline)" in proc.stderr
    assert (out / "a" / TIMELINE).is_file()
    assert [r["video"] for r in read_summary(out)] == ["a", "b"]
    assert len(check_page(out).all("img")) == 2
