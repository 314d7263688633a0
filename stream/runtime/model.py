"""Choosing and opening the model a run uses: a `ModelChoice` (what the user asked for: a checkpoint, an
export folder, a backend, ...) becomes the model's metadata and a `Backend` on the chosen engine.

The command line builds a `ModelChoice` from its flags; a cluster shard, an archive and the benchmarks build
one too, so that every way of starting the runtime opens the model the same way.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from glanet.package_data import DEMO_CHECKPOINT

if TYPE_CHECKING:
    from engines.backend import Backend

log = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = DEMO_CHECKPOINT
# the backends that run (part of) the torch model, so they need the checkpoint even with an export folder
TORCH_RUN = ("torch", "tensorrt", "torch_tensorrt")
DEFAULT_FPS = 25.0  # a model that does not say its frame rate is sampled at this one


class ModelInfo(Protocol):
    """What the runtime needs to know of the model: a LoadedCheckpoint or an export's Manifest."""

    @property
    def class_names(self) -> tuple[str, ...]: ...

    @property
    def preprocessing(self) -> dict[str, Any]: ...

    @property
    def sampling(self) -> dict[str, Any]: ...


def model_fps(info: ModelInfo) -> float:
    """The frame rate the model samples its input at (what a camera is resampled to)."""
    return float(info.sampling.get("fps") or DEFAULT_FPS)


@dataclasses.dataclass(frozen=True)
class ModelChoice:
    """Which model to run, and on what: the --checkpoint, --engine, --backend, --precision, --device and
    --threads of the command line. Frozen and small, so a cluster shard receives it as it is."""

    checkpoint: Path | None = None  # None: the committed demo model (unless `engine` alone is enough)
    engine: Path | None = None  # an export folder (glanet export)
    backend: str = "auto"  # auto, torch, openvino, tensorrt, torch_tensorrt
    precision: str | None = None  # None: the backend's own (the best an export folder was built with)
    device: str | None = None  # cpu, cuda, cuda:N; None: the backend's
    threads: int | None = None  # torch's CPU threads; None: torch's choice

    def describe(self) -> str:
        """What is loaded, for a line while it loads."""
        return str(self.engine or self.checkpoint or DEFAULT_CHECKPOINT)

    def needs_checkpoint(self) -> bool:
        """Whether the checkpoint is read: no export folder, a checkpoint given, or a torch-run backend."""
        return self.engine is None or self.checkpoint is not None or self.backend in TORCH_RUN


def check_cuda_device(device: str | None) -> None:
    """A device cuda[:N] that this machine has (imports torch). ValueError: one line saying why not."""
    if device is None or not device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device here (torch sees none); use --device cpu")
    index, count = int(device.partition(":")[2] or 0), torch.cuda.device_count()
    if index >= count:
        raise ValueError(f"--device {device}: there is no CUDA device {index} ({count} found, from cuda:0)")


@dataclasses.dataclass(frozen=True)
class OpenedModel:
    info: ModelInfo  # class names, preprocessing, sampling
    backend: Backend
    why: str  # why this backend (auto-selection's sentence)


def open_model(
    choice: ModelChoice,
    max_batch: int,
    threads: int | None = None,
    say: Callable[[str], None] | None = None,
) -> OpenedModel:
    """The chosen model on the chosen backend (imports torch: seconds). `max_batch`: the most frames one
    round encodes; `threads`: OpenVINO's inference threads (a cluster shard: its node's CPUs; None:
    OpenVINO's choice); `say`: where a line for the user goes (stderr by default)."""
    import torch

    from engines.manifest import read_manifest
    from engines.openvino_backend import best_built_precision
    from engines.select import choose_backend, make_backend
    from glanet.checkpoint import CheckpointError, load_checkpoint
    from glanet.models import live_problem

    say = say or (lambda line: print(f"glanet: {line}", file=sys.stderr))
    check_cuda_device(choice.device)
    if choice.threads:
        torch.set_num_threads(choice.threads)
    backend_name, why = choose_backend(choice.backend)
    # an export folder carries the model's metadata; the checkpoint is read when the backend runs
    # (part of) the torch model, or when there is no export folder
    ck = None
    if choice.engine is None or choice.checkpoint is not None or backend_name in TORCH_RUN:
        path = choice.checkpoint or DEFAULT_CHECKPOINT
        if not Path(path).exists():
            raise CheckpointError(path, "checkpoint not found")
        ck = load_checkpoint(path, map_location="cpu")
        problem = live_problem(ck.model)
        if problem:
            raise CheckpointError(path, problem)
    info = read_manifest(choice.engine) if choice.engine is not None else ck
    assert info is not None
    precision = choice.precision
    if choice.engine is not None and precision is None and backend_name == "openvino":
        precision, reason = best_built_precision(read_manifest(choice.engine))
        say(f"{choice.engine}: {reason}")
    backend = make_backend(
        backend_name, ck, choice.engine, precision, choice.device, max_batch=max_batch, threads=threads
    )
    logging.getLogger("glanet").info("backend %s (%s)", backend.describe(), why)
    return OpenedModel(info, backend, why)


__all__ = ["ModelChoice", "ModelInfo", "OpenedModel", "check_cuda_device", "model_fps", "open_model"]
