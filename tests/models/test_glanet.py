"""The assembled model: clip == step-by-step, shapes, gradients, batch independence, fusion."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from glanet.models import GLANet
from glanet.models.config import PRESETS, ModelConfig
from glanet.models.online import reset_rows


def small(**kw) -> ModelConfig:
    base = dict(backbone="resnet18", num_classes=6, sru_hidden=32, la_hidden=16)
    base.update(kw)
    return ModelConfig(**base)


def calibrate_bn(model: GLANet, size: int) -> GLANet:
    """Give the trunk's BatchNorms real running statistics, as a trained network has; with the
    default ones (mean 0, var 1) a random ResNet-34's activations grow to ~1e3 by conv5_x."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batch
    model.train()
    with torch.no_grad():
        model.backbone(torch.randn(8, 3, size, size))
    return model.eval()


def run_steps(model: GLANet, clip: torch.Tensor):
    state = model.init_state(clip.shape[0])
    outs = []
    for t in range(clip.shape[1]):
        out, state = model.step(clip[:, t], state)
        outs.append(out)
    return outs, state


CASES = {
    "early": small(),
    "late": small(fusion="late"),
    "reference": small(**PRESETS["reference"]),
    "early-max-paper-sru": small(feature_fusion="max", sru_variant="paper"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_forward_equals_step_by_step(name):
    torch.manual_seed(0)
    model = GLANet(CASES[name]).eval()
    clip = torch.randn(2, 7, 3, 96, 96)
    with torch.no_grad():
        offline = model(clip)
        outs, state = run_steps(model, clip)
    last = outs[-1]
    for field in ("logits", "probs", "fused"):
        assert (getattr(offline, field) - getattr(last, field)).abs().max() <= 1e-5, field
    for t, out in enumerate(outs):  # the maps come with every step
        assert torch.allclose(out.maps["sa"], offline.maps["sa"][:, t], atol=1e-6)
        assert torch.allclose(out.maps["la"], offline.maps["la"][:, t], atol=1e-6)
    assert torch.equal(state["steps"], torch.full((2,), 7.0))
    # every intermediate step is the offline prediction for the clip so far
    with torch.no_grad():
        prefix = model(clip[:, :3])
    assert (prefix.logits - outs[2].logits).abs().max() <= 1e-5


def test_forward_equals_step_by_step_resnet34_224():
    torch.manual_seed(1)
    model = calibrate_bn(GLANet(ModelConfig(num_classes=5, sru_hidden=1024)), 224)
    clip = torch.randn(1, 3, 3, 224, 224)
    with torch.no_grad():
        offline = model(clip)
        outs, _ = run_steps(model, clip)
    assert offline.maps["sa"].shape == (1, 3, 7, 7) == offline.maps["la"].shape
    assert (offline.logits - outs[-1].logits).abs().max() <= 1e-5
    assert (offline.fused - outs[-1].fused).abs().max() <= 1e-5


@pytest.mark.parametrize(("size", "hw"), [(224, 7), (112, 4)])
@pytest.mark.parametrize("fusion", ["early", "late"])
def test_shapes(size, hw, fusion):
    model = GLANet(small(fusion=fusion)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 3, size, size))
        feats = model.encode(torch.randn(4, 3, size, size))
    assert out.logits.shape == (2, 3, 6) == out.probs.shape
    assert out.fused.shape == (2, 6)
    assert out.maps["sa"].shape == (2, 3, hw, hw) == out.maps["la"].shape
    dims = (1024, 1024, 512) if fusion == "early" else (512, 512, 512)
    assert tuple(f.shape for f in feats.features.values()) == tuple((4, d) for d in dims)
    assert model.feature_dims == dims
    assert model.branch_names == (("GS", "GL", "GP") if fusion == "early" else ("GP", "SA", "LA"))
    for t in (*out[:3], *out.maps.values()):
        assert torch.isfinite(t).all()
    assert torch.allclose(out.fused.sum(-1), torch.ones(2), atol=1e-6)
    assert torch.allclose(out.maps["sa"].sum((-1, -2)), torch.ones(2, 3), atol=1e-5)


def test_fused_is_mean_of_stream_probabilities():
    model = GLANet(small()).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 2, 3, 64, 64))
    assert torch.allclose(out.probs, torch.softmax(out.logits, -1))
    assert torch.allclose(out.fused, out.probs.mean(dim=1), atol=1e-6)  # eq. 19
    ref = GLANet(small(score_fusion="logits")).eval()
    with torch.no_grad():
        out = ref(torch.randn(2, 2, 3, 64, 64))
    assert torch.allclose(out.fused, torch.softmax(out.logits.mean(dim=1), -1), atol=1e-6)


@pytest.mark.parametrize(
    "cfg", [small(**PRESETS["reference"]), small(fusion="late", sa_map="mean_sq_affine")]
)
def test_gradients_reach_every_parameter(cfg):
    torch.manual_seed(0)
    model = GLANet(cfg).train()
    out = model(torch.randn(2, 3, 3, 64, 64))
    (out.logits.sum() + out.fused[:, 0].sum()).backward()
    missing = [
        n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())
    ]
    assert not missing


def test_batch_rows_are_independent():
    torch.manual_seed(0)
    model = GLANet(small()).eval()
    clip = torch.randn(3, 4, 3, 64, 64)
    other = clip.clone()
    other[1] = torch.randn_like(other[1])
    with torch.no_grad():
        a, b = model(clip), model(other)
        alone = model(clip[2:3])
    assert torch.allclose(a.logits[[0, 2]], b.logits[[0, 2]], atol=1e-6)
    assert not torch.allclose(a.logits[1], b.logits[1])
    assert torch.allclose(a.logits[2:3], alone.logits, atol=1e-5)


def test_reset_state_restarts_only_chosen_rows():
    torch.manual_seed(0)
    model = GLANet(small()).eval()
    frames = torch.randn(5, 2, 3, 64, 64)
    with torch.no_grad():
        state = model.init_state(2)
        for t in range(3):
            _, state = model.step(frames[t], state)
        state = reset_rows(model.spec.step_state, state, torch.tensor([True, False]))
        assert state["steps"].tolist() == [0.0, 3.0]
        for t in range(3, 5):
            out, state = model.step(frames[t], state)
        fresh = model(frames[3:5, 0:1].transpose(0, 1))
        whole = model(frames[:, 1:2].transpose(0, 1))
    assert (out.logits[0] - fresh.logits[0]).abs().max() <= 1e-5
    assert (out.logits[1] - whole.logits[0]).abs().max() <= 1e-5


def test_temporal_step_takes_plain_stream_tuples():
    model = GLANet(small()).eval()
    with torch.no_grad():
        feats = model.encode(torch.randn(2, 3, 64, 64))
        a, _ = model.temporal_step(feats, model.init_state(2))
        b, _ = model.temporal_step(feats.features, model.init_state(2))
    assert torch.equal(a.fused, b.fused) and a.maps is None


def test_clip_must_be_5d():
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        GLANet(small())(torch.randn(2, 3, 64, 64))


def test_config_is_kept_and_frozen():
    model = GLANet(small())
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.cfg.num_classes = 3  # type: ignore[misc]


def test_reset_state_recovers_a_non_finite_row():
    model = GLANet(small()).eval()
    state = model.init_state(2)
    state = {**state, "c": torch.full_like(state["c"], float("nan"))}
    state = reset_rows(model.spec.step_state, state, torch.tensor([True, False]))
    assert torch.isfinite(state["c"][0]).all() and torch.isnan(state["c"][1]).all()
