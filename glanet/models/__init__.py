"""GLANet's parts: backbone, attention heads, composite-feature fusion, SRU, and the assembled model."""

from glanet.models.glanet import ClipOutput, Features, GLANet, State, StepOutput, build_model, reset_state

__all__ = ["ClipOutput", "Features", "GLANet", "State", "StepOutput", "build_model", "reset_state"]
