"""Build an engine from an export: OpenVINO int8 (NNCF post-training quantisation) or TensorRT.

    glanet build --manifest DIR --backend openvino --precision int8 [--calib synth|VIDEO|FOLDER]
        [--calib-frames 300] [--preset mixed|performance]
    glanet build --manifest DIR --backend tensorrt --precision fp16 [--max-batch 1]

OpenVINO int8 writes `encode_int8.xml/.bin` beside the manifest (and `temporal_step_int8.xml/.bin`, the
step with int8 weights and an fp32 state, unless `--step-weights fp32`) and records them (sha256, calibration
source and frames, preset, nncf and openvino versions) under `builds.openvino_int8`. Only the ResNet trunk
is quantised: the attention heads (GP, SA, LA: Power, ReduceMean, MatMul, Softmax, Tanh) stay fp32. On the
demo model, quantising them too lost 2% of top-1 agreement with PyTorch and was slower (0.96 vs 0.56 ms a
frame at 96 px: their quantise/dequantise steps cost more than their few H*W x C products save).
The preset is `mixed` (symmetric weights, asymmetric activations): the trunk's first input (normalised
pixels) is not centred on zero; `performance` gave the same agreement here. fp32 and bf16 need no build:
OpenVINO runs encode.onnx directly. TensorRT is `engines.tensorrt_backend.build_tensorrt`'s (a plan cached
per GPU and TensorRT version); it needs no calibration.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from engines.calibration import SYNTH, SYNTH_FRAMES_PER_VIDEO, calibration_frames
from engines.errors import EngineError, EngineUnavailable
from engines.graph_io import FRAMES, state_out
from engines.manifest import ENCODE, TEMPORAL_STEP, Manifest, hashes, read_manifest, record_build
from engines.openvino_backend import (
    INT8_BIN,
    INT8_BUILD,
    INT8_XML,
    STEP_INT8_BIN,
    STEP_INT8_BUILD,
    STEP_INT8_XML,
)
from glanet.cli import Parser, error_line, number

log = logging.getLogger(__name__)

BACKENDS = ("openvino", "tensorrt")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
PRESETS = ("mixed", "performance")
# What follows the trunk in encode: kept in fp32 (see the module docstring).
HEAD_OP_TYPES = ("MatMul", "Power", "ReduceMean", "Softmax", "Tanh")


def _save_beside(out: Path, model: ov.Model, xml: str, weights: str) -> dict[str, str]:
    """Save `model` as out/xml + out/weights; their sha256. Written under temporary names, then renamed:
    a failed build leaves no half model. compress_to_fp16=False: what stays float stays fp32."""
    with tempfile.TemporaryDirectory(dir=out, prefix=".build-") as tmp:
        ov.save_model(model, str(Path(tmp) / xml), compress_to_fp16=False)
        for name in (xml, weights):
            os.replace(Path(tmp) / name, out / name)
    return hashes(out, (xml, weights))


def build_openvino_int8(
    directory: str | os.PathLike[str],
    *,
    calib: str | os.PathLike[str] = SYNTH,
    calib_frames: int = 300,
    preset: str = "mixed",
    seed: int = 0,
) -> Manifest:
    """Quantise the encode graph with NNCF on `calib_frames` frames of `calib`; returns the manifest."""
    import nncf  # heavy (it imports torch's extension machinery): only when building

    nncf.set_log_level(logging.WARNING)  # its INFO lines list every node it skips

    if preset not in PRESETS:
        raise EngineError(f"preset {preset!r} is not one of {', '.join(PRESETS)}")
    manifest = read_manifest(directory)
    manifest.verify()
    fps = float(manifest.sampling.get("fps") or 15.0)
    frames = calibration_frames(calib, manifest.preprocessing, calib_frames, seed=seed, fps=fps)
    log.info("calibrating on %d frames from %s", len(frames), calib)
    core = ov.Core()
    model = core.read_model(str(manifest.graph_path(ENCODE)))
    quantized = nncf.quantize(
        model,
        nncf.Dataset(calibration_inputs(core, model, manifest, frames, calib)),
        preset=nncf.QuantizationPreset(preset),
        target_device=nncf.TargetDevice.CPU,
        subset_size=len(frames),
        ignored_scope=nncf.IgnoredScope(types=list(HEAD_OP_TYPES), validate=False),
    )
    out = manifest.directory
    entry: dict[str, Any] = {
        "files": _save_beside(out, quantized, INT8_XML, INT8_BIN),
        "source_sha256": manifest.graph(ENCODE)["sha256"],
        "calibration": {"source": str(calib), "frames": len(frames), "seed": seed},
        "preset": preset,
        "ignored_op_types": list(HEAD_OP_TYPES),
        "nncf_version": nncf.__version__,
        "openvino_version": ov.get_version(),
    }
    manifest = record_build(out, INT8_BUILD, entry)
    log.info("wrote %s (%d calibration frames, preset %s)", out / INT8_XML, len(frames), preset)
    return manifest


def calibration_inputs(
    core: ov.Core, model: ov.Model, manifest: Manifest, frames: np.ndarray, calib: str
) -> list[Any]:
    """One encode input per calibration frame. A stateless encode takes the frame alone; a stateful one
    (SMNet's causal buffers) takes it with the state the fp32 graph reaches by running the frames in order,
    as a stream would (restarted at each synthetic video: they are short separate clips), so that the
    buffers' ranges are calibrated too."""
    spec = manifest.spec
    if not spec.encode_state:
        return [frames[i : i + 1] for i in range(len(frames))]
    request = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}).create_infer_request()
    fresh = {f.name: np.full((1, *f.shape), f.reset, np.float32) for f in spec.encode_state}
    outputs = {f.name: state_out(f.name) for f in spec.encode_state}
    state, items = dict(fresh), []
    for i in range(len(frames)):
        if calib == SYNTH and i % SYNTH_FRAMES_PER_VIDEO == 0:
            state = dict(fresh)
        item = {FRAMES: frames[i : i + 1], **state}
        items.append(item)
        result = request.infer(item)
        state = {name: np.asarray(result[out]) for name, out in outputs.items()}
    return items


def build_openvino_step_int8(directory: str | os.PathLike[str]) -> Manifest:
    """temporal_step with its matmul weights compressed to int8 (NNCF, asymmetric, per output channel).

    Weights only: the state goes in and comes out fp32. On the paper model it is 2.5-3.6x faster at 2-32
    rows; on the demo model it agrees with the fp32 step on the fused top-1 of 100 SynthActions clips
    (tests/engines/test_openvino.py prints the figure). Asymmetric, not symmetric: the same speed, half
    the error.
    """
    import nncf

    nncf.set_log_level(logging.WARNING)
    manifest = read_manifest(directory)
    manifest.verify()
    model = ov.Core().read_model(str(manifest.graph_path(TEMPORAL_STEP)))
    compressed = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    out = manifest.directory
    entry: dict[str, Any] = {
        "files": _save_beside(out, compressed, STEP_INT8_XML, STEP_INT8_BIN),
        "source_sha256": manifest.graph(TEMPORAL_STEP)["sha256"],
        "mode": "INT8_ASYM weight compression (NNCF)",
        "nncf_version": nncf.__version__,
        "openvino_version": ov.get_version(),
    }
    manifest = record_build(out, STEP_INT8_BUILD, entry)
    log.info("wrote %s (int8 weights, fp32 state)", out / STEP_INT8_XML)
    return manifest


def _tensorrt(args: argparse.Namespace) -> None:
    try:
        from engines.tensorrt_backend import build_tensorrt
    except ImportError as e:
        raise EngineUnavailable(f"the tensorrt backend is not available ({type(e).__name__}: {e})") from None
    plan = build_tensorrt(args.manifest, precision=args.precision, max_batch=args.max_batch)
    log.info("tensorrt plan: %s", plan)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = Parser(prog="python -m engines.build", description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", required=True, type=Path, help="export directory (glanet export)")
    p.add_argument("--backend", required=True, choices=BACKENDS, help="which engine to build")
    p.add_argument("--precision", required=True, choices=PRECISIONS, help="the engine's precision")
    p.add_argument(
        "--calib", default=SYNTH, help="calibration frames: synth, a video file, or a folder of images/videos"
    )
    p.add_argument("--calib-frames", type=number(int, 1), default=300, help="calibration frames")
    p.add_argument("--preset", choices=PRESETS, default="mixed", help="NNCF preset (openvino int8)")
    p.add_argument("--seed", type=number(int, 0), default=0, help="seed of the synth calibration videos")
    p.add_argument(
        "--max-batch", type=number(int, 1), default=1, help="largest encode batch of the plan (tensorrt)"
    )
    p.add_argument(
        "--step-weights",
        choices=("int8", "fp32"),
        default="int8",
        help="openvino int8: also compress temporal_step's weights to int8 (its state stays fp32)",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    try:
        if args.backend == "tensorrt":
            _tensorrt(args)
        elif args.precision == "int8":
            build_openvino_int8(
                args.manifest,
                calib=args.calib,
                calib_frames=args.calib_frames,
                preset=args.preset,
                seed=args.seed,
            )
            if args.step_weights == "int8":
                build_openvino_step_int8(args.manifest)
        elif args.precision in ("fp32", "bf16"):
            log.info("openvino %s needs no build: it runs encode.onnx directly", args.precision)
        else:
            raise EngineError(f"openvino precision {args.precision} is not offered: use fp32, bf16 or int8")
    except (EngineError, OSError, ValueError) as e:
        print(f"engines.build: {error_line(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
