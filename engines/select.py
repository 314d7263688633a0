"""Which backend runs here, and building it.

Auto-selection follows DESIGN.md: TensorRT if there is a CUDA device and `tensorrt` imports, then torch
on CUDA, then OpenVINO, then torch on the CPU. Asking for a backend that cannot run here is an error
(`EngineUnavailable`) whose one line says why; nothing falls back silently. The probes are parameters
of `choose_backend` so that every branch is tested on any machine.

An export folder and a checkpoint given together must be the same model (`check_same_model`): the export
names the classes, the checkpoint runs (part of) the model, and a mix would label events with another
model's classes. The model-export cache (`export_dir_for`) exports into a private folder and renames it
into place, so that runs started at once never see, or write into, a half-made export.
"""

from __future__ import annotations

import errno
import importlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from engines.backend import Backend
from engines.cache import default_cache_dir, encode_digest
from engines.errors import EngineError, EngineUnavailable
from engines.manifest import FORMAT_VERSION, MANIFEST, Manifest, read_manifest
from glanet.checkpoint import LoadedCheckpoint
from glanet.config import config_to_dict

log = logging.getLogger(__name__)

BACKENDS = ("torch", "openvino", "tensorrt", "torch_tensorrt")
REQUESTS = ("auto", *BACKENDS)
GPU_BACKENDS = ("tensorrt", "torch_tensorrt")
_MISSING = {
    "openvino": "openvino not installed (pip install openvino)",
    "tensorrt": "tensorrt not installed (its wheels come from NVIDIA's index, pypi.nvidia.com)",
    "torch_tensorrt": "torch-tensorrt not installed (pip install torch-tensorrt==2.14.*, with TensorRT)",
}
NO_CUDA = "no CUDA device"


def _import_problem(module: str) -> str | None:
    """None when `module` imports, else one line saying why not."""
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == module:
            return _MISSING[module]
        return f"{module} does not import: {e}"
    except Exception as e:  # e.g. a TensorRT stub wheel without its libraries: OSError
        first = (str(e).strip().splitlines() or [""])[0]
        return f"{module} does not import ({type(e).__name__}: {first})"
    return None


def available_backends() -> dict[str, str | None]:
    """Each backend -> None when it can run on this machine, else the reason in one line."""
    cuda = torch.cuda.is_available()
    return {
        "torch": None,
        "openvino": _import_problem("openvino"),
        "tensorrt": _import_problem("tensorrt") if cuda else NO_CUDA,
        "torch_tensorrt": _import_problem("torch_tensorrt") if cuda else NO_CUDA,
    }


# -- one-line details for the reasons; any failure falls back to plain words ---------------------------


def _detail(fn: Callable[[], str], fallback: str) -> str:
    try:
        return fn()
    except Exception:
        return fallback


def _gpu() -> str:
    return torch.cuda.get_device_name()


def _tensorrt_version() -> str:
    import tensorrt

    return f"TensorRT {tensorrt.__version__}"


def _openvino_cpu() -> str:
    import openvino as ov

    version = ".".join(ov.get_version().split(".")[:2])
    bf16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return f"OpenVINO {version} on CPU" + (" (bf16 capable)" if bf16 else "")


def choose_backend(
    requested: str = "auto",
    *,
    cuda_available: bool | None = None,
    has_tensorrt: bool | None = None,
    has_openvino: bool | None = None,
    has_torch_tensorrt: bool | None = None,
) -> tuple[str, str]:
    """(backend name, why it was chosen, as a sentence). Probes left as None are run here.

    A requested backend that cannot run here raises EngineUnavailable; "torch" runs on CUDA when
    there is a device (`default_device`).
    """
    if requested not in REQUESTS:
        raise EngineError(f"unknown backend {requested!r}: choose one of {', '.join(REQUESTS)}")
    cuda = torch.cuda.is_available() if cuda_available is None else cuda_available

    def usable(name: str, given: bool | None) -> str | None:
        if given is not None:
            return None if given else _MISSING[name]
        return _import_problem(name)

    def problem(name: str) -> str | None:
        if name == "torch":
            return None
        if name in GPU_BACKENDS and not cuda:
            return NO_CUDA
        given = {"tensorrt": has_tensorrt, "openvino": has_openvino, "torch_tensorrt": has_torch_tensorrt}
        return usable(name, given[name])

    gpu = _detail(_gpu, "a CUDA device") if cuda else ""
    if requested == "auto":
        if cuda and problem("tensorrt") is None:
            return "tensorrt", f"tensorrt: CUDA device {gpu}, {_detail(_tensorrt_version, 'TensorRT')}"
        if cuda:
            return "torch", f"torch: CUDA device {gpu} but {problem('tensorrt')}; torch fp32 on CUDA"
        if problem("openvino") is None:
            return "openvino", f"openvino: {NO_CUDA}, {_detail(_openvino_cpu, 'OpenVINO on CPU')}"
        return "torch", f"torch: {NO_CUDA} and {problem('openvino')}; torch fp32 on CPU"

    why = problem(requested)
    if why is not None:
        raise EngineUnavailable(f"the {requested} backend cannot run here: {why}; use --backend auto")
    where = {
        "torch": f"torch fp32 on CUDA device {gpu}" if cuda else "torch fp32 on CPU",
        "openvino": _detail(_openvino_cpu, "OpenVINO on CPU"),
        "tensorrt": f"CUDA device {gpu}, {_detail(_tensorrt_version, 'TensorRT')}",
        "torch_tensorrt": f"CUDA device {gpu}, Torch-TensorRT",
    }[requested]
    return requested, f"{requested}: requested, {where}"


def default_device(name: str, cuda_available: bool | None = None) -> str:
    """Where a backend runs by default: the GPU backends on CUDA, OpenVINO on the CPU, torch where it can."""
    if name in GPU_BACKENDS:
        return "cuda"
    if name == "openvino":
        return "cpu"
    cuda = torch.cuda.is_available() if cuda_available is None else cuda_available
    return "cuda" if cuda else "cpu"


def _input_shape(checkpoint: LoadedCheckpoint) -> tuple[int, int, int]:
    crop = int(checkpoint.preprocessing["crop"])
    return 3, crop, crop


class ModelMismatch(EngineError):
    """An export folder and a checkpoint that are not the same model."""


def _plain_json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=repr))  # tuples -> lists, as in the manifest


def check_same_model(manifest: Manifest | str | os.PathLike[str], checkpoint: LoadedCheckpoint) -> None:
    """Raise ModelMismatch (one line) unless `manifest` (a Manifest or an export folder) was exported from
    `checkpoint`'s model: the same weights digest, class names and model config."""
    if not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest)
    fix = (
        f"give the checkpoint it was exported from ({manifest.source_checkpoint}), or export this one "
        f"with glanet export --checkpoint {checkpoint.path} --out DIR"
    )
    exported, given = manifest.source_weights_sha256, checkpoint.weights_sha256
    if exported != given:
        raise ModelMismatch(
            f"{manifest.directory} was exported from another model than {checkpoint.path} (weights sha256 "
            f"{exported[:12]} vs {given[:12]}): its class names would label this model's output; {fix}"
        )
    if manifest.class_names != checkpoint.class_names:
        pairs = zip(manifest.class_names, checkpoint.class_names, strict=False)
        diff = next(
            (i for i, (a, b) in enumerate(pairs) if a != b),
            min(len(manifest.class_names), len(checkpoint.class_names)),
        )
        raise ModelMismatch(
            f"{manifest.directory} and {checkpoint.path} have the same weights but other class names "
            f"({len(manifest.class_names)} vs {len(checkpoint.class_names)} names, first difference at "
            f"class {diff}); {fix}"
        )
    recorded = manifest.data.get("model_config")
    if isinstance(recorded, dict):
        ours = _plain_json(config_to_dict(checkpoint.cfg))
        differ = sorted(k for k in set(recorded) & set(ours) if _plain_json(recorded[k]) != ours[k])
        if differ:
            raise ModelMismatch(
                f"{manifest.directory} and {checkpoint.path} have the same weights but another model config "
                f"({', '.join(differ[:3])}); {fix}"
            )


def _discard(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def export_dir_for(checkpoint: LoadedCheckpoint, cache_dir: Path) -> Path:
    """The exported graphs of `checkpoint` under `cache_dir`, exported there first if missing.

    The export is made in a private sibling folder and renamed into place, whole: a run started meanwhile
    sees no folder or a complete one. When another run's export lands first, ours is discarded.
    """
    from engines import export as export_module

    digest = encode_digest(checkpoint.model.cfg, checkpoint.weights_sha256, _input_shape(checkpoint))
    out = cache_dir / "exports" / f"v{FORMAT_VERSION}-{digest[:24]}"
    if (out / MANIFEST).is_file():  # renamed into place whole: with its manifest, the export is complete
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")
    log.info("exporting %s to %s ...", checkpoint.path, out)
    try:
        export_module.export(checkpoint.path, tmp)
        _move_into_place(tmp, out)
    finally:
        _discard(tmp)  # gone already when renamed; else a failed export or the loser of a race
    return out


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished export `tmp` to `out`; keep an `out` another run finished meanwhile."""
    for _ in range(3):
        try:
            os.rename(tmp, out)  # atomic; fails when `out` is a folder with files in it
            return
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        if (out / MANIFEST).is_file():
            log.info("%s was exported meanwhile by another run; using it", out)
            return
        # A folder without a manifest: left by a run of an older glanet that exported in place and
        # stopped. Move it aside (a rename, so that a run just finishing its own is not hurt) and retry.
        stale = out.with_name(f".{out.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.stale")
        try:
            os.rename(out, stale)
        except FileNotFoundError:
            continue
        if (stale / MANIFEST).is_file():  # another run's whole export landed just before: put it back
            try:
                os.rename(stale, out)
            except OSError:
                _discard(stale)  # a third one is in place now; the next round finds it
                continue
            return
        _discard(stale)
    raise EngineError(f"{out}: cannot put the export in place (the folder keeps changing); try again")


def _manifest_dir(
    name: str, checkpoint: LoadedCheckpoint | None, manifest_dir: Path | None, cache_dir: Path
) -> Path:
    if manifest_dir is not None:  # given with a checkpoint, it was checked to be the same model
        return Path(manifest_dir)
    if checkpoint is None:
        raise EngineError(
            f"the {name} backend runs exported graphs: give a checkpoint, or run "
            "glanet export --checkpoint CKPT --out DIR first and give DIR"
        )
    return export_dir_for(checkpoint, cache_dir)


def _need_checkpoint(name: str, checkpoint: LoadedCheckpoint | None, why: str) -> LoadedCheckpoint:
    if checkpoint is None:
        raise EngineError(f"the {name} backend needs the checkpoint: {why}")
    return checkpoint


def make_backend(
    name: str,
    checkpoint: LoadedCheckpoint | None,
    manifest_dir: Path | None = None,
    precision: str | None = None,
    device: str | None = None,
    *,
    max_batch: int = 1,
    cache_dir: Path | None = None,
    threads: int | None = None,
) -> Backend:
    """Build backend `name` ("auto" chooses): torch from the checkpoint's model, openvino from exported
    graphs (exported into the cache from the checkpoint when no directory is given), tensorrt from the
    exported encode graph plus the checkpoint's temporal part, torch_tensorrt from the checkpoint.

    `precision` None means the backend's default: torch fp32, openvino bf16 where the CPU has it (else
    fp32), the GPU backends fp16. `threads`: OpenVINO's inference threads (None: its own choice; torch's
    are `torch.set_num_threads`).
    """
    if name == "auto":
        name, reason = choose_backend("auto")
        log.info("backend %s", reason)
    else:
        choose_backend(name)  # raises EngineUnavailable, with the reason, when it cannot run here
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    device = device or default_device(name)
    if manifest_dir is not None and checkpoint is not None:
        check_same_model(Path(manifest_dir), checkpoint)  # never one model's graphs or names with another

    if name == "torch":
        from engines.torch_backend import TorchBackend

        ck = _need_checkpoint(name, checkpoint, "it runs the model itself")
        if precision not in (None, "fp32"):
            raise EngineError(f"the torch backend runs fp32 only, not {precision}; use openvino or tensorrt")
        return TorchBackend(ck.model, device)

    if name == "openvino":
        directory = _manifest_dir(name, checkpoint, manifest_dir, cache)

        from engines.openvino_backend import OpenVINOBackend, faster_float_precision

        if precision is None:  # bf16 or fp32, whichever is faster on this CPU (measured once, remembered)
            precision = faster_float_precision(read_manifest(directory), cache / "openvino")
        openvino_cache = cache / "openvino"
        return OpenVINOBackend.from_manifest(directory, precision, cache_dir=openvino_cache, threads=threads)

    if name == "tensorrt":
        from engines.tensorrt_backend import TensorRTBackend

        ck = _need_checkpoint(name, checkpoint, "temporal_step runs in torch on the GPU")
        directory = _manifest_dir(name, ck, manifest_dir, cache)
        return TensorRTBackend.from_manifest(
            directory,
            ck.model,
            precision=precision or "fp16",
            max_batch=max_batch,
            cache_dir=cache / "tensorrt",
            device=device,
        )

    from engines.torch_tensorrt_backend import TorchTensorRTBackend

    ck = _need_checkpoint(name, checkpoint, "it compiles the model itself")
    return TorchTensorRTBackend.from_model(
        ck.model,
        weights_sha256=ck.weights_sha256,
        input_shape=_input_shape(ck),
        precision=precision or "fp16",
        max_batch=max_batch,
        cache_dir=cache / "torch_tensorrt",
        device=device,
    )
