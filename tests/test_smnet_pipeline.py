"""SMNet through everything GLANet has: checkpoints, glanet.train (offline, then the causal fine-tuning
recipe), glanet.evaluate, ONNX export verified against PyTorch, OpenVINO run step by step as PyTorch does,
and an offline model refused live with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engines.export import export
from engines.openvino_backend import OpenVINOBackend
from engines.torch_backend import TorchBackend
from glanet.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from glanet.data.synth import write_dataset
from glanet.data.synth_render import CLASSES
from glanet.evaluate import evaluate_checkpoint
from glanet.models import SMNet, build_model
from glanet.models.config import SMNetConfig
from glanet.train import main as train_main

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "smnet_r18_synth_cpu"  # a shipped config, by name
PRE = {"resize": [72, 72], "crop": 64, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
SAMPLING = {"fps": 10.0, "window": 6, "stride": 6, "mode": "clips", "segments": 3, "frames_per_segment": 1}
CAUSAL = SMNetConfig(backbone="resnet10", num_classes=5, causal=True, window=4, dropout=0.0)


def calibrated(model: SMNet, size: int) -> SMNet:
    """BatchNorm statistics of real-looking activations (random ones blow the trunk up)."""
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(2, 3, 3, size, size) * 2 + 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def causal_ckpt(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = calibrated(build_model(CAUSAL, input_size=64), 64)
    folder = tmp_path_factory.mktemp("smnet")
    return save_checkpoint(
        folder / "causal.pt",
        model,
        class_names=[f"c{i}" for i in range(5)],
        preprocessing=PRE,
        sampling=SAMPLING,
    )


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, videos_per_class=1, seed=1, split="train", num_frames=8, size=48)
    write_dataset(root, videos_per_class=1, seed=2, split="val", num_frames=8, size=48)
    return root


def tiny(root: Path, **extra: object) -> list[str]:
    values = {
        "model.num_classes": len(CLASSES),
        "model.backbone": '"resnet10"',
        "data.root": f'"{root}"',
        "data.train_list": f'"{root / "train.txt"}"',
        "data.val_list": f'"{root / "val.txt"}"',
        "data.resize": "[48, 48]",
        "data.crop": 40,
        "data.segments": 4,
        "train.batch_size": 6,
        "train.workers": 0,
        "train.epochs": 1,
        **extra,
    }
    return [arg for k, v in values.items() for arg in ("--set", f"{k}={v}")]


def test_a_checkpoint_keeps_the_arch_the_config_and_the_weights(causal_ckpt):
    raw = read_checkpoint(causal_ckpt)
    assert raw["arch"] == "smnet" and raw["model_config"]["causal"] is True
    ck = load_checkpoint(causal_ckpt)
    assert isinstance(ck.model, SMNet) and ck.cfg == CAUSAL and ck.model.input_size == 64
    again = calibrated(build_model(CAUSAL, input_size=64), 64)  # other weights: the file's must win
    again.load_state_dict(ck.model.state_dict())
    clip = torch.randn(1, 5, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ck.model(clip).fused, again(clip).fused)


def test_train_offline_then_fine_tune_causally_then_evaluate(synth, tmp_path):
    offline = tmp_path / "offline"
    assert train_main(["--config", CONFIG, "--out", str(offline), *tiny(synth)]) == 0
    ck = load_checkpoint(offline / "last.pt")
    assert isinstance(ck.model, SMNet) and not ck.model.causal and ck.sampling["segments"] == 4
    # the recipe: the offline weights, made causal, trained on consecutive frames
    causal = tmp_path / "causal"
    recipe = tiny(
        synth, **{"model.causal": "true", "data.sampling": '"clips"', "data.window": 4, "data.stride": 4}
    )
    args = ["--config", CONFIG, "--out", str(causal), "--init-from", str(offline / "last.pt"), *recipe]
    assert train_main(args) == 0
    tuned = load_checkpoint(causal / "last.pt")
    assert tuned.model.causal and tuned.sampling["mode"] == "clips"
    before = {k: v for k, v in ck.model.state_dict().items() if k.endswith("weight")}
    after = tuned.model.state_dict()
    assert any(not torch.equal(v, after[k]) for k, v in before.items())  # it trained
    result = evaluate_checkpoint(tuned, synth, synth / "val.txt", batch_size=4, workers=0, device="cpu")
    assert result["branches"] == ["SM"] and set(result["per_branch"]) == {"SM"}
    assert "SE" in result["localisation"] and result["localisation"]["frames"] > 0


def test_glanet_only_training_options_are_refused_by_name(synth, tmp_path, capsys):
    args = ["--config", CONFIG, "--out", str(tmp_path / "x"), *tiny(synth, **{"train.stage": '"temporal"'})]
    assert train_main(args) == 2
    assert "train.stage = 'temporal': smnet trains in one stage" in capsys.readouterr().err


def test_export_matches_pytorch_and_openvino_streams_as_pytorch_does(causal_ckpt, tmp_path):
    manifest = export(causal_ckpt, tmp_path / "ex")
    assert [f.name for f in manifest.spec.encode_state][:4] == [
        "l1_0_se_s",
        "l1_0_se_c",
        "l1_0_me_prev",
        "l1_0_me_seen",
    ]
    assert manifest.spec.restarts is False and manifest.spec.maps == ("se",)
    ov_backend = OpenVINOBackend(manifest, precision="fp32")
    torch_backend = TorchBackend(load_checkpoint(causal_ckpt).model)
    states = [b.init_state(2) for b in (ov_backend, torch_backend)]
    g = torch.Generator().manual_seed(5)
    worst = 0.0
    for _ in range(9):  # past the window of 4: the ring wraps, the buffers carry 9 frames of history
        frames = torch.randn(2, 3, 64, 64, generator=g)
        outs = []
        for i, b in enumerate((ov_backend, torch_backend)):
            spec = b.spec
            enc = b.encode(frames, {f.name: states[i][f.name] for f in spec.encode_state})
            out, step = b.temporal_step(enc.features, {f.name: states[i][f.name] for f in spec.step_state})
            states[i] = {**enc.state, **step}
            outs.append((out, enc))
        (ov_out, ov_enc), (pt_out, pt_enc) = outs
        worst = max(worst, float((ov_out.fused - pt_out.fused).abs().max()))
        np.testing.assert_allclose(np.asarray(ov_enc.maps["se"]), pt_enc.maps["se"].numpy(), atol=1e-4)
    assert worst < 1e-4


def test_an_offline_model_is_refused_live_and_by_export_in_one_line(causal_ckpt, tmp_path):
    ck = load_checkpoint(causal_ckpt)
    offline = save_checkpoint(
        tmp_path / "offline.pt", ck.model.set_causal(False), class_names=ck.class_names, preprocessing=PRE,
        sampling=SAMPLING,
    )  # fmt: skip
    for argv in (
        [sys.executable, str(ROOT / "run_camera.py"), "--checkpoint", str(offline), "--max-frames", "3"],
        [sys.executable, "-m", "engines.export", "--checkpoint", str(offline), "--out", str(tmp_path / "e")],
    ):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert r.returncode == 2, r.stderr
        lines = [line for line in r.stderr.splitlines() if not line.startswith("loaded checkpoint")]
        assert (
            len(lines) == 1 and "offline (non-causal) SMNet" in lines[0] and "model.causal=true" in lines[0]
        )
