"""The SMNet demo model on OpenVINO: exported with its causal buffers as state, fp32 streams as PyTorch does,
and int8 (NNCF, calibrated on frames run in order so the buffers are calibrated too) agrees with PyTorch on
the top-1 of SynthActions clips it never saw."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from synth_clips import validation_clips

from engines.backend import encode_images
from engines.build import build_openvino_int8, build_openvino_step_int8
from engines.export import export
from engines.openvino_backend import OpenVINOBackend
from glanet.checkpoint import load_checkpoint
from glanet.data.transforms import EvalTransform

DEMO = Path(__file__).parents[2] / "models" / "smnet_synthactions_demo.pt"
CLIPS = 100  # seeds 5000+, never seen in training; classes in turn
FRAMES = 8


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("smnet") / "export"
    export(DEMO, out)
    return out


@pytest.fixture(scope="module")
def built(exported: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("smnet-int8") / "export"
    shutil.copytree(exported, out)
    build_openvino_int8(out, calib="synth", calib_frames=300)  # the CLI default
    build_openvino_step_int8(out)
    return out


@pytest.fixture(scope="module")
def validation() -> tuple[torch.Tensor, torch.Tensor]:
    """(clips (N, T, 3, S, S), PyTorch's fused probabilities of the causal clip run (N, K))."""
    assert load_checkpoint(DEMO).cfg.window >= FRAMES  # then the live prediction after T frames is the clip's
    return validation_clips(DEMO, CLIPS, FRAMES)


def stream(backend: OpenVINOBackend, clips: torch.Tensor) -> torch.Tensor:
    """Each clip frame by frame (all clips batched, one row each, buffers carried) -> the last fused."""
    spec = backend.spec
    state = backend.init_state(clips.shape[0])
    for t in range(clips.shape[1]):
        enc = backend.encode(clips[:, t], {f.name: state[f.name] for f in spec.encode_state})
        out, step = backend.temporal_step(enc.features, {f.name: state[f.name] for f in spec.step_state})
        state = {**enc.state, **step}
    return out.fused


def test_fp32_streams_as_pytorch_runs_the_clip(exported, validation, tmp_path):
    clips, ref = validation
    got = stream(OpenVINOBackend.from_manifest(exported, "fp32", cache_dir=tmp_path), clips)
    assert (got - ref).abs().max().item() < 1e-4


def test_int8_agrees_with_pytorch_on_top1(built, validation, tmp_path):
    clips, ref = validation
    backend = OpenVINOBackend.from_manifest(built, "int8", cache_dir=tmp_path)
    assert backend.step_weights == "int8"
    got = stream(backend, clips)
    agree = (got.argmax(1) == ref.argmax(1)).float().mean().item()
    print(
        f"smnet int8: top-1 agreement {agree:.3f} on {len(clips)} clips, "
        f"max |fused diff| {(got - ref).abs().max():.4f}"
    )
    # measured on a 2-core Intel Xeon: 98.0% (the target is 98%; 97.0% with 100 calibration frames).
    # The guard leaves a clip of room for another CPU's int8 kernels; docs/benchmarks.md gives the figure.
    assert agree >= 0.97


def test_uint8_crops_normalised_in_the_graph_carry_the_buffers_as_the_tensor_path(exported, tmp_path):
    """encode_images on SMNet (a backbone with state): its buffers go in and out beside the uint8 frames."""
    backend = OpenVINOBackend.from_manifest(exported, "fp32", cache_dir=tmp_path)
    transform = EvalTransform.from_preprocessing(load_checkpoint(DEMO).preprocessing)
    rng = np.random.default_rng(4)
    spec = backend.spec
    want_state = got_state = {f.name: backend.init_state(2)[f.name] for f in spec.encode_state}
    for _ in range(3):
        frames = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(2)]
        want = backend.encode(transform(frames), want_state)
        got = encode_images(backend, np.stack([transform.geometry(f) for f in frames]), transform, got_state)
        for name in want.features:
            torch.testing.assert_close(got.features[name], want.features[name], rtol=1e-5, atol=1e-5)
        want_state, got_state = want.state, got.state
    for name in want_state:
        torch.testing.assert_close(got_state[name], want_state[name], rtol=1e-5, atol=1e-5)
