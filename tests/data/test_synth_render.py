"""SynthActions' renderer: determinism, ground truth (boxes, masks), and the class pairs that must stay
apart (time reversal, speed, mirror)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from glanet.data import synth_render
from glanet.data.synth_render import CLASSES, generate_video, pose_sequence, render_frames


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
        scene, _ = synth_render._sample_scene(label, 5, 16, 96, 15.0)
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
    sit_scene, sit_joints = synth_render._sample_scene(CLASSES.index("sit_down"), 3, 20, 64, 15.0)
    stand_scene, stand_joints = synth_render._sample_scene(CLASSES.index("stand_up"), 3, 20, 64, 15.0)
    for name in ("yaw", "px", "origin", "mirror", "speed", "phase", "noise_seed"):
        assert getattr(sit_scene, name) == getattr(stand_scene, name), name
    still = {"jitter": np.zeros((20, 2), np.int64), "distractors": ()}
    sit = [m for _, m, _ in synth_render._render(dataclasses.replace(sit_scene, **still), sit_joints)]
    stand = [m for _, m, _ in synth_render._render(dataclasses.replace(stand_scene, **still), stand_joints)]
    assert all(np.array_equal(a, b) for a, b in zip(stand, sit[::-1], strict=True))


def _thigh_speed(label: str, speed: float) -> float:
    """Mean |Δ angle| per frame (radians) of the left thigh in the sagittal plane."""
    joints = pose_sequence(label, 48, speed, 0.0)
    thigh = joints[:, synth_render._J["l_knee"]] - joints[:, synth_render._J["l_hip"]]
    return float(np.abs(np.diff(np.unwrap(np.arctan2(thigh[:, 2], -thigh[:, 1])))).mean())


def test_run_moves_its_joints_clearly_faster_than_walk() -> None:
    lo, hi = synth_render.SPEED_RANGE
    assert _thigh_speed("run", 1.0) > 2.0 * _thigh_speed("walk", 1.0)
    assert _thigh_speed("run", lo) > 1.5 * _thigh_speed("walk", hi)  # the per-video speed ranges never meet


def test_no_class_is_the_mirror_image_of_another() -> None:
    """Distance: mean over frames of the largest joint distance, minimised over the other class's speed,
    phase and handedness; the image mirror is x -> -x, with and without relabelling left and right."""
    num_frames = 32

    def variants(label: str) -> np.ndarray:
        action = synth_render._BY_NAME[label]
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
                for f in (flipped, flipped[:, synth_render._SWAP])
            )
    assert np.diag(distance).max() < 0.05  # the metric finds a class's own mirror image (its other hand)
    off = distance + np.eye(len(CLASSES))
    i, j = np.unravel_index(off.argmin(), off.shape)
    assert off[i, j] > 0.08, f"mirrored {CLASSES[i]} is close to {CLASSES[j]}: {off[i, j]:.3f}"


def test_render_frames_are_generate_video_one_at_a_time() -> None:
    video = generate_video("kick", 4, num_frames=6, size=48, fps=10.0)
    frames = list(render_frames("kick", 4, num_frames=6, size=48, fps=10.0))
    assert len(frames) == 6
    for t, (image, mask, box) in enumerate(frames):
        assert image.tobytes() == video.frames[t].tobytes()
        assert np.array_equal(mask, video.masks[t]) and np.array_equal(box, video.boxes[t])


def test_render_frames_checks_its_arguments_before_the_first_frame() -> None:
    with pytest.raises(ValueError, match="size"):
        render_frames("kick", 0, num_frames=4, size=8, fps=10.0)
    with pytest.raises(ValueError, match="unknown class 'fly'"):
        render_frames("fly", 0, num_frames=4, size=48, fps=10.0)
