"""glanet.data.extract: fps resampling, short-side resize, resume, corrupt videos, list file, CLI errors."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import pytest
from marked_frames import index_of, marked

from glanet.data import extract
from glanet.data.lists import VideoRecord, read_list


def _write(path: Path, n: int, fps: float = 25.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48))
    for i in range(n):
        w.write(marked(i))
    w.release()
    return path


def _jpgs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.jpg"))


@pytest.fixture
def videos(tmp_path: Path) -> Path:
    root = tmp_path / "videos"
    _write(root / "run" / "r1.mp4", 25)  # 1 s at 25 fps
    _write(root / "run" / "r2.mp4", 10)
    _write(root / "jump" / "j1.mp4", 20)
    return root


def test_fps_resampling_resize_and_list(videos: Path, tmp_path: Path) -> None:
    out, lst = tmp_path / "frames", tmp_path / "lists" / "all.txt"
    args = [
        "--videos",
        str(videos),
        "--out",
        str(out),
        "--fps",
        "30",
        "--short-side",
        "96",
        "--list",
        str(lst),
    ]
    assert extract.main(args) == 0
    folder = out / "run" / "r1"
    assert _jpgs(folder) == sorted(f"{i}.jpg" for i in range(30))  # 1 s resampled to 30 fps
    assert (folder / ".done").read_text().strip() == "30"
    assert cv2.imread(str(folder / "0.jpg")).shape == (96, 128, 3)
    # Frame k shows source frame floor(k·25/30): the brightness tells which.
    last = cv2.imread(str(folder / "29.jpg"))
    assert index_of(last) == 24
    assert read_list(lst) == [
        VideoRecord("jump/j1", 24, 0),
        VideoRecord("run/r1", 30, 1),
        VideoRecord("run/r2", 12, 1),
    ]


def test_source_fps_kept_when_not_given(videos: Path, tmp_path: Path) -> None:
    out = tmp_path / "frames"
    summary = extract.extract_videos(extract.plan_jobs(*_scan(videos)), out, fps=None, short_side=None)
    assert summary.done == 3 and not summary.failed
    assert len(_jpgs(out / "jump" / "j1")) == 20
    assert cv2.imread(str(out / "jump" / "j1" / "0.jpg")).shape == (48, 64, 3)


def _scan(root: Path):
    from glanet.data.lists import scan_video_folder

    return scan_video_folder(root)


def test_resume_skips_done_and_redoes_partial(videos: Path, tmp_path: Path) -> None:
    out = tmp_path / "frames"
    jobs = extract.plan_jobs(*_scan(videos))
    first = extract.extract_videos(jobs, out, fps=15.0)
    assert (first.done, first.skipped) == (3, 0)
    partial = out / "run" / "r2"
    (partial / ".done").unlink()
    (partial / "3.jpg").unlink()
    (partial / "99.jpg").write_bytes(b"junk from an interrupted run")
    done_mtime = (out / "run" / "r1" / "0.jpg").stat().st_mtime_ns
    second = extract.extract_videos(jobs, out, fps=15.0)
    assert (second.done, second.skipped, second.failed) == (1, 2, [])
    assert _jpgs(partial) == sorted(f"{i}.jpg" for i in range(6))
    assert (out / "run" / "r1" / "0.jpg").stat().st_mtime_ns == done_mtime  # untouched
    assert second.records == first.records


def test_corrupt_video_reported_and_skipped_in_a_pool(
    videos: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    (videos / "run" / "broken.mp4").write_bytes(b"\x00\x01 not a video" * 40)
    out, lst = tmp_path / "frames", tmp_path / "l.txt"
    with caplog.at_level(logging.INFO, logger="glanet.data.extract"):
        code = extract.main(
            ["--videos", str(videos), "--out", str(out), "--workers", "2", "--list", str(lst)]
        )
    assert code == 0
    failed = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(failed) == 1 and "broken.mp4: cannot be opened" in failed[0] and "\n" not in failed[0]
    summary = caplog.records[-1].getMessage()
    assert "extracted 3, skipped 0 (already done), failed 1 of 4" in summary
    assert not (out / "run" / "broken").exists()
    assert [r.path for r in read_list(lst)] == ["jump/j1", "run/r1", "run/r2"]


def test_csv_input_with_trim(tmp_path: Path) -> None:
    _write(tmp_path / "v" / "long.mp4", 40, fps=10.0)  # 4 s
    csv = tmp_path / "k.csv"
    csv.write_text("path,label,start,end\nv/long.mp4,wave,1.0,2.5\n")
    out = tmp_path / "frames"
    assert extract.main(["--videos", str(csv), "--out", str(out), "--short-side", "0"]) == 0
    folder = out / "wave" / "long"
    assert _jpgs(folder) == sorted(f"{i}.jpg" for i in range(15))  # source frames 10..24
    assert index_of(cv2.imread(str(folder / "0.jpg"))) == 10


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--fps", "0"], "--fps: 0: must be above 0"),
        (["--workers", "0"], "--workers: 0: must be at least 1"),
        (["--fps", "abc"], "'abc' is not a number"),
    ],
)
def test_argument_errors_are_one_line_exit_2(
    videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], words: str
) -> None:
    with pytest.raises(SystemExit) as e:
        extract.main(["--videos", str(videos), "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and words in err and "Traceback" not in err


def test_missing_videos_argument_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        extract.main(["--videos", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    assert e.value.code == 2 and "no such folder or CSV file" in capsys.readouterr().err
