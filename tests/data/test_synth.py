"""SynthActions on disk: video seeds, the data set writer (layout, ground truth, resume, workers), the
preview and the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from glanet.data import synth
from glanet.data.synth import write_dataset
from glanet.data.synth_render import CLASSES, generate_video


def test_video_seeds_differ_across_split_class_index_and_base_seed() -> None:
    seeds = {
        synth.video_seed(base, split, label, index)
        for base in (0, 1)
        for split in ("train", "val", "test")
        for label in range(3)
        for index in range(5)
    }
    assert len(seeds) == 2 * 3 * 3 * 5
    assert synth.video_seed(0, "train", "walk", 3) == synth.video_seed(0, "train", 0, 3)


def _mtimes(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_write_dataset_layout_list_ground_truth_and_resume(tmp_path: Path) -> None:
    kw = {"videos_per_class": 2, "seed": 5, "split": "train", "num_frames": 8, "size": 64}
    kw["classes"] = ["run", "clap"]
    list_file = write_dataset(tmp_path, **kw)
    assert list_file == tmp_path / "train.txt"
    assert (tmp_path / "classes.txt").read_text().splitlines() == list(CLASSES)
    lines = [line.split() for line in list_file.read_text().splitlines()]
    assert [line[0] for line in lines] == [
        "train/run/run_000000", "train/run/run_000001", "train/clap/clap_000000", "train/clap/clap_000001"
    ]  # fmt: skip
    for path, frames, label in lines:
        assert int(frames) == 8 and CLASSES[int(label)] == path.split("/")[1]
        assert sorted(p.name for p in (tmp_path / path).iterdir()) == sorted(f"{i}.jpg" for i in range(8))
        assert cv2.imread(str(tmp_path / path / "7.jpg")).shape == (64, 64, 3)
    boxes, masks = synth.load_ground_truth(tmp_path / "train_gt" / "clap" / "clap_000001.npz")
    video = generate_video("clap", synth.video_seed(5, "train", "clap", 1), num_frames=8, size=64)
    assert np.array_equal(boxes, video.boxes) and np.array_equal(masks, video.masks)

    before = _mtimes(tmp_path)
    write_dataset(tmp_path, **kw)
    after = _mtimes(tmp_path)
    assert {p: t for p, t in after.items() if p.suffix != ".txt"} == {
        p: t for p, t in before.items() if p.suffix != ".txt"
    }  # nothing rewritten but the lists

    (tmp_path / "train/run/run_000001/7.jpg").unlink()  # an interrupted video is made again
    write_dataset(tmp_path, **kw)
    assert (tmp_path / "train/run/run_000001/7.jpg").is_file()
    kept = tmp_path / "train/run/run_000000/0.jpg"
    assert kept.stat().st_mtime_ns == before[kept]


def test_write_dataset_mp4_and_workers_give_the_same_files(tmp_path: Path) -> None:
    kw = {"videos_per_class": 2, "seed": 9, "split": "val", "num_frames": 8, "size": 64, "classes": ["kick"]}
    write_dataset(tmp_path / "one", **kw, mp4=True)
    write_dataset(tmp_path / "two", **kw, workers=2)
    capture = cv2.VideoCapture(str(tmp_path / "one" / "val_mp4" / "kick" / "kick_000001.mp4"))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    assert count == 8
    for i in range(8):
        name = f"val/kick/kick_000001/{i}.jpg"
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_write_dataset_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="videos_per_class"):
        write_dataset(tmp_path, videos_per_class=0, seed=0, split="train")
    with pytest.raises(ValueError, match="split"):
        write_dataset(tmp_path, videos_per_class=1, seed=0, split="a/b")
    with pytest.raises(ValueError, match="unknown class 'fly'"):
        write_dataset(tmp_path, videos_per_class=1, seed=0, split="train", classes=["fly"])
    assert not any(tmp_path.iterdir())


def test_preview_has_one_row_per_class(tmp_path: Path) -> None:
    image = cv2.imread(str(synth.preview(tmp_path / "sheet.png", size=48, num_frames=8)))
    assert image.shape[0] == len(CLASSES) * (48 + 2)


def test_cli_bad_argument_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        synth.main(["--out", str(tmp_path), "--videos-per-class", "0"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "--videos-per-class: 0: must be at least 1" in err
    result = subprocess.run(
        [sys.executable, "-m", "glanet.data.synth", "--out", str(tmp_path), "--videos-per-class", "x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
