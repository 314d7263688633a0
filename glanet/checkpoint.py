"""Model checkpoints (GLANet, SMNet): one file with the weights and everything needed to use them.

A checkpoint is a plain dict saved with `torch.save` and read with `torch.load(weights_only=True)`,
so loading one can never run code. It is written atomically (temp file, fsync, rename) and its
weights carry a sha256 digest that is checked on every load. A second digest, `meta_sha256`, covers the
metadata that says what the weights mean (class names, preprocessing, sampling, model config): a file
whose class names were swapped is refused too. Checkpoints written before it existed have none and load
as before (the committed demo models carry it). The digests detect accidents, not a deliberate edit: a
file's digests live in the file, so whoever edits it on purpose can recompute them. Class names come
back through `glanet.text.safe_label`, so a name with a terminal escape sequence in it is shown, never obeyed.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import pickle
import platform
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import glanet
from glanet.config import DataConfig, build_model_config, config_to_dict
from glanet.data.sampling import Sampling
from glanet.data.transforms import preprocessing_dict
from glanet.models import MODELS, Model, new_model
from glanet.models.config import AnyModelConfig, ConfigError
from glanet.text import safe_labels

log = logging.getLogger(__name__)

FORMAT = "glanet-checkpoint"
FORMAT_VERSION = 1

PREPROCESSING_KEYS = ("resize", "crop", "mean", "std")
SAMPLING_KEYS = ("fps", "window", "stride", "mode", "segments", "frames_per_segment")
_FIELDS: dict[str, type] = {
    "arch": str,
    "model_config": dict,
    "class_names": list,
    "preprocessing": dict,
    "sampling": dict,
    "provenance": dict,
    "metrics": dict,
    "extra": dict,
    "state_dict": dict,
    "weights_sha256": str,
}
# The metadata `meta_sha256` covers: what the weights mean and how frames must be prepared for them.
META_FIELDS = ("class_names", "preprocessing", "sampling", "model_config")


class CheckpointError(ValueError):
    """A file that is not a usable glanet checkpoint; the message names the file, the problem and the fix."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint made ready to run: the model in eval mode and its metadata."""

    model: Model
    cfg: AnyModelConfig
    class_names: tuple[str, ...]
    preprocessing: dict[str, Any]
    sampling: dict[str, Any]
    provenance: dict[str, Any]
    metrics: dict[str, Any]
    extra: dict[str, Any]
    path: Path
    weights_sha256: str


# -- digest ---------------------------------------------------------------------------------------


def weights_digest(state_dict: Mapping[str, Tensor]) -> str:
    """sha256 over the tensors in sorted key order: name, dtype, shape and raw bytes of each."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().to("cpu").contiguous()
        # The header is length-prefixed so that no two different dicts hash the same byte stream.
        header = f"{key}\0{t.dtype}\0{tuple(t.shape)}".encode()
        h.update(len(header).to_bytes(8, "little"))
        h.update(header)
        # A uint8 view gives the raw bytes of any dtype, bfloat16 and bool included (numpy has no bf16).
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def meta_digest(raw: Mapping[str, Any]) -> str:
    """sha256 over META_FIELDS of a checkpoint dict, as canonical JSON (sorted keys; tuples as lists)."""
    meta = {name: raw.get(name) for name in META_FIELDS}
    text = json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


# -- saving ---------------------------------------------------------------------------------------


def _plain(value: Any, where: str) -> Any:
    """A copy of `value` made only of types `torch.load(weights_only=True)` accepts; tensors go to CPU."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    # Subclasses (torch.__version__ is a TorchVersion, enums) would be pickled by class: unloadable.
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, Tensor):
        return value.detach().to("cpu")
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {_plain(k, f"{where} key"): _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return value.item()  # numpy scalars in metrics would otherwise make the file unloadable
    raise TypeError(
        f"{where} holds a {type(value).__name__}: checkpoints keep only tensors and plain Python data "
        "(dict, list, tuple, str, int, float, bool, None), so that they load with weights_only=True"
    )


def _from_data(data: DataConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    return preprocessing_dict(data), Sampling.from_config(data).to_dict()


def _section(
    name: str, given: Mapping[str, Any] | None, default: dict[str, Any], keys: Sequence[str]
) -> dict:
    if given is None:
        return default
    missing = [k for k in keys if k not in given]
    if missing:
        raise ValueError(f"{name} lacks {', '.join(missing)} (needs {', '.join(keys)})")
    return _plain(dict(given), name)


def _write_atomic(obj: Any, path: Path) -> None:
    """torch.save `obj` to `path` so that a crash at any point leaves the previous file untouched."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    # os.open (not tempfile) so the file gets the usual umask-based mode rather than 0600.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt too: never leave a half-written temp file behind
        tmp.unlink(missing_ok=True)
        raise
    # Make the rename itself durable; not every platform lets a directory be opened.
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _unwrap(model: torch.nn.Module) -> Model:
    """The model inside DataParallel/DistributedDataParallel (`.module`) or torch.compile (`._orig_mod`)."""
    while not isinstance(model, MODELS):
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, torch.nn.Module):
            raise TypeError(f"save_checkpoint needs a GLANet or an SMNet, got a {type(model).__name__}")
        model = inner
    return model


def save_checkpoint(
    path: str | os.PathLike[str],
    model: Model,
    *,
    class_names: Sequence[str],
    data: DataConfig | None = None,
    preprocessing: Mapping[str, Any] | None = None,
    sampling: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    weights_dtype: torch.dtype | None = None,
) -> Path:
    """Write `model` and its metadata to `path` atomically; returns the path.

    preprocessing and sampling come from `data` when given, else from the dicts passed, else from
    DataConfig's defaults. `extra` (e.g. optimizer state for resuming) must be tensors and plain data.
    `weights_dtype` (e.g. torch.float16) stores the floating-point weights in that type; they load as float32.
    """
    path = Path(path)
    model = _unwrap(model)  # so the keys never carry a wrapper's `module.` / `_orig_mod.` prefix
    cfg = model.cfg
    if isinstance(class_names, str):
        raise TypeError("class_names must be a sequence of names, not one string")
    names = [str(n) for n in class_names]
    if len(names) != cfg.num_classes:
        raise ValueError(f"{len(names)} class names given for a model with num_classes = {cfg.num_classes}")
    if data is not None:
        if data.class_names and tuple(data.class_names) != tuple(names):
            raise ValueError("class_names differ from data.class_names")
        if preprocessing is not None or sampling is not None:
            log.warning(
                "save_checkpoint: preprocessing/sampling taken from `data`; the dicts passed are ignored"
            )
        pre, samp = _from_data(data)
    else:
        default_pre, default_samp = _from_data(DataConfig())
        pre = _section("preprocessing", preprocessing, default_pre, PREPROCESSING_KEYS)
        samp = _section("sampling", sampling, default_samp, SAMPLING_KEYS)

    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if weights_dtype is not None:  # e.g. float16 to halve a shipped model; loading casts back
        state = {k: v.to(weights_dtype) if v.is_floating_point() else v for k, v in state.items()}
    prov: dict[str, Any] = {
        "glanet_version": glanet.__version__,
        "torch_version": str.__str__(torch.__version__),
        "python_version": platform.python_version(),
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    prov.update(_plain(dict(provenance or {}), "provenance"))
    obj = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": cfg.arch,
        "model_config": config_to_dict(cfg),
        "class_names": names,
        "preprocessing": pre,
        "sampling": samp,
        "provenance": prov,
        "metrics": _plain(dict(metrics or {}), "metrics"),
        "extra": _plain(dict(extra or {}), "extra"),
        "state_dict": state,
        "weights_sha256": weights_digest(state),
    }
    obj["meta_sha256"] = meta_digest(obj)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(obj, path)
    log.info("saved checkpoint %s (%d tensors, sha256 %s)", path, len(state), obj["weights_sha256"][:12])
    return path


# -- loading --------------------------------------------------------------------------------------


def _looks_like_state_dict(raw: Mapping[Any, Any]) -> bool:
    return bool(raw) and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in raw.items())


def _not_ours(path: Path, raw: Any) -> CheckpointError:
    """The error for something torch can read that is not one of our checkpoints."""
    if not isinstance(raw, Mapping):
        return CheckpointError(path, f"not a glanet checkpoint: it holds a {type(raw).__name__}, not a dict")
    keys = [str(k) for k in list(raw)[:3]]
    if _looks_like_state_dict(raw):
        if any(str(k).startswith(("module.spatial.net", "spatial.net")) for k in raw):
            return CheckpointError(
                path,
                "not a glanet checkpoint: it looks like a bare state_dict in the layout of the authors' "
                "published code (module.spatial.net.*); convert it with "
                "`glanet convert --src FILE --out OURS.pt --class-names NAMES.txt`",
            )
        return CheckpointError(
            path,
            f"not a glanet checkpoint: it looks like a bare state_dict (keys {keys}, ...) without the "
            "model config and class names; save it with glanet.checkpoint.save_checkpoint",
        )
    return CheckpointError(
        path, f"not a glanet checkpoint: a dict without format = {FORMAT!r} (keys {keys}, ...)"
    )


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since torch 1.6
_PICKLE_MAGIC = b"\x80"  # the legacy format: a pickle (protocol 2 or above)


def _not_a_torch_file(path: Path) -> str | None:
    """Why the file is plainly not one torch.save wrote (a README, a config), or None where it may be.
    Asked first because torch reads any other bytes as a pickle and blames "pickled objects"."""
    with path.open("rb") as f:
        head = f.read(4096)
    if head.startswith((_ZIP_MAGIC, _PICKLE_MAGIC)):
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:  # not a character cut at the end of the 4 KiB
            return "not a glanet checkpoint: not a file torch.save wrote (neither a zip archive nor a pickle)"
        text = head[: e.start].decode("utf-8")
    if "\0" not in text:
        return "not a glanet checkpoint: it is a text file (a checkpoint is the .pt file glanet train writes)"
    return "not a glanet checkpoint: not a file torch.save wrote (neither a zip archive nor a pickle)"


def _torch_load(path: Path, map_location: Any) -> Any:
    problem = _not_a_torch_file(path)
    if problem is not None:
        raise CheckpointError(path, problem)
    try:
        with warnings.catch_warnings():
            # Old pickle protocols make torch warn; the error below says what matters.
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only load failed" in str(e).lower():
            raise CheckpointError(
                path,
                "not a glanet checkpoint: it contains pickled objects other than tensors and plain data "
                "(code or classes), and glanet refuses to run code from a checkpoint (weights_only=True)",
            ) from None
        raise CheckpointError(path, f"not a glanet checkpoint: could not be read ({e})") from None
    except Exception as e:  # truncated zip, empty file, text, ...: torch raises many types
        first = str(e).split("\n")[0][:200]
        detail = f"{type(e).__name__}: {first}" if first else type(e).__name__
        raise CheckpointError(
            path,
            f"not a glanet checkpoint: could not be read (truncated or not a torch file: {detail})",
        ) from None


def read_checkpoint(path: str | os.PathLike[str], *, map_location: Any = "cpu", verify: bool = True) -> dict:
    """Load and validate a checkpoint's dict (format, fields, weights digest) without building a model."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(path, "checkpoint file not found")
    if path.is_dir():
        raise CheckpointError(path, "is a directory, not a checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(path, "not a glanet checkpoint: could not be read (the file is empty)")
    raw = _torch_load(path, map_location)
    if not isinstance(raw, dict) or "format" not in raw:
        raise _not_ours(path, raw)
    if raw["format"] != FORMAT:
        raise CheckpointError(path, f"not a glanet checkpoint: format {raw['format']!r}, expected {FORMAT!r}")
    version = raw.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(path, f"format_version {version!r} is not a positive integer")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            path,
            f"format version {version} is newer than this glanet reads (up to {FORMAT_VERSION}); "
            "upgrade glanet to load it",
        )
    for name, kind in _FIELDS.items():
        if name not in raw:
            raise CheckpointError(path, f"field {name!r} is missing: the file is incomplete or was edited")
        if not isinstance(raw[name], kind):
            raise CheckpointError(
                path, f"field {name!r} is a {type(raw[name]).__name__}, expected a {kind.__name__}"
            )
    if not all(isinstance(n, str) for n in raw["class_names"]):
        raise CheckpointError(path, "class_names must all be strings")
    for name, keys in (("preprocessing", PREPROCESSING_KEYS), ("sampling", SAMPLING_KEYS)):
        missing = [k for k in keys if k not in raw[name]]
        if missing:
            raise CheckpointError(path, f"{name} lacks {', '.join(missing)}")
    state = raw["state_dict"]
    bad = [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(path, f"state_dict holds entries that are not tensors: {bad[:3]}")
    if verify and weights_digest(state) != raw["weights_sha256"]:
        raise CheckpointError(
            path, "weights do not match their recorded digest: the file was modified or is corrupt"
        )
    if verify:
        _check_meta(path, raw)
    return raw


def _check_meta(path: Path, raw: Mapping[str, Any]) -> None:
    """Refuse metadata that does not match `meta_sha256`; a checkpoint older than that digest has none."""
    recorded = raw.get("meta_sha256")
    if recorded is None:
        log.debug(
            "%s: no meta_sha256 (written before glanet recorded one): its class names, preprocessing, "
            "sampling and model config are not digest-checked",
            path,
        )
        return
    if not isinstance(recorded, str):
        raise CheckpointError(path, f"field 'meta_sha256' is a {type(recorded).__name__}, expected a str")
    if meta_digest(raw) != recorded:
        raise CheckpointError(
            path,
            "class names, preprocessing, sampling or model config do not match their recorded digest "
            "(meta_sha256): the file was modified or is corrupt",
        )


def _fit_report(model_state: Mapping[str, Tensor], state: Mapping[str, Tensor]) -> str | None:
    """None if `state` fits `model_state` key for key and shape for shape, else what does not."""
    missing = [k for k in model_state if k not in state]
    unexpected = [k for k in state if k not in model_state]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in model_state.items()
        if k in state and state[k].shape != v.shape
    ]
    if not (missing or unexpected or shapes):
        return None
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
    if shapes:
        parts.append(f"{len(shapes)} of another shape (e.g. {'; '.join(shapes[:3])})")
    return "; ".join(parts)


def _build_with_weights(cfg: AnyModelConfig, state: dict[str, Tensor], path: Path, input_size: int) -> Model:
    """The model of `cfg` holding `state`, loaded strictly.

    The model is built on the meta device and the checkpoint's tensors are assigned to it: random
    initialisation of a ResNet-34 and three SRUs costs about a second, only to be overwritten.
    """
    with torch.device("meta"):
        model = new_model(cfg, input_size)
    problem = _fit_report(model.state_dict(), state)
    if problem:
        raise CheckpointError(path, f"weights do not fit its model_config: {problem}")
    model.load_state_dict(state, strict=True, assign=True)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        # A tensor outside the state_dict (a non-persistent buffer) would still be empty: build for real.
        model = new_model(cfg, input_size)
        model.load_state_dict(state, strict=True)
    return model


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    expect_arch: str | None = None,
    num_classes: int | None = None,
    map_location: str | torch.device = "cpu",
) -> LoadedCheckpoint:
    """Read, check and build: the model comes back in eval mode with its weights loaded strictly."""
    path = Path(path)
    raw = read_checkpoint(path, map_location=map_location)
    if expect_arch is not None and raw["arch"] != expect_arch:
        raise CheckpointError(path, f"checkpoint is for model {raw['arch']!r}, not {expect_arch!r}")
    try:
        if raw["model_config"].get("arch", "glanet") != raw["arch"]:
            raise ConfigError(
                f"model_config.arch {raw['model_config'].get('arch')!r} is not arch {raw['arch']!r}"
            )
        table = dict(raw["model_config"])
        if raw["arch"] == "glanet":  # saved before the key existed: trained with the only site there was
            table.setdefault("sru_dropout_on", "gated")
        cfg = build_model_config(table)
    except ConfigError as e:
        raise CheckpointError(
            path, f"model_config cannot be used by this glanet {glanet.__version__} ({e})"
        ) from None
    class_names = safe_labels(raw["class_names"])  # shown on terminals and overlays: never raw escapes
    if len(class_names) != cfg.num_classes:
        raise CheckpointError(
            path, f"has {len(class_names)} class names but model_config.num_classes = {cfg.num_classes}"
        )
    if num_classes is not None and cfg.num_classes != num_classes:
        raise CheckpointError(path, f"has {cfg.num_classes} classes, expected {num_classes}")
    # Weights stored in a smaller float type (save_checkpoint(weights_dtype=...)) run in float32.
    state = {k: v.float() if v.is_floating_point() else v for k, v in raw["state_dict"].items()}
    model = _build_with_weights(cfg, state, path, int(raw["preprocessing"]["crop"]))
    model.to(map_location).eval()
    log.info("loaded checkpoint %s (%s, %d classes)", path, cfg.backbone, cfg.num_classes)
    return LoadedCheckpoint(
        model=model,
        cfg=cfg,
        class_names=class_names,
        preprocessing=raw["preprocessing"],
        sampling=raw["sampling"],
        provenance=raw["provenance"],
        metrics=raw["metrics"],
        extra=raw["extra"],
        path=path,
        weights_sha256=raw["weights_sha256"],
    )
