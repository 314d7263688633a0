"""Clip transforms: BGR uint8 frames (OpenCV order) → normalised RGB float tensor (T, 3, crop, crop).

Geometry is done with cv2 on uint8 frames (bilinear), then one tensor op converts and normalises.
Random choices are drawn once per clip from the rng given, so every frame gets the same crop and flip.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor

from glanet.config import DataConfig

Frames = Sequence[np.ndarray] | np.ndarray  # T frames, each (H, W, 3) uint8 BGR
_INTERPOLATION = cv2.INTER_LINEAR


def resized_size(height: int, width: int, resize: Sequence[int]) -> tuple[int, int]:
    """(h, w) after resizing: `resize` is (h, w), or one value for the short side (torchvision's rule)."""
    if len(resize) == 2:
        return int(resize[0]), int(resize[1])
    if len(resize) != 1:
        raise ValueError(f"resize = {list(resize)} must hold 1 or 2 sizes")
    size = int(resize[0])
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def resize_frame(frame: np.ndarray, resize: Sequence[int]) -> np.ndarray:
    h, w = resized_size(frame.shape[0], frame.shape[1], resize)
    if (h, w) == frame.shape[:2]:
        return frame
    return cv2.resize(frame, (w, h), interpolation=_INTERPOLATION)


def center_crop_box(height: int, width: int, crop: int) -> tuple[int, int]:
    """Top-left corner of a centred crop, rounded as torchvision's CenterCrop does."""
    if crop > height or crop > width:
        raise ValueError(
            f"crop {crop} is larger than the {height}x{width} frame; resize to at least the crop"
        )
    return round((height - crop) / 2.0), round((width - crop) / 2.0)


def random_resized_crop_box(
    height: int,
    width: int,
    scale: Sequence[float],
    ratio: Sequence[float],
    rng: np.random.Generator,
) -> tuple[int, int, int, int]:
    """(top, left, h, w) drawn as torchvision's RandomResizedCrop.get_params does, with `rng`.

    Ten tries at an area fraction in `scale` and a log-uniform aspect ratio in `ratio`; if none fits,
    the largest centred crop whose aspect ratio lies within `ratio`.
    """
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        h, w = height, round(height * max(ratio))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def _check_frames(frames: Frames) -> list[np.ndarray]:
    frames = list(frames)
    if not frames:
        raise ValueError("a clip needs at least one frame")
    shape = frames[0].shape
    for i, f in enumerate(frames):
        if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
            raise ValueError(f"frame {i}: expected (H, W, 3) uint8 BGR, got {f.shape} {f.dtype}")
        if f.shape != shape:
            raise ValueError(
                f"frame {i} is {f.shape[:2]}, frame 0 is {shape[:2]}: a clip's frames must match"
            )
    return frames


def to_tensor(
    frames: Sequence[np.ndarray], mean: Sequence[float], std: Sequence[float], color: str = "rgb"
) -> Tensor:
    """(T, H, W, 3) uint8 BGR → (T, 3, H, W) float32, channels in `color` order, (x/255 − mean) / std."""
    array = np.stack(frames)
    if color == "rgb":
        array = array[..., ::-1]
    elif color != "bgr":
        raise ValueError(f"color = {color!r} must be 'rgb' or 'bgr'")
    x = torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).float().div_(255.0)  # (T, 3, H, W)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return x.sub_(m).div_(s)


def _eval_geometry(frame: np.ndarray, resize: Sequence[int], crop: int) -> np.ndarray:
    frame = resize_frame(frame, resize)
    top, left = center_crop_box(frame.shape[0], frame.shape[1], crop)
    return frame[top : top + crop, left : left + crop]


@dataclass(frozen=True)
class ClipTransform:
    """`(frames, rng) -> Tensor (T, 3, crop, crop)`; eval ignores the rng, train needs one."""

    train: bool
    resize: tuple[int, ...]
    crop: int
    train_crop: str = "random_resized"  # random_resized | random
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 4.0 / 3.0)
    flip: float = 0.5
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        if self.train_crop not in ("random_resized", "random"):
            raise ValueError(f"train_crop = {self.train_crop!r} must be 'random_resized' or 'random'")
        if not 0.0 <= self.flip <= 1.0:
            raise ValueError(f"flip = {self.flip} must be a probability in [0, 1]")

    def __call__(self, frames: Frames, rng: np.random.Generator | None = None) -> Tensor:
        frames = _check_frames(frames)
        if not self.train:
            out = [_eval_geometry(f, self.resize, self.crop) for f in frames]
            return to_tensor(out, self.mean, self.std)
        if rng is None:
            raise ValueError(
                "the training transform needs an rng (np.random.Generator) for its crop and flip"
            )
        frames = [resize_frame(f, self.resize) for f in frames]
        height, width = frames[0].shape[:2]
        if self.train_crop == "random_resized":
            top, left, h, w = random_resized_crop_box(height, width, self.crop_scale, self.crop_ratio, rng)
        else:
            if self.crop > height or self.crop > width:
                raise ValueError(f"crop {self.crop} is larger than the {height}x{width} resized frame")
            top = int(rng.integers(0, height - self.crop + 1))
            left = int(rng.integers(0, width - self.crop + 1))
            h = w = self.crop
        flip = bool(rng.random() < self.flip)
        out = []
        for f in frames:
            f = f[top : top + h, left : left + w]
            if (h, w) != (self.crop, self.crop):
                f = cv2.resize(f, (self.crop, self.crop), interpolation=_INTERPOLATION)
            out.append(f[:, ::-1] if flip else f)
        return to_tensor(out, self.mean, self.std)


def build_transforms(cfg: DataConfig, train: bool) -> ClipTransform:
    """The clip transform: train = resize, random(-resized) crop, flip; eval = resize, centre crop."""
    return ClipTransform(
        train=train,
        resize=tuple(cfg.resize),
        crop=cfg.crop,
        train_crop=cfg.train_crop,
        crop_scale=tuple(cfg.crop_scale),
        crop_ratio=tuple(cfg.crop_ratio),
        flip=cfg.flip,
        mean=tuple(cfg.mean),
        std=tuple(cfg.std),
    )


def preprocessing_dict(cfg: DataConfig) -> dict[str, Any]:
    """The eval preprocessing as plain data, for the checkpoint: input BGR uint8 frames."""
    return {
        "resize": list(cfg.resize),
        "crop": cfg.crop,
        "mean": list(cfg.mean),
        "std": list(cfg.std),
        "color": "rgb",  # channel order of the tensor and of mean/std; frames come in as BGR
        "interpolation": "bilinear",
    }


@dataclass(frozen=True)
class EvalTransform:
    """The eval transform a checkpoint's `preprocessing` dict describes: resize, centre crop, normalise.

    The one reader of that dict: evaluation, streaming and the engines all preprocess through it.
    """

    resize: tuple[int, ...]
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    color: str = "rgb"

    @classmethod
    def from_preprocessing(cls, pre: Mapping[str, Any]) -> EvalTransform:
        missing = [k for k in ("resize", "crop", "mean", "std") if k not in pre]
        if missing:
            raise ValueError(f"preprocessing lacks {', '.join(missing)} (needs resize, crop, mean, std)")
        if pre.get("interpolation", "bilinear") != "bilinear":
            raise ValueError(
                f"preprocessing interpolation {pre['interpolation']!r}: only 'bilinear' is implemented"
            )
        color = pre.get("color", "rgb")
        if color not in ("rgb", "bgr"):
            raise ValueError(f"preprocessing color {color!r} must be 'rgb' or 'bgr'")
        return cls(
            tuple(int(v) for v in pre["resize"]),
            int(pre["crop"]),
            tuple(float(v) for v in pre["mean"]),  # type: ignore[arg-type]
            tuple(float(v) for v in pre["std"]),  # type: ignore[arg-type]
            color,
        )

    def __call__(self, frames: Frames, rng: np.random.Generator | None = None) -> Tensor:
        """BGR uint8 frames -> (T, 3, crop, crop); `rng` is ignored (the dataset contract passes one)."""
        out = [_eval_geometry(f, self.resize, self.crop) for f in _check_frames(frames)]
        return to_tensor(out, self.mean, self.std, self.color)

    def geometry(self, frame: np.ndarray) -> np.ndarray:
        """One BGR uint8 frame resized and centre-cropped: (crop, crop, 3) uint8, not yet normalised."""
        return _eval_geometry(_check_frames([frame])[0], self.resize, self.crop)

    def crop_box(self, height: int, width: int) -> tuple[float, float, float, float]:
        """The region (x0, y0, x1, y1) of a height x width source frame that the model sees."""
        h2, w2 = resized_size(height, width, self.resize)
        top, left = center_crop_box(h2, w2, self.crop)
        sx, sy = width / w2, height / h2
        return left * sx, top * sy, (left + self.crop) * sx, (top + self.crop) * sy

    def denormalise(self, frame: Tensor) -> np.ndarray:
        """(3, H, W) model input -> (H, W, 3) uint8 BGR for drawing."""
        m = torch.tensor(self.mean).view(3, 1, 1)
        s = torch.tensor(self.std).view(3, 1, 1)
        x = (frame.float().cpu() * s + m).clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
        return np.ascontiguousarray(x[..., ::-1] if self.color == "rgb" else x)


def preprocess_frame(frame_bgr: np.ndarray, preprocessing: Mapping[str, Any]) -> Tensor:
    """One BGR uint8 frame → (3, crop, crop): exactly the eval clip transform, frame by frame."""
    return EvalTransform.from_preprocessing(preprocessing)([frame_bgr])[0]
