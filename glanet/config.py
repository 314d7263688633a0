"""Configuration: frozen dataclasses per subsystem, loaded from `configs/*.toml`.

`[data]` and `[train]` are defined here, `[model]` beside the models (`glanet.models.config`). Unknown keys
are an error that names the key; values are type-checked against the fields.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glanet.cli import did_you_mean
from glanet.models.config import (
    ARCHS,
    AnyModelConfig,
    ConfigError,  # also this module's: load_config and the sections raise it
    ModelConfig,
    SMNetConfig,
    check_choice,
    check_finite,
)
from glanet.package_data import CONFIGS, shipped_config


@dataclass(frozen=True)
class DataConfig:
    """Where the videos are, how clips are sampled and how frames are preprocessed."""

    dataset: str = "hmdb51"
    root: str = ""
    train_list: str = ""
    val_list: str = ""
    class_names: tuple[str, ...] = ()
    sampling: str = "clips"  # clips: W consecutive frames every S (the paper); tsn: segments
    fps: float = 30.0  # the frame rate the frames were extracted at, and the model's rate when streaming
    window: int = 30  # W frames per clip
    stride: int = 15  # S frames between clip starts
    max_clips: int = 20  # clips per video in training (the paper: at most 20)
    segments: int = 3  # tsn
    frames_per_segment: int = 4  # tsn
    test_clips: int = 1  # tsn: evenly spaced clips per video at test time
    resize: tuple[int, ...] = (256, 256)  # (h, w); a single value resizes the short side
    crop: int = 224
    train_crop: str = "random_resized"  # random_resized (the paper) | random (reference)
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 4.0 / 3.0)
    flip: float = 0.5
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        check_finite("data", self)
        check_choice("data.sampling", self.sampling, ("clips", "tsn"))
        check_choice("data.train_crop", self.train_crop, ("random_resized", "random"))
        for name in ("window", "stride", "max_clips", "segments", "frames_per_segment", "test_clips", "crop"):
            if getattr(self, name) < 1:
                raise ConfigError(f"data.{name} = {getattr(self, name)} must be at least 1")
        if self.window % self.stride:
            raise ConfigError(
                f"data.window ({self.window}) must be a multiple of data.stride ({self.stride})"
            )
        if self.fps <= 0:
            raise ConfigError(f"data.fps = {self.fps} must be positive")
        if not 0.0 <= self.flip <= 1.0:
            raise ConfigError(f"data.flip = {self.flip} must be a probability in [0, 1]")
        low, high = self.crop_scale
        if not 0.0 < low <= high <= 1.0:
            raise ConfigError(f"data.crop_scale = {list(self.crop_scale)} needs 0 < min <= max <= 1")
        low, high = self.crop_ratio
        if not 0.0 < low <= high:
            raise ConfigError(f"data.crop_ratio = {list(self.crop_ratio)} needs 0 < min <= max")
        if min(self.std) <= 0:
            raise ConfigError(f"data.std = {list(self.std)} must be positive")
        if len(self.resize) not in (1, 2) or min(self.resize) < self.crop:
            raise ConfigError(
                f"data.resize = {list(self.resize)} must be 1 or 2 sizes, each >= crop ({self.crop})"
            )


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation. Defaults: the paper's HMDB51/UCF101 recipe."""

    optimizer: str = "adam"  # adam | sgd
    lr: float = 1e-5
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "step"  # step | cosine | constant
    milestones: tuple[int, ...] = (8,)
    gamma: float = 0.1
    epochs: int = 16
    batch_size: int = 28
    grad_clip: float = 0.0  # max global grad norm; 0 = off
    ga: bool = True  # eq. 17 regularisation
    ga_margin: float = 0.1
    ga_detach_global: bool = False  # True: GA lifts the attention branches without pushing GP down
    stage: str = "joint"  # joint | spatial (backbone + attention) | temporal (frozen spatial part)
    # (start epoch, end epoch, final temperature): SA's softmax temperature goes geometrically from
    # model.sa_temperature at `start` to `final` at `end` (0-based epochs); () = constant
    sa_anneal: tuple[float, ...] = ()
    amp: str = "bf16"  # bf16 autocast (CUDA, or a CPU with bf16 support) | none
    seed: int = 0
    workers: int = 4

    def __post_init__(self) -> None:
        check_finite("train", self)
        check_choice("train.optimizer", self.optimizer, ("adam", "sgd"))
        check_choice("train.schedule", self.schedule, ("step", "cosine", "constant"))
        check_choice("train.stage", self.stage, ("joint", "spatial", "temporal"))
        check_choice("train.amp", self.amp, ("bf16", "none"))
        if self.lr <= 0 or self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(
                f"train.lr = {self.lr}, train.epochs = {self.epochs}, "
                f"train.batch_size = {self.batch_size}: each must be positive"
            )
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"train.momentum = {self.momentum} must be in [0, 1)")
        if self.gamma <= 0:
            raise ConfigError(f"train.gamma = {self.gamma} must be positive")
        for name in ("weight_decay", "grad_clip", "ga_margin", "seed", "workers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} = {getattr(self, name)} must be >= 0")
        if any(m < 0 for m in self.milestones):
            raise ConfigError(f"train.milestones = {list(self.milestones)} must be epochs >= 0")
        if self.sa_anneal:
            if len(self.sa_anneal) != 3:
                raise ConfigError(
                    f"train.sa_anneal = {self.sa_anneal} must be [start_epoch, end_epoch, final_temperature]"
                )
            start, end, final = self.sa_anneal
            if not 0 <= start < end or final <= 0:
                raise ConfigError(f"train.sa_anneal = {self.sa_anneal} needs 0 <= start < end and final > 0")


@dataclass(frozen=True)
class Config:
    model: AnyModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.data.class_names and len(self.data.class_names) != self.model.num_classes:
            raise ConfigError(
                f"data.class_names has {len(self.data.class_names)} names "
                f"but model.num_classes = {self.model.num_classes}"
            )


_SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


def _coerce(where: str, value: Any, hint: Any) -> Any:
    """Check a TOML value against a field's type; lists become tuples, ints may stand for floats."""
    origin = typing.get_origin(hint)
    if origin in (tuple,):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} = {value!r} must be a list")
        args = typing.get_args(hint)
        item = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        if item is None and len(args) != len(value):
            raise ConfigError(f"{where} = {value!r} must have {len(args)} items")
        return tuple(_coerce(where, v, item or args[i]) for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported field type {hint} for {where}")  # a bug, not a user error
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} = {value!r} must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} = {value!r} must be an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} = {value!r} must be a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} = {value!r} must be a string")
        return value
    raise TypeError(f"unsupported field type {hint} for {where}")


def build_model_config(table: Mapping[str, Any], section: str = "model") -> AnyModelConfig:
    """The [model] table as the config of its `arch` (glanet unless given)."""
    arch = table.get("arch", "glanet")
    check_choice(f"{section}.arch", arch, ARCHS)
    return build_section(SMNetConfig if arch == "smnet" else ModelConfig, table, section)


def build_section(cls: type, table: Mapping[str, Any], section: str) -> Any:
    """Make dataclass `cls` from a TOML table, refusing keys it does not have."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in names:
            raise ConfigError(f"unknown key '{section}.{key}' (known: {', '.join(sorted(names))})")
        values[key] = _coerce(f"{section}.{key}", value, hints[key])
    if cls is ModelConfig:
        return ModelConfig.from_preset(values.pop("preset", "paper"), **values)
    return cls(**values)


def config_from_dict(raw: Mapping[str, Any]) -> Config:
    for section, table in raw.items():
        if section not in _SECTIONS:
            raise ConfigError(f"unknown section [{section}] (known: {', '.join(_SECTIONS)})")
        if not isinstance(table, Mapping):
            raise ConfigError(f"[{section}] must be a table")
    parts = {
        name: build_model_config(raw.get(name, {}))
        if name == "model"
        else build_section(cls, raw.get(name, {}), name)
        for name, cls in _SECTIONS.items()
    }
    return Config(**parts)


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word is a string: --set data.root=/data/hmdb


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply `section.key=value` strings (TOML values; bare words are strings) to a raw config dict."""
    raw = {k: dict(v) if isinstance(v, Mapping) else v for k, v in raw.items()}
    for item in overrides:
        key, sep, text = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        raw.setdefault(section, {})[name] = _parse_value(text.strip())
    return raw


def _shipped_hint(path: Path) -> str:
    """'; did you mean glanet_r34_hmdb51? shipped configs: ...' for a name that is no file: a user who
    typed a bare name meant a shipped config (a path with folders in it gets no list)."""
    if len(path.parts) > 1 and path.parent.name != "configs":
        return ""
    names = sorted(p.stem for p in CONFIGS.glob("*.toml"))
    close = did_you_mean(path.stem, names)
    return f"; {f'did you mean {close}? ' if close else ''}shipped configs: {', '.join(names)}"


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> Config:
    """A config file, or the name of a shipped one (`glanet_r10_synth_demo`) when no such file exists."""
    path = Path(path)
    if not path.is_file():
        path = shipped_config(path) or path
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}{_shipped_hint(path)}") from None
    except IsADirectoryError:
        raise ConfigError(
            f"{path} is a folder; give a config file (a run folder's is {path}/config.toml)"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a config file (not UTF-8 text)") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    try:
        return config_from_dict(apply_overrides(raw, overrides))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain dict (lists for tuples) of a config dataclass, for checkpoints and logs."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return config_to_dict(v)
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        return v

    return {f.name: plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string is a JSON string for what configs hold
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if v is None:
        raise ValueError("TOML has no null: a config value of None cannot be written")
    raise ValueError(f"cannot write {type(v).__name__} as TOML")


def config_to_toml(cfg: Config) -> str:
    """The resolved config as TOML that `load_config` reads back to the same config (a run's record)."""
    lines = []
    for section, values in config_to_dict(cfg).items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml_value(v)}" for key, v in values.items() if v is not None]
        lines.append("")
    return "\n".join(lines)
