"""The `torch` backend: the reference engine, the model itself in inference mode (CPU or CUDA).

Every backend offers the same three calls on preprocessed frames (N, 3, H, W):
`encode(frames) -> Features`, `temporal_step(features, state) -> (StepOutput, State)`, `init_state(B)`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from glanet.models.glanet import Features, GLANet, State, StepOutput


class TorchBackend:
    name = "torch"

    def __init__(self, model: GLANet, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)

    @property
    def stream_names(self) -> tuple[str, ...]:
        return self.model.stream_names

    def describe(self) -> str:
        return f"torch fp32 on {self.device}"

    @torch.inference_mode()
    def encode(self, frames: Tensor) -> Features:
        """frames (N, 3, H, W) normalised -> Features (per-stream vectors and the SA/LA maps)."""
        return self.model.encode(frames.to(self.device, non_blocking=True))

    @torch.inference_mode()
    def temporal_step(
        self, features: Features | tuple[Tensor, ...], state: State
    ) -> tuple[StepOutput, State]:
        return self.model.temporal_step(features, state)

    @torch.inference_mode()
    def init_state(self, batch: int) -> State:
        return self.model.init_state(batch, device=self.device)
