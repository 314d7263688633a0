"""The recognizer: streaming predictions equal offline clip predictions; resampling by timestamp follows the
offline decoding rule; resets on a new connection, time going backwards, or a long gap."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engines.torch_backend import TorchBackend
from glanet.data.transforms import EvalTransform
from glanet.data.video import resample_indices
from glanet.models.config import ModelConfig
from glanet.models.glanet import GLANet
from stream.runtime.recognizer import Recognizer, RecognizerConfig, Resampler
from stream.types import Frame

PRE = {"resize": [40, 40], "crop": 32, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "color": "rgb"}
CLASSES = tuple(f"c{i}" for i in range(5))


@pytest.fixture(scope="module")
def model() -> GLANet:
    torch.manual_seed(1)
    cfg = ModelConfig(
        backbone="resnet10", num_classes=5, sru_hidden=16, sru_layers=2, sru_dropout=0.0, la_hidden=8
    )
    m = GLANet(cfg).eval()
    # calibrated BN statistics: with defaults a random trunk's outputs are huge and comparisons meaningless
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m.encode(torch.randn(16, 3, 32, 32))
    return m.eval()


def frames(n: int, fps: float, connection: int = 0, t0: float = 0.0, seed: int = 0) -> list[Frame]:
    rng = np.random.default_rng(seed)
    return [
        Frame(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), i, t0 + i / fps, 0.0, connection)
        for i in range(n)
    ]


def recognizer(
    model: GLANet, fps: float, window: int, stride: int, source_fps: float | None, **kw
) -> Recognizer:
    return Recognizer(
        TorchBackend(model),
        preprocessing=PRE,
        sampling={"fps": fps, "window": window, "stride": stride},
        class_names=CLASSES,
        config=RecognizerConfig(**kw),
        source_fps=source_fps,
    )


def offline(model: GLANet, images: list[np.ndarray]) -> torch.Tensor:
    clip = EvalTransform.from_preprocessing(PRE)(images).unsqueeze(0)  # (1, T, 3, 32, 32)
    with torch.no_grad():
        return model(clip).fused[0]


@pytest.mark.parametrize(("window", "stride"), [(6, 3), (8, 3), (4, 4), (5, 1)])
def test_streaming_equals_offline_clip_of_the_state_shown(model, window, stride):
    fs = frames(3 * window + 2, fps=5.0)
    rec = recognizer(model, 5.0, window, stride, source_fps=5.0)
    histories = []
    for t, f in enumerate(fs):
        p = rec.push(f)
        assert p is not None and p.step == t and p.frame.index == t
        histories.append(p.history)
        assert p.warm == (t + 1 >= window)  # warm from the first full window on, for good
        # the prediction is the offline prediction of the clip of the last `history` model frames
        clip = [g.image for g in fs[t - p.history + 1 : t + 1]]
        torch.testing.assert_close(torch.from_numpy(p.raw_probs), offline(model, clip), atol=1e-5, rtol=0)
        np.testing.assert_allclose(p.probs.sum(), 1.0, atol=1e-5)
        assert p.branch_probs.shape == (3, 5)
        assert p.maps["sa"].shape == p.maps["la"].shape and abs(p.maps["sa"].sum() - 1) < 1e-4
    assert histories[:window] == list(range(1, window + 1))  # warming up, then full windows
    assert max(histories) == window
    # once warm, the state shown always has between W-S+1 and W frames behind it
    assert min(histories[window:]) >= window - stride + 1
    assert histories.count(window) >= 3


@pytest.mark.parametrize(
    ("src", "dst"), [(15.0, 5.0), (25.0, 7.5), (30.0, 7.5), (5.0, 7.5), (7.5, 7.5), (12.0, 10.0)]
)
def test_resampler_follows_the_offline_decoding_rule(src, dst):
    n = 97
    r = Resampler(dst, source_fps=src)
    by_tick: list[int] = []
    for i in range(n):
        by_tick.extend([i] * len(r.ticks(i / src)))
    want = resample_indices(n, src, dst)
    # the stream cannot know the last frame is the last: it may fill ticks past offline's end
    assert by_tick[: len(want)] == want.tolist()
    assert len(by_tick) - len(want) <= 2


def test_live_resampler_takes_the_first_frame_at_or_after_each_tick():
    r = Resampler(10.0)  # no known source rate
    stamps = [0.0, 0.03, 0.07, 0.11, 0.14, 0.19, 0.21, 0.52]
    got = [len(r.ticks(t)) for t in stamps]
    # ticks at 0, .1, .2, .3, .4, .5: .11 fills .1, .21 fills .2, .52 fills .3 .4 .5 (frames were lost)
    assert got == [1, 0, 0, 1, 0, 0, 1, 3]


def test_upsampled_frames_are_encoded_once_and_stepped_per_tick(model):
    fs = frames(10, fps=2.5)  # a slow source: each frame fills two or three 7.5-fps ticks
    rec = recognizer(model, 7.5, 8, 4, source_fps=2.5)
    for f in fs:
        rec.push(f)
    assert rec.encoded == 10
    assert rec.steps == resample_indices(10, 2.5, 7.5).size


def test_new_connection_time_backwards_and_long_gaps_reset(model):
    rec = recognizer(model, 5.0, 4, 2, source_fps=None)
    hist = [rec.push(f).history for f in frames(5, 5.0)]
    assert hist == [1, 2, 3, 4, 3]
    assert rec.push(frames(1, 5.0, connection=1, t0=1.0)[0]).history == 1  # reconnect
    assert rec.push(frames(1, 5.0, connection=1, t0=1.2)[0]).history == 2
    assert rec.push(frames(1, 5.0, connection=1, t0=0.4)[0]).history == 1  # time went backwards
    # a gap shorter than a window keeps the state: the frame fills the ticks it skipped
    p = rec.push(frames(1, 5.0, connection=1, t0=0.8)[0])
    assert p.history == 3 and rec.resets == 2
    p = rec.push(frames(1, 5.0, connection=1, t0=10.0)[0])  # 9.2 s with no frame: longer than 4 / 5 s
    assert p.history == 1 and rec.resets == 3


def test_smoothing_is_an_exponential_average_of_fused_probabilities(model):
    rec = recognizer(model, 5.0, 4, 2, source_fps=5.0, smoothing=0.75)
    prev = None
    for f in frames(6, 5.0):
        p = rec.push(f)
        want = p.raw_probs if prev is None else 0.75 * prev + 0.25 * p.raw_probs
        np.testing.assert_allclose(p.probs, want, atol=1e-7)
        prev = p.probs


def test_crop_box_is_where_the_model_looked(model):
    rec = recognizer(model, 5.0, 4, 2, source_fps=5.0)
    p = rec.push(frames(1, 5.0)[0])  # 48x64 frame resized to 40x40, centre crop 32
    np.testing.assert_allclose(p.crop_box, (4 * 64 / 40, 4 * 48 / 40, 36 * 64 / 40, 36 * 48 / 40))


def test_bad_sampling_is_refused(model):
    with pytest.raises(ValueError, match="stride"):
        recognizer(model, 5.0, 4, 5, source_fps=None)
    with pytest.raises(ValueError, match="fps"):
        Recognizer(
            TorchBackend(model), preprocessing=PRE, sampling={"window": 4, "stride": 2}, class_names=CLASSES
        )
    with pytest.raises(ValueError, match="smoothing"):
        recognizer(model, 5.0, 4, 2, source_fps=None, smoothing=1.0)
