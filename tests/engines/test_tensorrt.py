"""TensorRT and Torch-TensorRT backends: everything that needs no GPU (cache keys, profiles, version and
precision rules, the fp16 ONNX checked numerically on the CPU, the errors when TensorRT is missing),
plus GPU tests that build and run real engines, marked `gpu` and skipped visibly without CUDA.
TensorRT cannot be installed on the development machines: the GPU tests here have not run there."""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator
from torch import Tensor, nn

from engines import onnx_fp16
from engines.cache import encode_digest
from engines.errors import EngineError, EngineUnavailable
from engines.graph_io import encode_inputs, encode_outputs, flatten_encoded
from engines.manifest import FORMAT_VERSION, Manifest
from engines.onnx_fp16 import FP16_MAX, NodeFloats, fp16_onnx, fp32_tensor_names, half_nodes
from engines.tensorrt_backend import (
    TensorRTBackend,
    build_tensorrt,
    encode_io,
    plan_cache_key,
    plan_path,
    precision_mode,
    profile_shapes,
    trt_major,
)
from engines.torch_tensorrt_backend import compile_options, import_torch_tensorrt
from glanet.models.config import ModelConfig
from glanet.models.glanet import GLANet

SHA = "ab" * 32
SAFE = re.compile(r"[A-Za-z0-9._-]+")


# -- versions, precisions, keys, profiles -------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "major"), [("10.13.0.35", 10), ("11.0.0", 11), ("11", 11), (" 10.0.1b", 10)]
)
def test_trt_major(version, major):
    assert trt_major(version) == major


@pytest.mark.parametrize("version", ["", "abc", "v10.1", ".10"])
def test_trt_major_rejects_junk(version):
    with pytest.raises(ValueError, match="major"):
        trt_major(version)


@pytest.mark.parametrize(
    ("version", "precision", "mode"),
    [
        ("10.13.3.9", "fp16", "flags"),
        ("10.0.1", "fp32", "flags"),
        ("11.0.0", "fp16", "strongly_typed"),
        ("11.4.1", "fp32", "strongly_typed"),
        ("12.1", "fp16", "strongly_typed"),
    ],
)
def test_precision_mode_by_version(version, precision, mode):
    assert precision_mode(version, precision) == mode


def test_precision_mode_refuses_old_tensorrt():
    with pytest.raises(EngineUnavailable, match=r"TensorRT 8\.6\.1 is too old.*10 or newer"):
        precision_mode("8.6.1", "fp16")


def test_int8_is_not_implemented_and_says_so():
    with pytest.raises(
        NotImplementedError, match=r"int8 TensorRT plans are not implemented.*Q/DQ.*OpenVINO"
    ) as e:
        precision_mode("11.0.0", "int8")
    assert isinstance(e.value, EngineError)  # the command lines print it as one line


def test_unknown_precision():
    with pytest.raises(ValueError, match="'bf16' is not one of fp32, fp16, int8"):
        precision_mode("11.0.0", "bf16")


KEY_ARGS = dict(
    gpu_name="NVIDIA H100 80GB HBM3",
    compute_capability=(9, 0),
    trt_version="10.13.0.35",
    precision="fp16",
    onnx_sha256=SHA,
    max_batch=8,
)


def test_plan_cache_key_is_stable_and_filesystem_safe():
    key = plan_cache_key(**KEY_ARGS)
    assert key == plan_cache_key(**KEY_ARGS)
    assert key == "nvidia-h100-80gb-hbm3_sm90_trt10.13.0.35_fp16_b8of8_" + SHA
    assert SAFE.fullmatch(key) and len(key) < 200


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("gpu_name", "NVIDIA A100-SXM4-40GB"),
        ("compute_capability", (8, 0)),
        ("trt_version", "11.0.0"),
        ("precision", "fp32"),
        ("onnx_sha256", "cd" * 32),
        ("max_batch", 4),
    ],
)
def test_plan_cache_key_changes_with_every_field(field, value):
    assert plan_cache_key(**{**KEY_ARGS, field: value}) != plan_cache_key(**KEY_ARGS)


def test_plan_cache_key_has_the_opt_batch():
    assert plan_cache_key(**KEY_ARGS, opt_batch=1) != plan_cache_key(**KEY_ARGS)
    assert "_b1of8_" in plan_cache_key(**KEY_ARGS, opt_batch=1)


def test_plan_cache_key_makes_odd_gpu_names_safe():
    key = plan_cache_key(**{**KEY_ARGS, "gpu_name": "../GeForce RTX 4090 / Laptop  (x)"})
    assert SAFE.fullmatch(key) and not key.startswith(".")
    assert key.startswith("geforce-rtx-4090-laptop-x_")


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("onnx_sha256", "not-a-digest", "sha256"),
        ("onnx_sha256", "AB" * 32, "sha256"),
        ("max_batch", 0, "max_batch"),
    ],
)
def test_plan_cache_key_rejects_bad_values(field, value, match):
    with pytest.raises(ValueError, match=match):
        plan_cache_key(**{**KEY_ARGS, field: value})


def test_plan_path(tmp_path):
    assert plan_path(tmp_path, "abc_1.2-x") == tmp_path / "abc_1.2-x.plan"
    for bad in ("../x", "a/b", ".hidden", ""):
        with pytest.raises(ValueError, match="plain file name"):
            plan_path(tmp_path, bad)


def test_profile_shapes():
    assert profile_shapes((3, 224, 224), 8, 2) == ((1, 3, 224, 224), (2, 3, 224, 224), (8, 3, 224, 224))
    assert profile_shapes((3, 112, 96), 4) == ((1, 3, 112, 96), (4, 3, 112, 96), (4, 3, 112, 96))
    assert profile_shapes((3, 64, 64), 1) == ((1, 3, 64, 64),) * 3


@pytest.mark.parametrize(
    ("shape", "max_batch", "opt", "match"),
    [
        ((3, 224), 4, None, "must be"),
        ((3, 0, 224), 4, None, "must be"),
        ((3, 224, 224), 0, None, "max_batch"),
        ((3, 224, 224), 4, 5, "opt_batch"),
        ((3, 224, 224), 4, 0, "opt_batch"),
    ],
)
def test_profile_shapes_rejects(shape, max_batch, opt, match):
    with pytest.raises(ValueError, match=match):
        profile_shapes(shape, max_batch, opt)


SPEC = GLANet(ModelConfig(backbone="resnet18", num_classes=4, sru_hidden=8)).spec  # branches GS, GL, GP
ENCODE_OUTPUTS = ["feat_gs", "feat_gl", "feat_gp", "map_sa", "map_la"]


def _manifest(
    tmp_path: Path, outputs: list[str], inputs=("frames",), frame_shape=("batch", 3, 112, 112)
) -> Manifest:
    encode = {
        "file": "encode.onnx",
        "sha256": SHA,
        "inputs": [{"name": n, "shape": list(frame_shape), "dtype": "float32"} for n in inputs],
        "outputs": [{"name": n, "shape": ["batch", 4], "dtype": "float32"} for n in outputs],
    }
    data = {"format_version": FORMAT_VERSION, "graphs": {"encode": encode}, "online_spec": SPEC.to_dict()}
    return Manifest(tmp_path, data)


def test_encode_io_reads_the_export_manifest(tmp_path):
    assert encode_inputs(SPEC) == ("frames",) and encode_outputs(SPEC) == tuple(ENCODE_OUTPUTS)
    assert encode_io(_manifest(tmp_path, ENCODE_OUTPUTS)) == (
        ("frames",),
        (3, 112, 112),
        tuple(ENCODE_OUTPUTS),
    )


@pytest.mark.parametrize(
    ("outputs", "inputs"),
    [
        (["feat_gs", "feat_gl", "map_sa", "map_la"], ("frames",)),  # a branch's features missing
        (["feat_gs", "feat_gl", "feat_gp", "sa_map", "la_map"], ("frames",)),  # format 1's map names
        (["feat_gl", "feat_gs", "feat_gp", "map_sa", "map_la"], ("frames",)),  # not in the spec's order
        (ENCODE_OUTPUTS, ("images",)),
        (ENCODE_OUTPUTS, ("frames", "c")),  # a state input the spec does not have
    ],
)
def test_encode_io_wants_the_online_specs_names(tmp_path, outputs, inputs):
    wrong = r"encode's inputs/outputs .* are not the online spec's .*: export again"
    with pytest.raises(EngineError, match=wrong):
        encode_io(_manifest(tmp_path, outputs, inputs))


def test_encode_io_wants_a_frame_shape(tmp_path):
    with pytest.raises(EngineError, match=r"encode input shape .* is not \(batch, C, H, W\)"):
        encode_io(_manifest(tmp_path, ENCODE_OUTPUTS, frame_shape=("batch", 3, "h", "w")))
    with pytest.raises(EngineError, match=r"encode input shape .* is not \(batch, C, H, W\)"):
        encode_io(_manifest(tmp_path, ENCODE_OUTPUTS, frame_shape=("batch", 3, 112)))


# -- without TensorRT / torch-tensorrt: clear one-line errors ------------------------------------------


@pytest.fixture
def no_tensorrt(monkeypatch):
    """Make `import tensorrt` and `import torch_tensorrt` fail, whatever this machine has."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setitem(sys.modules, "torch_tensorrt", None)


def test_build_without_tensorrt_says_how_to_get_it(no_tensorrt, tmp_path):
    with pytest.raises(EngineUnavailable) as err:
        build_tensorrt(tmp_path, "fp16", 1, tmp_path / "cache")
    message = str(err.value)
    assert message.startswith("TensorRT is not installed (pip install tensorrt needs NVIDIA's index")
    assert "\n" not in message


def test_backend_without_tensorrt(no_tensorrt, tmp_path):
    model = GLANet(ModelConfig(backbone="resnet18", num_classes=3, sru_hidden=8))
    with pytest.raises(EngineUnavailable, match="TensorRT is not installed"):
        TensorRTBackend(tmp_path / "x.plan", model, ("frames",), tuple(ENCODE_OUTPUTS), 1)


def test_torch_tensorrt_missing(no_tensorrt):
    with pytest.raises(EngineUnavailable, match=r"^torch-tensorrt is not installed \(pip install"):
        import_torch_tensorrt()


def test_torch_tensorrt_compile_options():
    assert compile_options("fp32") == {"disable_tf32": True}
    fp16 = compile_options("fp16")
    assert fp16["enable_autocast"] is True and fp16["autocast_low_precision_type"] is torch.float16
    assert torch.ops.aten.pow.Tensor_Scalar in fp16["autocast_excluded_ops"]
    assert torch.ops.aten._softmax.default in fp16["autocast_excluded_ops"]
    with pytest.raises(NotImplementedError, match="int8"):
        compile_options("int8")


def test_encode_digest_follows_weights_config_and_size():
    model = GLANet(ModelConfig(backbone="resnet18", num_classes=3, sru_hidden=8))
    other = GLANet(ModelConfig(backbone="resnet18", num_classes=3, sru_hidden=8, sa_temperature=2.0))
    base = encode_digest(model.cfg, SHA, (3, 112, 112))
    assert re.fullmatch(r"[0-9a-f]{64}", base)
    assert base == encode_digest(model.cfg, SHA, (3, 112, 112))
    assert base != encode_digest(model.cfg, "cd" * 32, (3, 112, 112))
    assert base != encode_digest(model.cfg, SHA, (3, 128, 128))
    assert base != encode_digest(other.cfg, SHA, (3, 112, 112))


# -- the fp16 ONNX -------------------------------------------------------------------------------------


def test_half_nodes_policy():
    nodes = [
        NodeFloats("Conv", ("x",), ("a",)),  # 0 heavy: fp16
        NodeFloats("Relu", ("a",), ("b",)),  # 1 follows fp16: fp16
        NodeFloats("Add", ("b", "x"), ("c",)),  # 2 one input fp32 (x): fp32
        NodeFloats("Add", ("b", "b"), ("d",)),  # 3 fp16
        NodeFloats("Pow", ("d",), ("e",)),  # 4 not a follower: fp32
        NodeFloats("ReduceSum", ("e",), ("f",)),  # 5 fp32
        NodeFloats("Relu", ("f",), ("g",)),  # 6 follows fp32: fp32
        NodeFloats("Mul", (), ()),  # 7 no floats (shape arithmetic): untouched
        NodeFloats("Add", (), ("h",)),  # 8 constants only: fp32
        NodeFloats("MaxPool", ("g",), ("i",)),  # 9 heavy even after fp32: fp16
    ]
    assert half_nodes(nodes) == {0, 1, 3, 9}


class Tiny(nn.Module):
    """A conv trunk (conv, BN, ReLU, residual, max-pool) and GLANet-like heads (GP, SA's sum of squares)."""

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(channels, 4)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        y = torch.relu(self.bn(self.conv1(x)))
        y = self.pool(torch.relu(self.conv2(y) + y))  # (N, C, h, w)
        n, c = y.shape[:2]
        scores = y.pow(2).sum(dim=1).reshape(n, -1)  # eq. 3
        t = torch.softmax(scores, dim=-1)
        sa = torch.bmm(y.reshape(n, c, -1), t.unsqueeze(-1)).squeeze(-1)
        gp = y.mean(dim=(2, 3))
        return gp, sa, torch.tanh(self.fc(gp)), t, scores


OUTPUTS = ["gp", "sa", "la", "t", "scores"]


def _export(module: nn.Module, path: Path, example: Tensor, outputs: list[str]) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (example,),
            str(path),
            input_names=["frames"],
            output_names=outputs,
            dynamic_axes={"frames": {0: "batch"}},
            opset_version=18,
            dynamo=False,
        )
    return path


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> tuple[Tiny, Path]:
    torch.manual_seed(0)
    model = Tiny().eval()
    with torch.no_grad():  # give BN non-trivial statistics
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    return model, _export(model, path, torch.randn(2, 3, 16, 16), OUTPUTS)


def _types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    return {v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.output, *g.value_info)} | {
        i.name: i.data_type for i in g.initializer
    }


def test_fp16_onnx_types(tiny_onnx, tmp_path):
    _, src = tiny_onnx
    dst = fp16_onnx(src, tmp_path / "sub" / "tiny16.onnx")
    assert dst == tmp_path / "sub" / "tiny16.onnx" and dst.is_file()
    m = onnx.load(str(dst))
    onnx.checker.check_model(m, full_check=True)
    # The interface is unchanged: same names, fp32 in and out.
    assert [(i.name, i.type.tensor_type.elem_type) for i in m.graph.input] == [("frames", TensorProto.FLOAT)]
    assert [(o.name, o.type.tensor_type.elem_type) for o in m.graph.output] == [
        (n, TensorProto.FLOAT) for n in OUTPUTS
    ]
    types = _types(m)
    for node in m.graph.node:
        float_in = [types[n] for n in node.input if types.get(n) in (TensorProto.FLOAT, TensorProto.FLOAT16)]
        if node.op_type in ("Conv", "MaxPool"):
            assert set(float_in) == {TensorProto.FLOAT16}, node.op_type
        if node.op_type in ("Pow", "ReduceSum", "Softmax", "MatMul", "Tanh", "ReduceMean"):
            assert set(float_in) == {TensorProto.FLOAT}, node.op_type
    casts = [n for n in m.graph.node if n.op_type == "Cast"]
    assert len(casts) == 2  # frames into the trunk, the trunk's output back to fp32
    keep = fp32_tensor_names(src)  # what TensorRT 10 holds at fp32
    assert set(OUTPUTS) <= keep
    assert not any("Conv" in n or "MaxPool" in n for n in keep)


def _rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    span = float(ref.max() - ref.min()) or float(np.abs(ref).max()) or 1.0
    return float(np.abs(got.astype(np.float64) - ref).max() / span)


def test_fp16_onnx_matches_torch_within_fp16_tolerance(tiny_onnx, tmp_path):
    model, src = tiny_onnx
    dst = fp16_onnx(src, tmp_path / "tiny16.onnx")
    x = torch.randn(3, 3, 16, 16)  # another batch size than exported with
    with torch.no_grad():
        ref = [t.numpy() for t in model(x)]
    fp32 = ReferenceEvaluator(str(src)).run(None, {"frames": x.numpy()})
    fp16 = ReferenceEvaluator(str(dst)).run(None, {"frames": x.numpy()})
    for name, r, a, b in zip(OUTPUTS, ref, fp32, fp16, strict=True):
        assert b.dtype == np.float32 and b.shape == r.shape, name
        assert _rel_err(a, r) < 1e-5, name  # the fp32 graph is exact
        assert _rel_err(b, r) < 1e-2, name  # fp16: ~1e-3 of the range
        assert _rel_err(b, r) > 1e-6 or name == "t", name  # and it did run in fp16


def test_fp16_onnx_keeps_the_sum_of_squares_from_overflowing(tiny_onnx, tmp_path, monkeypatch):
    """At activations where eq. (3)'s sum of squares passes fp16's 65504, the result stays finite."""
    model, src = tiny_onnx
    dst = fp16_onnx(src, tmp_path / "tiny16.onnx")
    x = 80 * torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ref = [t.numpy() for t in model(x)]
    assert ref[OUTPUTS.index("scores")].max() > FP16_MAX  # the case this test is about
    assert np.abs(ref[0]).max() < FP16_MAX / 8  # while the trunk itself fits in fp16
    got = ReferenceEvaluator(str(dst)).run(None, {"frames": x.numpy()})
    for name, g in zip(OUTPUTS, got, strict=True):
        assert np.isfinite(g).all(), name
    scores = OUTPUTS.index("scores")
    assert _rel_err(got[scores], ref[scores]) < 1e-2
    gp = OUTPUTS.index("gp")
    assert _rel_err(got[gp], ref[gp]) < 1e-2

    # What the policy prevents: the same graph with the reduction in fp16 overflows.
    monkeypatch.setattr(onnx_fp16, "FOLLOWER_OPS", onnx_fp16.FOLLOWER_OPS | {"Pow", "ReduceSum"})
    naive = fp16_onnx(src, tmp_path / "naive16.onnx")
    with np.errstate(all="ignore"):
        got = ReferenceEvaluator(str(naive)).run(None, {"frames": x.numpy()})
    assert not np.isfinite(got[scores]).all()


def test_fp16_onnx_runs_in_openvino(tiny_onnx, tmp_path):
    ov = pytest.importorskip("openvino")
    model, src = tiny_onnx
    dst = fp16_onnx(src, tmp_path / "tiny16.onnx")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ref = [t.numpy() for t in model(x)]
    compiled = ov.Core().compile_model(str(dst), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    out = compiled({"frames": x.numpy()})
    for name, r in zip(OUTPUTS, ref, strict=True):
        assert _rel_err(out[name], r) < 1e-2, name


def test_fp16_onnx_of_the_glanet_encode_graph(tmp_path):
    """The real encode graph (engines.export's EncodeGraph): fp16 features within 1% of torch."""
    from engines.export import EncodeGraph

    torch.manual_seed(0)
    model = GLANet(ModelConfig(backbone="resnet18", num_classes=5, sru_hidden=16)).eval()
    names = list(encode_outputs(model.spec))
    assert names == ENCODE_OUTPUTS
    src = _export(EncodeGraph(model), tmp_path / "encode.onnx", torch.randn(2, 3, 64, 64), names)
    dst = fp16_onnx(src, tmp_path / "encode16.onnx")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        feats = model.encode(x)
    ref = [t.numpy() for t in flatten_encoded(model.spec, feats)]
    got = ReferenceEvaluator(str(dst)).run(None, {"frames": x.numpy()})
    for name, r, g in zip(names, ref, got, strict=True):
        assert _rel_err(g, r) < 1e-2, name


def test_fp16_onnx_refuses_control_flow(tmp_path):
    branch = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y1"])],
        "branch",
        [],
        [helper.make_tensor_value_info("y1", TensorProto.FLOAT, [1])],
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)],
        "g",
        [
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "if.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    with pytest.raises(NotImplementedError, match="control flow"):
        fp16_onnx(path, tmp_path / "if16.onnx")


# -- on a GPU with TensorRT / torch-tensorrt ------------------------------------------------------------


def _tiny_export(tmp_path: Path) -> tuple[GLANet, Path]:
    from engines.export import export
    from glanet.checkpoint import load_checkpoint, save_checkpoint
    from glanet.config import DataConfig
    from glanet.data.transforms import preprocessing_dict

    torch.manual_seed(0)
    model = GLANet(ModelConfig(backbone="resnet18", num_classes=5, sru_hidden=16)).eval()
    pre = preprocessing_dict(DataConfig(resize=(72, 72), crop=64))
    ckpt = save_checkpoint(tmp_path / "tiny.pt", model, class_names=list("abcde"), preprocessing=pre)
    export(ckpt, tmp_path / "export")
    return load_checkpoint(ckpt).model.eval(), tmp_path / "export"


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_plan_matches_torch(tmp_path, precision):
    pytest.importorskip("tensorrt", reason="tensorrt is not installed: this TensorRT test has NOT run")
    model, export_dir = _tiny_export(tmp_path)
    cache = tmp_path / "cache"
    plan = build_tensorrt(export_dir, precision, 4, cache)
    assert plan.is_file() and plan.parent == cache and plan.suffix == ".plan"
    assert build_tensorrt(export_dir, precision, 4, cache) == plan  # from the cache the second time
    backend = TensorRTBackend.from_manifest(
        export_dir, model, precision=precision, max_batch=4, cache_dir=cache
    )
    frames = torch.randn(3, 3, 64, 64, device="cuda")
    with torch.no_grad():
        ref = model.cuda().encode(frames)
    got = backend.encode(frames)
    tol = 1e-3 if precision == "fp32" else 2e-2
    assert tuple(got.features) == tuple(ref.features) and tuple(got.maps) == tuple(ref.maps)
    for r, g in zip(flatten_encoded(model.spec, ref), flatten_encoded(model.spec, got), strict=True):
        assert g.shape == r.shape and g.device.type == "cuda"
        assert _rel_err(g.cpu().numpy(), r.cpu().numpy()) < tol
    state = backend.init_state(3)
    out, state = backend.temporal_step(got.features, state)
    assert out.fused.shape == (3, 5) and torch.isfinite(out.fused).all()
    with pytest.raises(EngineError, match="outside this plan's profile"):
        backend.encode(torch.randn(5, 3, 64, 64, device="cuda"))


@pytest.mark.gpu
def test_torch_tensorrt_compile_save_load_round_trip(tmp_path):
    pytest.importorskip("torch_tensorrt", reason="torch-tensorrt is not installed: this test has NOT run")
    from engines.torch_tensorrt_backend import TorchTensorRTBackend, compile_encode, load_encode, save_encode

    torch.manual_seed(0)
    model = GLANet(ModelConfig(backbone="resnet18", num_classes=5, sru_hidden=16)).eval().cuda()
    compiled = compile_encode(model, (3, 64, 64), max_batch=4, precision="fp32")
    path = save_encode(compiled, tmp_path / "encode.pt2", (3, 64, 64), 4)
    loaded = load_encode(path)
    for batch in (1, 3):
        frames = torch.randn(batch, 3, 64, 64, device="cuda")
        with torch.no_grad():
            ref = model.encode(frames)
            got = loaded(frames)
        for r, g in zip(flatten_encoded(model.spec, ref), got, strict=True):
            assert _rel_err(g.cpu().numpy(), r.cpu().numpy()) < 1e-3
    backend = TorchTensorRTBackend.from_model(
        model, weights_sha256=SHA, input_shape=(3, 64, 64), precision="fp16", max_batch=2, cache_dir=tmp_path
    )
    feats = backend.encode(torch.randn(2, 3, 64, 64, device="cuda"))
    out, _ = backend.temporal_step(feats.features, backend.init_state(2))
    assert torch.isfinite(out.fused).all()
    assert len(list(tmp_path.glob("*.pt2"))) == 2  # the round-trip file and the cached fp16 program
