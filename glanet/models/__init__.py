"""The models (GLANet, SMNet), their parts, and the online-model contract every streaming model implements.

`build_model(cfg)` builds whichever model `cfg` describes (`model.arch` in a config file)."""

from __future__ import annotations

from glanet.models.config import AnyModelConfig, SMNetConfig
from glanet.models.glanet import GLANet
from glanet.models.glanet import build_model as build_glanet
from glanet.models.online import ClipOutput, Encoded, OnlineSpec, State, StateField, StepOutput
from glanet.models.smnet import SMNet, build_smnet

Model = GLANet | SMNet
MODELS = (GLANet, SMNet)


def build_model(
    cfg: AnyModelConfig, imagenet_weights: str | None = None, pretrained: bool = False, input_size: int = 224
) -> Model:
    """The model `cfg` describes; with `pretrained` (or a weights path) its trunk starts from ImageNet
    weights. `input_size` is the side of the frames it will see (SMNet sizes its causal buffers by it)."""
    if isinstance(cfg, SMNetConfig):
        return build_smnet(cfg, imagenet_weights, pretrained, input_size)
    return build_glanet(cfg, imagenet_weights, pretrained)


def new_model(cfg: AnyModelConfig, input_size: int = 224) -> Model:
    """The model `cfg` describes, randomly initialised (to receive a checkpoint's weights)."""
    return SMNet(cfg, input_size) if isinstance(cfg, SMNetConfig) else GLANet(cfg)


def live_problem(model: Model) -> str | None:
    """Why `model` cannot run one frame at a time (an offline SMNet), or None when it can."""
    if isinstance(model, SMNet) and not model.causal:
        return (
            "an offline (non-causal) SMNet: it looks at future frames, so it cannot run live; fine-tune it "
            "causally first (glanet train --init-from <it> --set model.causal=true; docs/model.md, SMNet)"
        )
    return None


__all__ = [
    "MODELS",
    "ClipOutput",
    "Encoded",
    "GLANet",
    "Model",
    "OnlineSpec",
    "SMNet",
    "State",
    "StateField",
    "StepOutput",
    "build_model",
    "live_problem",
    "new_model",
]
