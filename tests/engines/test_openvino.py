"""The OpenVINO backend (engines/openvino_backend.py), int8 build and calibration, on the demo model: fp32
equals the torch backend, bf16 and int8 agree with PyTorch on top-1 for SynthActions clips it never saw,
the streaming recognizer runs on it unchanged, and a graph changed after export is refused."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import multiprocessing
import shutil
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from synth_clips import validation_clips

import engines.openvino_backend as ovb
from engines.backend import encode_images
from engines.build import build_openvino_int8, build_openvino_step_int8
from engines.build import main as build_main
from engines.calibration import CalibrationError, calibration_frames
from engines.errors import EngineError, EngineUnavailable
from engines.export import export
from engines.manifest import MANIFEST, ManifestError, read_manifest
from engines.openvino_backend import OpenVINOBackend
from engines.torch_backend import TorchBackend
from glanet.checkpoint import load_checkpoint
from glanet.data.synth_live import LiveSynth
from glanet.data.synth_render import generate_video
from glanet.data.transforms import EvalTransform
from glanet.models.online import Encoded, StepOutput
from stream.runtime.recognizer import Recognizer
from stream.types import Frame

DEMO = Path(__file__).parents[2] / "models" / "glanet_synthactions_demo.pt"
CLIPS = 100  # validation clips of 8 frames, seeds 5000+ (never seen in training), classes in turn
FRAMES = 8


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model exported (fp32 graphs only; tests that change it work on a copy)."""
    out = tmp_path_factory.mktemp("demo") / "export"
    export(DEMO, out)
    return out


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ov-cache")


@pytest.fixture(scope="module")
def demo_int8(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo-int8") / "export"
    shutil.copytree(demo, out)
    build_openvino_int8(out, calib="synth", calib_frames=100)
    build_openvino_step_int8(out)
    return out


@pytest.fixture(scope="module")
def validation() -> tuple[torch.Tensor, torch.Tensor]:
    """(clips (N, T, 3, 96, 96), PyTorch's fused probabilities (N, K)) for N SynthActions clips."""
    return validation_clips(DEMO, CLIPS, FRAMES)


def run_clips(backend: OpenVINOBackend, clips: torch.Tensor) -> torch.Tensor:
    """Each clip frame by frame through the backend (all clips batched, one state row each) -> fused."""
    state = backend.init_state(clips.shape[0])
    for t in range(clips.shape[1]):
        out, state = backend.temporal_step(backend.encode(clips[:, t]).features, state)
    return out.fused


def test_fp32_backend_equals_the_torch_backend(demo, cache):
    backend = OpenVINOBackend.from_manifest(demo, "fp32", cache_dir=cache)
    reference = TorchBackend(load_checkpoint(DEMO).model)
    assert backend.name == "openvino" and backend.spec == reference.spec
    assert backend.spec.branch_names == reference.spec.branch_names
    assert "fp32" in backend.describe()
    frames = torch.randn(3, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    got, ref = backend.encode(frames), reference.encode(frames)
    got_np = backend.encode(frames.numpy())  # numpy in, the same out
    assert isinstance(got, Encoded) and all(isinstance(s, torch.Tensor) for s in got.features.values())
    assert tuple(got.features) == tuple(ref.features) == backend.spec.feature_names
    assert tuple(got.maps) == tuple(ref.maps) == ("sa", "la")
    assert got.state == ref.state == {}

    def tensors(enc: Encoded) -> list[torch.Tensor]:
        return [*enc.features.values(), *enc.maps.values()]

    for a, b in zip(tensors(got), tensors(ref), strict=True):
        assert a.dtype == torch.float32 and a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-4 * float(b.max() - b.min()), rtol=0)
    for a, b in zip(tensors(got_np), tensors(got), strict=True):
        torch.testing.assert_close(a, b)
    state_ov, state_ref = backend.init_state(3), reference.init_state(3)
    assert list(state_ov) == list(state_ref) == ["c", "logit_sum", "steps"]
    assert all(state_ov[k].shape == state_ref[k].shape for k in state_ref)
    for _ in range(3):
        out_ov, state_ov = backend.temporal_step(got.features, state_ov)
        out_ref, state_ref = reference.temporal_step(ref.features, state_ref)
    assert isinstance(out_ov, StepOutput) and isinstance(state_ov, dict)
    assert list(state_ov) == ["c", "logit_sum", "steps"]
    assert all(isinstance(t, torch.Tensor) for t in state_ov.values())
    torch.testing.assert_close(out_ov.fused, out_ref.fused, atol=1e-5, rtol=0)
    torch.testing.assert_close(state_ov["c"], state_ref["c"], atol=1e-4, rtol=1e-4)
    assert state_ov["steps"].tolist() == [3.0, 3.0, 3.0]
    assert any(cache.iterdir()), "compiled models are cached on disk"


@pytest.mark.parametrize(("precision", "needed"), [("bf16", 0.99), ("int8", 0.98)])
def test_reduced_precision_agrees_with_pytorch_on_top1(precision, needed, demo, demo_int8, cache, validation):
    core = ovb.ov.Core()
    if precision == "bf16" and not ovb.cpu_supports_bf16(core):
        pytest.skip("bf16: this CPU has no BF16 support, so the bf16 check has NOT run")
    clips, ref = validation
    backend = OpenVINOBackend.from_manifest(
        demo_int8 if precision == "int8" else demo, precision, cache_dir=cache
    )
    fused = run_clips(backend, clips)
    agree = (fused.argmax(1) == ref.argmax(1)).float().mean().item()
    print(
        f"{precision}: top-1 agreement {agree:.3f} on {len(clips)} clips, max |fused diff| "
        f"{(fused - ref).abs().max():.4f}"
    )
    assert agree >= needed


def test_int8_weights_of_temporal_step_agree_with_fp32(demo_int8, cache, validation):
    """The compressed step (int8 weights, fp32 state) against the exported fp32 step, both fed fp32 encode
    features: kept only if the fused top-1 agrees on >= 99% of the 100 clips."""
    clips, _ = validation
    fp32 = OpenVINOBackend.from_manifest(demo_int8, "fp32", cache_dir=cache, step_weights="fp32")
    int8 = OpenVINOBackend.from_manifest(demo_int8, "fp32", cache_dir=cache, step_weights="int8")
    assert "int8 weights" in int8.describe() and int8.step_weights == "int8"
    states = {"fp32": fp32.init_state(len(clips)), "int8": int8.init_state(len(clips))}
    for t in range(clips.shape[1]):
        feats = fp32.encode(clips[:, t]).features
        ref, states["fp32"] = fp32.temporal_step(feats, states["fp32"])
        got, states["int8"] = int8.temporal_step(feats, states["int8"])
    assert all(v.dtype == torch.float32 for v in states["int8"].values())  # the state stays fp32
    agree = (got.fused.argmax(1) == ref.fused.argmax(1)).float().mean().item()
    diff = (got.fused - ref.fused).abs().max().item()
    print(f"temporal_step int8 weights: top-1 agreement with fp32 {agree:.3f} on {len(clips)} clips, "
          f"max |fused diff| {diff:.4f}")  # fmt: skip
    assert agree >= 0.99 and diff < 0.05
    # precision int8 takes the compressed step where it was built; fp32 never does unless asked
    assert OpenVINOBackend.from_manifest(demo_int8, "int8", cache_dir=cache).step_weights == "int8"
    assert OpenVINOBackend.from_manifest(demo_int8, "fp32", cache_dir=cache).step_weights == "fp32"


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_uint8_crops_normalised_in_the_graph_equal_the_torch_transform(precision, demo, demo_int8, cache):
    """encode_images (OpenVINO's PrePostProcessor: uint8 BGR NHWC in) = encode of EvalTransform's tensor,
    for the model's colour order and for BGR; the torch backend's fallback is the transform exactly."""
    backend = OpenVINOBackend.from_manifest(
        demo_int8 if precision == "int8" else demo, precision, cache_dir=cache
    )
    torch_backend = TorchBackend(load_checkpoint(DEMO).model)
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(3)]
    base = EvalTransform.from_preprocessing(load_checkpoint(DEMO).preprocessing)
    for transform in (base, dataclasses.replace(base, color="bgr")):
        crops = np.stack([transform.geometry(f) for f in frames])
        want = backend.encode(transform(frames))
        got = encode_images(backend, crops, transform)
        bound = 1e-5 if precision == "fp32" else 2e-2  # int8: the quantised input may round either way
        for name in want.features:
            scale = float(want.features[name].abs().max())
            assert float((got.features[name] - want.features[name]).abs().max()) <= bound * max(1.0, scale)
        for name in want.maps:
            assert float((got.maps[name] - want.maps[name]).abs().max()) <= bound
        fallback = encode_images(torch_backend, crops, transform)
        exact = torch_backend.encode(transform(frames))
        for name in exact.features:
            torch.testing.assert_close(fallback.features[name], exact.features[name], rtol=0, atol=0)
    with pytest.raises(ValueError, match="must be uint8"):
        encode_images(backend, crops.astype(np.float32), base)
    with pytest.raises(ValueError, match="must be uint8"):
        backend.encode_images(crops[:, :50], base)


def test_the_recognizer_runs_on_openvino_unchanged(demo, cache):
    ck = load_checkpoint(DEMO)
    kw = {"preprocessing": ck.preprocessing, "sampling": ck.sampling, "class_names": ck.class_names}
    ours = Recognizer(OpenVINOBackend.from_manifest(demo, cache_dir=cache), **kw)
    reference = Recognizer(TorchBackend(ck.model), **kw)
    fps = float(ck.sampling["fps"])
    with LiveSynth(seed=3, size=128, fps=fps) as source:
        for i, sf in zip(range(12), source, strict=False):
            frame = Frame(sf.image, i, sf.timestamp_s, time.monotonic())
            a, b = ours.push(frame), reference.push(frame)
            assert a is not None and b is not None
            np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)
            assert set(a.maps) == set(b.maps) == {"sa", "la"}
            np.testing.assert_allclose(a.maps["sa"], b.maps["sa"], atol=1e-5)
    assert a.history == b.history and a.warm


def test_a_tampered_graph_is_refused(demo, tmp_path):
    copy = tmp_path / "export"
    shutil.copytree(demo, copy)
    with open(copy / "temporal_step.onnx", "r+b") as f:  # one byte of a weight changed
        f.seek(-100, 2)
        byte = f.read(1)
        f.seek(-100, 2)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(ManifestError, match=r"temporal_step.onnx does not match the sha256 in manifest.json"):
        OpenVINOBackend.from_manifest(copy)
    (copy / "encode.onnx").unlink()
    with pytest.raises(ManifestError, match=r"encode\.onnx is missing"):
        OpenVINOBackend.from_manifest(copy)
    with pytest.raises(ManifestError, match=r"no manifest\.json"):
        OpenVINOBackend.from_manifest(tmp_path)


def test_a_compile_into_the_cache_waits_for_another_process_compiling_there(demo, tmp_path):
    """Compiles into one CACHE_DIR are one at a time (OpenVINO writes its blob in place: two nodes starting
    on a cold cache failed 2 of 18 tries): one held by another holder of the lock waits for it."""
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    done: list[object] = []
    with open(cache_dir / ".compile.lock", "a+b") as held:  # another open file: to flock, another owner
        fcntl.flock(held, fcntl.LOCK_EX)
        worker = threading.Thread(
            target=lambda: done.append(OpenVINOBackend.from_manifest(demo, "fp32", cache_dir=cache_dir))
        )
        worker.start()
        worker.join(timeout=1.5)
        assert worker.is_alive() and not done, "compiled while another holder had the cache's lock"
        fcntl.flock(held, fcntl.LOCK_UN)
    worker.join(timeout=120)
    assert done and list(cache_dir.glob("*.blob")), "did not compile into the cache once the lock was free"


@pytest.mark.slow
def test_processes_opening_one_cold_cache_at_once_all_succeed(demo, tmp_path):
    ctx = multiprocessing.get_context("spawn")
    for round_ in range(2):
        cache_dir = tmp_path / f"cache{round_}"
        start = time.time() + 8  # all three compile at the same moment, after their imports
        with ctx.Pool(3) as pool:
            got = pool.starmap(_open_at, [(str(demo), str(cache_dir), start)] * 3)
        assert got == ["ok"] * 3, got


def _open_at(export_dir: str, cache_dir: str, start: float) -> str:
    torch.set_num_threads(1)
    time.sleep(max(0.0, start - time.time()))
    try:
        OpenVINOBackend.from_manifest(export_dir, "fp32", cache_dir=cache_dir)
        return "ok"
    except Exception as e:
        return f"{type(e).__name__}: {e}"


def test_a_failing_model_cache_costs_a_warning_and_a_compile_without_it(demo, tmp_path, monkeypatch, caplog):
    real = ovb.ov.Core.compile_model

    def cache_fails(core, model, device, config):
        if "CACHE_DIR" in config:
            raise RuntimeError("Exception from src/inference/src/cpp/core.cpp:132:\nblob is bad")
        return real(core, model, device, config)

    monkeypatch.setattr(ovb.ov.Core, "compile_model", cache_fails)
    with caplog.at_level(logging.WARNING, logger=ovb.__name__):
        backend = OpenVINOBackend.from_manifest(demo, "fp32", cache_dir=tmp_path / "cache")
    assert backend.encode(torch.zeros(1, 3, *backend.manifest.image_size)).features
    assert "model cache" in caplog.text and "compiled without it" in caplog.text


def test_int8_before_a_build_says_how_to_make_it(demo, demo_int8, tmp_path):
    with pytest.raises(EngineError, match=r"run glanet build --manifest .* --precision int8"):
        OpenVINOBackend.from_manifest(demo, "int8")
    data = json.loads((demo_int8 / MANIFEST).read_text())
    assert data["builds"]["openvino_int8"]["calibration"] == {"source": "synth", "frames": 100, "seed": 0}
    assert data["builds"]["openvino_int8"]["nncf_version"]
    stale = tmp_path / "stale"
    shutil.copytree(demo_int8, stale)
    data["builds"]["openvino_int8"]["source_sha256"] = "0" * 64  # built from an earlier export
    (stale / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(EngineError, match=r"built from another encode\.onnx: run glanet build"):
        OpenVINOBackend.from_manifest(stale, "int8")


def test_best_built_precision(demo, demo_int8, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    faster = ovb.faster_float_precision(read_manifest(demo), cache)  # measured here, bf16 or fp32
    assert faster in ("bf16", "fp32")
    precision, why = ovb.best_built_precision(read_manifest(demo), cache)  # no build there
    assert precision == faster
    assert "no int8 engine built there" in why and "\n" not in why
    assert ovb.best_built_precision(read_manifest(demo_int8), cache)[0] == "int8"
    tampered = tmp_path / "tampered"
    shutil.copytree(demo_int8, tampered)
    with open(tampered / ovb.INT8_BIN, "r+b") as f:  # one byte of an int8 weight changed
        f.seek(-100, 2)
        byte = f.read(1)
        f.seek(-100, 2)
        f.write(bytes([byte[0] ^ 1]))
    precision, why = ovb.best_built_precision(read_manifest(tampered), cache)
    assert precision == faster and "no int8 engine built there" in why
    monkeypatch.setattr(ovb, "cpu_supports_bf16", lambda core: False)
    assert ovb.best_built_precision(read_manifest(demo), cache)[0] == "fp32"
    assert ovb.best_built_precision(read_manifest(demo_int8), cache)[0] == "int8"


def test_the_faster_float_precision_is_measured_once_per_cpu_and_graph(demo, tmp_path, monkeypatch):
    if not ovb.cpu_supports_bf16(ovb.ov.Core()):
        pytest.skip("bf16: this CPU has no BF16 support, so there is nothing to choose (NOT run)")
    cache = tmp_path / "cache"
    first = ovb.faster_float_precision(read_manifest(demo), cache)
    record = json.loads((cache / "float_precision.json").read_text())
    assert list(record.values()) == [first]
    (key,) = record
    assert read_manifest(demo).graph("encode")["sha256"] in key
    # remembered: the recorded answer is used as it is, without measuring again
    other = "fp32" if first == "bf16" else "bf16"
    (cache / "float_precision.json").write_text(json.dumps({key: other}))
    monkeypatch.setattr(ovb.time, "perf_counter", lambda: pytest.fail("measured again"))
    assert ovb.faster_float_precision(read_manifest(demo), cache) == other


def test_bf16_is_refused_where_the_cpu_lacks_it(demo, monkeypatch):
    monkeypatch.setattr(ovb, "cpu_supports_bf16", lambda core: False)
    with pytest.raises(EngineUnavailable, match="no bf16 support"):
        OpenVINOBackend.from_manifest(demo, "bf16", cache=False)
    with pytest.raises(EngineError, match="precision 'fp16' is not one of"):
        OpenVINOBackend.from_manifest(demo, "fp16", cache=False)


def test_calibration_reads_videos_and_image_folders(tmp_path):
    pre = load_checkpoint(DEMO).preprocessing
    video = generate_video(0, 7, num_frames=20, size=128)
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (128, 128))
    for f in video.frames:
        writer.write(f)
    writer.release()
    assert calibration_frames(path, pre, 5).shape == (5, 3, 96, 96)
    folder = tmp_path / "frames" / "walk" / "v0"
    folder.mkdir(parents=True)
    for i, f in enumerate(video.frames[:6]):
        cv2.imwrite(str(folder / f"{i}.jpg"), f)
    cv2.imwrite(str(folder / "big.png"), cv2.resize(video.frames[0], (200, 150)))  # sizes may differ
    frames = calibration_frames(tmp_path / "frames", pre, 300)
    assert frames.shape == (7, 3, 96, 96) and frames.dtype == np.float32
    synth = calibration_frames("synth", pre, 10, fps=7.5)
    assert synth.shape == (10, 3, 96, 96) and np.isfinite(synth).all()
    with pytest.raises(CalibrationError, match="not 'synth', a video file or a folder"):
        calibration_frames(tmp_path / "nothing", pre, 10)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError, match="no images or videos"):
        calibration_frames(tmp_path / "empty", pre, 10)


def test_build_cli_mistakes_are_one_line(demo, tmp_path, capsys):
    def err() -> str:
        text = capsys.readouterr().err.strip()
        assert "\n" not in text and "Traceback" not in text, text
        return text

    args = ["--backend", "openvino", "--precision", "int8"]
    assert build_main(["--manifest", str(tmp_path / "none"), *args]) == 2
    assert "export directory not found" in err()
    assert build_main(["--manifest", str(demo), *args, "--calib", str(tmp_path / "missing.mp4")]) == 2
    assert "is not 'synth', a video file or a folder" in err()
    assert build_main(["--manifest", str(demo), "--backend", "openvino", "--precision", "bf16"]) == 0
    # TensorRT cannot build here (no GPU, or no tensorrt): one line, whichever it is.
    assert build_main(["--manifest", str(demo), "--backend", "tensorrt", "--precision", "fp16"]) != 0
    assert err().startswith("engines.build: ")
