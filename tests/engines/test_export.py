"""ONNX export (engines/export.py): the graphs pass onnx.checker, run in OpenVINO fp32 as PyTorch does (one
step and 30 steps with the state fed back), the manifest describes them, and mistakes are one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import openvino as ov
import pytest
import torch

import engines.export as export_module
from engines.export import (
    ENCODE_FILE,
    STEP_FILE,
    ExportMismatch,
    export,
    main,
    relative_error,
    verify_graphs,
)
from engines.graph_io import (
    encode_inputs,
    encode_outputs,
    flatten_encoded,
    flatten_step,
    step_inputs,
    step_outputs,
)
from engines.manifest import FORMAT_VERSION, MANIFEST, ManifestError, file_sha256, read_manifest
from engines.openvino_backend import OpenVINOBackend
from glanet.checkpoint import load_checkpoint, save_checkpoint
from glanet.models.config import ModelConfig
from glanet.models.glanet import build_model

TINY = ModelConfig(backbone="resnet10", num_classes=5, sru_hidden=16, sru_layers=2, la_hidden=8)
PRE = {"resize": [72, 72], "crop": 64, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
SAMPLING = {"fps": 10.0, "window": 8, "stride": 4, "mode": "clips", "segments": 3, "frames_per_segment": 4}
TOL = 1e-4
FP32 = {"INFERENCE_PRECISION_HINT": "f32"}


def tiny_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    model = build_model(TINY)
    model.train()
    with torch.no_grad():  # running statistics that are not the identity, as a trained model has
        for _ in range(2):
            model.encode(torch.randn(4, 3, 64, 64) * 2 + 0.5)
    model.eval()
    for p in model.heads.parameters():  # a bias too, so the heads' outputs are not near zero
        p.data.add_(torch.randn_like(p) * 0.1)
    return save_checkpoint(
        path, model, class_names=[f"c{i}" for i in range(5)], preprocessing=PRE, sampling=SAMPLING
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(checkpoint, export directory) of a tiny model at 64 px."""
    root = tmp_path_factory.mktemp("tiny")
    ckpt = tiny_checkpoint(root / "tiny.pt")
    export(ckpt, root / "export")
    return ckpt, root / "export"


def compile_graphs(out: Path) -> tuple[ov.CompiledModel, ov.CompiledModel]:
    core = ov.Core()
    return core.compile_model(str(out / ENCODE_FILE), "CPU", FP32), core.compile_model(
        str(out / STEP_FILE), "CPU", FP32
    )


def test_graphs_pass_the_checker_and_the_manifest_describes_them(tiny):
    ckpt, out = tiny
    ck = load_checkpoint(ckpt)
    for file in (ENCODE_FILE, STEP_FILE):
        onnx.checker.check_model(str(out / file), full_check=True)
        assert not list(out.glob("*.data")), "weights belong inside the .onnx files"
    m = read_manifest(out)
    m.verify()
    data = json.loads((out / MANIFEST).read_text())
    assert data["opset"] == 18 and onnx.load(str(out / ENCODE_FILE)).opset_import[0].version == 18
    assert m.branch_names == ("GS", "GL", "GP") and m.class_names == ck.class_names
    assert m.preprocessing == ck.preprocessing and m.sampling == ck.sampling and m.image_size == (64, 64)
    assert data["source"]["weights_sha256"] == ck.weights_sha256
    assert Path(data["source"]["checkpoint"]) == ckpt.resolve()
    assert {"glanet_version", "torch_version", "created_utc"} <= set(data)
    assert data["format_version"] == FORMAT_VERSION == 2 and "stream_names" not in data
    assert data["online_spec"] == ck.model.spec.to_dict() and m.spec == ck.model.spec
    for graph in ("encode", "temporal_step"):
        assert m.graph(graph)["sha256"] == file_sha256(m.graph_path(graph))
    enc, step = m.graph("encode"), m.graph("temporal_step")
    assert enc["inputs"] == [{"name": "frames", "shape": ["batch", 3, 64, 64], "dtype": "float32"}]
    assert [(o["name"], o["shape"]) for o in enc["outputs"]] == [
        ("feat_gs", ["batch", 1024]),
        ("feat_gl", ["batch", 1024]),
        ("feat_gp", ["batch", 512]),
        ("map_sa", ["batch", 2, 2]),
        ("map_la", ["batch", 2, 2]),
    ]
    assert tuple(i["name"] for i in enc["inputs"]) == encode_inputs(m.spec)
    assert tuple(o["name"] for o in enc["outputs"]) == encode_outputs(m.spec)
    assert [i["name"] for i in step["inputs"]] == ["feat_gs", "feat_gl", "feat_gp", "c", "logit_sum", "steps"]
    assert tuple(i["name"] for i in step["inputs"]) == step_inputs(m.spec)
    assert next(i["shape"] for i in step["inputs"] if i["name"] == "c") == ["batch", 3, 2, 16]
    assert [o["name"] for o in step["outputs"]] == [
        "logits",
        "probs",
        "fused",
        "c_out",
        "logit_sum_out",
        "steps_out",
    ]
    assert tuple(o["name"] for o in step["outputs"]) == step_outputs(m.spec)
    # The ONNX files themselves carry the same shapes, batch symbolic.
    proto = onnx.load(str(out / STEP_FILE), load_external_data=False)
    c_out = next(o for o in proto.graph.output if o.name == "c_out")
    assert [d.dim_param or d.dim_value for d in c_out.type.tensor_type.shape.dim] == ["batch", 3, 2, 16]
    assert max(data["verification"]["max_relative_error"].values()) <= TOL


@pytest.mark.parametrize("batch", [1, 3])
def test_openvino_fp32_matches_torch(tiny, batch):
    ckpt, out = tiny
    model = load_checkpoint(ckpt).model
    encode, step = compile_graphs(out)
    g = torch.Generator().manual_seed(batch)
    frames = torch.randn(batch, 3, 64, 64, generator=g)
    spec = model.spec
    state = {
        "c": torch.randn(batch, 3, 2, 16, generator=g),
        "logit_sum": torch.randn(batch, 3, 5, generator=g),
        "steps": torch.full((batch,), 4.0),
    }
    with torch.no_grad():
        enc = model.encode(frames)
        ref_out, ref_state = model.temporal_step(enc, state)
    got = encode(frames.numpy())
    names = encode_outputs(spec)
    assert len(names) == 5
    for name, ref in zip(names, flatten_encoded(spec, enc), strict=True):
        assert relative_error(got[name], ref.numpy()) <= TOL, name
    values = (*(enc.features[f] for f in spec.feature_names), *(state[f.name] for f in spec.step_state))
    inputs = dict(zip(step_inputs(spec), (t.numpy() for t in values), strict=True))
    assert len(inputs) == 6
    got = step(inputs)
    names = step_outputs(spec)
    assert len(names) == 6
    for name, ref in zip(names, flatten_step(spec, ref_out, ref_state), strict=True):
        assert relative_error(got[name], ref.numpy()) <= TOL, name


def test_temporal_step_graph_carries_its_state_for_30_steps(tiny):
    ckpt, out = tiny
    model = load_checkpoint(ckpt).model
    encode, step = compile_graphs(out)
    spec = model.spec
    names = step_inputs(spec)
    clip = torch.randn(2, 30, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    # The graphs alone: the features come from encode.onnx (all 60 frames in one batch).
    got_feats = encode(clip.flatten(0, 1).numpy())
    streams = [got_feats[n].reshape(2, 30, -1) for n in names[:3]]
    state_ref = model.init_state(2)
    state = [state_ref[f.name].numpy() for f in spec.step_state]
    with torch.no_grad():
        feats = model.encode(clip.flatten(0, 1)).features
        for t in range(30):
            step_feats = {k: f.view(2, 30, -1)[:, t] for k, f in feats.items()}
            ref, state_ref = model.temporal_step(step_feats, state_ref)
            got = step(dict(zip(names, (*(f[:, t] for f in streams), *state), strict=True)))
            state = [got["c_out"], got["logit_sum_out"], got["steps_out"]]
            assert relative_error(got["fused"], ref.fused.numpy()) <= TOL, t
            assert relative_error(got["c_out"], state_ref["c"].numpy()) <= TOL, t
        clip_out = model(clip)
    assert state[2].tolist() == [30.0, 30.0]
    np.testing.assert_allclose(got["fused"], clip_out.fused.numpy(), atol=1e-5)
    np.testing.assert_allclose(got["logits"], clip_out.logits.numpy(), atol=1e-4)


def test_a_graph_that_does_not_match_is_refused(tiny):
    ckpt, out = tiny
    other = load_checkpoint(ckpt).model
    with torch.no_grad():
        other.heads["gp"].fc.bias.add_(1.0)  # what a wrong export would compute
    with pytest.raises(ExportMismatch, match=r"temporal_step/.* differs by .* refused"):
        verify_graphs(other, out, (64, 64))


def test_export_at_another_size_and_opset(tiny, tmp_path):
    ckpt, _ = tiny
    m = export(ckpt, tmp_path / "e96", opset=20, image_size=96)
    assert m.image_size == (96, 96) and m.data["opset"] == 20
    assert m.preprocessing["crop"] == 96 and m.preprocessing["resize"] == [108, 108]  # 72 * 96/64
    assert onnx.load(str(m.graph_path("encode"))).opset_import[0].version == 20
    assert m.graph("encode")["outputs"][3]["name"] == "map_sa"
    assert m.graph("encode")["outputs"][3]["shape"] == ["batch", 3, 3]


def test_a_manifest_of_format_1_is_refused(tiny, tmp_path):
    _, out = tiny
    old = tmp_path / "old"
    shutil.copytree(out, old)
    data = json.loads((old / MANIFEST).read_text())
    # What glanet wrote before the online spec: format 1, fixed stream names, no online_spec.
    data["format_version"] = 1
    data["stream_names"] = data.pop("online_spec")["branch_names"]
    (old / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=r"format 1 was written by an older glanet; export again"):
        read_manifest(old)
    with pytest.raises(ManifestError, match=r"written by an older glanet; export again"):
        OpenVINOBackend.from_manifest(old, cache=False)


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_cli_mistakes_are_one_line(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o")]) == 2
    assert "missing.pt: checkpoint file not found" in one_line(capsys)
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    assert main(["--checkpoint", str(text), "--out", str(tmp_path / "o")]) == 2
    assert "not a glanet checkpoint" in one_line(capsys)
    with pytest.raises(SystemExit) as e:
        main(["--checkpoint", str(text), "--out", str(tmp_path / "o"), "--opset", "17"])
    assert e.value.code == 2 and "invalid choice: 17" in one_line(capsys)


def test_cli_refuses_an_unwritable_out_dir(tiny, tmp_path, capsys):
    ckpt, _ = tiny
    blocker = tmp_path / "file"
    blocker.write_text("a file where the output directory's parent should be")
    assert main(["--checkpoint", str(ckpt), "--out", str(blocker / "export")]) == 2
    assert "cannot write the export there" in one_line(capsys)


def test_cli_refuses_and_removes_an_export_that_does_not_match(tiny, tmp_path, capsys, monkeypatch):
    ckpt, _ = tiny
    strict = export_module.verify_graphs
    monkeypatch.setattr(export_module, "verify_graphs", lambda *a, **k: strict(*a[:3], tolerance=0.0))
    out = tmp_path / "refused"
    assert main(["--checkpoint", str(ckpt), "--out", str(out)]) == 1
    assert "does not match PyTorch" in one_line(capsys)
    assert not any(out.iterdir()), "nothing unverified may stay behind"
