"""The shared CNN: a torchvision ResNet trunk up to conv5_x (no pooling, no classifier).

ImageNet weights come from a local file (or torchvision's cache); nothing is ever downloaded.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn

log = logging.getLogger(__name__)

_WEIGHTS = {
    "resnet18": (torchvision.models.ResNet18_Weights.IMAGENET1K_V1,),
    "resnet34": (torchvision.models.ResNet34_Weights.IMAGENET1K_V1,),
    "resnet50": (
        torchvision.models.ResNet50_Weights.IMAGENET1K_V1,
        torchvision.models.ResNet50_Weights.IMAGENET1K_V2,
    ),
}
_CHANNELS = {"resnet10": 512, "resnet18": 512, "resnet34": 512, "resnet50": 2048}
TRUNK = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


class ResNetTrunk(nn.Module):
    """torchvision ResNet up to layer4 (conv5_x). (N, 3, H, W) -> (N, C, H/32, W/32).

    Submodule names are torchvision's, so an ImageNet state_dict (less `fc.*`) loads as is.
    """

    def __init__(self, name: str = "resnet34") -> None:
        super().__init__()
        if name not in _CHANNELS:
            raise ValueError(f"backbone {name!r} is not one of {', '.join(_CHANNELS)}")
        if name == "resnet10":  # torchvision's ResNet with one BasicBlock per stage: small CPU models
            net = torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1])
        else:
            net = getattr(torchvision.models, name)(weights=None)
        for part in TRUNK:
            setattr(self, part, getattr(net, part))
        self.name = name
        self.out_channels = _CHANNELS[name]

    def forward(self, x: Tensor) -> Tensor:
        for part in TRUNK:
            x = getattr(self, part)(x)
        return x


def torchvision_cache_files(name: str) -> list[Path]:
    """Where torchvision keeps downloaded ImageNet weights for `name`, most likely first."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    return [folder / os.path.basename(w.url) for w in _WEIGHTS[name]]


def resolve_imagenet_weights(name: str, path: str | os.PathLike[str] | None) -> Path:
    """The ImageNet weights file to use: `path` if given, else the first one in torchvision's cache."""
    if name not in _WEIGHTS:
        raise FileNotFoundError(f"there are no ImageNet weights for {name}: it trains from scratch")
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"ImageNet weights file not found: {p}")
        return p
    candidates = torchvision_cache_files(name)
    for p in candidates:
        if p.is_file():
            return p
    raise FileNotFoundError(
        f"no ImageNet weights for {name}: pass --imagenet-weights PATH, or put torchvision's "
        f"{candidates[0].name} at {candidates[0]} (nothing is downloaded)"
    )


def load_imagenet_weights(trunk: ResNetTrunk, path: str | os.PathLike[str] | None = None) -> Path:
    """Load a torchvision ImageNet state_dict (less its `fc.*`) into the trunk; returns the file used."""
    file = resolve_imagenet_weights(trunk.name, path)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated file, a pickle that is not plain tensors, ...
        raise ValueError(
            f"{file} is not a readable torchvision weights file ({type(e).__name__}: {e})"
        ) from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{file} does not hold a state_dict")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = trunk.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    bad = [k for k, v in own.items() if k in state and getattr(state[k], "shape", None) != v.shape]
    if missing or unexpected or bad:
        raise ValueError(
            f"{file} does not fit a {trunk.name} trunk: {len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}), "
            f"{len(bad)} of another shape (e.g. {bad[:3]})"
        )
    trunk.load_state_dict(state)
    log.info("loaded ImageNet weights for %s from %s", trunk.name, file)
    return file
