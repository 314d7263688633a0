"""SMNet's SE and ME modules against loop transcriptions of their equations, causal and not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glanet.models.excitation import (
    ChannelExcitation,
    MotionExcitation,
    SMModule,
    SpatialExcitation,
)

N, T, C, H, W = 2, 4, 32, 5, 6
R = 4  # reduction: C/r = 8


def sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def pads(k: int, causal: bool) -> int:
    """Zero frames before the clip (the rest, if any, go after it)."""
    return k - 1 if causal else (k - 1) // 2


def frame(seq: np.ndarray, t: int) -> np.ndarray:
    """seq[t], or zeros outside the clip (the temporal convolutions' zero padding)."""
    return seq[t] if 0 <= t < len(seq) else np.zeros_like(seq[0])


def conv3x3(img: np.ndarray, w: np.ndarray) -> np.ndarray:
    """One channel (H, W), cross-correlated with w (3, 3), zero padding 1."""
    p = np.pad(img, 1)
    return np.array(
        [[(p[i : i + 3, j : j + 3] * w).sum() for j in range(img.shape[1])] for i in range(img.shape[0])]
    )


def bn_eval(v: np.ndarray, bn: torch.nn.BatchNorm2d, axis: int) -> np.ndarray:
    shape = [1] * v.ndim
    shape[axis] = -1
    mean, var = bn.running_mean.numpy().reshape(shape), bn.running_var.numpy().reshape(shape)
    gamma, beta = bn.weight.detach().numpy().reshape(shape), bn.bias.detach().numpy().reshape(shape)
    return (v - mean) / np.sqrt(var + bn.eps) * gamma + beta


def randomise_bn(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.3)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)


def clip_input() -> torch.Tensor:
    return torch.randn(N * T, C, H, W)


def spatial_reference(x: np.ndarray, w: np.ndarray, causal: bool) -> np.ndarray:
    """s[n,t] = sigmoid(sum_a conv3x3(mean_c x[n, t - P + a], w[a])), P the zero frames before."""
    k, before = w.shape[0], pads(w.shape[0], causal)
    out = np.zeros((N, T, H, W))
    for n in range(N):
        means = x[n * T : (n + 1) * T].mean(axis=1)  # (T, H, W)
        for t in range(T):
            out[n, t] = sigmoid(sum(conv3x3(frame(means, t - before + a), w[a]) for a in range(k)))
    return out.reshape(N * T, 1, H, W)


def channel_reference(x: np.ndarray, mod: ChannelExcitation, causal: bool) -> np.ndarray:
    """c[n,t] = sigmoid(E relu(sum_a w[:, a] * (S p[n, t - P + a]))), p the frames' global pools."""
    sq = mod.squeeze.weight.detach().numpy()[:, :, 0]  # (C/r, C)
    wt = mod.temporal.weight.detach().numpy()[:, 0, :]  # (C/r, k): one filter per reduced channel
    ex = mod.expand.weight.detach().numpy()[:, :, 0]  # (C, C/r)
    k, before = wt.shape[1], pads(wt.shape[1], causal)
    out = np.zeros((N, T, C))
    for n in range(N):
        q = x[n * T : (n + 1) * T].mean(axis=(2, 3)) @ sq.T  # (T, C/r)
        for t in range(T):
            u = sum(wt[:, a] * frame(q, t - before + a) for a in range(k))
            out[n, t] = sigmoid(ex @ np.maximum(u, 0.0))
    return out.reshape(N * T, C, 1, 1)


def motion_reference(x: np.ndarray, mod: MotionExcitation, causal: bool) -> np.ndarray:
    """TEA's ME. Non-causal: diff[t] = dw(r[t+1]) - r[t], diff[T-1] = 0.
    Causal: diff[t] = dw(r[t]) - r[t-1], diff[0] = 0."""
    red = mod.reduce.weight.detach().numpy()[:, :, 0, 0]  # (C/r, C)
    dw = mod.dwconv.weight.detach().numpy()[:, 0]  # (C/r, 3, 3)
    ex = mod.expand.weight.detach().numpy()[:, :, 0, 0]  # (C, C/r)
    out = np.zeros((N, T, C))
    for n in range(N):
        r = bn_eval(np.einsum("jc,tchw->tjhw", red, x[n * T : (n + 1) * T]), mod.bn1, axis=1)
        d = np.array([[conv3x3(r[t, j], dw[j]) for j in range(len(dw))] for t in range(T)])
        for t in range(T):
            if causal:
                diff = d[t] - r[t - 1] if t > 0 else np.zeros_like(r[t])
            else:
                diff = d[t + 1] - r[t] if t < T - 1 else np.zeros_like(r[t])
            out[n, t] = sigmoid(bn_eval(ex @ diff.mean(axis=(1, 2)), mod.bn2, axis=0))
    return out.reshape(N * T, C, 1, 1)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kernel", [3, 5])
def test_spatial_part_equals_its_equation(causal, kernel):
    mod = SpatialExcitation(kernel)
    with torch.no_grad():
        mod.conv.weight.normal_(0, 0.5)
    x = clip_input()
    with torch.no_grad():
        got = mod(x, T, causal)
    ref = spatial_reference(x.numpy(), mod.conv.weight.detach().numpy()[0, 0], causal)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kernel", [3, 5])
def test_channel_part_equals_its_equation(causal, kernel):
    mod = ChannelExcitation(C, R, kernel)
    x = clip_input()
    with torch.no_grad():
        got = mod(x, T, causal)
    np.testing.assert_allclose(got.numpy(), channel_reference(x.numpy(), mod, causal), atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_motion_excitation_equals_its_equation(causal):
    mod = MotionExcitation(C, R)
    randomise_bn(mod)
    mod.eval()
    x = clip_input()
    with torch.no_grad():
        got = mod(x, T, causal)
    np.testing.assert_allclose(got.numpy(), motion_reference(x.numpy(), mod, causal), atol=1e-5)


@pytest.mark.parametrize("parts", ["se+me", "se", "me"])
def test_module_sums_the_selected_gates(parts):
    mod = SMModule(C, parts, R, 3)
    randomise_bn(mod)
    mod.eval()
    x = clip_input()
    with torch.no_grad():
        y, s = mod(x, T)
        gates = []
        if "se" in parts:
            gates += [mod.spatial(x, T, False), mod.channel(x, T, False)]
        if "me" in parts:
            gates.append(mod.motion(x, T, False))
    ref = x + sum(x * (g - 0.5) for g in gates)
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-6)
    assert (s is None) == ("se" not in parts)
    if s is not None:
        assert torch.equal(s, gates[0])


@pytest.mark.parametrize("causal", [False, True])
def test_module_is_identity_when_every_sigmoid_is_half(causal):
    """The gates' last weights zeroed (the convs have no bias; ME's last BN at mean 0, bias 0)."""
    mod = SMModule(C, "se+me", R, 3)
    with torch.no_grad():
        mod.spatial.conv.weight.zero_()
        mod.channel.expand.weight.zero_()
        mod.motion.expand.weight.zero_()
    x = clip_input()
    for mode in (mod.train(), mod.eval()):
        with torch.no_grad():
            y, s = mode(x, T, causal)
        assert torch.equal(y, x)
        assert torch.equal(s, torch.full_like(s, 0.5))


def perturbed_after(x: torch.Tensor, t: int) -> torch.Tensor:
    """The clip with every frame after t of every video replaced."""
    y = x.view(N, T, C, H, W).clone()
    y[:, t + 1 :] = torch.randn_like(y[:, t + 1 :]) * 3
    return y.view_as(x)


@pytest.mark.parametrize("causal", [False, True])
def test_causal_outputs_ignore_the_future(causal):
    mod = SMModule(C, "se+me", R, 3)
    randomise_bn(mod)
    mod.eval()  # train-mode BN would mix the frames through its batch statistics
    x = clip_input()
    with torch.no_grad():
        y, s = mod(x, T, causal)
        for t in range(T - 1):
            y2, s2 = mod(perturbed_after(x, t), T, causal)
            past = (slice(None), slice(0, t + 1))
            same_y = torch.allclose(y.view(N, T, C, H, W)[past], y2.view(N, T, C, H, W)[past], atol=1e-6)
            same_s = torch.allclose(s.view(N, T, H, W)[past], s2.view(N, T, H, W)[past], atol=1e-6)
            assert (same_y and same_s) == causal, t


@pytest.mark.parametrize("kernel", [1, 3, 5])
@pytest.mark.parametrize("parts", ["se+me", "se", "me"])
def test_steps_equal_the_causal_clip(parts, kernel):
    mod = SMModule(C, parts, R, kernel)
    randomise_bn(mod)
    mod.eval()
    x = clip_input()
    state = {k: torch.zeros(N, *shape) for k, shape in mod.state_shapes(H, W).items()}
    with torch.no_grad():
        y, s = mod(x, T, causal=True)
        y, s = y.view(N, T, C, H, W), None if s is None else s.view(N, T, 1, H, W)
        for t in range(T):
            yt, st, state = mod.step(x.view(N, T, C, H, W)[:, t], state)
            torch.testing.assert_close(yt, y[:, t], rtol=0, atol=1e-5)
            if s is not None:
                torch.testing.assert_close(st, s[:, t], rtol=0, atol=1e-6)
    assert set(state) == set(mod.state_shapes(H, W))
    for k, shape in mod.state_shapes(H, W).items():
        assert state[k].shape == (N, *shape)


def test_parts_must_be_known():
    with pytest.raises(ValueError, match="se\\+me"):
        SMModule(C, "se+tsm")
