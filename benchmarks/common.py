"""Helpers shared by benchmarks/stream.py and benchmarks/engines.py (import as `benchmarks.common`)."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from array import array
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from engines.backend import encode_images
from glanet.checkpoint import save_checkpoint
from glanet.data.synth_live import LiveSynth
from glanet.data.transforms import EvalTransform
from glanet.models.config import ModelConfig
from glanet.models.glanet import GLANet
from glanet.models.online import Encoded, OnlineSpec, State, StepOutput

# The paper's model as both benchmarks build it: ResNet-34 at 224 px (resize 256), 51 classes, 30-frame clips
# every 15 frames at 25 fps, the rate of the SynthActions sources they feed it.
FPS = 25.0
NUM_CLASSES = 51
CROP, RESIZE = 224, 256
WINDOW, STRIDE = 30, 15
SYNTH_SIZE = 240  # px, square SynthActions frames


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else float("nan")


def plain(value: Any) -> Any:
    """`value` as strict JSON data: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | array):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return plain(value.item())
    return value


def write_json(path: Path, data: Any) -> None:
    """`data` as strict JSON (see `plain`) at `path`, its folder made if need be."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plain(data), indent=1, allow_nan=False))


def machine_line(*details: str) -> str:
    """The CPU, how many, `details` (torch's version and settings, engines) and the load average."""
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    cpu = platform.processor() or platform.machine()
    try:  # the model name: "x86_64" does not tell an AMD Zen 4 from an Intel Xeon, whose bf16 differ 5x
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return ", ".join((cpu, f"{os.cpu_count()} CPUs", *details, f"load average {load}"))


def sync(device: torch.device | str) -> None:
    """Wait for the work queued on `device`: a CUDA device's kernels; nothing on a CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def synth_images(n: int, *, seed: int, fps: float = FPS, size: int = SYNTH_SIZE) -> list[np.ndarray]:
    """n consecutive SynthActions frames, (size, size, 3) uint8 BGR."""
    synth = LiveSynth(seed, size=size, fps=fps)
    return [next(synth).image for _ in range(n)]


def write_video(
    path: Path,
    seconds: float,
    *,
    seed: int,
    fps: float = FPS,
    width: int = SYNTH_SIZE,
    height: int = SYNTH_SIZE,
) -> Path:
    """A SynthActions video (mp4v) at `fps`, width x height: the middle rows of square width-px frames."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter cannot write {path} (mp4v)")
    synth = LiveSynth(seed, size=width, fps=fps)
    top = (width - height) // 2
    for _ in range(round(seconds * fps)):
        writer.write(np.ascontiguousarray(next(synth).image[top : top + height]))
    writer.release()
    return path


def calibrate_bn(model: GLANet, frames: Tensor) -> GLANet:
    """BN running statistics from `frames` (N, 3, H, W): a random trunk's activations stay in range, which
    int8 calibration and the bf16 comparison need to mean anything."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for batch in frames.split(8):
            model.encode(batch)
    return model.eval()


def paper_checkpoint(folder: Path, images: list[np.ndarray]) -> Path:
    """The paper's GLANet (ResNet-34, 224 px, SRU 3x1024, 51 classes), random weights, BN calibrated on
    `images`, saved in `folder` as a checkpoint whose clips are sampled at 25 fps (W=30, S=15)."""
    torch.manual_seed(0)
    model = GLANet(ModelConfig.from_preset("paper", num_classes=NUM_CLASSES))
    pre = {"resize": [RESIZE], "crop": CROP, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    calibrate_bn(model, EvalTransform.from_preprocessing(pre)(images))
    sampling = {"fps": FPS, "window": WINDOW, "stride": STRIDE, "mode": "clips"}
    sampling |= {
        "segments": 3,
        "frames_per_segment": 4,
    }  # for TSN sampling, unused by clips: the format wants them
    return save_checkpoint(
        folder / "glanet_r34_paper_random.pt",
        model,
        class_names=[f"class{i}" for i in range(NUM_CLASSES)],
        preprocessing={**pre, "color": "rgb", "interpolation": "bilinear"},
        sampling=sampling,
        provenance={"note": "random weights, BN calibrated on SynthActions frames: for timing only"},
    )


class TimedBackend:
    """A backend whose `encode` and `temporal_step` calls are timed in ms (`device` synchronized before the
    clock stops); subclasses keep what they need of the times in `record`."""

    def __init__(self, inner: Any, device: torch.device | str = "cpu") -> None:
        self.inner = inner
        self.name = inner.name
        self.device = device

    @property
    def spec(self) -> OnlineSpec:
        return self.inner.spec

    def describe(self) -> str:
        return self.inner.describe()

    def init_state(self, batch: int) -> State:
        return self.inner.init_state(batch)

    def encode(self, frames: Tensor, state: State | None = None) -> Encoded:
        start = time.perf_counter()
        out = self.inner.encode(frames, state)
        sync(self.device)
        self.record("encode", (time.perf_counter() - start) * 1e3)
        return out

    def encode_images(
        self, images: np.ndarray, transform: EvalTransform, state: State | None = None
    ) -> Encoded:
        """`engines.backend.encode_images` on the inner backend (in its graph where it can), as encode."""
        start = time.perf_counter()
        out = encode_images(self.inner, images, transform, state)
        sync(self.device)
        self.record("encode", (time.perf_counter() - start) * 1e3)
        return out

    def temporal_step(self, features: Mapping[str, Tensor], state: State) -> tuple[StepOutput, State]:
        start = time.perf_counter()
        out = self.inner.temporal_step(features, state)
        sync(self.device)
        self.record("temporal_step", (time.perf_counter() - start) * 1e3)
        return out

    def record(self, call: str, ms: float) -> None:
        """One call of `call` ("encode" or "temporal_step") took `ms`."""
        raise NotImplementedError
