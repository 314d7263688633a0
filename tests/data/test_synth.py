"""SynthActions: determinism, ground truth, the class pairs (time reversal, speed, mirror), the data set
writer, the live source and the command line."""

from __future__ import annotations

import dataclasses
import itertools
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from glanet.data import synth
from glanet.data.synth import CLASSES, LiveSynth, generate_video, pose_sequence, write_dataset


def test_classes_are_many_unique_and_fixed() -> None:
    assert len(CLASSES) >= 10
    assert len(set(CLASSES)) == len(CLASSES)
    assert CLASSES[:4] == ("walk", "run", "sit_down", "stand_up")


def test_same_seed_same_video_and_other_seed_differs() -> None:
    a = generate_video("jump", 7, num_frames=12, size=64)
    b = generate_video(CLASSES.index("jump"), 7, num_frames=12, size=64)
    c = generate_video("jump", 8, num_frames=12, size=64)
    assert a.frames.shape == (12, 64, 64, 3) and a.frames.dtype == np.uint8
    assert a.boxes.shape == (12, 4) and a.boxes.dtype == np.int32
    assert a.masks.shape == (12, 64, 64) and a.masks.dtype == bool
    assert (a.label, a.name, a.seed, a.fps) == (CLASSES.index("jump"), "jump", 7, 15.0)
    assert a.frames.tobytes() == b.frames.tobytes()
    assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.masks, b.masks)
    assert not np.array_equal(a.frames, c.frames)


@pytest.mark.parametrize("label", range(len(CLASSES)))
def test_boxes_are_the_tight_boxes_of_nonempty_masks(label: int) -> None:
    size = 96
    for seed in (label, 100 + label):
        video = generate_video(label, seed, num_frames=16, size=size)
        for mask, (x0, y0, x1, y1) in zip(video.masks, video.boxes, strict=True):
            assert mask.any()
            assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size
            inside = np.zeros_like(mask)
            inside[y0:y1, x0:x1] = True
            assert not (mask & ~inside).any()  # contains every mask pixel
            edges = (mask[y0], mask[y1 - 1], mask[:, x0], mask[:, x1 - 1])
            assert all(edge.any() for edge in edges)  # tight
            share = (x1 - x0) * (y1 - y0) / size**2
            assert 0.02 < share < 0.7, f"{CLASSES[label]} seed {seed}: box covers {share:.1%} of the frame"


def test_box_is_where_the_figure_is_in_the_output_image() -> None:
    """The mask (after camera jitter) lies on figure-coloured pixels of the final frame."""
    for label in range(len(CLASSES)):
        scene, _ = synth._sample_scene(label, 5, 16, 96, 15.0)
        video = generate_video(label, 5, num_frames=16, size=96)
        grey = video.frames.astype(np.float32) @ np.array([0.114, 0.587, 0.299], np.float32)
        figure = float(scene.colour @ [0.114, 0.587, 0.299])
        background = float(scene.shade[0])
        on_mask = np.median(grey[video.masks])
        assert abs(on_mask - figure) < abs(on_mask - background), CLASSES[label]


def test_stand_up_is_sit_down_reversed_in_time() -> None:
    for speed, phase in ((1.0, 0.0), (0.8, 0.07), (1.25, -0.1)):
        sit = pose_sequence("sit_down", 40, speed, phase)
        stand = pose_sequence("stand_up", 40, speed, phase)
        assert np.array_equal(stand, sit[::-1])
        assert np.abs(sit[0] - sit[-1]).max() > 0.1  # it does move
    # Rendered: one seed gives both classes the same scene, so with the camera still the masks reverse.
    sit_scene, sit_joints = synth._sample_scene(CLASSES.index("sit_down"), 3, 20, 64, 15.0)
    stand_scene, stand_joints = synth._sample_scene(CLASSES.index("stand_up"), 3, 20, 64, 15.0)
    for name in ("yaw", "px", "origin", "mirror", "speed", "phase", "noise_seed"):
        assert getattr(sit_scene, name) == getattr(stand_scene, name), name
    still = {"jitter": np.zeros((20, 2), np.int64), "distractors": ()}
    sit = [m for _, m, _ in synth._render(dataclasses.replace(sit_scene, **still), sit_joints)]
    stand = [m for _, m, _ in synth._render(dataclasses.replace(stand_scene, **still), stand_joints)]
    assert all(np.array_equal(a, b) for a, b in zip(stand, sit[::-1], strict=True))


def _thigh_speed(label: str, speed: float) -> float:
    """Mean |Δ angle| per frame (radians) of the left thigh in the sagittal plane."""
    joints = pose_sequence(label, 48, speed, 0.0)
    thigh = joints[:, synth._J["l_knee"]] - joints[:, synth._J["l_hip"]]
    return float(np.abs(np.diff(np.unwrap(np.arctan2(thigh[:, 2], -thigh[:, 1])))).mean())


def test_run_moves_its_joints_clearly_faster_than_walk() -> None:
    lo, hi = synth.SPEED_RANGE
    assert _thigh_speed("run", 1.0) > 2.0 * _thigh_speed("walk", 1.0)
    assert _thigh_speed("run", lo) > 1.5 * _thigh_speed("walk", hi)  # the per-video speed ranges never meet


def test_no_class_is_the_mirror_image_of_another() -> None:
    """Distance: mean over frames of the largest joint distance, minimised over the other class's speed,
    phase and handedness; the image mirror is x -> -x, with and without relabelling left and right."""
    num_frames = 32

    def variants(label: str) -> np.ndarray:
        action = synth._BY_NAME[label]
        periodic = action.periodic and action.reverse_of is None
        phases = np.linspace(0, 1, 12, endpoint=False) if periodic else np.linspace(-0.1, 0.1, 3)
        return np.stack(
            [
                pose_sequence(label, num_frames, speed, phase, mirror=mirror)
                for speed in (0.75, 1.0, 1.25)
                for phase in phases
                for mirror in (False, True)
            ]
        )

    candidates = {label: variants(label) for label in CLASSES}
    distance = np.zeros((len(CLASSES), len(CLASSES)))
    for i, a in enumerate(CLASSES):
        flipped = pose_sequence(a, num_frames, 1.0, 0.1) * [-1.0, 1.0, 1.0]
        for j, b in enumerate(CLASSES):
            distance[i, j] = min(
                np.linalg.norm(candidates[b] - f, axis=-1).max(axis=2).mean(axis=1).min()
                for f in (flipped, flipped[:, synth._SWAP])
            )
    assert np.diag(distance).max() < 0.05  # the metric finds a class's own mirror image (its other hand)
    off = distance + np.eye(len(CLASSES))
    i, j = np.unravel_index(off.argmin(), off.shape)
    assert off[i, j] > 0.08, f"mirrored {CLASSES[i]} is close to {CLASSES[j]}: {off[i, j]:.3f}"


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


def test_live_source_chains_segments_and_stops_on_close() -> None:
    source = LiveSynth(seed=1, size=64, fps=10.0, segment_seconds=(0.3, 0.6))
    frames = [frame for frame, _ in zip(source, range(40), strict=False)]
    assert [f.index for f in frames] == list(range(40))
    assert np.all(np.diff([f.timestamp_s for f in frames]) > 0)
    assert all(f.image.shape == (64, 64, 3) and f.name == CLASSES[f.label] for f in frames)
    changes = [(a, b) for a, b in itertools.pairwise(frames) if a.segment != b.segment]
    assert len(changes) >= 5 and all(a.label != b.label for a, b in changes)
    source.close()
    assert next(source, None) is None


def test_live_source_close_interrupts_a_realtime_wait() -> None:
    with LiveSynth(seed=2, size=48, fps=0.5, realtime=True) as source:  # next frame due in 2 s
        assert next(source).index == 0
        threading.Timer(0.1, source.close).start()
        start = time.monotonic()
        assert next(source, None) is None
        assert time.monotonic() - start < 1.0


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
