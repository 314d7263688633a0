"""Our SRU against the `sru` package (2.6.0), a numpy transcription of its recurrence and of the
paper's eqs. 11-15, and itself run step by step."""

from __future__ import annotations

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
