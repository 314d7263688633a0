"""Our SRU against the `sru` package (2.6.0), a numpy transcription of its recurrence and of the
paper's eqs. 11-15, and itself run step by step."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from glanet.models.sru import SRU


def randomise(module: torch.nn.Module, seed: int) -> None:
    """Random weights everywhere, biases and weight_c included (their init is zero / small)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            scale = 1.0 / math.sqrt(p.shape[0]) if name.endswith(".weight") else 0.5
            p.copy_(torch.randn(p.shape, generator=g) * scale)


def numpy_sru(x, c0, layers, variant="v2", rescale=True):
    """The recurrence of notes/reference.md, one float64 loop: x (T,B,D), c0 (L,B,H) -> h, c."""
    out_c = []
    for i, (w, wc, b, scale_x) in enumerate(layers):
        d, hk = w.shape
        hidden = wc.shape[0] // 2
        k = hk // hidden
        u = (x.reshape(-1, d) @ w).reshape(x.shape[0], x.shape[1], hidden, k)
        v_f, v_r = wc[:hidden], wc[hidden:]
        b_f, b_r = b[:hidden], b[hidden:]
        c = c0[i].copy()
        hs = []
        for t in range(x.shape[0]):
            if variant == "v2":
                f = 1 / (1 + np.exp(-(u[t, ..., 1] + v_f * c + b_f)))
                r = 1 / (1 + np.exp(-(u[t, ..., 2] + v_r * c + b_r)))
            else:
                f = 1 / (1 + np.exp(-(u[t, ..., 1] + b_f)))
                r = 1 / (1 + np.exp(-(u[t, ..., 2] + b_r)))
            c = f * c + (1 - f) * u[t, ..., 0]
            skip = u[t, ..., 3] if k == 4 else x[t] * (scale_x if rescale else 1.0)
            hs.append(r * c + (1 - r) * skip)
        x = np.stack(hs)
        out_c.append(c)
    return x, np.stack(out_c)


def layers_of(model: SRU):
    return [
        (
            cell.weight.detach().double().numpy(),
            cell.weight_c.detach().double().numpy(),
            cell.bias.detach().double().numpy(),
            float(cell.scale_x),
        )
        for cell in model.rnn_lst
    ]


@pytest.fixture(scope="module")
def sru_package():
    # The oracle is a hard dependency of the dev extra: a failed import fails, it does not skip.
    import sru

    assert sru.__version__ == "2.6.0"
    return sru


@pytest.mark.parametrize("n_in", [512, 1024])
@pytest.mark.parametrize("with_c0", [False, True])
def test_matches_sru_package(sru_package, n_in, with_c0):
    torch.manual_seed(n_in)
    ref = sru_package.SRU(n_in, 1024, num_layers=3, dropout=0.0, rescale=True)
    randomise(ref, seed=n_in)
    ours = SRU(n_in, 1024, num_layers=3)
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict())  # same keys, same layout
    x = torch.randn(30, 3, n_in)
    c0 = torch.randn(3, 3, 1024) if with_c0 else None
    ref.eval()
    ours.eval()
    with torch.no_grad():  # the package's compiled CPU kernel
        h_ref, c_ref = ref(x, c0)
        h, c = ours(x, c0)
    assert h.shape == (30, 3, 1024) and c.shape == (3, 3, 1024)
    assert torch.allclose(h, h_ref, atol=1e-5, rtol=0)
    assert torch.allclose(c, c_ref, atol=1e-5, rtol=0)
    h_ref_py, c_ref_py = ref(x, c0)  # with grad: the package's Python recurrence
    assert torch.allclose(h, h_ref_py, atol=1e-5, rtol=0)
    assert torch.allclose(c, c_ref_py, atol=1e-5, rtol=0)


@pytest.mark.parametrize("variant", ["v2", "paper"])
@pytest.mark.parametrize("n_in", [24, 16])
def test_matches_numpy_recurrence(variant, n_in):
    torch.manual_seed(1)
    model = SRU(n_in, 16, num_layers=3, variant=variant).double()
    randomise(model, seed=2)
    x = torch.randn(12, 4, n_in, dtype=torch.float64)
    c0 = torch.randn(3, 4, 16, dtype=torch.float64)
    h, c = model(x, c0)
    h_np, c_np = numpy_sru(x.numpy(), c0.numpy(), layers_of(model), variant=variant)
    np.testing.assert_allclose(h.detach().numpy(), h_np, atol=1e-10)
    np.testing.assert_allclose(c.detach().numpy(), c_np, atol=1e-10)


def test_paper_variant_ignores_weight_c():
    model = SRU(8, 8, num_layers=2, variant="paper")
    x = torch.randn(5, 2, 8)
    h1, _ = model(x)
    with torch.no_grad():
        for cell in model.rnn_lst:
            cell.weight_c.add_(3.0)
    h2, _ = model(x)
    assert torch.equal(h1, h2)
    assert not any(cell.weight_c.requires_grad for cell in model.rnn_lst)


def test_no_rescale_uses_plain_identity_highway():
    model = SRU(8, 8, num_layers=1, rescale=False)
    assert float(model.rnn_lst[0].scale_x) == 1.0
    scaled = SRU(8, 8, num_layers=1, rescale=True)
    assert float(scaled.rnn_lst[0].scale_x) == pytest.approx(math.sqrt(3.0))


@pytest.mark.parametrize("n_in", [512, 1024])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_step_equals_sequence(n_in, dtype):
    torch.manual_seed(3)
    model = SRU(n_in, 1024, num_layers=3).to(dtype).eval()
    randomise(model, seed=3)
    x = torch.randn(30, 3, n_in, dtype=dtype)
    c0 = torch.randn(3, 3, 1024, dtype=dtype)
    with torch.no_grad():
        h_seq, c_seq = model(x, c0)
        c = c0
        hs = []
        for t in range(30):
            h, c = model.step(x[t], c)
            hs.append(h)
    # Same arithmetic: exact in fp64. In fp32 the one big matmul and the per-step ones round
    # differently, so the bound is 1e-5 of the output's range.
    scale = float(h_seq.abs().max())
    tol = dict(atol=1e-10, rtol=0) if dtype == torch.float64 else dict(atol=1e-5 * scale, rtol=0)
    assert torch.allclose(torch.stack(hs), h_seq, **tol)
    assert torch.allclose(c, c_seq, **tol)


def test_split_sequence_resumes_from_returned_state():
    model = SRU(6, 10, num_layers=3).double().eval()
    x = torch.randn(9, 2, 6, dtype=torch.float64)
    h_all, c_all = model(x)
    h_a, c_a = model(x[:4])
    h_b, c_b = model(x[4:], c_a)
    assert torch.allclose(torch.cat([h_a, h_b]), h_all, atol=1e-12)
    assert torch.allclose(c_b, c_all, atol=1e-12)


def test_dropout_like_the_package():
    model = SRU(8, 32, num_layers=3, dropout=0.5)
    assert [cell.dropout for cell in model.rnn_lst] == [0.5, 0.5, 0.0]  # none on the last layer
    model.train()
    mask = model.rnn_lst[0].dropout_mask(4, torch.zeros(1))
    assert mask.shape == (4, 32)
    assert set(mask.unique().tolist()) <= {0.0, 2.0}
    assert model.rnn_lst[2].dropout_mask(4, torch.zeros(1)) is None
    # Variational: one mask for the whole sequence. A unit dropped at t=0 stays on its highway
    # (h = x') at every step, so with an identity highway layer 0's h equals scale_x * x there.
    torch.manual_seed(0)
    cell = model.rnn_lst[1]  # 32 -> 32, identity highway
    x = torch.randn(7, 4, 32)
    h, _ = cell(x)
    dropped = (h - x * cell.scale_x).abs().amax(dim=0) < 1e-6  # (B, H): units dropped at every step
    assert dropped.any() and not dropped.all()
    model.eval()
    assert model.rnn_lst[0].dropout_mask(4, torch.zeros(1)) is None
    h1, _ = model(x[..., :8])
    h2, _ = model(x[..., :8])
    assert torch.equal(h1, h2)


def test_bad_shapes_are_named():
    model = SRU(8, 16, num_layers=2)
    with pytest.raises(ValueError, match=r"\(T, B, D\) with D = 8"):
        model(torch.randn(3, 2, 9))
    with pytest.raises(ValueError, match=r"\(L=2, B, H=16\)"):
        model(torch.randn(3, 2, 8), torch.zeros(3, 2, 16))
    with pytest.raises(ValueError, match="variant"):
        SRU(8, 8, variant="v3")


def test_step_exports_to_onnx_and_runs_in_openvino(tmp_path):
    onnx = pytest.importorskip("onnx")
    ov = pytest.importorskip("openvino")

    class Step(torch.nn.Module):
        def __init__(self, sru: SRU) -> None:
            super().__init__()
            self.sru = sru

        def forward(self, x, c):
            return self.sru.step(x, c)

    model = SRU(12, 16, num_layers=3).eval()
    randomise(model, seed=5)
    path = tmp_path / "sru_step.onnx"
    x, c = torch.randn(2, 12), torch.randn(3, 2, 16)
    torch.onnx.export(
        Step(model),
        (x, c),
        str(path),
        input_names=["x", "c"],
        output_names=["h", "c_out"],
        dynamic_axes={"x": {0: "batch"}, "c": {1: "batch"}},
        opset_version=18,
        dynamo=False,
    )
    onnx.checker.check_model(str(path))
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    x3, c3 = torch.randn(3, 12), torch.randn(3, 3, 16)
    result = compiled([x3.numpy(), c3.numpy()])
    with torch.no_grad():
        h_ref, c_ref = model.step(x3, c3)
    np.testing.assert_allclose(result[0], h_ref.numpy(), atol=1e-5)
    np.testing.assert_allclose(result[1], c_ref.numpy(), atol=1e-5)


# -- where training dropout goes: sru 2.6.0 ("gated") vs the authors' sru 2.1.x ("gc") -------------


def hand_sru(x, c0, model: SRU, masks, dropout_on):
    """The recurrence with dropout written out from the package's Python path, in torch (so autograd
    gives its gradients): sru 2.1.9 `sru_functional.py`, `h_t = xp[t] + (g_c_t * mask_c_ - xp[t]) *
    reset_t`; sru 2.6.0 `ops.py`, `h_t = xp[t] + (g_c_t - xp[t]) * mask_c_ * reset_t`. `masks[i]` is
    layer i's (B, H) mask, None for the last layer."""
    out_c = []
    for i, cell in enumerate(model.rnn_lst):
        hidden, k = cell.hidden_size, cell.num_matrices
        u = (x.reshape(-1, x.shape[-1]) @ cell.weight).view(x.shape[0], x.shape[1], hidden, k)
        fw, rw = cell.weight_c[:hidden], cell.weight_c[hidden:]
        fb, rb = cell.bias[:hidden], cell.bias[hidden:]
        xp = u[..., 3] if k == 4 else x * cell.scale_x
        m = 1.0 if masks[i] is None else masks[i]
        c_prev = c0[i]
        hs = []
        for t in range(x.shape[0]):
            forget_t = torch.sigmoid(u[t, ..., 1] + fb + c_prev * fw)
            reset_t = torch.sigmoid(u[t, ..., 2] + rb + c_prev * rw)
            c_t = u[t, ..., 0] + (c_prev - u[t, ..., 0]) * forget_t
            g_c_t = c_t
            if dropout_on == "gc":
                hs.append(xp[t] + (g_c_t * m - xp[t]) * reset_t)
            else:
                hs.append(xp[t] + (g_c_t - xp[t]) * m * reset_t)
            c_prev = c_t
        x = torch.stack(hs)
        out_c.append(c_prev)
    return x, torch.stack(out_c)


def fixed_masks(model: SRU, batch: int, seed: int, dtype=torch.float64):
    """A mask per layer (None on the last, which has no dropout), as dropout_mask draws them."""
    g = torch.Generator().manual_seed(seed)
    masks = []
    for cell in model.rnn_lst:
        if cell.dropout == 0:
            masks.append(None)
            continue
        keep = 1.0 - cell.dropout
        masks.append(
            torch.bernoulli(torch.full((batch, cell.hidden_size), keep), generator=g).to(dtype) / keep
        )
    return masks


def use_masks(monkeypatch, model: SRU, masks) -> None:
    for cell, m in zip(model.rnn_lst, masks, strict=True):
        if m is not None:
            monkeypatch.setattr(cell, "dropout_mask", lambda batch, like, m=m: m)


@pytest.mark.parametrize("dropout_on", ["gc", "gated"])
@pytest.mark.parametrize("n_in", [24, 16])  # 24: projected highway (k = 4); 16: identity highway (k = 3)
def test_train_mode_matches_the_hand_written_recurrence(monkeypatch, dropout_on, n_in):
    torch.manual_seed(4)
    model = SRU(n_in, 16, num_layers=3, dropout=0.5, dropout_on=dropout_on).double().train()
    randomise(model, seed=4)
    masks = fixed_masks(model, batch=5, seed=9)
    assert masks[-1] is None and all((m == 0).any() for m in masks[:-1])  # some units really dropped
    use_masks(monkeypatch, model, masks)
    x = torch.randn(11, 5, n_in, dtype=torch.float64)
    c0 = torch.randn(3, 5, 16, dtype=torch.float64)
    x_ours, x_hand = x.clone().requires_grad_(), x.clone().requires_grad_()
    h, c = model(x_ours, c0)
    h_hand, c_hand = hand_sru(x_hand, c0, model, masks, dropout_on)
    torch.testing.assert_close(h, h_hand, atol=1e-12, rtol=0)
    torch.testing.assert_close(c, c_hand, atol=1e-12, rtol=0)
    # The gradients training follows: one backward through ours, one through the hand-written loop.
    weights = [p for cell in model.rnn_lst for p in (cell.weight, cell.weight_c, cell.bias)]
    upstream = torch.randn_like(h)
    ours = torch.autograd.grad((h * upstream).sum(), [x_ours, *weights])
    hand = torch.autograd.grad((h_hand * upstream).sum(), [x_hand, *weights])
    for a, b in zip(ours, hand, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    # The two placements differ under the same mask, so the comparison above can fail.
    other = "gated" if dropout_on == "gc" else "gc"
    h_other, _ = hand_sru(x, c0, model, masks, other)
    assert (h_other - h_hand).abs().max() > 1e-3


def test_gated_dropout_matches_the_sru_package_in_training(monkeypatch, sru_package):
    """sru 2.6.0's own Python recurrence (with grad, CPU), same weights and mask: "gated" is its placement."""
    ref = sru_package.SRU(16, 16, num_layers=2, dropout=0.5, rescale=True).double().train()
    randomise(ref, seed=6)
    ours = SRU(16, 16, num_layers=2, dropout=0.5).double().train()
    ours.load_state_dict(ref.state_dict())
    masks = fixed_masks(ours, batch=3, seed=2)
    use_masks(monkeypatch, ours, masks)
    monkeypatch.setattr(ref.rnn_lst[0], "get_dropout_mask_", lambda size, p: masks[0])
    x = torch.randn(8, 3, 16, dtype=torch.float64)
    h_ref, c_ref = ref(x)
    h, c = ours(x)
    torch.testing.assert_close(h, h_ref, atol=1e-10, rtol=0)
    torch.testing.assert_close(c, c_ref, atol=1e-10, rtol=0)


def test_default_dropout_is_unchanged_bit_for_bit(monkeypatch):
    """The default places the mask as before this option (r = r * mask, then eq. 15), op for op, in fp32:
    torch.equal, not a tolerance, against the old arithmetic transcribed and against dropout_on="gated"."""
    torch.manual_seed(7)
    default = SRU(24, 16, num_layers=3, dropout=0.6).train()
    explicit = SRU(24, 16, num_layers=3, dropout=0.6, dropout_on="gated").train()
    explicit.load_state_dict(default.state_dict())
    assert [cell.dropout_on for cell in default.rnn_lst] == ["gated"] * 3
    x = torch.randn(9, 4, 24)
    torch.manual_seed(8)
    h, c = default(x)
    torch.manual_seed(8)
    h_explicit, c_explicit = explicit(x)
    assert torch.equal(h, h_explicit) and torch.equal(c, c_explicit)
    masks = fixed_masks(default, batch=4, seed=3, dtype=torch.float32)
    use_masks(monkeypatch, default, masks)
    h, c = default(x)
    for i, cell in enumerate(default.rnn_lst):  # the old _recur, as it was written
        u0, u1, u2, highway = cell._project(x)
        v_f, v_r = cell.weight_c.view(2, cell.hidden_size)
        state = torch.zeros(4, 16)
        hs = []
        for t in range(x.shape[0]):
            f = torch.sigmoid(u1[t] + v_f * state)
            r = torch.sigmoid(u2[t] + v_r * state)
            state = u0[t] + (state - u0[t]) * f
            if masks[i] is not None:
                r = r * masks[i]
            hs.append(highway[t] + (state - highway[t]) * r)
        x = torch.stack(hs)
        assert torch.equal(state, c[i])
    assert torch.equal(x, h)


def test_dropout_site_changes_nothing_outside_training():
    """Eval, step-by-step and export see no dropout: "gc" and "gated" with the same weights agree exactly."""
    gated = SRU(24, 16, num_layers=3, dropout=0.5).eval()
    gc = SRU(24, 16, num_layers=3, dropout=0.5, dropout_on="gc").eval()
    gc.load_state_dict(gated.state_dict())
    assert list(gc.state_dict()) == list(gated.state_dict())  # same keys: checkpoints interchange
    x, c = torch.randn(6, 2, 24), torch.randn(3, 2, 16)
    with torch.no_grad():
        for a, b in zip(gated(x, c), gc(x, c), strict=True):
            assert torch.equal(a, b)
        for a, b in zip(gated.step(x[0], c), gc.step(x[0], c), strict=True):
            assert torch.equal(a, b)
    gc.train()  # step() never masks, even in train mode
    with torch.no_grad():
        assert torch.equal(gc.step(x[0], c)[0], gated.step(x[0], c)[0])
    with pytest.raises(ValueError, match="dropout_on 'h' is not one of gated, gc"):
        SRU(8, 8, dropout_on="h")


def test_reference_preset_trains_the_sru_as_sru_2_1_did():
    from glanet.models import GLANet
    from glanet.models.config import PRESETS, ConfigError, ModelConfig

    assert ModelConfig().sru_dropout_on == "gated" and "sru_dropout_on" not in PRESETS["paper"]
    ref = ModelConfig.from_preset("reference", backbone="resnet18", num_classes=5, sru_hidden=16, la_hidden=8)
    assert ref.sru_dropout_on == "gc"
    model = GLANet(ref)
    cells = [cell for head in model.heads.values() for cell in head.sru.rnn_lst]
    assert {cell.dropout_on for cell in cells} == {"gc"} and cells[0].dropout == 0.5
    paper = GLANet(dataclasses.replace(ref, sru_dropout_on="gated"))
    paper.load_state_dict(model.state_dict())
    model.eval()
    paper.eval()
    clip = torch.randn(1, 3, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(clip).fused, paper(clip).fused)  # evaluation and streaming: no difference
    with pytest.raises(ConfigError, match=r"model\.sru_dropout_on = 'all' is not one of gated, gc"):
        ModelConfig(sru_dropout_on="all")
