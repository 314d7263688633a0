"""SMNet in the multi-camera runtime: its causal buffers are per-camera encode state, batched rounds equal
independent recognizers, and every live prediction equals the causal model's clip run over the frames since
the camera (re)connected: the mean of the last W frames' logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_multicam import camera_frames, run_rounds

from engines.torch_backend import TorchBackend
from glanet.data.transforms import EvalTransform
from glanet.models import SMNet, build_model
from glanet.models.config import SMNetConfig
from stream.runtime.recognizer import Recognizer
from stream.runtime.session import Session

PRE = {"resize": [40, 40], "crop": 32, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "color": "rgb"}
CLASSES = tuple(f"c{i}" for i in range(5))
SAMPLING = {"fps": 5.0, "window": 4, "stride": 4}
W = 4


@pytest.fixture(scope="module")
def model() -> SMNet:
    torch.manual_seed(4)
    cfg = SMNetConfig(backbone="resnet10", num_classes=5, causal=True, window=W, dropout=0.0)
    m = build_model(cfg, input_size=32)
    m.train()
    with torch.no_grad():  # calibrated BN statistics: random weights then give distinct predictions
        for _ in range(3):
            m(torch.randn(4, 4, 3, 32, 32))
    return m.eval()


def clip_prediction(model: SMNet, images: list[np.ndarray]) -> torch.Tensor:
    """The causal clip run over `images` (from the stream's start): softmax of its last W frames' mean."""
    clip = EvalTransform.from_preprocessing(PRE)(images).unsqueeze(0)
    with torch.no_grad():
        logits = model.frame_logits(clip)[0, -W:].mean(dim=0)
    return torch.softmax(logits, dim=-1)


@pytest.mark.parametrize("n", [1, 3])
def test_batched_smnet_cameras_equal_recognizers_and_the_causal_clip_run(model, n):
    backend = TorchBackend(model)
    assert model.spec.restarts is False and model.spec.encode_state
    streams = [camera_frames(c, 14, 5.0, reconnect_at=7 if c == 1 else None) for c in range(n)]
    sessions = [
        Session(model.spec, preprocessing=PRE, sampling=SAMPLING, class_names=CLASSES, camera=f"cam{c}")
        for c in range(n)
    ]
    assert all(s.num_rows == 1 for s in sessions)  # a sliding window: one row per camera, no staggering
    singles = [
        Recognizer(backend, preprocessing=PRE, sampling=SAMPLING, class_names=CLASSES) for _ in range(n)
    ]
    batched, alone, _ = run_rounds(backend, sessions, singles, streams)
    for c in range(n):
        assert len(batched[c]) == len(alone[c]) == 14
        for b, a in zip(batched[c], alone[c], strict=True):
            np.testing.assert_allclose(b.raw_probs, a.raw_probs, atol=1e-5, rtol=0)
            np.testing.assert_allclose(b.maps["se"], a.maps["se"], atol=1e-5, rtol=0)
        frames = streams[c]
        for p in batched[c]:
            t = p.frame.index
            start = 7 if c == 1 and t >= 7 else 0  # a reconnect restarts the buffers and the window
            images = [f.image for f in frames[start : t + 1]]
            torch.testing.assert_close(
                torch.from_numpy(p.raw_probs), clip_prediction(model, images), atol=1e-5, rtol=0
            )
