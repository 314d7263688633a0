"""SMNet: shapes, causal steps == the causal clip run, ImageNet weights, the online contract."""

from __future__ import annotations

import re

import pytest
import torch
import torchvision

from glanet.models.backbone import ResNetTrunk
from glanet.models.config import SMNetConfig
from glanet.models.smnet import SMNet, build_smnet


def small(**kw) -> SMNetConfig:
    base = dict(backbone="resnet18", num_classes=5, reduction=8, window=3, causal=True)
    base.update(kw)
    return SMNetConfig(**base)


def calibrated(model: SMNet, size: int, frames: int = 3) -> SMNet:
    """Real BN running statistics, as a trained network has (default ones blow a random ResNet-50 up)."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model.frame_logits(torch.randn(2, frames, 3, size, size))
    return model.eval()


def run_steps(model: SMNet, clip: torch.Tensor):
    state = model.init_state(clip.shape[0])
    outs, rings = [], []
    with torch.no_grad():
        for t in range(clip.shape[1]):
            out, state = model.step(clip[:, t], state)
            outs.append(out)
            rings.append(state["logit_ring"][:, t % model.cfg.window])  # the logits frame t wrote
    return outs, torch.stack(rings, dim=1), state


@pytest.mark.parametrize(
    ("backbone", "size", "frames"), [("resnet18", 64, 7), ("resnet50", 64, 5), ("resnet10", 96, 6)]
)
def test_steps_equal_the_causal_clip_run(backbone, size, frames):
    torch.manual_seed(0)
    model = calibrated(SMNet(small(backbone=backbone), input_size=size), size)
    clip = torch.randn(2, frames, 3, size, size)
    with torch.no_grad():
        per_frame = model.frame_logits(clip)
        offline = model(clip)
    outs, stepped, _ = run_steps(model, clip)
    assert per_frame.abs().max() > 0.1  # not a degenerate comparison
    torch.testing.assert_close(stepped, per_frame, rtol=0, atol=1e-5)
    w = model.cfg.window
    assert frames > w  # the window slides
    for t, out in enumerate(outs):
        want = per_frame[:, max(0, t + 1 - w) : t + 1].mean(dim=1, keepdim=True)
        torch.testing.assert_close(out.logits, want, rtol=0, atol=1e-5)
        torch.testing.assert_close(out.probs, torch.softmax(want, dim=-1), rtol=0, atol=1e-5)
        torch.testing.assert_close(out.fused, out.probs[:, 0])
        torch.testing.assert_close(out.maps["se"], offline.maps["se"][:, t], rtol=0, atol=1e-6)
    torch.testing.assert_close(offline.logits, per_frame.mean(dim=1, keepdim=True))


def test_batch_rows_are_independent():
    torch.manual_seed(0)
    model = calibrated(SMNet(small(), input_size=64), 64)
    clip = torch.randn(2, 5, 3, 64, 64)
    both, _, _ = run_steps(model, clip)
    for row in range(2):
        alone, _, _ = run_steps(model, clip[row : row + 1])
        for a, b in zip(alone, both, strict=True):
            torch.testing.assert_close(a.logits[0], b.logits[row], rtol=0, atol=1e-5)


@pytest.mark.parametrize(("backbone", "channels", "side"), [("resnet10", 512, 4), ("resnet18", 512, 2)])
def test_shapes(backbone, channels, side):
    """resnet10's last block is layer4.0, whose input is at 1/16; resnet18's layer4.1 at 1/32."""
    model = SMNet(small(backbone=backbone, causal=False), input_size=64).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 3, 64, 64))
        assert model.frame_logits(torch.randn(2, 3, 3, 64, 64)).shape == (2, 3, 5)
    assert out.logits.shape == out.probs.shape == (2, 1, 5)
    assert out.fused.shape == (2, 5)
    assert out.maps["se"].shape == (2, 3, side, side)
    torch.testing.assert_close(out.maps["se"].sum(dim=(2, 3)), torch.ones(2, 3))
    assert model.spec.features[0].shape == (channels,)


def test_resnet50_shapes_and_features():
    model = SMNet(small(backbone="resnet50"), input_size=64).eval()
    with torch.no_grad():
        enc = model.encode(torch.randn(2, 3, 64, 64))
    assert enc.features["sm"].shape == (2, 2048)
    assert enc.maps["se"].shape == (2, 2, 2)
    assert model.backbone.layer4[2].conv3.weight.shape == (2048, 512, 1, 1)


def test_spec_describes_the_states():
    model = SMNet(small(backbone="resnet10"), input_size=64).eval()
    spec = model.spec
    names = [f.name for f in (*spec.encode_state, *spec.step_state)]
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"[a-z0-9_]+", n) for n in names)
    assert [f.name for f in spec.step_state] == ["logit_ring", "ring_pos", "ring_count"]
    assert spec.step_state[0].shape == (3, 5)
    assert {f.name: f.shape for f in spec.encode_state}["l2_0_me_prev"] == (64 // 8, 16, 16)
    assert (spec.restarts, spec.maps, spec.branch_names, spec.feature_names) == (
        False,
        ("se",),
        ("SM",),
        ("sm",),
    )
    state = model.init_state(2)
    assert list(state) == names
    for f in (*spec.encode_state, *spec.step_state):
        assert state[f.name].shape == (2, *f.shape)
    with torch.no_grad():
        out, nxt = model.step(torch.randn(2, 3, 64, 64), state)
        enc = model.encode(torch.randn(2, 3, 64, 64), state)
    assert list(nxt) == names
    assert list(enc.state) == [f.name for f in spec.encode_state]
    for f in (*spec.encode_state, *spec.step_state):
        assert nxt[f.name].shape == (2, *f.shape)
    assert set(out.maps) == set(spec.maps)


@pytest.mark.parametrize("modules", ["me", "none"])
def test_without_se_there_is_no_map(modules):
    model = calibrated(SMNet(small(backbone="resnet10", modules=modules), input_size=64), 64)
    assert model.spec.maps == ()
    assert (model.spec.encode_state == ()) == (modules == "none")
    clip = torch.randn(1, 4, 3, 64, 64)
    with torch.no_grad():
        assert model(clip).maps == {}
        per_frame = model.frame_logits(clip)
    outs, stepped, _ = run_steps(model, clip)
    assert outs[0].maps == {}
    torch.testing.assert_close(stepped, per_frame, rtol=0, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_gradients_reach_every_parameter(causal):
    torch.manual_seed(0)
    model = SMNet(small(backbone="resnet10", causal=causal, dropout=0.2), input_size=64).train()
    out = model(torch.randn(2, 3, 3, 64, 64))
    torch.nn.functional.cross_entropy(out.logits[:, 0], torch.tensor([1, 3])).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead
    assert any(".smnet.motion.dwconv" in n for n, _ in model.named_parameters())


def test_plain_trunk_and_identity_modules_equal_the_resnet():
    """No module, or modules whose gates are all 0.5, leave the ImageNet trunk's features unchanged."""
    torch.manual_seed(0)
    plain = ResNetTrunk("resnet18").eval()
    for modules in ("none", "se+me"):
        model = SMNet(small(modules=modules, causal=False), input_size=64).eval()
        missing, unexpected = model.backbone.load_state_dict(plain.state_dict(), strict=False)
        assert not unexpected and all(".smnet." in k for k in missing)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith(("spatial.conv.weight", "channel.expand.weight", "motion.expand.weight")):
                    p.zero_()
            x = torch.randn(3, 3, 64, 64)
            want = model.fc(plain(x).mean(dim=(2, 3)))
            torch.testing.assert_close(model.frame_logits(x[None])[0], want, rtol=0, atol=1e-5)


def test_imagenet_weights_load_with_only_the_modules_missing(tmp_path):
    source = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(source.state_dict(), path)
    model = build_smnet(small(), imagenet_weights=str(path), input_size=64)
    assert torch.equal(model.backbone.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    assert torch.equal(model.backbone.layer1[0].bn1.running_var, source.layer1[0].bn1.running_var)
    wanted = {k for k in source.state_dict() if not k.startswith("fc.")}
    got = set(model.backbone.state_dict())
    assert wanted <= got and got - wanted and all(".smnet." in k for k in got - wanted)
    assert "layer1.0.smnet.motion.dwconv.weight" in got
    # everything else is still checked: a key the trunk lacks is refused
    torch.save({**source.state_dict(), "layer1.0.extra": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="1 unexpected"):
        build_smnet(small(), imagenet_weights=str(path), input_size=64)


def test_an_offline_model_refuses_to_stream():
    model = SMNet(small(backbone="resnet10", causal=False), input_size=64).eval()
    assert model.spec.restarts is False  # still described
    frames = torch.randn(1, 3, 64, 64)
    calls = {
        "init_state": lambda: model.init_state(1),
        "encode": lambda: model.encode(frames),
        "temporal_step": lambda: model.temporal_step({"sm": torch.zeros(1, 512)}, {}),
        "step": lambda: model.step(frames, {}),
    }
    for name, call in calls.items():
        with pytest.raises(RuntimeError, match=r"offline \(non-causal\).*set_causal\(True\)"):
            call()
        assert name


def test_frames_of_another_size_are_refused():
    model = SMNet(small(backbone="resnet10"), input_size=64).eval()
    with pytest.raises(ValueError, match=r"\(N, 3, 64, 64\).*input_size=64"):
        model.encode(torch.randn(1, 3, 96, 96))
    with pytest.raises(ValueError, match="input_size=64"):
        model.step(torch.randn(1, 3, 64, 80), model.init_state(1))


def test_set_causal_keeps_the_weights_and_streams():
    torch.manual_seed(0)
    model = calibrated(SMNet(small(causal=False), input_size=64), 64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    clip = torch.randn(1, 5, 3, 64, 64)
    with torch.no_grad():
        offline = model.frame_logits(clip)
    assert model.set_causal(True) is model and model.causal and model.cfg.causal
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    with torch.no_grad():
        causal = model.frame_logits(clip)
    assert not torch.allclose(causal, offline, atol=1e-3)  # the padding really changed
    _, stepped, _ = run_steps(model, clip)
    torch.testing.assert_close(stepped, causal, rtol=0, atol=1e-5)
    model.set_causal(False)
    with pytest.raises(RuntimeError, match="offline"):
        model.init_state(1)


def test_the_window_keeps_only_the_last_frames():
    model = SMNet(small(backbone="resnet10", window=2), input_size=64).eval()
    state = model.init_state(1)
    logits = []
    with torch.no_grad():
        for t in range(5):
            feats = {"sm": torch.full((1, 512), float(t))}
            out, step_state = model.temporal_step(feats, state)
            state.update(step_state)
            logits.append(model.fc(feats["sm"]))
            torch.testing.assert_close(out.logits[:, 0], torch.stack(logits[-2:]).mean(dim=0))
    assert state["ring_count"].item() == 2 and state["ring_pos"].item() == 1


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_the_module_sits_on_the_residual_branch(backbone):
    """y = relu(branch(smnet(x)) + shortcut(x)): the shortcut gets the unmodified input (TSM's blockres)."""
    torch.manual_seed(0)
    model = calibrated(SMNet(small(backbone=backbone, causal=False), input_size=64), 64)
    block = model.backbone.layer2[0]  # the one with a downsampling shortcut
    x = torch.randn(2 * 3, block.conv1.in_channels, 16, 16)
    with torch.no_grad():
        z, _ = block.smnet(x, 3, False)
        out = block.relu(block.bn1(block.conv1(z)))
        if backbone == "resnet50":
            out = block.relu(block.bn2(block.conv2(out)))
            out = block.bn3(block.conv3(out))
        else:
            out = block.bn2(block.conv2(out))
        want = block.relu(out + block.downsample(x))
        got, _ = block(x, 3, False)
    assert not torch.allclose(z, x, atol=1e-3)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
