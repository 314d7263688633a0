"""The names of the exported graphs' inputs and outputs, derived from a model's `OnlineSpec` alone.

    encode:        frames, *encode_state            -> feat_<f>..., map_<m>..., <encode_state>_out...
    temporal_step: feat_<f>..., *step_state          -> logits, probs, fused, <step_state>_out...

Export, manifest and every backend use these, so no engine names a model's fields.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from torch import Tensor

from glanet.models.online import Encoded, OnlineSpec, State, StepOutput

FRAMES = "frames"
PREDICTIONS = ("logits", "probs", "fused")  # StepOutput's tensors, in order
T = TypeVar("T")


def feature_name(name: str) -> str:
    return f"feat_{name}"


def map_name(name: str) -> str:
    return f"map_{name}"


def state_out(name: str) -> str:
    return f"{name}_out"


def encode_inputs(spec: OnlineSpec) -> tuple[str, ...]:
    return (FRAMES, *(f.name for f in spec.encode_state))


def encode_outputs(spec: OnlineSpec) -> tuple[str, ...]:
    return (
        *(feature_name(f) for f in spec.feature_names),
        *(map_name(m) for m in spec.maps),
        *(state_out(f.name) for f in spec.encode_state),
    )


def step_inputs(spec: OnlineSpec) -> tuple[str, ...]:
    return (*(feature_name(f) for f in spec.feature_names), *(f.name for f in spec.step_state))


def step_outputs(spec: OnlineSpec) -> tuple[str, ...]:
    return (*PREDICTIONS, *(state_out(f.name) for f in spec.step_state))


def flatten_encoded(spec: OnlineSpec, enc: Encoded) -> tuple[Tensor, ...]:
    """An Encoded as the encode graph's outputs, in `encode_outputs` order."""
    return (
        *(enc.features[f] for f in spec.feature_names),
        *(enc.maps[m] for m in spec.maps),
        *(enc.state[f.name] for f in spec.encode_state),
    )


def flatten_step(spec: OnlineSpec, out: StepOutput, state: State) -> tuple[Tensor, ...]:
    """A temporal_step result as the graph's outputs, in `step_outputs` order."""
    return (out.logits, out.probs, out.fused, *(state[f.name] for f in spec.step_state))


def unpack_encoded(spec: OnlineSpec, values: Mapping[str, T], convert: Callable[[T], Tensor]) -> Encoded:
    """The encode graph's named outputs as an Encoded (each value through `convert`, e.g. numpy -> torch)."""
    return Encoded(
        {f: convert(values[feature_name(f)]) for f in spec.feature_names},
        {m: convert(values[map_name(m)]) for m in spec.maps},
        {f.name: convert(values[state_out(f.name)]) for f in spec.encode_state},
    )


def unpack_step(
    spec: OnlineSpec, values: Mapping[str, T], convert: Callable[[T], Tensor]
) -> tuple[StepOutput, State]:
    """The temporal_step graph's named outputs as (StepOutput, next state)."""
    out = StepOutput(*(convert(values[n]) for n in PREDICTIONS))
    return out, {f.name: convert(values[state_out(f.name)]) for f in spec.step_state}
