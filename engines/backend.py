"""The one interface every engine offers the streaming runtime: the online-model contract on prepared frames.

    backend.spec                                   # the model's OnlineSpec (branches, features, maps, states)
    backend.encode(frames (N,3,H,W), state)        # -> Encoded: features, maps, next backbone state
    backend.temporal_step(features, state)         # -> (StepOutput, next temporal state)
    backend.init_state(batch)                      # fresh rows of every state field

Inputs may be torch tensors or numpy arrays; outputs are torch tensors (on the backend's device).

`encode_images(backend, images, transform)` encodes the cropped uint8 BGR frames the streaming runtime has
(N, H, W, 3): an engine that offers `encode_images` converts and normalises them inside its graph (OpenVINO:
its PrePostProcessor), the others get `transform`'s tensor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np
from torch import Tensor

from glanet.data.transforms import EvalTransform, to_tensor
from glanet.models.online import Encoded, OnlineSpec, State, StepOutput


class Backend(Protocol):
    name: str

    @property
    def spec(self) -> OnlineSpec: ...

    def describe(self) -> str: ...

    def encode(self, frames: Tensor, state: State | None = None) -> Encoded: ...

    def temporal_step(self, features: Mapping[str, Tensor], state: State) -> tuple[StepOutput, State]: ...

    def init_state(self, batch: int) -> State: ...


def encode_images(
    backend: Backend, images: np.ndarray, transform: EvalTransform, state: State | None = None
) -> Encoded:
    """`images` (N, H, W, 3) uint8 BGR, already resized and cropped to the model's input -> `encode`'s
    output, normalised by `transform` (its mean, std and colour order) inside the engine where it can."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images {images.dtype} {tuple(images.shape)} must be uint8 (N, H, W, 3)")
    own = getattr(backend, "encode_images", None)
    if own is not None:
        return own(images, transform, state)
    return backend.encode(to_tensor(list(images), transform.mean, transform.std, transform.color), state)
