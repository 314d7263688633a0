"""The one interface every engine offers the streaming runtime: the online-model contract on prepared frames.

    backend.spec                                   # the model's OnlineSpec (branches, features, maps, states)
    backend.encode(frames (N,3,H,W), state)        # -> Encoded: features, maps, next backbone state
    backend.temporal_step(features, state)         # -> (StepOutput, next temporal state)
    backend.init_state(batch)                      # fresh rows of every state field

Inputs may be torch tensors or numpy arrays; outputs are torch tensors (on the backend's device).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from torch import Tensor

from glanet.models.online import Encoded, OnlineSpec, State, StepOutput


class Backend(Protocol):
    name: str

    @property
    def spec(self) -> OnlineSpec: ...

    def describe(self) -> str: ...

    def encode(self, frames: Tensor, state: State | None = None) -> Encoded: ...

    def temporal_step(self, features: Mapping[str, Tensor], state: State) -> tuple[StepOutput, State]: ...

    def init_state(self, batch: int) -> State: ...
