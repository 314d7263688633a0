"""Export a checkpoint to two ONNX graphs, `encode` and `temporal_step`, verified against PyTorch.

    python -m engines.export --checkpoint CKPT --out DIR [--opset 18] [--image-size N]

The graphs' inputs and outputs come from the model's online spec (engines/graph_io.py): `encode.onnx`:
frames (batch, 3, H, W) normalised and the backbone's state, if any -> the features (`feat_gs`, ...), the
spatial maps (`map_sa`, ...) and the next backbone state; `temporal_step.onnx`: the features and the
temporal state (GLANet: c, logit_sum, steps; SMNet: its ring of logits) -> logits, probs, fused and
the next state (`c_out`, ...).
Batch is dynamic in both; the weights are inside the files.
Before anything is reported, both graphs pass onnx.checker and run in OpenVINO (fp32) at batch 1 and 3
within TOLERANCE of PyTorch (max error / range of the output); otherwise the export is refused and its
files removed. `manifest.json` (engines/manifest.py) is written last: a directory with one is complete.

The legacy (TorchScript) exporter is used (`dynamo=False`): in torch 2.14 it is exact here (~1e-7),
takes about a second, and writes one self-contained file. The dynamo exporter gives the same graphs to
~1e-6 but needs `onnxscript` (not a dependency) and takes ~10x as long; switch when torch drops legacy.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import openvino as ov
import torch
from torch import Tensor, nn

import glanet
from engines.errors import EngineError
from engines.graph_io import (
    encode_inputs,
    encode_outputs,
    flatten_encoded,
    flatten_step,
    step_inputs,
    step_outputs,
)
from engines.manifest import (
    BATCH,
    ENCODE,
    MANIFEST,
    TEMPORAL_STEP,
    Manifest,
    file_sha256,
    utc_now,
    write_manifest,
)
from glanet.checkpoint import CheckpointError, load_checkpoint
from glanet.cli import Parser, error_line, number
from glanet.config import config_to_dict
from glanet.models import Model, SMNet, live_problem
from glanet.models.online import Encoded, OnlineSpec, State

log = logging.getLogger(__name__)

ENCODE_FILE = "encode.onnx"
STEP_FILE = "temporal_step.onnx"
OPSETS = (18, 19, 20)
DEFAULT_OPSET = 18
TOLERANCE = 1e-4  # max |openvino - torch| / range of the torch output, per output
VERIFY_BATCHES = (1, 3)
# Files a build leaves beside the graphs; they belong to the previous export and go with it.
_BUILT = ("encode_int8.xml", "encode_int8.bin", "temporal_step_int8.xml", "temporal_step_int8.bin")


class ExportError(EngineError):
    """The export could not be made."""


class ExportMismatch(ExportError):
    """The exported graphs do not compute what the PyTorch model does."""


class EncodeGraph(nn.Module):
    """`encode` with plain tensors: (frames, *encode_state) -> the spec's encode outputs, in order."""

    def __init__(self, model: Model) -> None:
        super().__init__()
        self.model = model
        self.spec = model.spec

    def forward(self, frames: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        names = [f.name for f in self.spec.encode_state]
        enc = self.model.encode(frames, dict(zip(names, state, strict=True)))
        return flatten_encoded(self.spec, enc)


class TemporalStepGraph(nn.Module):
    """`temporal_step` as a pure function: (*features, *step_state) -> predictions, next state."""

    def __init__(self, model: Model) -> None:
        super().__init__()
        self.model = model
        self.spec = model.spec

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        n = len(self.spec.features)
        feats = dict(zip(self.spec.feature_names, inputs[:n], strict=True))
        state = dict(zip((f.name for f in self.spec.step_state), inputs[n:], strict=True))
        out, state = self.model.temporal_step(feats, state)
        return flatten_step(self.spec, out, state)


def _example_frames(batch: int, size: tuple[int, int], seed: int) -> Tensor:
    """Normalised-image-like frames (batch, 3, H, W) drawn from N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, *size, generator=g)


def _example_state(model: Model, batch: int, seed: int, size: tuple[int, int]) -> State:
    """A state with history: a few steps (1..5, per seed) of random features from a fresh one, and, for a
    model whose backbone has state (SMNet's causal buffers), a few frames through `encode`."""
    g = torch.Generator().manual_seed(seed)
    spec = model.spec
    state = model.init_state(batch)
    with torch.no_grad():
        for _ in range(1 + seed % 5):
            feats = {f.name: torch.randn(batch, *f.shape, generator=g) for f in spec.features}
            _, step_state = model.temporal_step(feats, {f.name: state[f.name] for f in spec.step_state})
            state = {**state, **step_state}
        for _ in range((1 + seed % 3) if spec.encode_state else 0):
            frames = torch.randn(batch, 3, *size, generator=g)
            state = {
                **state,
                **model.encode(frames, {f.name: state[f.name] for f in spec.encode_state}).state,
            }
    return state


def _encode_state(spec: OnlineSpec, state: State) -> tuple[Tensor, ...]:
    return tuple(state[f.name] for f in spec.encode_state)


def _step_state(spec: OnlineSpec, state: State) -> tuple[Tensor, ...]:
    return tuple(state[f.name] for f in spec.step_state)


def _run_model(model: Model, frames: Tensor, state: State) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """The reference outputs of both graphs, flat and in graph order."""
    spec = model.spec
    with torch.no_grad():
        enc: Encoded = model.encode(frames, {f.name: state[f.name] for f in spec.encode_state})
        out, next_state = model.temporal_step(enc.features, {f.name: state[f.name] for f in spec.step_state})
    return flatten_encoded(spec, enc), flatten_step(spec, out, next_state)


def _specs(names: Sequence[str], tensors: Sequence[Tensor]) -> list[dict[str, Any]]:
    return [
        {
            "name": n,
            "shape": [BATCH, *(int(d) for d in t.shape[1:])],
            "dtype": str(t.dtype).removeprefix("torch."),
        }
        for n, t in zip(names, tensors, strict=True)
    ]


def _fix_shapes(path: Path, specs: list[dict[str, Any]], kind: str) -> None:
    """Give the graph's inputs/outputs the recorded shapes: the legacy exporter leaves some dims symbolic."""
    proto = onnx.load(str(path))
    values = {v.name: v for v in (proto.graph.input if kind == "inputs" else proto.graph.output)}
    for spec in specs:
        dims = values[spec["name"]].type.tensor_type.shape.dim
        for dim, want in zip(dims, spec["shape"], strict=True):
            dim.Clear()
            if isinstance(want, str):
                dim.dim_param = want
            else:
                dim.dim_value = want
    onnx.save(proto, str(path))


def _export_graph(
    module: nn.Module,
    args: tuple[Tensor, ...],
    path: Path,
    inputs: Sequence[str],
    outputs: Sequence[str],
    opset: int,
) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with warnings.catch_warnings():
            # The legacy exporter says it is deprecated, and the tracer flags the SRU's shape checks.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            torch.onnx.export(
                module,
                args,
                str(tmp),
                input_names=list(inputs),
                output_names=list(outputs),
                dynamic_axes={name: {0: BATCH} for name in (*inputs, *outputs)},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def relative_error(got: np.ndarray, ref: np.ndarray) -> float:
    """max |got - ref| over the range of `ref` (its max |value| when the range is 0)."""
    if got.shape != ref.shape:
        return float("inf")
    span = float(ref.max() - ref.min()) if ref.size else 0.0
    span = span or float(np.abs(ref).max(initial=0.0)) or 1.0
    return float(np.abs(got.astype(np.float64) - ref).max(initial=0.0) / span)


def verify_graphs(
    model: Model, directory: Path, image_size: tuple[int, int], tolerance: float = TOLERANCE
) -> dict[str, float]:
    """Run both graphs in OpenVINO fp32 at batch 1 and 3 against `model`; the worst error of each output.

    Raises ExportMismatch when an output differs by more than `tolerance` of its range.
    """
    spec = model.spec
    core = ov.Core()
    fp32 = {"INFERENCE_PRECISION_HINT": "f32"}
    encode = core.compile_model(str(directory / ENCODE_FILE), "CPU", fp32)
    step = core.compile_model(str(directory / STEP_FILE), "CPU", fp32)
    errors: dict[str, float] = {}

    def compare(graph: str, got: Any, names_out: Sequence[str], refs: Sequence[Tensor]) -> None:
        for name, ref in zip(names_out, refs, strict=True):
            err = relative_error(got[name], ref.numpy())
            key = f"{graph}/{name}"
            errors[key] = max(errors.get(key, 0.0), err)

    for batch in VERIFY_BATCHES:
        frames = _example_frames(batch, image_size, seed=batch)
        state = _example_state(model, batch, seed=100 + batch, size=image_size)
        enc_ref, step_ref = _run_model(model, frames, state)
        enc_in = dict(zip(encode_inputs(spec), (frames, *_encode_state(spec, state)), strict=True))
        compare(ENCODE, encode({k: v.numpy() for k, v in enc_in.items()}), encode_outputs(spec), enc_ref)
        n = len(spec.features)
        step_in = dict(zip(step_inputs(spec), (*enc_ref[:n], *_step_state(spec, state)), strict=True))
        compare(TEMPORAL_STEP, step({k: v.numpy() for k, v in step_in.items()}), step_outputs(spec), step_ref)
    worst = max(errors, key=errors.__getitem__)
    if not errors[worst] <= tolerance:
        raise ExportMismatch(
            f"{directory}: the export does not match PyTorch: {worst} differs by {errors[worst]:.2e} of its "
            f"range in OpenVINO fp32 (tolerance {tolerance:.0e}); the export is refused"
        )
    return errors


def _prepare_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{uuid.uuid4().hex[:8]}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise ExportError(
            f"{out}: cannot write the export there ({e.strerror or type(e).__name__})"
        ) from None
    # A directory without a manifest is not an export: remove it first, so a failure leaves none behind.
    for name in (MANIFEST, *_BUILT):
        (out / name).unlink(missing_ok=True)


def _preprocessing_for(pre: dict[str, Any], size: int) -> dict[str, Any]:
    """The preprocessing at another crop size: resize scaled alike, so the crop keeps its share."""
    crop = int(pre["crop"])
    if size == crop:
        return dict(pre)
    scale = size / crop
    return {**pre, "resize": [round(int(r) * scale) for r in pre["resize"]], "crop": size}


def export(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
    image_size: int | None = None,
    tolerance: float = TOLERANCE,
) -> Manifest:
    """Export `checkpoint` into `out` (encode.onnx, temporal_step.onnx, manifest.json), verified."""
    if opset not in OPSETS:
        raise ExportError(f"opset {opset} is not supported: use one of {', '.join(map(str, OPSETS))}")
    out = Path(out)
    ck = load_checkpoint(checkpoint)
    size = int(image_size) if image_size is not None else int(ck.preprocessing["crop"])
    if size < 32:
        raise ExportError(f"image size {size} is too small: the ResNet trunk needs at least 32 pixels")
    problem = live_problem(ck.model)
    if problem:
        raise ExportError(f"{checkpoint}: {problem}")
    _prepare_dir(out)
    model = ck.model.eval()
    if isinstance(model, SMNet):
        model.input_size = size  # its causal buffers are sized for the frames the export takes
    spec = model.spec
    hw = (size, size)

    # Trace at batch 2: batch 1 could be specialised into the graph.
    frames = _example_frames(2, hw, seed=0)
    state = _example_state(model, 2, seed=1, size=hw)
    enc_ref, step_ref = _run_model(model, frames, state)
    enc_args = (frames, *_encode_state(spec, state))
    step_args = (*enc_ref[: len(spec.features)], *_step_state(spec, state))
    encode_io = (_specs(encode_inputs(spec), enc_args), _specs(encode_outputs(spec), enc_ref))
    step_io = (_specs(step_inputs(spec), step_args), _specs(step_outputs(spec), step_ref))
    graphs = {
        ENCODE: (EncodeGraph(model).eval(), enc_args, ENCODE_FILE, encode_io),
        TEMPORAL_STEP: (TemporalStepGraph(model).eval(), step_args, STEP_FILE, step_io),
    }
    written = [out / ENCODE_FILE, out / STEP_FILE]
    try:
        for module, args, file, (ins, outs) in graphs.values():
            path = out / file
            _export_graph(module, args, path, [s["name"] for s in ins], [s["name"] for s in outs], opset)
            _fix_shapes(path, ins, "inputs")
            _fix_shapes(path, outs, "outputs")
            onnx.checker.check_model(str(path), full_check=True)
        errors = verify_graphs(model, out, hw, tolerance)
    except BaseException as e:
        for path in written:
            path.unlink(missing_ok=True)
        if isinstance(e, onnx.checker.ValidationError):
            raise ExportError(f"{out}: onnx.checker rejects the exported graph: {error_line(e)}") from None
        raise
    assert not model.training, "exporting must leave the model in eval mode"
    manifest = write_manifest(
        out,
        {
            "created_utc": utc_now(),
            "glanet_version": glanet.__version__,
            "torch_version": str(torch.__version__),
            "onnx_version": onnx.__version__,
            "exporter": "torch.onnx.export (legacy TorchScript, dynamo=False)",
            "opset": opset,
            "source": {"checkpoint": str(Path(checkpoint).resolve()), "weights_sha256": ck.weights_sha256},
            "model_config": config_to_dict(ck.cfg),
            "online_spec": spec.to_dict(),
            "class_names": list(ck.class_names),
            "preprocessing": _preprocessing_for(ck.preprocessing, size),
            "sampling": dict(ck.sampling),
            "image_size": [size, size],
            "graphs": {
                key: {"file": file, "sha256": file_sha256(out / file), "inputs": ins, "outputs": outs}
                for key, (_, _, file, (ins, outs)) in graphs.items()
            },
            "verification": {
                "runtime": f"openvino {ov.get_version()} CPU, INFERENCE_PRECISION_HINT f32",
                "batches": list(VERIFY_BATCHES),
                "tolerance": tolerance,
                "max_relative_error": errors,
            },
            "builds": {},
        },
    )
    log.info(
        "exported %s to %s (opset %d); OpenVINO fp32 matches PyTorch within %.1e of the output range",
        checkpoint,
        out,
        opset,
        max(errors.values()),
    )
    return manifest


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = Parser(prog="python -m engines.export", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, type=Path, help="a glanet checkpoint (.pt)")
    p.add_argument("--out", required=True, type=Path, help="directory for the graphs and manifest.json")
    p.add_argument("--opset", type=int, choices=OPSETS, default=DEFAULT_OPSET, help="ONNX opset")
    p.add_argument(
        "--image-size", type=number(int, 32), help="square input size (default: the checkpoint's crop)"
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    try:
        export(args.checkpoint, args.out, opset=args.opset, image_size=args.image_size)
    except (CheckpointError, EngineError, OSError) as e:
        print(f"engines.export: {error_line(e)}", file=sys.stderr)
        return 1 if isinstance(e, ExportMismatch) else 2  # 1: not the user's mistake, a bug to report
    return 0


if __name__ == "__main__":
    sys.exit(main())
