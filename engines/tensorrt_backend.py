"""The `tensorrt` backend: `encode` runs a TensorRT plan built from the exported `encode.onnx`;
`temporal_step` (one SRU step per branch, ~0.1 ms) runs in torch on the same CUDA device.

A plan runs only on the GPU model and TensorRT version it was built with, so plans are cached under a key
of (GPU, compute capability, TensorRT version, precision, ONNX sha256, batch profile) and rebuilt on a miss.
TensorRT 11 is strongly typed only: fp16 goes into the ONNX first (`engines.onnx_fp16`); TensorRT 10
takes `BuilderFlag.FP16` with the numerically sensitive layers pinned to fp32 (notes/deploy.md).
Runs on torch CUDA tensors, no pycuda: `set_input_shape`, `set_tensor_address`, `execute_async_v3`.

Why temporal_step is not a second plan: it is tiny, torch runs it exactly, and a plan for it would need
state double-buffering (a buffer bound as both state input and output gives wrong results).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from engines.cache import default_cache_dir
from engines.errors import EngineError, EngineNotImplemented, EngineUnavailable
from engines.graph_io import encode_inputs, encode_outputs, unpack_encoded
from engines.manifest import ENCODE, Manifest, read_manifest
from engines.onnx_fp16 import fp16_onnx, fp32_tensor_names
from engines.torch_backend import TorchBackend
from glanet.models.glanet import GLANet
from glanet.models.online import Encoded, State, init_rows

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
MIN_TRT_MAJOR = 10
NOT_INSTALLED = (
    "TensorRT is not installed (pip install tensorrt needs NVIDIA's index, pypi.nvidia.com); "
    "use --backend torch or openvino here"
)

__all__ = [
    "TensorRTBackend",
    "build_tensorrt",
    "fp16_onnx",
    "plan_cache_key",
    "plan_path",
    "precision_mode",
    "profile_shapes",
    "trt_major",
]


# -- pure helpers (unit-tested without TensorRT) ------------------------------------------------------


def _slug(text: str, limit: int = 48) -> str:
    slug = re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.")
    return slug[:limit].rstrip("-.") or "unknown"


def trt_major(version: str) -> int:
    """The major version of a TensorRT version string: "10.13.0.35" -> 10."""
    match = re.match(r"\s*(\d+)(\.|$)", str(version))
    if not match:
        raise ValueError(f"TensorRT version {version!r} does not start with a major number")
    return int(match.group(1))


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "int8":
        raise EngineNotImplemented(
            "int8 TensorRT plans are not implemented: TensorRT 11 needs Q/DQ nodes in the ONNX and this "
            "project does not write them; use fp16 on the GPU, or OpenVINO int8 on the CPU"
        )
    return precision


def precision_mode(trt_version: str, precision: str) -> Literal["flags", "strongly_typed"]:
    """How a precision is asked of this TensorRT: builder flags (10.x) or the graph's own types (>= 11)."""
    check_precision(precision)
    major = trt_major(trt_version)
    if major < MIN_TRT_MAJOR:
        raise EngineUnavailable(
            f"TensorRT {trt_version} is too old: glanet needs TensorRT {MIN_TRT_MAJOR} or newer "
            "(named tensors, execute_async_v3)"
        )
    return "flags" if major == MIN_TRT_MAJOR else "strongly_typed"


def plan_cache_key(
    gpu_name: str,
    compute_capability: tuple[int, int],
    trt_version: str,
    precision: str,
    onnx_sha256: str,
    max_batch: int,
    opt_batch: int | None = None,
) -> str:
    """A stable, filesystem-safe name for one plan: everything a plan is only valid for."""
    if not re.fullmatch(r"[0-9a-f]{64}", onnx_sha256):
        raise ValueError(f"onnx_sha256 {onnx_sha256!r} is not a sha256 hex digest")
    major, minor = (int(v) for v in compute_capability)
    opt = max_batch if opt_batch is None else opt_batch
    _check_batches(max_batch, opt)
    return (
        f"{_slug(gpu_name)}_sm{major}{minor}_trt{_slug(trt_version, 24)}_{precision}"
        f"_b{opt}of{max_batch}_{onnx_sha256}"
    )


def plan_path(cache_dir: str | os.PathLike[str], key: str) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9._-]+", key) or key.startswith("."):
        raise ValueError(f"plan key {key!r} is not a plain file name")
    return Path(cache_dir) / f"{key}.plan"


def _check_batches(max_batch: int, opt_batch: int) -> None:
    if max_batch < 1:
        raise ValueError(f"max_batch ({max_batch}) must be at least 1")
    if not 1 <= opt_batch <= max_batch:
        raise ValueError(f"opt_batch ({opt_batch}) must be within 1..max_batch ({max_batch})")


def profile_shapes(
    input_shape: tuple[int, int, int], max_batch: int, opt_batch: int | None = None
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) shapes of the optimisation profile for frames (C, H, W), batch 1..max_batch."""
    if len(input_shape) != 3 or any(int(d) < 1 for d in input_shape):
        raise ValueError(f"input_shape {tuple(input_shape)} must be (C, H, W), all positive")
    opt = max_batch if opt_batch is None else opt_batch
    _check_batches(max_batch, opt)
    chw = tuple(int(d) for d in input_shape)
    return (1, *chw), (opt, *chw), (max_batch, *chw)


def encode_io(manifest: Manifest) -> tuple[tuple[str, ...], tuple[int, int, int], tuple[str, ...]]:
    """Input names (frames first, then the backbone's state), frame shape (C, H, W) and output names of
    encode, as the manifest recorded them; they must be those the manifest's online spec names."""
    spec = manifest.graph(ENCODE)
    online = manifest.spec
    inputs = tuple(str(i["name"]) for i in spec["inputs"])
    outputs = tuple(out["name"] if isinstance(out, dict) else str(out) for out in spec["outputs"])
    if inputs != encode_inputs(online) or outputs != encode_outputs(online):
        raise EngineError(
            f"{manifest.directory}: encode's inputs/outputs {list(inputs)} -> {list(outputs)} are not the "
            f"online spec's {list(encode_inputs(online))} -> {list(encode_outputs(online))}: export again"
        )
    shape = list(spec["inputs"][0]["shape"])
    if len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:]):
        raise EngineError(f"{manifest.directory}: encode input shape {shape} is not (batch, C, H, W)")
    return inputs, (shape[1], shape[2], shape[3]), outputs


# -- TensorRT (imported only here) --------------------------------------------------------------------


def import_tensorrt() -> Any:
    try:
        import tensorrt
    except Exception as e:  # a stub wheel without its libraries raises more than ImportError
        raise EngineUnavailable(f"{NOT_INSTALLED} ({type(e).__name__}: {e})".replace("\n", " ")) from None
    return tensorrt


def _require_cuda(device: torch.device) -> None:
    if device.type != "cuda":
        raise EngineUnavailable(f"the tensorrt backend runs on a CUDA device, not {device}")
    if not torch.cuda.is_available():
        raise EngineUnavailable("the tensorrt backend needs a CUDA device and this machine has none")


def _parse(trt: Any, builder: Any, onnx_path: Path, flags: int, logger: Any) -> tuple[Any, Any]:
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(os.fspath(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT could not parse {onnx_path}: {errors or 'no error reported'}")
    return network, parser


def _pin_fp32_layers(trt: Any, network: Any, keep: set[str]) -> int:
    """TensorRT 10 with FP16: layers making a tensor the fp16 policy keeps fp32 are held at fp32."""
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        outs = [j for j in range(layer.num_outputs) if layer.get_output(j).name in keep]
        if outs:
            layer.precision = trt.float32
            for j in outs:
                layer.set_output_type(j, trt.float32)
            pinned += 1
    return pinned


def build_tensorrt(
    manifest_dir: str | os.PathLike[str],
    precision: str = "fp16",
    max_batch: int = 1,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    opt_batch: int | None = None,
    device: str | torch.device = "cuda",
    rebuild: bool = False,
) -> Path:
    """The plan for the manifest's encode graph on this GPU: from the cache, or built and cached.

    `cache_dir` defaults to `engines.cache.default_cache_dir() / "tensorrt"`.
    """
    trt = import_tensorrt()
    device = torch.device(device)
    _require_cuda(device)
    manifest = read_manifest(manifest_dir)
    manifest.verify()
    input_names, chw, _ = encode_io(manifest)
    mode = precision_mode(trt.__version__, precision)
    shapes = profile_shapes(chw, max_batch, opt_batch)
    key = plan_cache_key(
        torch.cuda.get_device_name(device),
        torch.cuda.get_device_capability(device),
        trt.__version__,
        precision,
        manifest.graph(ENCODE)["sha256"],
        max_batch,
        shapes[1][0],
    )
    if cache_dir is None:
        cache_dir = default_cache_dir() / "tensorrt"
    path = plan_path(cache_dir, key)
    if path.is_file() and not rebuild:
        log.info("TensorRT plan from the cache: %s", path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx_path = manifest.graph_path(ENCODE)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if mode == "strongly_typed":
        # Deprecated and ignored in TensorRT 11 (always strongly typed); set where it still exists.
        flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        if flag is not None:
            flags = 1 << int(flag)
        if precision == "fp16":
            onnx_path = fp16_onnx(onnx_path, path.with_name(f"{key}.fp16.onnx"))
    network, _parser = _parse(trt, builder, onnx_path, flags, logger)
    config = builder.create_builder_config()
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32: no TF32 convolutions
    if mode == "flags" and precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        keep = fp32_tensor_names(onnx_path)
        pinned = _pin_fp32_layers(trt, network, keep)
        if keep and not pinned:  # the parser did not keep the ONNX tensor names: nothing is protected
            log.warning("TensorRT 10 fp16: no layer could be held at fp32; SA may lose precision")
        log.info("TensorRT 10 fp16: %d layers held at fp32", pinned)
    profile = builder.create_optimization_profile()
    profile.set_shape(input_names[0], *shapes)
    for f in manifest.spec.encode_state:  # the backbone's state rows: one per frame, same batch range
        profile.set_shape(f.name, *((shape[0], *f.shape) for shape in shapes))
    config.add_optimization_profile(profile)

    log.info("building TensorRT %s plan (%s, batch %s) ...", precision, trt.__version__, shapes[1][0])
    with torch.cuda.device(device):
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"TensorRT could not build a plan from {onnx_path}; its log above says why")
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as f:
        f.write(serialized)  # IHostMemory is a buffer
    os.replace(tmp, path)
    if onnx_path != manifest.graph_path(ENCODE):
        onnx_path.unlink(missing_ok=True)  # the fp16 copy was only for the build
    log.info("TensorRT plan written: %s", path)
    return path


def _torch_dtype(trt: Any, dtype: Any) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32}
    if hasattr(trt, "bfloat16"):
        table[trt.bfloat16] = torch.bfloat16
    if dtype not in table:
        raise EngineError(f"TensorRT tensor type {dtype} has no torch counterpart here")
    return table[dtype]


def _float(t: Tensor) -> Tensor:
    return t.float()


class TensorRTBackend(TorchBackend):
    """encode: a TensorRT plan on torch CUDA tensors; the temporal part: TorchBackend's, in torch CUDA."""

    name = "tensorrt"

    def __init__(
        self,
        plan: str | os.PathLike[str],
        model: GLANet,
        input_names: tuple[str, ...],
        output_names: tuple[str, ...],
        max_batch: int,
        precision: str = "fp32",
        device: str | torch.device = "cuda",
    ) -> None:
        trt = import_tensorrt()
        _require_cuda(torch.device(device))
        super().__init__(model, device)  # the model, on the GPU, for temporal_step and init_state
        self.plan_path = Path(plan)
        self.precision = precision
        self.max_batch = int(max_batch)
        self.input_names = tuple(input_names)
        self.output_names = tuple(output_names)
        self._trt = trt
        if self.input_names != encode_inputs(self.spec) or self.output_names != encode_outputs(self.spec):
            raise EngineError(
                f"plan tensors {self.input_names} -> {self.output_names} do not fit the model's online spec"
            )
        with torch.cuda.device(self.device):
            self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            self.engine = self._runtime.deserialize_cuda_engine(self.plan_path.read_bytes())
            if self.engine is None:
                raise EngineError(
                    f"{self.plan_path} is not a plan for this GPU and TensorRT {trt.__version__}; "
                    "delete it to rebuild"
                )
            self.context = self.engine.create_execution_context()
        names = {self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)}
        missing = {*self.input_names, *self.output_names} - names
        if missing:
            raise EngineError(f"{self.plan_path} has no tensors {sorted(missing)} (it has {sorted(names)})")
        self._dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}

    @classmethod
    def from_manifest(
        cls,
        manifest_dir: str | os.PathLike[str],
        model: GLANet,
        *,
        precision: str = "fp16",
        max_batch: int = 1,
        cache_dir: str | os.PathLike[str],
        device: str | torch.device = "cuda",
    ) -> TensorRTBackend:
        """Build (or take from the cache) the plan for the export in `manifest_dir`, and load it.

        `max_batch` is the most frames one `encode` call takes: the multi-camera runtime passes its
        number of cameras, so the plan's optimisation profile is batch 1..cameras.
        """
        plan = build_tensorrt(manifest_dir, precision, max_batch, cache_dir, device=device)
        manifest = read_manifest(manifest_dir)
        if manifest.spec != model.spec:
            raise EngineError(
                f"{manifest_dir} was exported for another model (branches {manifest.branch_names}), "
                f"the checkpoint has {model.branch_names}: export this checkpoint again"
            )
        input_names, _, outputs = encode_io(manifest)
        return cls(plan, model, input_names, outputs, max_batch, precision, device)

    def describe(self) -> str:
        gpu = torch.cuda.get_device_name(self.device)
        return (
            f"tensorrt {self.precision} on {gpu} (TensorRT {self._trt.__version__}, "
            f"batch <= {self.max_batch}); temporal_step in torch CUDA"
        )

    @torch.inference_mode()
    def encode(self, frames: Tensor, state: State | None = None) -> Encoded:
        """frames (N, 3, H, W) normalised, N <= max_batch -> Encoded, on this CUDA device."""
        n = frames.shape[0]
        if not 1 <= n <= self.max_batch:
            raise EngineError(
                f"batch of {n} frames is outside this plan's profile 1..{self.max_batch}; "
                "build it with a larger max_batch"
            )
        if (
            state is None and self.spec.encode_state
        ):  # fresh streams (SMNet's causal buffers), as a model does
            state = {k: v.to(self.device) for k, v in init_rows(self.spec.encode_state, n).items()}
        inputs = (frames, *(state[f.name] for f in self.spec.encode_state)) if state else (frames,)
        with torch.cuda.device(self.device):
            outputs = self._run(inputs)
        return unpack_encoded(self.spec, dict(zip(self.output_names, outputs, strict=True)), _float)

    def _run(self, inputs: tuple[Tensor, ...]) -> list[Tensor]:
        ctx = self.context
        bound = []  # kept alive until the call is queued
        for name, value in zip(self.input_names, inputs, strict=True):
            x = torch.as_tensor(value).to(self.device, self._dtypes[name], non_blocking=True).contiguous()
            if not ctx.set_input_shape(name, tuple(x.shape)):
                raise EngineError(f"TensorRT refused input shape {tuple(x.shape)} for {name}")
            ctx.set_tensor_address(name, x.data_ptr())
            bound.append(x)
        # Fresh outputs from torch's caching allocator each call (cheap), so that the Features handed out
        # never alias the next call's. All on torch's current stream: later torch work is ordered after.
        outputs = []
        for name in self.output_names:
            out = torch.empty(tuple(ctx.get_tensor_shape(name)), dtype=self._dtypes[name], device=self.device)
            ctx.set_tensor_address(name, out.data_ptr())
            outputs.append(out)
        if not ctx.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream):
            raise EngineError("TensorRT execute_async_v3 failed; its log above says why")
        return outputs
