"""SynthActions' renderer: a stick figure performing one of `CLASSES`, drawn over a random scene.

Each video is a pure function of (class, seed, frames, size, fps), with its per-frame boxes and masks;
the data set writer (`glanet.data.synth`) and the live demo source (`glanet.data.synth_live`) draw with it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "CLASSES",
    "JOINTS",
    "SynthVideo",
    "check_video_args",
    "class_index",
    "generate_video",
    "pose_sequence",
    "render_frames",
]

# ---------------------------------------------------------------------------------------------------------
# Skeleton. World frame in figure-height units: +x the figure's left, +y up, +z forward; ground at y = 0.
# The camera looks along -z, so an unrotated figure faces the camera and its left is the image's right.

JOINTS: tuple[str, ...] = (
    "head", "neck", "pelvis",
    "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist",
    "l_hip", "l_knee", "l_ankle", "r_hip", "r_knee", "r_ankle",
)  # fmt: skip
_J = {name: i for i, name in enumerate(JOINTS)}
# Index map that swaps left and right: a mirrored figure's left arm is the original's right arm.
_SWAP = np.array([_J[n.replace("l_", "#").replace("r_", "l_").replace("#", "r_")] for n in JOINTS])

_TORSO, _NECK_HEAD, _HEAD_R, _SHOULDER_W, _HIP_W = 0.30, 0.095, 0.065, 0.085, 0.055
_UPPER_ARM, _FOREARM, _THIGH, _SHIN, _FOOT, _ANKLE_H = 0.16, 0.15, 0.235, 0.235, 0.07, 0.03

_LIMB_CHANNELS = ("sh_f", "sh_a", "sh_h", "el_f", "el_a", "el_h", "hip_f", "hip_a", "knee")
CHANNELS = ("lean", "lift", *(f"{side}_{name}" for side in "lr" for name in _LIMB_CHANNELS))
# Rest pose. Angles in degrees: *_f flexion (0 hanging down, 90 forward, 180 up), *_a abduction (outward,
# 180 up), *_h horizontal swing outward; sh/el are upper arm/forearm directions in the torso frame,
# knee is the bend of the shin behind the thigh; lean tilts the torso forward; lift is flight height.
_REST = {"lean": 2.0, "lift": 0.0, "sh_a": 8.0, "el_f": 8.0, "el_a": 6.0, "hip_a": 3.0, "knee": 2.0}


@dataclass(frozen=True)
class _Action:
    """One class: keyframed channels over a normalised phase, nominal speed and camera views."""

    name: str
    periodic: bool
    keys: int | tuple[float, ...]  # periodic: K uniform keys on [0, 1); one-shot: key phases, 0 … 1
    channels: Mapping[str, float | tuple[float, ...]]
    hz: float = 0.0  # periodic: nominal cycles per second
    view: tuple[float, float] = (0.0, 90.0)  # |camera yaw| range in degrees; the sign is random
    turns: float = 0.0  # body turns per cycle (spin)
    drift: float = 0.0  # horizontal travel in frame widths per second at nominal speed (walk, run)
    reverse_of: str | None = None  # exact time reversal of that class


def _lr(name: str, left: float | tuple[float, ...], right: float | tuple[float, ...] | None = None) -> dict:
    return {f"l_{name}": left, f"r_{name}": left if right is None else right}


def _half(values: tuple[float, ...]) -> tuple[float, ...]:
    """The same cycle half a period later (the other leg of a gait)."""
    k = len(values) // 2
    return values[k:] + values[:k]


def _gait(hip: tuple, knee: tuple, arm: tuple, elbow: float, lean: float, lift: float | tuple) -> dict:
    return {
        "lean": lean,
        "lift": lift,
        **_lr("hip_f", hip, _half(hip)),
        **_lr("knee", knee, _half(knee)),
        **_lr("sh_f", arm, _half(arm)),
        **_lr("el_f", tuple(a + elbow for a in arm), tuple(a + elbow for a in _half(arm))),
    }


_GUARD = {**_lr("sh_f", 35.0), **_lr("sh_a", 20.0), **_lr("el_f", 150.0), **_lr("el_h", -25.0)}
_G, _P = (35.0, 20.0, 0.0, 150.0, -25.0), (88.0, 10.0, -15.0, 90.0, -12.0)  # punch: guard / strike
_PUNCH_L = tuple(zip(_G, _P, _G, _G, _G, _G, _G, _G, strict=True))  # per channel, 8 keys

# fmt: off
_ACTIONS: tuple[_Action, ...] = (
    _Action(
        "walk", True, 8, hz=0.9, view=(55.0, 90.0), drift=0.07,
        channels=_gait(
            hip=(24, 18, 3, -12, -18, -12, 3, 18), knee=(4, 14, 9, 6, 22, 55, 50, 18),
            arm=(-16, -11, 0, 11, 16, 11, 0, -11), elbow=18, lean=4, lift=0.0,
        ),
    ),
    # The same gait at twice the cadence with a longer stride: single frames overlap with walk's.
    _Action(
        "run", True, 8, hz=1.8, view=(55.0, 90.0), drift=0.16,
        channels=_gait(
            hip=(35, 27, 6, -15, -23, -15, 6, 27), knee=(10, 30, 20, 15, 35, 85, 80, 35),
            arm=(-22, -15, 0, 15, 22, 15, 0, -15), elbow=30, lean=7, lift=(0, 0.015, 0, 0, 0, 0.015, 0, 0),
        ),
    ),
    _Action(
        "sit_down", False, (0.0, 0.25, 0.42, 0.58, 0.75, 1.0), view=(35.0, 90.0),
        channels={
            "lean": (2, 2, 30, 35, 12, 12),
            **_lr("hip_f", (0, 0, 40, 75, 88, 88)),
            **_lr("knee", (2, 2, 45, 80, 90, 90)),
            **_lr("sh_f", (0, 0, 30, 40, 25, 25)),
            **_lr("el_f", (8, 8, 45, 60, 75, 75)),
        },
    ),
    _Action("stand_up", False, (0.0, 1.0), {}, view=(35.0, 90.0), reverse_of="sit_down"),
    _Action(
        "wave_one_hand", True, 4, hz=1.3, view=(0.0, 40.0),
        channels={
            "r_sh_a": (112, 118, 122, 118), "r_sh_f": 10.0, "r_el_a": (145, 170, 195, 170), "r_el_f": 10.0,
        },
    ),
    _Action(
        "wave_two_hands", True, 4, hz=1.1, view=(0.0, 40.0),
        channels={
            **_lr("sh_a", 125.0), **_lr("sh_f", 8.0), **_lr("el_a", (140, 165, 190, 165)), **_lr("el_f", 8.0),
        },
    ),
    _Action(
        "jump", False, (0.0, 0.22, 0.36, 0.44, 0.52, 0.6, 0.68, 0.78, 1.0), view=(0.0, 90.0),
        channels={
            "lean": (2, 2, 35, 5, 0, 5, 25, 5, 2),
            "lift": (0, 0, 0, 0.02, 0.3, 0.12, 0, 0, 0),
            **_lr("hip_f", (0, 0, 55, 0, 25, 10, 45, 5, 0)),
            **_lr("knee", (2, 2, 85, 0, 45, 10, 70, 5, 2)),
            **_lr("sh_f", (0, 0, -45, 150, 160, 120, 40, 10, 0)),
            **_lr("el_f", (8, 8, -30, 160, 170, 130, 60, 15, 8)),
        },
    ),
    _Action(
        "squat", True, 8, hz=0.45, view=(30.0, 90.0),
        channels={
            "lean": (2, 2, 20, 40, 40, 20, 2, 2),
            **_lr("hip_f", (0, 0, 45, 100, 100, 45, 0, 0)),
            **_lr("knee", (2, 2, 65, 130, 130, 65, 2, 2)),
            **_lr("sh_f", (0, 10, 60, 90, 90, 60, 10, 0)),
            **_lr("el_f", (8, 15, 65, 90, 90, 65, 15, 8)),
        },
    ),
    _Action(
        "punch", True, 8, hz=0.8, view=(35.0, 80.0),
        channels={
            "lean": 8.0,
            **{f"{s}_{c}": v for s, cyc in (("l", _PUNCH_L), ("r", tuple(map(_half, _PUNCH_L))))
               for c, v in zip(("sh_f", "sh_a", "sh_h", "el_f", "el_h"), cyc, strict=True)},
            **_lr("hip_f", 18.0, -12.0),
            **_lr("knee", 15.0),
        },
    ),
    _Action(
        "kick", True, 6, hz=0.6, view=(35.0, 90.0),
        channels={
            **_GUARD,
            "lean": (3, -5, -15, -5, 3, 3),
            **_lr("hip_f", 0.0, (0, 60, 85, 60, 0, 0)),
            **_lr("knee", 8.0, (2, 95, 5, 95, 2, 2)),
        },
    ),
    # Hands meet in front of the chest, elbows out: the in-out swing reads from the front.
    _Action(
        "clap", True, 4, hz=1.5, view=(0.0, 35.0),
        channels={
            **_lr("sh_f", 30.0), **_lr("sh_a", 35.0), **_lr("el_f", 110.0),
            **_lr("el_h", (30, -20, -85, -20)),
        },
    ),
    _Action(
        "spin", True, 4, hz=0.5, view=(0.0, 180.0), turns=1.0,
        channels={
            **_lr("sh_a", (55, 62, 55, 62)),
            **_lr("el_a", 65.0),
            **_lr("hip_f", (0, 20, 0, 0), (0, 0, 0, 20)),
            **_lr("knee", (2, 35, 2, 2), (2, 2, 2, 35)),
        },
    ),
)
# fmt: on

CLASSES: tuple[str, ...] = tuple(a.name for a in _ACTIONS)
_BY_NAME = {a.name: a for a in _ACTIONS}
# Per-video multiplier of the class's nominal speed; run's cadence range stays above walk's.
SPEED_RANGE = (0.75, 1.25)
ONE_SHOT_OFFSET = 0.1  # one-shot actions are centred in the clip ± this fraction of it


def class_index(label: int | str) -> int:
    """The index in `CLASSES` of a class name or index; a bad one is a ValueError that lists the classes."""
    if isinstance(label, str):
        if label not in _BY_NAME:
            raise ValueError(f"unknown class {label!r}; choose one of {', '.join(CLASSES)}")
        return CLASSES.index(label)
    if isinstance(label, bool) or not isinstance(label, int | np.integer) or not 0 <= label < len(CLASSES):
        raise ValueError(f"label {label!r} must be a class name or an index in [0, {len(CLASSES)})")
    return int(label)


def _rest_value(channel: str) -> float:
    return _REST.get(channel.removeprefix("l_").removeprefix("r_"), 0.0)


def _channel_table(action: _Action) -> np.ndarray:
    """(K, C) keyframe values, rest pose where a channel is not animated."""
    k = action.keys if isinstance(action.keys, int) else len(action.keys)
    table = np.empty((k, len(CHANNELS)))
    for c, name in enumerate(CHANNELS):
        value = action.channels.get(name, _rest_value(name))
        if not isinstance(value, int | float) and len(value) != k:
            raise AssertionError(f"{action.name}.{name} has {len(value)} keys, expected {k}")
        table[:, c] = value
    return table


def _interpolate(action: _Action, phase: np.ndarray) -> np.ndarray:
    """Channel values (T, C) at phases (T,): periodic Catmull-Rom, or eased one-shot keys with holds."""
    table = _channel_table(action)
    if action.periodic:
        k = len(table)
        x = np.mod(phase, 1.0) * k
        i = np.floor(x).astype(np.int64)
        t = (x - i)[:, None]
        p0, p1, p2, p3 = (table[(i + d) % k] for d in (-1, 0, 1, 2))
        cubic = (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (3 * p1 - p0 - 3 * p2 + p3) * t**3
        return 0.5 * (2 * p1 + (p2 - p0) * t + cubic)
    keys = np.asarray(action.keys)
    i = np.clip(np.searchsorted(keys, phase, side="right") - 1, 0, len(keys) - 2)
    t = np.clip((phase - keys[i]) / (keys[i + 1] - keys[i]), 0.0, 1.0)[:, None]
    return table[i] + (table[i + 1] - table[i]) * (t * t * (3 - 2 * t))


def _direction(f: np.ndarray, a: np.ndarray, h: np.ndarray, side: float) -> np.ndarray:
    """Unit segment directions (T, 3): hanging down, flexed forward by f, swung out by h, abducted by a."""
    f, a, h = np.radians(f), np.radians(a) * side, np.radians(h) * side
    x, y, z = np.sin(f) * np.sin(h), -np.cos(f), np.sin(f) * np.cos(h)
    return np.stack([x * np.cos(a) - y * np.sin(a), x * np.sin(a) + y * np.cos(a), z], axis=-1)


def _forward_kinematics(ch: Mapping[str, np.ndarray], yaw_deg: np.ndarray) -> np.ndarray:
    """Joint positions (T, J, 3) from channel values (T,) each; the lowest ankle stands on the ground."""
    n = len(yaw_deg)
    lean = np.radians(ch["lean"])
    up = np.stack([np.zeros(n), np.cos(lean), np.sin(lean)], axis=-1)  # torso axis

    def torso(d: np.ndarray) -> np.ndarray:  # arms move with the torso: rotate by the lean, about x
        c, s = np.cos(lean), np.sin(lean)
        return np.stack([d[:, 0], d[:, 1] * c - d[:, 2] * s, d[:, 1] * s + d[:, 2] * c], axis=-1)

    p = np.zeros((n, len(JOINTS), 3))
    p[:, _J["neck"]] = _TORSO * up
    p[:, _J["head"]] = (_TORSO + _NECK_HEAD) * up
    for s, side in (("l", 1.0), ("r", -1.0)):
        sh = p[:, _J["neck"]] + [side * _SHOULDER_W, 0.0, 0.0]
        upper = torso(_direction(ch[f"{s}_sh_f"], ch[f"{s}_sh_a"], ch[f"{s}_sh_h"], side))
        fore = torso(_direction(ch[f"{s}_el_f"], ch[f"{s}_el_a"], ch[f"{s}_el_h"], side))
        p[:, _J[f"{s}_shoulder"]] = sh
        p[:, _J[f"{s}_elbow"]] = sh + _UPPER_ARM * upper
        p[:, _J[f"{s}_wrist"]] = sh + _UPPER_ARM * upper + _FOREARM * fore
        zero = np.zeros(n)
        thigh = _direction(ch[f"{s}_hip_f"], ch[f"{s}_hip_a"], zero, side)
        shin = _direction(ch[f"{s}_hip_f"] - ch[f"{s}_knee"], ch[f"{s}_hip_a"], zero, side)
        hip = np.array([side * _HIP_W, 0.0, 0.0])
        p[:, _J[f"{s}_hip"]] = hip
        p[:, _J[f"{s}_knee"]] = hip + _THIGH * thigh
        p[:, _J[f"{s}_ankle"]] = hip + _THIGH * thigh + _SHIN * shin
    lowest = np.minimum(p[:, _J["l_ankle"], 1], p[:, _J["r_ankle"], 1])
    p[..., 1] += (_ANKLE_H - lowest + np.maximum(ch["lift"], 0.0))[:, None]
    return _rotate_y(p, yaw_deg)


def _rotate_y(p: np.ndarray, yaw_deg: np.ndarray | float) -> np.ndarray:
    """Rotate points (T, N, 3) about the vertical axis; positive yaw turns the figure to face image right."""
    yaw = np.radians(np.asarray(yaw_deg, dtype=np.float64)).reshape(-1, 1)
    c, s = np.cos(yaw), np.sin(yaw)
    out = p.copy()
    out[..., 0] = p[..., 0] * c + p[..., 2] * s
    out[..., 2] = -p[..., 0] * s + p[..., 2] * c
    return out


def _phases(action: _Action, num_frames: int, speed: float, phase: float, fps: float) -> np.ndarray:
    t = np.arange(num_frames, dtype=np.float64)
    if action.periodic:
        return phase + speed * action.hz * t / fps  # in cycles, unwrapped
    u = t / (num_frames - 1) if num_frames > 1 else np.full(1, 0.5)
    return np.clip(0.5 + (u - 0.5 - phase) * speed, 0.0, 1.0)


def pose_sequence(
    label: int | str,
    num_frames: int,
    speed: float = 1.0,
    phase: float = 0.0,
    *,
    fps: float = 15.0,
    mirror: bool = False,
) -> np.ndarray:
    """Joint positions (T, J, 3) in figure heights (order `JOINTS`; +x the figure's left, +y up, +z forward).

    Periodic classes: `speed` multiplies the class's nominal cadence and `phase` is the start phase in
    cycles. One-shot classes (sit_down, stand_up, jump) span the clip: the action is centred at
    `0.5 + phase` of it and `speed` shortens it. `mirror` swaps the figure's left and right (the other
    hand waves, the other leg kicks, the spin turns the other way). stand_up is sit_down reversed in time.
    """
    action = _BY_NAME[CLASSES[class_index(label)]]
    if num_frames < 1:
        raise ValueError(f"num_frames ({num_frames}) must be at least 1")
    if speed <= 0 or fps <= 0:
        raise ValueError(f"speed ({speed}) and fps ({fps}) must be positive")
    if action.reverse_of is not None:
        return pose_sequence(action.reverse_of, num_frames, speed, phase, fps=fps, mirror=mirror)[::-1].copy()
    p = _phases(action, num_frames, speed, phase, fps)
    values = _interpolate(action, p)
    ch = {name: values[:, c] for c, name in enumerate(CHANNELS)}
    joints = _forward_kinematics(ch, 360.0 * action.turns * p)
    if mirror:
        joints = joints[:, _SWAP] * [-1.0, 1.0, 1.0]
    return joints


def _rest_height() -> float:
    """Height of the figure standing at rest, ground to the top of the head."""
    rest = {name: np.array([_rest_value(name)]) for name in CHANNELS}
    return float(_forward_kinematics(rest, np.zeros(1))[0, _J["head"], 1] + _HEAD_R)


_HEIGHT = _rest_height()

# ---------------------------------------------------------------------------------------------------------
# Scene: every nuisance of one video, drawn from its seed. The draws never depend on the class, so two
# classes with one seed share background, colours, jitter and distractors (sit_down/stand_up are exact
# time reversals of each other on an identical scene).


@dataclass(frozen=True, eq=False)
class _Distractor:
    shape: str  # circle, ring, square, triangle
    colour: tuple[float, float, float]
    radius: float  # px
    start: np.ndarray  # (2,) px
    velocity: np.ndarray  # (2,) px per frame
    angle: float  # radians
    spin: float  # radians per frame
    front: bool  # drawn over the figure (small ones only, so it never hides most of it)


@dataclass(frozen=True, eq=False)
class _Scene:
    label: int
    num_frames: int
    size: int
    fps: float
    speed: float
    phase: float
    mirror: bool
    yaw: float  # camera yaw, degrees
    px: float  # pixels per figure height
    origin: tuple[float, float]  # image position of the world origin (ground under the pelvis) at frame 0
    drift: float  # horizontal travel over the clip, px
    jitter: np.ndarray  # (T, 2) int, camera shake in px (x, y)
    background: np.ndarray  # (S + 2m, S + 2m, 3) uint8, m = margin
    margin: int
    colour: np.ndarray  # (3,) figure BGR
    shade: np.ndarray  # (3,) colour that far limbs fade towards
    thickness: float
    distractors: tuple[_Distractor, ...]
    noise: float  # Gaussian noise sigma, grey levels
    blur: float  # Gaussian blur sigma, px (0: none)
    quality: int  # JPEG quality
    noise_seed: int


def _background(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    """A textured, cluttered background (n, n, 3) uint8 whose values all lie in [lo, hi]: a gradient,
    then maybe blobby noise, stripes and filled rectangles/ellipses, then fine grain."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy)[..., None]
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    img = (c0 + (c1 - c0) * ramp).astype(np.float32)
    if rng.random() < 0.6:
        cells, weight = int(rng.integers(3, 12)), rng.uniform(0.3, 0.8)
        blobs = rng.uniform(0, 255, (cells, cells, 3)).astype(np.float32)
        img = img * (1 - weight) + cv2.resize(blobs, (n, n), interpolation=cv2.INTER_CUBIC) * weight
    if rng.random() < 0.4:
        period, s_angle = rng.uniform(0.05, 0.25) * n, rng.uniform(0, np.pi)
        colour, weight = rng.uniform(0, 255, 3), rng.uniform(0.3, 0.7)
        wave = np.sin(2 * np.pi * (np.cos(s_angle) * xx + np.sin(s_angle) * yy) * n / period)
        on = weight * (wave > 0)[..., None]
        img = img * (1 - on) + colour.astype(np.float32) * on
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(4, 20)) if rng.random() < 0.6 else 0):
        (x, y), (w, h) = rng.uniform(0, n, 2), rng.uniform(0.03, 0.25, 2) * n
        colour, rot = rng.uniform(0, 255, 3).tolist(), rng.uniform(0, 180)
        if rng.random() < 0.5:
            corners = cv2.boxPoints(((float(x), float(y)), (float(w), float(h)), float(rot)))
            cv2.fillPoly(img, [np.round(corners).astype(np.int32)], colour, cv2.LINE_AA)
        else:
            axes = (int(w / 2), int(h / 2))
            cv2.ellipse(img, (int(x), int(y)), axes, float(rot), 0, 360, colour, -1, cv2.LINE_AA)
    grain = rng.normal(0, rng.uniform(0, 12), (n, n, 1)).astype(np.float32)
    img = np.clip(img.astype(np.float32) + grain, 0, 255)
    return (lo + (hi - lo) / 255.0 * img).astype(np.uint8)


def _with_feet(joints: np.ndarray) -> np.ndarray:
    """Joints (T, J, 3) plus the two toes (T, J + 2, 3): feet point forward, along the hips' normal."""
    across = joints[:, _J["l_hip"]] - joints[:, _J["r_hip"]]
    forward = np.stack([-across[:, 2], np.zeros(len(joints)), across[:, 0]], axis=-1)  # across × up
    forward /= np.maximum(np.linalg.norm(forward, axis=-1, keepdims=True), 1e-9)
    toes = [joints[:, _J[f"{s}_ankle"]] + _FOOT * forward - [0.0, 0.015, 0.0] for s in "lr"]
    return np.concatenate([joints, np.stack(toes, axis=1)], axis=1)


_POINT = {**_J, "l_toe": len(JOINTS), "r_toe": len(JOINTS) + 1}  # joints, then the toes of _with_feet


def _segments() -> tuple[tuple[int, int, float], ...]:
    """Capsules to draw as (from, to, width in figure heights); the head is a disc of radius _HEAD_R."""
    named = [("pelvis", "neck", 0.085)]
    for s in "lr":
        named += [
            ("neck", f"{s}_shoulder", 0.05),
            ("pelvis", f"{s}_hip", 0.06),
            (f"{s}_shoulder", f"{s}_elbow", 0.05),
            (f"{s}_elbow", f"{s}_wrist", 0.045),
            (f"{s}_hip", f"{s}_knee", 0.06),
            (f"{s}_knee", f"{s}_ankle", 0.05),
            (f"{s}_ankle", f"{s}_toe", 0.04),
        ]
    return tuple((_POINT[a], _POINT[b], w) for a, b, w in named)


_SEGMENTS = _segments()
_HALF_WIDTH = max(w for _, _, w in _SEGMENTS) / 2


def _sample_scene(label: int, seed: int, num_frames: int, size: int, fps: float) -> tuple[_Scene, np.ndarray]:
    """Every nuisance of one video, and its joints (T, J, 3); the figure stays whole inside the frame."""
    action = _ACTIONS[label]
    view = _BY_NAME[action.reverse_of].view if action.reverse_of else action.view
    periodic = _BY_NAME[action.reverse_of or action.name].periodic
    rng = np.random.default_rng(seed)
    speed = rng.uniform(*SPEED_RANGE)
    u_phase = rng.random()
    phase = u_phase if periodic else (2 * u_phase - 1) * ONE_SHOT_OFFSET
    mirror = bool(rng.random() < 0.5)
    yaw = (1.0 if rng.random() < 0.5 else -1.0) * (view[0] + (view[1] - view[0]) * rng.random())
    scale, thickness, drift_u = rng.uniform(0.45, 0.8), rng.uniform(0.8, 1.2), rng.uniform(0.6, 1.4)
    amp = rng.uniform(0.0, 0.025) * size
    shake = np.zeros((num_frames, 2))
    for t, step in enumerate(rng.standard_normal((num_frames, 2))):
        shake[t] = (0.7 * shake[t - 1] if t else 0.0) + step
    jitter = np.round(shake / max(np.abs(shake).max(), 1e-9) * amp).astype(np.int64)
    margin = int(np.ceil(amp)) + 2
    pos = rng.random(2)
    if rng.random() < 0.5:  # dark background, light figure
        lo = rng.uniform(0, 40)
        hi, lum = lo + rng.uniform(60, 110), rng.uniform(190, 240)
    else:
        hi = rng.uniform(190, 250)
        lo, lum = hi - rng.uniform(60, 100), rng.uniform(10, 55)
    tint = rng.uniform(-45, 45, 3)
    colour = np.clip(lum + tint - tint @ [0.114, 0.587, 0.299], 0, 255)  # BGR luma weights
    background = _background(rng, size + 2 * margin, lo, hi)
    distractors = []
    for _ in range(int(rng.integers(0, 4))):
        shape = ("circle", "ring", "square", "triangle")[int(rng.integers(4))]
        radius, front = rng.uniform(0.04, 0.12) * size, bool(rng.random() < 0.3)
        distractors.append(
            _Distractor(
                shape=shape,
                colour=tuple(rng.uniform(0, 255, 3).tolist()),
                radius=min(radius, 0.07 * size) if front else radius,
                start=rng.uniform(0, size, 2),
                velocity=rng.uniform(0.05, 0.3) * size / fps * _unit(rng.uniform(0, 2 * np.pi)),
                angle=rng.uniform(0, 2 * np.pi),
                spin=rng.uniform(-0.1, 0.1),
                front=front,
            )
        )
    noise, blur, quality = rng.uniform(0, 8), rng.uniform(0, 1.2) * size / 128, int(rng.integers(40, 96))
    noise_seed = int(rng.integers(2**63))

    joints = pose_sequence(label, num_frames, speed, phase, fps=fps, mirror=mirror)
    seen = _rotate_y(_with_feet(joints), yaw)
    pad = _HALF_WIDTH * thickness
    head = seen[:, _J["head"]]
    x_lo = min(float(seen[..., 0].min()) - pad, float(head[:, 0].min()) - _HEAD_R)
    x_hi = max(float(seen[..., 0].max()) + pad, float(head[:, 0].max()) + _HEAD_R)
    y_lo, y_hi = float(seen[..., 1].min()) - pad, float(head[:, 1].max()) + _HEAD_R
    room = size - 2 * margin - 2
    px = min(scale * size / _HEIGHT, room / (y_hi - y_lo), room / (x_hi - x_lo))
    drift = 0.0
    if action.drift:  # walk/run travel the way they face, slowly enough to stay in frame
        travel = drift_u * action.drift * speed * size * (num_frames - 1) / fps
        drift = float(np.sign(np.sin(np.radians(yaw))) * min(travel, room - (x_hi - x_lo) * px))
    ox_lo = margin + 1 - x_lo * px - min(drift, 0.0)
    ox_hi = size - margin - 1 - x_hi * px - max(drift, 0.0)
    oy_lo, oy_hi = margin + 1 + y_hi * px, size - margin - 1 + y_lo * px
    scene = _Scene(
        label=label, num_frames=num_frames, size=size, fps=fps, speed=speed, phase=phase, mirror=mirror,
        yaw=yaw, px=px, origin=(ox_lo + pos[0] * (ox_hi - ox_lo), oy_lo + pos[1] * (oy_hi - oy_lo)),
        drift=drift, jitter=jitter, background=background, margin=margin, colour=colour,
        shade=np.full(3, (lo + hi) / 2), thickness=thickness, distractors=tuple(distractors),
        noise=noise, blur=blur if blur >= 0.4 else 0.0, quality=quality, noise_seed=noise_seed,
    )  # fmt: skip
    return scene, joints


def _unit(angle: float) -> np.ndarray:
    return np.array([np.cos(angle), np.sin(angle)])


def _reflect(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Bounce positions back and forth inside [lo, hi]."""
    span = max(hi - lo, 1e-6)
    y = np.mod(x - lo, 2 * span)
    return lo + span - np.abs(y - span)


def _draw_distractor(
    img: np.ndarray, d: _Distractor, t: int, size: int, shift: np.ndarray, value: float | None = None
) -> None:
    """Draw distractor `d` at frame t (coordinates in 1/16 px); `value` overrides its colour (mask layers)."""
    centre = _reflect(d.start + d.velocity * t, d.radius, size - d.radius) + shift
    colour = d.colour if value is None else value
    c = tuple(int(v) for v in np.round(centre * 16))
    r = round(d.radius * 16)
    if d.shape == "circle":
        cv2.circle(img, c, r, colour, -1, cv2.LINE_AA, 4)
    elif d.shape == "ring":
        cv2.circle(img, c, r, colour, max(2, int(d.radius / 3)), cv2.LINE_AA, 4)
    else:
        n = 4 if d.shape == "square" else 3
        a = d.angle + d.spin * t + np.arange(n) * 2 * np.pi / n
        pts = centre + d.radius * np.stack([np.cos(a), np.sin(a)], axis=-1)
        cv2.fillPoly(img, [np.round(pts * 16).astype(np.int32)], colour, cv2.LINE_AA, 4)


def _box(mask: np.ndarray) -> np.ndarray:
    """Tight box (x0, y0, x1, y1) of a mask: x0, y0 inclusive, x1, y1 exclusive; zeros when empty."""
    rows, cols = mask.any(axis=1), mask.any(axis=0)
    if not rows.any():
        return np.zeros(4, np.int32)
    y0, x0 = int(rows.argmax()), int(cols.argmax())
    y1, x1 = len(rows) - int(rows[::-1].argmax()), len(cols) - int(cols[::-1].argmax())
    return np.array([x0, y0, x1, y1], np.int32)


def _render(scene: _Scene, joints: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Frames of a scene, one at a time: (image (S, S, 3) uint8 BGR, mask (S, S) bool, box (4,) int32).

    The mask is the figure's own layer (coverage ≥ 1/2) after camera jitter and before blur, noise and
    JPEG, minus what a front distractor hides; the box is the mask's tight box, in output pixels.
    """
    size, m, n = scene.size, scene.margin, scene.num_frames
    seen = _rotate_y(_with_feet(joints), scene.yaw)  # (T, J + 2, 3)
    t = np.arange(n)
    x = scene.origin[0] + seen[..., 0] * scene.px + (scene.drift * t / max(n - 1, 1))[:, None]
    y = scene.origin[1] - seen[..., 1] * scene.px
    xy = np.round((np.stack([x, y], axis=-1) + scene.jitter[:, None, :]) * 16).astype(np.int64)  # 1/16 px
    seg_depth = np.stack([(seen[:, a, 2] + seen[:, b, 2]) / 2 for a, b, _ in _SEGMENTS], axis=1)
    depth = np.concatenate([seg_depth, seen[:, _J["head"], 2:3]], axis=1)  # (T, segments + head)
    fade = 0.35 * np.clip((seg_depth[:, :1] - depth) / 0.08, 0.0, 1.0)[..., None]  # fade what is behind
    colours = (scene.colour * (1 - fade) + scene.shade * fade).tolist()  # (T, segments + head, 3)
    reach = int(np.ceil(max(_HALF_WIDTH * scene.thickness, _HEAD_R) * scene.px)) + 2
    corner_lo = np.clip(xy.min(axis=1) // 16 - reach, 0, size)  # (T, 2) region the figure can touch
    corner_hi = np.clip(xy.max(axis=1) // 16 + reach + 1, 0, size)
    widths = [max(1, round(w * scene.px * scene.thickness)) for _, _, w in _SEGMENTS]
    head_r = round(_HEAD_R * scene.px * 16)
    behind = [d for d in scene.distractors if not d.front]
    front = [d for d in scene.distractors if d.front]
    rng = np.random.default_rng(scene.noise_seed)
    # Sensor noise: a random crop of one 2S x 2S bank per frame, a fifth of the cost of fresh draws.
    bank = rng.standard_normal((2 * size, 2 * size, 3), dtype=np.float32) * np.float32(scene.noise)
    crops = rng.integers(0, size, (n, 2))
    for i in range(n):
        shift = scene.jitter[i].astype(np.float64)
        jx, jy = (int(v) for v in scene.jitter[i])
        frame = scene.background[m - jy : m - jy + size, m - jx : m - jx + size].copy()
        for d in behind:
            _draw_distractor(frame, d, i, size, shift)
        paint = np.zeros((size, size, 3), np.uint8)
        alpha = np.zeros((size, size), np.uint8)
        for k in np.argsort(depth[i], kind="stable").tolist():
            colour = colours[i][k]
            if k == len(_SEGMENTS):
                c = tuple(int(v) for v in xy[i, _J["head"]])
                cv2.circle(paint, c, head_r, colour, -1, cv2.LINE_AA, 4)
                cv2.circle(alpha, c, head_r, 255, -1, cv2.LINE_AA, 4)
                continue
            a, b, _ = _SEGMENTS[k]
            pa, pb = tuple(int(v) for v in xy[i, a]), tuple(int(v) for v in xy[i, b])
            cv2.line(paint, pa, pb, colour, widths[k], cv2.LINE_AA, 4)
            cv2.line(alpha, pa, pb, 255, widths[k], cv2.LINE_AA, 4)
        (x0, y0), (x1, y1) = corner_lo[i], corner_hi[i]
        cover = alpha[y0:y1, x0:x1, None].astype(np.float32) * np.float32(1 / 255)
        region = frame[y0:y1, x0:x1] * (1 - cover) + paint[y0:y1, x0:x1]  # paint is premultiplied by AA
        frame[y0:y1, x0:x1] = region.clip(0, 255).astype(np.uint8)
        mask = alpha >= 128
        if front:
            hidden = np.zeros((size, size), np.uint8)
            for d in front:
                _draw_distractor(frame, d, i, size, shift)
                _draw_distractor(hidden, d, i, size, shift, 255)
            mask &= hidden < 128
        box = _box(mask)
        if scene.blur:
            frame = cv2.GaussianBlur(frame, (0, 0), scene.blur)
        (cx, cy) = crops[i]
        frame = (frame + bank[cy : cy + size, cx : cx + size]).clip(0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, scene.quality])
        if not ok:
            raise RuntimeError("cv2.imencode failed to write a JPEG")
        yield cv2.imdecode(buf, cv2.IMREAD_COLOR), mask, box


# ---------------------------------------------------------------------------------------------------------
# Public API: one video at once, or its frames one at a time.


@dataclass(frozen=True, eq=False)
class SynthVideo:
    """One generated video with its ground truth.

    frames (T, H, W, 3) uint8 BGR; boxes (T, 4) int32 (x0, y0, x1, y1): the tight box of the mask, x0/y0
    inclusive, x1/y1 exclusive, in output pixels (after camera jitter); masks (T, H, W) bool: the figure's
    drawn pixels (before blur, noise and JPEG; minus what a distractor in front hides).
    """

    frames: np.ndarray
    boxes: np.ndarray
    masks: np.ndarray
    label: int
    name: str
    seed: int
    fps: float


def check_video_args(seed: int, num_frames: int, size: int, fps: float) -> None:
    """Refuse, by name, what the renderer cannot draw (checked before any work, so errors come early)."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed ({seed!r}) must be a non-negative integer")
    if num_frames < 1:
        raise ValueError(f"num_frames ({num_frames}) must be at least 1")
    if size < 32:
        raise ValueError(f"size ({size}) must be at least 32 pixels")
    if not fps > 0:
        raise ValueError(f"fps ({fps}) must be positive")


def generate_video(
    label: int | str, seed: int, *, num_frames: int = 48, size: int = 128, fps: float = 15.0
) -> SynthVideo:
    """Generate one square video of class `label` (index or name); the same arguments give the same bytes."""
    label = class_index(label)
    frames, masks, boxes = zip(
        *render_frames(label, seed, num_frames=num_frames, size=size, fps=fps), strict=True
    )
    return SynthVideo(
        np.stack(frames), np.stack(boxes), np.stack(masks), label, CLASSES[label], int(seed), float(fps)
    )


def render_frames(
    label: int | str, seed: int, *, num_frames: int, size: int, fps: float
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The frames of `generate_video(label, seed, ...)` one at a time, so a live source holds only one:
    (image (S, S, 3) uint8 BGR, mask (S, S) bool, box (4,) int32). Arguments are checked here, not at the
    first frame."""
    label = class_index(label)
    check_video_args(seed, num_frames, size, fps)
    return _render(*_sample_scene(label, int(seed), num_frames, size, float(fps)))
