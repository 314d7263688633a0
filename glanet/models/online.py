"""The online-model contract: what any streaming model offers, so that engines and the runtime need no more.

A model describes itself with an `OnlineSpec` (its branches, classes, the features `encode` hands to
`temporal_step`, its named spatial maps, and two state specs) and offers:

    init_state(batch) -> State                              # fresh rows of every state field
    encode(frames (N,3,H,W), state) -> Encoded              # features, maps and the next backbone state
    temporal_step(features, state) -> (StepOutput, State)   # one time step of the temporal rows
    step(frames, state) -> (StepOutput, State)              # both, one video per row
    forward(clip (B,T,3,H,W)) -> ClipOutput                 # equals T calls of `step`

A state is an ordered dict of named batch-first tensors. Two kinds of rows, because they are counted
differently: the backbone's state (TSM shift buffers, causal temporal convolutions) has one row per video,
since a frame is encoded once; the temporal state has one row per sequence, and a model whose temporal
state accumulates from a start (`restarts`: GLANet's SRU and mean of logits) runs ceil(W/S) staggered
sequences per video. A stateless backbone has an empty `encode_state`. `encode` reads and returns only
the `encode_state` fields, `temporal_step` only the `step_state` ones; `step` and `init_state` carry both
(their names are distinct), for the case of one sequence per video.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

State = dict[str, Tensor]  # name -> (B, *shape), in the spec's order


@dataclass(frozen=True)
class StateField:
    """One named state tensor: its per-row shape, dtype and the value a restarted row takes."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    reset: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "reset": self.reset}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StateField:
        return cls(str(d["name"]), tuple(int(x) for x in d["shape"]), str(d["dtype"]), float(d["reset"]))


@dataclass(frozen=True)
class TensorInfo:
    """A named per-row tensor `encode` hands to `temporal_step`: (N, *shape)."""

    name: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TensorInfo:
        return cls(str(d["name"]), tuple(int(x) for x in d["shape"]))


@dataclass(frozen=True)
class OnlineSpec:
    """What a streaming model is, as far as engines, exports and the runtime are concerned."""

    branch_names: tuple[str, ...]  # the per-branch predictions, in the order of StepOutput's dim 1
    num_classes: int
    features: tuple[TensorInfo, ...]  # encode -> temporal_step, in order
    maps: tuple[str, ...]  # named spatial maps (N, h, w) of each frame (attention), each summing to 1
    step_state: tuple[StateField, ...]  # the temporal rows' state
    encode_state: tuple[StateField, ...] = ()  # the backbone's state (one row per video); () if stateless
    restarts: bool = True  # True: the temporal state accumulates from its start (run staggered sequences)

    def __post_init__(self) -> None:
        names = [f.name for f in (*self.step_state, *self.encode_state)]
        if len(set(names)) != len(names):
            raise ValueError(f"state names must be unique across encode and step state: {names}")

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def to_dict(self) -> dict[str, Any]:
        return {
            "branch_names": list(self.branch_names),
            "num_classes": self.num_classes,
            "features": [f.to_dict() for f in self.features],
            "maps": list(self.maps),
            "step_state": [f.to_dict() for f in self.step_state],
            "encode_state": [f.to_dict() for f in self.encode_state],
            "restarts": self.restarts,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OnlineSpec:
        return cls(
            branch_names=tuple(d["branch_names"]),
            num_classes=int(d["num_classes"]),
            features=tuple(TensorInfo.from_dict(x) for x in d["features"]),
            maps=tuple(str(x) for x in d["maps"]),
            step_state=tuple(StateField.from_dict(x) for x in d["step_state"]),
            encode_state=tuple(StateField.from_dict(x) for x in d.get("encode_state", ())),
            restarts=bool(d.get("restarts", True)),
        )


class Encoded(NamedTuple):
    """What `encode` gives for N frames."""

    features: dict[str, Tensor]  # name -> (N, *shape), in spec order
    maps: dict[str, Tensor]  # name -> (N, h, w)
    state: State  # the backbone's next state ({} for a stateless backbone)


class StepOutput(NamedTuple):
    """The prediction of each temporal row after this step."""

    logits: Tensor  # (B, S, K) per branch
    probs: Tensor  # (B, S, K) softmax per branch
    fused: Tensor  # (B, K)
    maps: dict[str, Tensor] | None = None  # name -> (B, h, w), filled by `step`


class ClipOutput(NamedTuple):
    logits: Tensor  # (B, S, K) per branch
    probs: Tensor  # (B, S, K)
    fused: Tensor  # (B, K)
    maps: dict[str, Tensor]  # name -> (B, T, h, w)


class OnlineModel(Protocol):
    """The contract; GLANet implements it, and so does every backend in `engines/` (minus `forward`)."""

    @property
    def spec(self) -> OnlineSpec: ...

    def init_state(self, batch: int) -> State: ...

    def encode(self, frames: Tensor, state: State | None = None) -> Encoded: ...

    def temporal_step(self, features: Mapping[str, Tensor], state: State) -> tuple[StepOutput, State]: ...


# -- state helpers: every consumer handles states through these, never through a field's name -------


_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
}


def torch_dtype(name: str) -> torch.dtype:
    try:
        return _DTYPES[name]
    except KeyError:
        raise ValueError(f"state dtype {name!r} is not one of {', '.join(_DTYPES)}") from None


def init_rows(fields: Sequence[StateField], batch: int, device: torch.device | str | None = None) -> State:
    """A fresh state of `batch` rows: every field filled with its reset value."""
    return {
        f.name: torch.full((batch, *f.shape), f.reset, dtype=torch_dtype(f.dtype), device=device)
        for f in fields
    }


def reset_rows(fields: Sequence[StateField], state: State, rows: Tensor) -> State:
    """Restart the rows (B,) bool of `state`: those sequences start again; the other rows are untouched."""
    out = {}
    for f in fields:
        t = state[f.name]
        mask = rows.to(t.device).view(-1, *([1] * (t.dim() - 1)))
        # torch.where, not a multiply: a row whose state went NaN/inf must recover too
        out[f.name] = torch.where(mask, torch.tensor(f.reset, dtype=t.dtype, device=t.device), t)
    return out


def cat_states(states: Sequence[State]) -> State:
    """Rows of several states, one after another (the batch of a round)."""
    if not states:
        return {}
    return {name: torch.cat([s[name] for s in states]) for name in states[0]}


def split_state(state: State, sizes: Sequence[int]) -> list[State]:
    """The inverse of `cat_states`: `sizes` rows each."""
    parts = {name: torch.split(t, list(sizes)) for name, t in state.items()}
    return [{name: parts[name][i] for name in state} for i in range(len(sizes))]


def take_rows(state: State, index: Tensor | Sequence[int]) -> State:
    return {name: t[index] for name, t in state.items()}
