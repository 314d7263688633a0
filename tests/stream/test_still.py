"""The static-scene gate: a frame that shows nothing new since the last encoded one reuses its features.

The change test on its own (noise is nothing new, a figure entering is, a slow drift adds up), and on the
committed demo model over SynthActions videos with static stretches and sensor noise: the predictions with
the gate agree with those without (top-1 on >= 99%, every event found), a change after a still stretch is
encoded at once, the gate off encodes every frame, a batch mixing gated and ungated cameras equals each
camera alone, and SMNet (a backbone with state) is never gated."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engines.torch_backend import TorchBackend
from glanet.checkpoint import load_checkpoint
from glanet.data.synth_render import generate_video
from glanet.models import build_model
from glanet.models.config import SMNetConfig
from glanet.package_data import DEMO_CHECKPOINT
from stream.errors import SourceError
from stream.runtime.batch import Work, step_batch
from stream.runtime.recognizer import Recognizer, RecognizerConfig
from stream.runtime.session import Session
from stream.runtime.still import DEFAULT_SHARE, PIXEL, StillGate, changed_share
from stream.sources.cameras import camera_from_table
from stream.sources.thumbnail import small_copy
from stream.types import Frame

FPS = 15.0  # the source's rate; the demo model samples at 7.5


def scene(seed: int = 0, shape: tuple[int, int] = (240, 320)) -> np.ndarray:
    """A corridor-like still scene: smooth gradients and a few edges (noise alone would be no scene)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    base = 60 + 80 * (x / w) + 40 * (y / h)
    image = np.stack([base, base * 0.9, base * 0.8], axis=-1)
    for _ in range(6):
        x0, y0 = rng.integers(0, w - 40), rng.integers(0, h - 40)
        image[y0 : y0 + 30, x0 : x0 + 30] += rng.integers(-50, 50)
    return np.clip(image, 0, 255).astype(np.uint8)


def still_frame(image: np.ndarray) -> Frame:
    """A frame as the capture makes it: with the gate's small copy."""
    return Frame(image, 0, 0.0, 0.0, small=small_copy(image))


def noisy(image: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)


# -- the change test ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("sigma", [2.0, 5.0, 8.0])
def test_sensor_noise_on_a_still_scene_is_nothing_new(sigma):
    rng = np.random.default_rng(1)
    base, gate = scene(), StillGate()
    assert not gate.shows_nothing_new(still_frame(noisy(base, rng, sigma)))  # no reference yet: encoded
    gate.encoded()
    still = [gate.shows_nothing_new(still_frame(noisy(base, rng, sigma))) for _ in range(50)]
    assert all(still), f"{still.count(False)} of 50 noisy copies of one scene counted as new (sigma {sigma})"


def test_a_figure_entering_the_scene_is_new():
    rng = np.random.default_rng(2)
    base, gate = scene(), StillGate()
    gate.shows_nothing_new(still_frame(base))
    gate.encoded()
    person = base.copy()
    person[150:200, 100:125] = (30, 30, 200)  # 25x50 px of 320x240: a person far down a corridor
    assert not gate.shows_nothing_new(still_frame(noisy(person, rng, 3.0)))
    assert changed_share(small_copy(person), small_copy(base)) > 5 * gate.share


def test_a_slow_drift_adds_up_against_the_last_encoded_frame():
    """Each frame one grey level brighter than the one before: never new against the previous frame, but
    new against the last encoded one once the drift passes the pixel threshold."""
    base, gate = scene().astype(np.int16), StillGate()
    gate.shows_nothing_new(still_frame(base.astype(np.uint8)))
    gate.encoded()
    for step in range(1, 40):
        if not gate.shows_nothing_new(still_frame(np.clip(base + step, 0, 255).astype(np.uint8))):
            break
    assert PIXEL <= step <= PIXEL + 2, step  # new once it is PIXEL levels off the reference


def test_forget_makes_the_next_frame_new_and_the_share_is_checked():
    gate = StillGate()
    gate.shows_nothing_new(still_frame(scene()))
    gate.encoded()
    assert gate.shows_nothing_new(still_frame(scene()))
    gate.forget()
    assert not gate.shows_nothing_new(still_frame(scene()))
    with pytest.raises(ValueError, match="share"):
        StillGate(0.0)


def test_the_gate_is_a_camera_key_and_a_flag_in_range():
    assert camera_from_table({"name": "a", "source": "demo", "static_gate": 0.02}, "x").static_gate == 0.02
    with pytest.raises(SourceError, match=r"static_gate = 1.5 must be in \[0, 1\]"):
        camera_from_table({"name": "a", "source": "demo", "static_gate": 1.5}, "x")


# -- on the demo model -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: a thread pool only costs here; given back after
    ck = load_checkpoint(DEMO_CHECKPOINT, map_location="cpu")
    yield ck, TorchBackend(ck.model.eval())
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def video():
    """Four actions, each followed by a 3 s still stretch (its last frame), sensor noise on every frame;
    and where each action's first frame is."""
    rng = np.random.default_rng(0)
    images, starts = [], []
    for k, label in enumerate(["walk", "clap", "spin", "punch"]):
        frames = list(generate_video(label, 10 + k, num_frames=45, size=128, fps=FPS).frames)
        starts.append(len(images))
        images += frames + [frames[-1]] * 45
    return [noisy(im, rng, 3.0) for im in images], starts


def run(demo, images, share):
    ck, backend = demo
    config = RecognizerConfig(static_gate=share)
    rec = Recognizer(
        backend, preprocessing=ck.preprocessing, sampling=ck.sampling, class_names=ck.class_names,
        config=config, source_fps=FPS,
    )  # fmt: skip
    predictions = {}
    for i, image in enumerate(images):
        p = rec.push(Frame(image, i, i / FPS, 0.0))
        if p is not None:
            predictions[i] = p
    return predictions, rec.take_events(), rec.session


def test_with_the_gate_predictions_and_events_agree_with_every_frame_encoded(demo, video):
    images, _ = video
    off, events_off, s_off = run(demo, images, 0.0)
    on, events_on, s_on = run(demo, images, DEFAULT_SHARE)
    assert list(off) == list(on)
    agree = np.mean([off[i].top(1)[0][0] == on[i].top(1)[0][0] for i in off])
    assert agree >= 0.99, agree
    assert s_off.reused == 0 and s_off.encoded == len(off)
    # the still stretches are half the frames: most of them reused (not a gate that never fires)
    assert s_on.reused >= 0.4 * len(on) and s_on.reused + s_on.encoded == len(on), (s_on.reused, len(on))
    interval = 1 / demo[0].sampling["fps"]
    starts_on = [(e.label, e.start_ts) for e in events_on if e.kind == "start"]
    for e in (e for e in events_off if e.kind == "start"):
        assert any(label == e.label and abs(ts - e.start_ts) <= interval for label, ts in starts_on), (
            f"{e.label} at {e.start_ts:.2f} s (gate off) not found with the gate on: {starts_on}"
        )


def test_a_change_after_a_still_stretch_is_encoded_at_once(demo, video):
    images, starts = video
    on, _, _ = run(demo, images, DEFAULT_SHARE)
    for start in starts[1:]:
        first = min(i for i in on if i >= start)  # the action's first model frame
        assert first - start <= 1 and not on[first].reused, (start, first)
        assert on[first - 2].reused  # the still stretch before it was reused


def test_a_batch_of_gated_and_ungated_cameras_equals_each_camera_alone(demo, video):
    images, _ = video
    ck, backend = demo
    configs = [RecognizerConfig(), RecognizerConfig(static_gate=0.0)]
    alone = [run(demo, images[: 120 + 30 * k], c.static_gate)[0] for k, c in enumerate(configs)]
    common = {"preprocessing": ck.preprocessing, "sampling": ck.sampling, "class_names": ck.class_names}
    sessions = [Session(backend.spec, config=c, source_fps=FPS, **common) for c in configs]
    batched: list[dict] = [{}, {}]
    for i in range(150):
        work = []
        for k, s in enumerate(sessions):
            if i < 120 + 30 * k:
                ticks, _ = s.admit(Frame(images[i], i, i / FPS, 0.0))
                if ticks:
                    work.append((k, Work(s, Frame(images[i], i, i / FPS, 0.0), ticks, 0.0)))
        if work:
            for (k, _), (prediction, _) in zip(work, step_batch(backend, [w for _, w in work]), strict=True):
                batched[k][i] = prediction
    for k in range(2):
        assert list(batched[k]) == list(alone[k])
        for i, p in alone[k].items():
            assert p.reused == batched[k][i].reused
            np.testing.assert_allclose(batched[k][i].probs, p.probs, atol=1e-5)
    assert any(p.reused for p in batched[0].values()) and not any(p.reused for p in batched[1].values())


def test_smnet_is_never_gated():
    """SMNet's backbone carries state from frame to frame: reusing a frame's features would skip its
    update, so it encodes every frame whatever the gate says."""
    torch.manual_seed(4)
    model = build_model(SMNetConfig(backbone="resnet10", num_classes=5, causal=True, window=4), input_size=32)
    backend = TorchBackend(model.eval())
    assert backend.spec.encode_state
    pre = {"resize": [40, 40], "crop": 32, "mean": [0.5] * 3, "std": [0.25] * 3, "color": "rgb"}
    rec = Recognizer(
        backend, preprocessing=pre, sampling={"fps": 5.0, "window": 4, "stride": 4},
        class_names=tuple(f"c{i}" for i in range(5)), config=RecognizerConfig(static_gate=0.5),
    )  # fmt: skip
    assert rec.session.gate is None
    still = scene(shape=(48, 64))
    made = [rec.push(Frame(still, i, i / 5.0, 0.0)) for i in range(12)]
    assert all(p is not None and not p.reused for p in made) and rec.session.reused == 0
