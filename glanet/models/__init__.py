"""GLANet's parts: backbone, attention heads, composite-feature fusion, SRU, the assembled model, and the
online-model contract every streaming model implements."""

from glanet.models.glanet import GLANet, build_model
from glanet.models.online import ClipOutput, Encoded, OnlineSpec, State, StateField, StepOutput

__all__ = [
    "ClipOutput",
    "Encoded",
    "GLANet",
    "OnlineSpec",
    "State",
    "StateField",
    "StepOutput",
    "build_model",
]
