"""glanet.data.transforms: one crop/flip per clip, eval = resize + centre crop, stream frame = eval clip."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from glanet.config import DataConfig
from glanet.data.transforms import (
    ClipTransform,
    build_transforms,
    preprocess_frame,
    preprocessing_dict,
    random_resized_crop_box,
    resized_size,
)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _frame(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _cfg(**kw) -> DataConfig:
    base = {"resize": (40, 40), "crop": 32}
    base.update(kw)
    return DataConfig(**base)


@pytest.mark.parametrize("train_crop", ["random_resized", "random"])
def test_identical_frames_give_identical_outputs(train_crop: str) -> None:
    t = build_transforms(_cfg(train_crop=train_crop), train=True)
    clip = [_frame(0)] * 6
    for seed in range(8):
        out = t(clip, np.random.default_rng(seed))
        assert out.shape == (6, 3, 32, 32) and out.dtype == torch.float32
        assert all(torch.equal(out[0], out[i]) for i in range(1, 6))


@pytest.mark.parametrize("train_crop", ["random_resized", "random"])
def test_same_geometry_on_every_frame(train_crop: str) -> None:
    # A marker moves through the frames; each output must equal the same crop/flip of its own frame,
    # which a geometric transform drawn per frame would break.
    frames = []
    for i in range(5):
        f = np.zeros((48, 64, 3), np.uint8)
        f[10 + 2 * i : 14 + 2 * i, 8 + 5 * i : 12 + 5 * i] = (0, 0, 255)  # red square in BGR
        frames.append(f)
    t = build_transforms(_cfg(train_crop=train_crop, crop_scale=(0.3, 1.0), flip=0.5), train=True)
    flips = set()
    for seed in range(10):
        out = t(frames, np.random.default_rng(seed))
        for i, f in enumerate(frames):
            assert torch.equal(out[i], t([f], np.random.default_rng(seed))[0])
        # The marker's red channel (RGB index 0) is high where the square landed; frame 0 vs 4 moved right,
        # unless flipped, in which case it moved left.
        cols = [out[i, 0].amax(dim=0).argmax().item() for i in (0, 4)]
        if out[0, 0].max() > 1 and out[4, 0].max() > 1:
            flips.add(cols[1] < cols[0])
    assert flips == {False, True}  # both the flipped and the unflipped case were seen


def test_eval_is_resize_then_centre_crop_by_hand() -> None:
    cfg = DataConfig(resize=(40, 44), crop=32)
    frames = [_frame(i, 50, 70) for i in range(3)]
    out = build_transforms(cfg, train=False)(frames)
    for i, f in enumerate(frames):
        r = cv2.resize(f, (44, 40), interpolation=cv2.INTER_LINEAR)[4:36, 6:38]
        rgb = r[..., ::-1].astype(np.float32) / 255.0
        want = (rgb - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
        np.testing.assert_allclose(out[i].numpy(), want.transpose(2, 0, 1), atol=1e-6)


def test_short_side_resize_matches_torchvision_rule() -> None:
    assert resized_size(240, 320, (256,)) == (256, 341)
    assert resized_size(320, 240, (256,)) == (341, 256)
    assert resized_size(240, 320, (256, 256)) == (256, 256)
    out = build_transforms(DataConfig(resize=(36,), crop=32), train=False)([_frame(1, 48, 64)])
    assert out.shape == (1, 3, 32, 32)


def test_preprocess_frame_equals_eval_clip_transform() -> None:
    for cfg in (DataConfig(resize=(40, 40), crop=32), DataConfig(resize=(36,), crop=32)):
        frames = [_frame(i) for i in range(4)]
        clip = build_transforms(cfg, train=False)(frames)
        pre = preprocessing_dict(cfg)
        assert pre["color"] == "rgb" and pre["resize"] == list(cfg.resize)
        for i, f in enumerate(frames):
            assert torch.equal(preprocess_frame(f, pre), clip[i])
    # A checkpoint's dict without the optional keys means the same.
    minimal = {k: pre[k] for k in ("resize", "crop", "mean", "std")}
    assert torch.equal(preprocess_frame(frames[0], minimal), clip[0])


def test_random_resized_crop_box_follows_torchvision() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = random_resized_crop_box(40, 60, (0.08, 1.0), (3 / 4, 4 / 3), rng)
        assert top >= 0 and top + h <= 40 and left >= 0 and left + w <= 60
        assert 0.08 * 2400 * 0.8 <= h * w <= 2400
    # Scales that can never fit fall back to the largest centred crop within the ratio range.
    assert random_resized_crop_box(40, 100, (2.0, 3.0), (3 / 4, 4 / 3), rng) == (0, 23, 40, 53)
    assert random_resized_crop_box(40, 40, (2.0, 3.0), (3 / 4, 4 / 3), rng) == (0, 0, 40, 40)


def test_train_needs_rng_and_frames_must_match() -> None:
    t = build_transforms(_cfg(), train=True)
    with pytest.raises(ValueError, match="needs an rng"):
        t([_frame(0)])
    with pytest.raises(ValueError, match="frame 1 is"):
        t([_frame(0), _frame(1, 50, 64)], np.random.default_rng(0))
    with pytest.raises(ValueError, match="uint8 BGR"):
        t([np.zeros((48, 64, 3), np.float32)], np.random.default_rng(0))
    with pytest.raises(ValueError, match="flip"):
        ClipTransform(train=True, resize=(40, 40), crop=32, flip=1.5)


def test_no_flip_when_probability_zero() -> None:
    frames = [_frame(3)]
    t = build_transforms(_cfg(train_crop="random", resize=(32, 32), flip=0.0), train=True)
    e = build_transforms(_cfg(resize=(32, 32)), train=False)
    assert torch.equal(t(frames, np.random.default_rng(0)), e(frames))
