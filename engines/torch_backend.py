"""The `torch` backend: the reference engine, the model itself in inference mode (CPU or CUDA).

It offers the online-model contract (engines/backend.py) on preprocessed frames (N, 3, H, W).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from glanet.models.glanet import GLANet
from glanet.models.online import Encoded, OnlineSpec, State, StepOutput, init_rows


class TorchBackend:
    name = "torch"

    def __init__(self, model: GLANet, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self._spec = model.spec

    @property
    def spec(self) -> OnlineSpec:
        return self._spec

    def describe(self) -> str:
        return f"torch fp32 on {self.device}"

    @torch.inference_mode()
    def encode(self, frames: Tensor, state: State | None = None) -> Encoded:
        """frames (N, 3, H, W) normalised -> features, maps and the next backbone state."""
        frames = torch.as_tensor(frames).to(self.device, non_blocking=True)
        if state:
            state = {k: torch.as_tensor(v).to(self.device) for k, v in state.items()}
        return self.model.encode(frames, state)

    @torch.inference_mode()
    def temporal_step(self, features: Mapping[str, Tensor], state: State) -> tuple[StepOutput, State]:
        feats = {k: torch.as_tensor(v).to(self.device) for k, v in features.items()}
        return self.model.temporal_step(feats, {k: v.to(self.device) for k, v in state.items()})

    def init_state(self, batch: int) -> State:
        return init_rows((*self._spec.encode_state, *self._spec.step_state), batch, self.device)
