"""GP, SA, LA and the composite-feature layer against numpy transcriptions of eqs. 2-10."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glanet.models.attention import GlobalPooling, LearnedAttention, StatisticAttention
from glanet.models.fusion import FeatureFusion


def softmax(v: np.ndarray) -> np.ndarray:
    e = np.exp(v - v.max())
    return e / e.sum()


@pytest.fixture
def fmap() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(3, 16, 5, 4, dtype=torch.float64)  # (N, C, H, W), non-square on purpose


def by_hand_pool(f: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """eqs. 4-5 / 7-8 for one frame: f (C, H, W), m (H, W) -> R (C), T (H, W)."""
    t = softmax(m.reshape(-1)).reshape(m.shape)
    r = np.array(
        [
            sum(t[i, j] * f[:, i, j][c] for i in range(m.shape[0]) for j in range(m.shape[1]))
            for c in range(f.shape[0])
        ]
    )
    return r, t


def test_global_pooling_eq2(fmap):
    out = GlobalPooling()(fmap).numpy()
    f = fmap.numpy()
    for n in range(f.shape[0]):
        expected = [f[n, c].sum() / (f.shape[2] * f.shape[3]) for c in range(f.shape[1])]
        np.testing.assert_allclose(out[n], expected, atol=1e-12)


def test_statistic_attention_eqs3to5(fmap):
    sa = StatisticAttention("sum_sq")
    assert not list(sa.parameters())  # parameter-free
    r, t = sa(fmap)
    assert r.shape == (3, 16) and t.shape == (3, 5, 4)
    f = fmap.numpy()
    for n in range(f.shape[0]):
        m = sum(np.abs(f[n, c]) ** 2 for c in range(f.shape[1]))  # eq. 3
        r_np, t_np = by_hand_pool(f[n], m)
        np.testing.assert_allclose(t[n].numpy(), t_np, atol=1e-12)
        np.testing.assert_allclose(r[n].numpy(), r_np, atol=1e-12)
    np.testing.assert_allclose(t.sum(dim=(1, 2)).numpy(), 1.0, atol=1e-12)


def test_statistic_attention_mean_sq_is_eq3_over_c(fmap):
    sa = StatisticAttention("mean_sq")
    assert not list(sa.parameters())
    r, t = sa(fmap)
    f = fmap.numpy()
    for n in range(f.shape[0]):
        m = sum(np.abs(f[n, c]) ** 2 for c in range(f.shape[1])) / f.shape[1]
        r_np, t_np = by_hand_pool(f[n], m)
        np.testing.assert_allclose(t[n].numpy(), t_np, atol=1e-12)
        np.testing.assert_allclose(r[n].numpy(), r_np, atol=1e-12)


def test_statistic_attention_temperature(fmap):
    r, t = StatisticAttention("sum_sq", temperature=7.5)(fmap)
    f = fmap.numpy()
    for n in range(f.shape[0]):
        r_np, t_np = by_hand_pool(f[n], (f[n] ** 2).sum(axis=0) / 7.5)
        np.testing.assert_allclose(t[n].numpy(), t_np, atol=1e-12)
        np.testing.assert_allclose(r[n].numpy(), r_np, atol=1e-12)
    # mean_sq is sum_sq at temperature C
    _, t_mean = StatisticAttention("mean_sq")(fmap)
    _, t_c = StatisticAttention("sum_sq", temperature=f.shape[1])(fmap)
    np.testing.assert_allclose(t_mean.numpy(), t_c.numpy(), atol=1e-12)
    with pytest.raises(ValueError, match="temperature"):
        StatisticAttention("sum_sq", temperature=0.0)


def test_statistic_attention_detached_map_changes_gradient_only(fmap):
    x1 = fmap.clone().requires_grad_(True)
    x2 = fmap.clone().requires_grad_(True)
    r1, t1 = StatisticAttention("sum_sq", temperature=7.5)(x1)
    r2, t2 = StatisticAttention("sum_sq", temperature=7.5, detach_map=True)(x2)
    torch.testing.assert_close(r1, r2, rtol=0, atol=0)
    torch.testing.assert_close(t1, t2, rtol=0, atol=0)
    assert t2.grad_fn is None  # nothing flows back through the map
    r2.sum().backward()
    # with the map detached, d(sum R)/dF_ij is exactly T_ij for every channel (eq. 5 alone)
    expected = t2.detach().unsqueeze(1).expand_as(fmap)
    torch.testing.assert_close(x2.grad, expected, rtol=0, atol=1e-12)
    r1.sum().backward()
    assert not torch.allclose(x1.grad, x2.grad)


def test_statistic_attention_reference_variant(fmap):
    sa = StatisticAttention("mean_sq_affine").double()
    with torch.no_grad():
        sa.conv.weight.fill_(0.7)
        sa.conv.bias.fill_(-0.3)
    r, t = sa(fmap)
    f = fmap.numpy()
    for n in range(f.shape[0]):
        m = 0.7 * (f[n] ** 2).mean(axis=0) - 0.3
        r_np, t_np = by_hand_pool(f[n], m)
        np.testing.assert_allclose(t[n].detach().numpy(), t_np, atol=1e-12)
        np.testing.assert_allclose(r[n].detach().numpy(), r_np, atol=1e-12)


@pytest.mark.parametrize("reference", [False, True])
def test_learned_attention_eqs6to8(fmap, reference):
    la = LearnedAttention(16, hidden=8, out_bias=reference, out_tanh=reference).double()
    torch.manual_seed(1)
    with torch.no_grad():
        for p in la.parameters():
            p.normal_()
    r, t = la(fmap)
    w0, b0 = la.w0.weight.detach().numpy(), la.w0.bias.detach().numpy()
    w1 = la.w1.weight.detach().numpy()[0]
    b1 = la.w1.bias.detach().numpy()[0] if reference else 0.0
    assert w0.shape == (8, 16)
    f = fmap.numpy()
    for n in range(f.shape[0]):
        m = np.zeros(f.shape[2:])
        for i in range(f.shape[2]):
            for j in range(f.shape[3]):
                m[i, j] = w1 @ np.tanh(w0 @ f[n, :, i, j] + b0) + b1  # eq. 6
        if reference:
            m = np.tanh(m)
        r_np, t_np = by_hand_pool(f[n], m)
        np.testing.assert_allclose(t[n].detach().numpy(), t_np, atol=1e-12)
        np.testing.assert_allclose(r[n].detach().numpy(), r_np, atol=1e-12)


def test_la_paper_variant_has_no_outer_bias():
    la = LearnedAttention(16, hidden=128)
    assert la.w0.weight.shape == (128, 16) and la.w0.bias is not None
    assert la.w1.bias is None


def test_attention_on_a_peaked_map_points_at_the_peak():
    f = torch.zeros(1, 4, 7, 7)
    f[0, :, 2, 5] = 3.0  # one strong position
    _, t = StatisticAttention()(f)
    assert t[0].argmax().item() == 2 * 7 + 5


@pytest.mark.parametrize(
    ("mode", "fn", "dim"),
    [
        ("concat", lambda g, s: np.concatenate([g, s], axis=-1), 32),
        ("max", np.maximum, 16),
        ("multiply", np.multiply, 16),
        ("average", lambda g, s: (g + s) / 2, 16),
    ],
)
def test_feature_fusion_eqs9to10(mode, fn, dim):
    g, s = torch.randn(4, 16), torch.randn(4, 16)
    fusion = FeatureFusion(mode)
    out = fusion(g, s)
    assert fusion.out_dim(16) == dim == out.shape[-1]
    np.testing.assert_allclose(out.numpy(), fn(g.numpy(), s.numpy()), atol=1e-6)
    if mode == "concat":  # GP first
        assert torch.equal(out[:, :16], g)


def test_unknown_variants_are_refused():
    with pytest.raises(ValueError, match="sum_sq"):
        StatisticAttention("sum")
    with pytest.raises(ValueError, match="concat"):
        FeatureFusion("add")
