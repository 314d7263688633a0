"""The models' configs: `ModelConfig` (GLANet) and `SMNetConfig`, frozen dataclasses that check their values.

They live beside the models so that `glanet.models` needs nothing else from glanet; `glanet.config` reads
them from `[model]` tables of config files.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

BACKBONES = ("resnet10", "resnet18", "resnet34", "resnet50")  # resnet10: one block per stage
FUSIONS = ("early", "late")
FEATURE_FUSIONS = ("concat", "max", "multiply", "average")
SA_MAPS = ("sum_sq", "mean_sq", "mean_sq_affine")
SRU_VARIANTS = ("v2", "paper")
SRU_DROPOUT_SITES = ("gated", "gc")
SCORE_FUSIONS = ("probs", "logits")
ARCHS = ("glanet", "smnet")
SMNET_MODULES = ("se+me", "se", "me", "none")  # none: a plain TSN ResNet (the ablation's baseline)


class ConfigError(ValueError):
    """A configuration file or override that cannot be used."""


def check_finite(section: str, cfg: Any) -> None:
    """Every number of a config section is finite: a nan or inf (`--set train.lr=nan`) is refused by name."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        for v in value if isinstance(value, tuple | list) else (value,):
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{section}.{f.name} = {value!r}: must be a finite number")


def check_choice(name: str, value: str, allowed: Iterable[str]) -> None:
    """`value` is one of `allowed`, or a ConfigError that names the key and every choice."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(f"{name} = {value!r} is not one of {', '.join(allowed)}")


@dataclass(frozen=True)
class ModelConfig:
    """The network. Defaults are the paper's; the "reference" preset is the published code's choices.

    `preset` records which preset a config started from; `from_preset` (and config files) apply it,
    then explicit keys win. Constructing `ModelConfig(preset="reference")` directly applies nothing.
    """

    arch: str = "glanet"
    preset: str = "paper"
    backbone: str = "resnet34"
    num_classes: int = 51
    fusion: str = "early"  # early: GS, GL, GP branches (eq. 19); late: GP, SA, LA (eq. 20)
    feature_fusion: str = "concat"  # the composite-feature layer of eqs. 9-10 (Tables II-III ablations)
    sa_map: str = "sum_sq"  # eq. 3: sum_c F_c^2; mean_sq: /C; reference: mean_c F_c^2 then a learnable a*M+b
    sa_temperature: float = 1.0  # M / temperature before the softmax of eq. 4 (1: the paper)
    sa_detach_map: bool = False  # stop the gradient through M (the trunk learns from SA's pooling only)
    la_hidden: int = 128  # rows of W0 in eq. 6
    la_out_bias: bool = False  # reference: bias b1 on W1
    la_out_tanh: bool = False  # reference: tanh on the LA score before the softmax
    sru_hidden: int = 1024
    sru_layers: int = 3
    sru_dropout: float = 0.6
    sru_variant: str = "v2"  # v2: the `sru` package recurrence; paper: eqs. 11-15
    sru_dropout_on: str = "gated"  # gated: sru 2.6's mask on r*(g(c)-x'); gc: sru 2.1.x's on g(c) only
    sru_rescale: bool = True
    sru_use_tanh: bool = False
    head_dropout: float = 0.0  # reference: Dropout(0.5) before each per-step classifier
    score_fusion: str = "probs"  # probs: eq. 19 (mean of softmaxes); logits: reference (softmax of mean)

    def __post_init__(self) -> None:
        if self.arch != "glanet":
            raise ConfigError(f"model.arch = {self.arch!r}: a GLANet config needs arch = 'glanet'")
        check_finite("model", self)
        check_choice("model.preset", self.preset, PRESETS)
        check_choice("model.backbone", self.backbone, BACKBONES)
        check_choice("model.fusion", self.fusion, FUSIONS)
        check_choice("model.feature_fusion", self.feature_fusion, FEATURE_FUSIONS)
        check_choice("model.sa_map", self.sa_map, SA_MAPS)
        check_choice("model.sru_variant", self.sru_variant, SRU_VARIANTS)
        check_choice("model.sru_dropout_on", self.sru_dropout_on, SRU_DROPOUT_SITES)
        check_choice("model.score_fusion", self.score_fusion, SCORE_FUSIONS)
        for name in ("num_classes", "la_hidden", "sru_hidden", "sru_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} = {getattr(self, name)} must be at least 1")
        if self.sa_temperature <= 0:
            raise ConfigError(f"model.sa_temperature = {self.sa_temperature} must be positive")
        for name in ("sru_dropout", "head_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"model.{name} = {getattr(self, name)} must be in [0, 1)")

    @classmethod
    def from_preset(cls, preset: str = "paper", **overrides: Any) -> ModelConfig:
        if preset not in PRESETS:
            raise ConfigError(f"model.preset = {preset!r} is not one of {', '.join(PRESETS)}")
        return cls(**{**PRESETS[preset], "preset": preset, **overrides})

    @property
    def branch_names(self) -> tuple[str, ...]:
        return ("GS", "GL", "GP") if self.fusion == "early" else ("GP", "SA", "LA")


# The published code's choices (notes/reference.md); applied before a file's own keys.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "reference": {
        "sa_map": "mean_sq_affine",
        "la_out_bias": True,
        "la_out_tanh": True,
        "sru_dropout": 0.5,
        "sru_dropout_on": "gc",  # the authors trained with sru 2.1.x
        "head_dropout": 0.5,
        "score_fusion": "logits",
    },
}


@dataclass(frozen=True)
class SMNetConfig:
    """SMNet (Yang, Lu, Zhou, Entropy 2022): SE and ME modules in every residual block of a ResNet.

    `causal` makes every temporal operation look only at the past (ME on F[t] - F[t-1], temporal
    convolutions over t-k+1..t), so the model runs live one frame at a time; the weights are the same.
    """

    arch: str = "smnet"
    backbone: str = "resnet50"
    num_classes: int = 400
    modules: str = "se+me"  # which excitations each block gets (se+me: SMNet; none: a TSN ResNet)
    reduction: int = 16  # channel reduction inside SE's channel part and ME (TEA, ACTION-Net: 16)
    temporal_kernel: int = 3  # SE's temporal convolutions (ACTION-Net: 3)
    causal: bool = False
    window: int = 8  # live prediction: the mean of the last `window` per-frame logits
    dropout: float = 0.5  # before the classifier (the TSM/TEA recipe)

    def __post_init__(self) -> None:
        if self.arch != "smnet":
            raise ConfigError(f"model.arch = {self.arch!r}: an SMNet config needs arch = 'smnet'")
        check_finite("model", self)
        check_choice("model.backbone", self.backbone, BACKBONES)
        check_choice("model.modules", self.modules, SMNET_MODULES)
        for name in ("num_classes", "reduction", "window"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} = {getattr(self, name)} must be at least 1")
        if self.temporal_kernel < 1 or self.temporal_kernel % 2 == 0:
            raise ConfigError(f"model.temporal_kernel = {self.temporal_kernel} must be an odd number >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout = {self.dropout} must be in [0, 1)")

    @property
    def branch_names(self) -> tuple[str, ...]:
        return ("SM",)


AnyModelConfig = ModelConfig | SMNetConfig
