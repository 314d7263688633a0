"""The `torch_tensorrt` backend: `encode` compiled by Torch-TensorRT (dynamo path, from torch.export),
saved as an ExportedProgram (`.pt2`) and loaded without recompiling; `temporal_step` in torch CUDA.

No ONNX in between: the checkpoint's model is compiled directly. Compiled programs are cached like
TensorRT plans, keyed by GPU, Torch-TensorRT version, precision, model digest and batch profile.
torch-tensorrt 2.14 pins torch 2.14 and is strongly typed: fp16 comes from its autocast
(`enable_autocast`), with the reductions, softmax and matmuls of the GP/SA/LA heads kept fp32.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from engines.cache import default_cache_dir, encode_digest
from engines.errors import EngineError, EngineNotImplemented, EngineUnavailable
from engines.export import EncodeGraph  # the same graph as the ONNX export (engines/graph_io.py names)
from engines.graph_io import encode_outputs, unpack_encoded
from engines.tensorrt_backend import _float, check_precision, plan_cache_key, profile_shapes
from engines.torch_backend import TorchBackend
from glanet.models.glanet import GLANet
from glanet.models.online import Encoded, State

log = logging.getLogger(__name__)

NOT_INSTALLED = (
    "torch-tensorrt is not installed (pip install torch-tensorrt==2.14.* needs TensorRT from "
    "NVIDIA's index); use --backend torch or tensorrt"
)


def import_torch_tensorrt() -> Any:
    try:
        import torch_tensorrt
    except Exception as e:  # a broken TensorRT underneath raises OSError and friends, not ImportError
        raise EngineUnavailable(f"{NOT_INSTALLED} ({type(e).__name__}: {e})".replace("\n", " ")) from None
    return torch_tensorrt


def _fp32_ops() -> set[Any]:
    """ATen ops kept fp32 under fp16 autocast: SA's sum of squares and the heads' softmax/matmuls."""
    aten = torch.ops.aten
    return {
        aten.pow.Tensor_Scalar,
        aten.sum.dim_IntList,
        aten.mean.dim,
        aten._softmax.default,
        aten.bmm.default,
        aten.mm.default,
        aten.addmm.default,
        aten.tanh.default,
    }


def compile_options(precision: str) -> dict[str, Any]:
    """Keyword arguments of `torch_tensorrt.compile` for a precision (torch-tensorrt 2.14, strongly typed)."""
    check_precision(precision)
    if precision == "fp32":
        return {"disable_tf32": True}  # fp32 means fp32: no TF32 convolutions
    return {
        "enable_autocast": True,
        "autocast_low_precision_type": torch.float16,
        "autocast_excluded_ops": _fp32_ops(),
    }


def _input_spec(tt: Any, input_shape: tuple[int, int, int], max_batch: int, opt_batch: int | None) -> Any:
    lo, opt, hi = profile_shapes(input_shape, max_batch, opt_batch)
    return tt.Input(min_shape=lo, opt_shape=opt, max_shape=hi, dtype=torch.float32)


def compile_encode(
    model: GLANet,
    example_shape: tuple[int, ...],
    max_batch: int,
    precision: str = "fp16",
    *,
    opt_batch: int | None = None,
    device: str | torch.device = "cuda",
) -> nn.Module:
    """Compile `model.encode` for frames (C, H, W) (or (N, C, H, W)) with a dynamic batch 1..max_batch."""
    tt = import_torch_tensorrt()
    options = compile_options(precision)
    chw = tuple(int(d) for d in example_shape[-3:])
    graph = EncodeGraph(model).eval().to(device)
    with torch.no_grad():  # not inference_mode: torch.export refuses inference tensors
        return tt.compile(
            graph, ir="dynamo", arg_inputs=[_input_spec(tt, chw, max_batch, opt_batch)], **options
        )


def save_encode(
    compiled: nn.Module,
    path: str | os.PathLike[str],
    input_shape: tuple[int, int, int],
    max_batch: int,
    *,
    opt_batch: int | None = None,
) -> Path:
    """Save a compiled encode as an ExportedProgram, its dynamic batch kept (written atomically)."""
    tt = import_torch_tensorrt()
    path = Path(path)
    if path.suffix != ".pt2":
        raise ValueError(f"{path}: torch.export archives are .pt2 files")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial.pt2")
    # Input objects with min/opt/max: torch_tensorrt.save infers the dynamic batch from them.
    spec = _input_spec(tt, input_shape, max_batch, opt_batch)
    tt.save(compiled, os.fspath(tmp), output_format="exported_program", arg_inputs=[spec])
    os.replace(tmp, path)
    return path


def load_encode(path: str | os.PathLike[str]) -> nn.Module:
    """Load a saved compiled encode; importing torch_tensorrt first registers its engine op."""
    import_torch_tensorrt()
    return torch.export.load(os.fspath(path)).module()


class TorchTensorRTBackend(TorchBackend):
    """encode: a Torch-TensorRT compiled program; temporal_step, init_state: TorchBackend's, in torch CUDA."""

    name = "torch_tensorrt"

    def __init__(
        self,
        encoder: nn.Module,
        model: GLANet,
        max_batch: int,
        precision: str = "fp16",
        device: str | torch.device = "cuda",
    ) -> None:
        if torch.device(device).type != "cuda" or not torch.cuda.is_available():
            raise EngineUnavailable("the torch_tensorrt backend needs a CUDA device")
        super().__init__(model, device)
        self.encoder = encoder
        self.max_batch = int(max_batch)
        self.precision = precision

    @classmethod
    def from_model(
        cls,
        model: GLANet,
        *,
        weights_sha256: str,
        input_shape: tuple[int, int, int],
        precision: str = "fp16",
        max_batch: int = 1,
        cache_dir: str | os.PathLike[str] | None = None,
        device: str | torch.device = "cuda",
        rebuild: bool = False,
    ) -> TorchTensorRTBackend:
        """Compile (or take from the cache) encode for this GPU, and wrap it.

        `cache_dir` defaults to `engines.cache.default_cache_dir() / "torch_tensorrt"`.
        """
        tt = import_torch_tensorrt()
        device = torch.device(device)
        if device.type != "cuda" or not torch.cuda.is_available():
            raise EngineUnavailable(
                "the torch_tensorrt backend needs a CUDA device and this machine has none"
            )
        key = plan_cache_key(
            torch.cuda.get_device_name(device),
            torch.cuda.get_device_capability(device),
            f"tt{tt.__version__}",
            precision,
            encode_digest(model.cfg, weights_sha256, input_shape),
            max_batch,
        )
        if cache_dir is None:
            cache_dir = default_cache_dir() / "torch_tensorrt"
        path = Path(cache_dir) / f"{key}.pt2"
        if rebuild or not path.is_file():
            log.info("compiling encode with Torch-TensorRT %s (%s) ...", tt.__version__, precision)
            compiled = compile_encode(model, input_shape, max_batch, precision, device=device)
            save_encode(compiled, path, input_shape, max_batch)
        try:
            encoder = load_encode(path)
        except EngineUnavailable:
            raise
        except Exception as e:
            problem = f"{type(e).__name__}: {e}".replace("\n", " ")
            raise EngineError(f"{path} cannot be loaded ({problem}); delete it to rebuild") from e
        return cls(encoder, model, max_batch, precision, device)

    def describe(self) -> str:
        gpu = torch.cuda.get_device_name(self.device)
        return (
            f"torch_tensorrt {self.precision} on {gpu} (batch <= {self.max_batch}); "
            "temporal_step in torch CUDA"
        )

    @torch.no_grad()  # not inference_mode: the loaded program is an exported graph module
    def encode(self, frames: Tensor, state: State | None = None) -> Encoded:
        """frames (N, 3, H, W) normalised, N <= max_batch -> Encoded, on this CUDA device."""
        n = frames.shape[0]
        if not 1 <= n <= self.max_batch:
            raise EngineError(
                f"batch of {n} frames is outside the compiled range 1..{self.max_batch}; "
                "compile with a larger max_batch"
            )
        if self.spec.encode_state:
            raise EngineNotImplemented(
                "torch_tensorrt compiles stateless backbones only; use --backend tensorrt or torch"
            )
        outs = self.encoder(frames.to(self.device, torch.float32, non_blocking=True).contiguous())
        return unpack_encoded(self.spec, dict(zip(encode_outputs(self.spec), outs, strict=True)), _float)
