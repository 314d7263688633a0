"""engines.select: every branch of the auto order with injected probes, this machine's real choice,
the one-line errors for backends that cannot run here, and building backends from a checkpoint."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest
import torch

from engines import cache, select
from engines.cache import encode_digest
from engines.errors import EngineError, EngineUnavailable
from engines.manifest import read_manifest
from engines.select import (
    BACKENDS,
    ModelMismatch,
    available_backends,
    check_same_model,
    choose_backend,
    default_cache_dir,
    default_device,
    make_backend,
)
from engines.torch_backend import TorchBackend
from glanet.checkpoint import LoadedCheckpoint, load_checkpoint, save_checkpoint
from glanet.config import DataConfig
from glanet.data.transforms import preprocessing_dict
from glanet.models.config import ModelConfig
from glanet.models.glanet import GLANet

CUDA = torch.cuda.is_available()
HAS_TRT = CUDA and importlib.util.find_spec("tensorrt") is not None

# -- auto order (DESIGN.md): tensorrt, torch on CUDA, openvino, torch on CPU -------------------------


def test_auto_prefers_tensorrt_with_cuda():
    name, reason = choose_backend(cuda_available=True, has_tensorrt=True, has_openvino=True)
    assert name == "tensorrt"
    assert reason.startswith("tensorrt: CUDA device ")


def test_auto_takes_torch_cuda_without_tensorrt():
    name, reason = choose_backend(cuda_available=True, has_tensorrt=False, has_openvino=True)
    assert name == "torch"
    assert reason.startswith("torch: CUDA device ") and "tensorrt not installed" in reason
    assert reason.endswith("torch fp32 on CUDA")
    assert default_device(name, cuda_available=True) == "cuda"


def test_auto_takes_openvino_without_cuda():
    # TensorRT installed but no GPU: it cannot be chosen.
    name, reason = choose_backend(cuda_available=False, has_tensorrt=True, has_openvino=True)
    assert name == "openvino"
    assert reason.startswith("openvino: no CUDA device, OpenVINO")


def test_auto_falls_back_to_torch_cpu():
    name, reason = choose_backend(cuda_available=False, has_tensorrt=False, has_openvino=False)
    assert name == "torch"
    assert reason == (
        "torch: no CUDA device and openvino not installed (pip install openvino); torch fp32 on CPU"
    )
    assert default_device(name, cuda_available=False) == "cpu"


@pytest.mark.skipif(CUDA, reason="about a machine without CUDA; this one has a GPU")
def test_auto_on_this_machine_is_openvino():
    pytest.importorskip("openvino")
    name, reason = choose_backend("auto")
    assert name == "openvino"
    assert re.fullmatch(r"openvino: no CUDA device, OpenVINO \d+\.\d+ on CPU( \(bf16 capable\))?", reason), (
        reason
    )


# -- explicit requests ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "probes", "why"),
    [
        ("tensorrt", dict(cuda_available=False, has_tensorrt=True), "no CUDA device"),
        ("tensorrt", dict(cuda_available=True, has_tensorrt=False), "tensorrt not installed"),
        ("torch_tensorrt", dict(cuda_available=False, has_torch_tensorrt=True), "no CUDA device"),
        (
            "torch_tensorrt",
            dict(cuda_available=True, has_torch_tensorrt=False),
            "torch-tensorrt not installed",
        ),
        ("openvino", dict(cuda_available=False, has_openvino=False), "openvino not installed"),
    ],
)
def test_requested_backend_that_cannot_run_says_why(requested, probes, why):
    with pytest.raises(EngineUnavailable) as err:
        choose_backend(requested, **probes)
    message = str(err.value)
    assert message.startswith(f"the {requested} backend cannot run here: {why}")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("requested", "probes"),
    [
        ("tensorrt", dict(cuda_available=True, has_tensorrt=True)),
        ("torch_tensorrt", dict(cuda_available=True, has_torch_tensorrt=True)),
        ("openvino", dict(cuda_available=True, has_openvino=True)),  # asked for: no GPU needed
        ("torch", dict(cuda_available=False)),
        ("torch", dict(cuda_available=True)),
    ],
)
def test_requested_backend_that_can_run(requested, probes):
    name, reason = choose_backend(requested, **probes)
    assert name == requested
    assert reason.startswith(f"{requested}: requested, ")


def test_requested_torch_says_where():
    assert choose_backend("torch", cuda_available=False)[1] == "torch: requested, torch fp32 on CPU"
    assert "on CUDA device" in choose_backend("torch", cuda_available=True)[1]


def test_unknown_backend():
    with pytest.raises(
        EngineError, match=r"unknown backend 'onnxruntime': choose one of auto, torch, openvino"
    ):
        choose_backend("onnxruntime")


@pytest.mark.skipif(HAS_TRT, reason="this machine can run TensorRT")
def test_tensorrt_here_is_unavailable_with_a_readable_reason():
    with pytest.raises(EngineUnavailable) as err:
        choose_backend("tensorrt")
    message = str(err.value)
    assert re.fullmatch(
        r"the tensorrt backend cannot run here: (no CUDA device|tensorrt not installed \(.*\)|"
        r"tensorrt does not import .*); use --backend auto",
        message,
    ), message


# -- probes ---------------------------------------------------------------------------------------------


def test_available_backends_here():
    found = available_backends()
    assert tuple(found) == BACKENDS
    assert found["torch"] is None
    if importlib.util.find_spec("openvino") is not None:
        assert found["openvino"] is None
    if not CUDA:
        assert found["tensorrt"] == found["torch_tensorrt"] == "no CUDA device"
    assert all(v is None or ("\n" not in v and v) for v in found.values())


def test_import_problem_missing_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert select._import_problem("tensorrt") == (
        "tensorrt not installed (its wheels come from NVIDIA's index, pypi.nvidia.com)"
    )


def test_import_problem_broken_install(monkeypatch):
    def broken(name: str):
        raise OSError("libnvinfer.so.10: cannot open shared object file\nmore detail")

    monkeypatch.setattr(select.importlib, "import_module", broken)
    assert select._import_problem("tensorrt") == (
        "tensorrt does not import (OSError: libnvinfer.so.10: cannot open shared object file)"
    )


def test_default_device():
    assert default_device("tensorrt", cuda_available=False) == "cuda"
    assert default_device("torch_tensorrt") == "cuda"
    assert default_device("openvino", cuda_available=True) == "cpu"
    assert default_device("torch", cuda_available=True) == "cuda"
    assert default_device("torch", cuda_available=False) == "cpu"


def test_default_cache_dir(monkeypatch, tmp_path):
    assert default_cache_dir is cache.default_cache_dir  # engines.select re-exports engines.cache's
    monkeypatch.setenv("GLANET_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("GLANET_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x" / "glanet"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "glanet"


# -- make_backend ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> LoadedCheckpoint:
    torch.manual_seed(0)
    model = GLANet(ModelConfig(backbone="resnet18", num_classes=4, sru_hidden=16))
    pre = preprocessing_dict(DataConfig(resize=(48, 48), crop=40))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    return load_checkpoint(save_checkpoint(path, model, class_names=list("abcd"), preprocessing=pre))


def test_make_torch_backend(checkpoint):
    backend = make_backend("torch", checkpoint, device="cpu")
    assert isinstance(backend, TorchBackend)
    assert backend.describe() == "torch fp32 on cpu"


def test_make_torch_backend_needs_a_checkpoint_and_fp32(checkpoint):
    with pytest.raises(EngineError, match="the torch backend needs the checkpoint"):
        make_backend("torch", None)
    with pytest.raises(EngineError, match="the torch backend runs fp32 only, not fp16"):
        make_backend("torch", checkpoint, precision="fp16")


def test_make_openvino_without_export_or_checkpoint():
    pytest.importorskip("openvino")
    with pytest.raises(EngineError, match=r"run glanet export --checkpoint CKPT --out DIR first"):
        make_backend("openvino", None)


@pytest.mark.skipif(HAS_TRT, reason="this machine can run TensorRT")
def test_make_tensorrt_here_is_unavailable(checkpoint, tmp_path):
    with pytest.raises(EngineUnavailable, match="the tensorrt backend cannot run here"):
        make_backend("tensorrt", checkpoint, cache_dir=tmp_path)


@pytest.mark.skipif(CUDA, reason="about a machine without CUDA; this one has a GPU")
def test_make_auto_here_exports_once_and_runs_openvino(checkpoint, tmp_path, monkeypatch):
    pytest.importorskip("engines.openvino_backend")
    import engines.export

    calls = []
    real_export = engines.export.export
    monkeypatch.setattr(engines.export, "export", lambda *a, **k: calls.append(a) or real_export(*a, **k))
    backend = make_backend("auto", checkpoint, cache_dir=tmp_path)
    assert backend.name == "openvino"
    manifests = list((tmp_path / "exports").glob("*/manifest.json"))
    assert len(calls) == 1 and len(manifests) == 1
    digest = encode_digest(checkpoint.model.cfg, checkpoint.weights_sha256, (3, 40, 40))
    assert manifests[0].parent.name == f"v2-{digest[:24]}"
    again = make_backend("openvino", checkpoint, precision="fp32", cache_dir=tmp_path)
    assert len(calls) == 1  # the export in the cache is reused
    frames = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        ref = checkpoint.model.eval().encode(frames)
    got = again.encode(frames)
    assert tuple(got.features) == tuple(ref.features) == checkpoint.model.spec.feature_names
    for name, r in ref.features.items():
        g = got.features[name]
        assert (g - r).abs().max().item() <= 1e-3 * max(1.0, r.abs().max().item())
    out, _ = again.temporal_step(got.features, again.init_state(2))
    assert out.fused.shape == (2, 4)


# -- an export and a checkpoint given together must be one model (run_camera --engine A --checkpoint B) --


@pytest.fixture(scope="module")
def two_models(tmp_path_factory) -> tuple[Path, LoadedCheckpoint, LoadedCheckpoint, LoadedCheckpoint]:
    """(export of model A, checkpoint A, checkpoint B: other weights, checkpoint A2: A's weights with the
    class names swapped, saved as a new checkpoint)."""
    from engines.export import export

    root = tmp_path_factory.mktemp("two")
    cfg = ModelConfig(backbone="resnet10", num_classes=3, sru_hidden=8, sru_layers=1, la_hidden=8)
    pre = preprocessing_dict(DataConfig(resize=(36, 36), crop=32))
    torch.manual_seed(1)
    a = GLANet(cfg).eval()
    torch.manual_seed(2)
    b = GLANet(cfg).eval()
    path_a = save_checkpoint(root / "a.pt", a, class_names=["walk", "run", "jump"], preprocessing=pre)
    path_b = save_checkpoint(root / "b.pt", b, class_names=["walk", "run", "jump"], preprocessing=pre)
    path_a2 = save_checkpoint(root / "a2.pt", a, class_names=["run", "walk", "jump"], preprocessing=pre)
    export(path_a, root / "export_a")
    return root / "export_a", load_checkpoint(path_a), load_checkpoint(path_b), load_checkpoint(path_a2)


def test_check_same_model_accepts_the_export_of_the_checkpoint(two_models):
    export_a, ck_a, _, _ = two_models
    check_same_model(export_a, ck_a)
    check_same_model(read_manifest(export_a), ck_a)


def test_check_same_model_refuses_another_checkpoint_in_one_line(two_models):
    export_a, ck_a, ck_b, ck_a2 = two_models
    with pytest.raises(ModelMismatch) as err:
        check_same_model(export_a, ck_b)
    text = str(err.value)
    assert "\n" not in text
    assert f"{export_a} was exported from another model than {ck_b.path}" in text
    assert ck_a.weights_sha256[:12] in text and ck_b.weights_sha256[:12] in text
    assert str(ck_a.path) in text and "glanet export --checkpoint" in text
    assert ck_a2.weights_sha256 == ck_a.weights_sha256
    with pytest.raises(
        ModelMismatch, match=r"same weights but other class names \(3 vs 3 names, first .* 0\)"
    ):
        check_same_model(export_a, ck_a2)
    assert isinstance(err.value, EngineError)


@pytest.mark.parametrize("backend", ["torch", "openvino"])
def test_make_backend_refuses_an_export_and_a_checkpoint_of_two_models(two_models, backend, tmp_path):
    pytest.importorskip("openvino")
    export_a, ck_a, ck_b, _ = two_models
    with pytest.raises(ModelMismatch, match="was exported from another model"):
        make_backend(backend, ck_b, export_a, device="cpu", cache_dir=tmp_path)
    assert (
        make_backend(backend, ck_a, export_a, "fp32", device="cpu", cache_dir=tmp_path).spec.num_classes == 3
    )
