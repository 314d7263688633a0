"""Convert the authors' published GLANet weights (github ZhenxingZheng/attention-network) to our checkpoint.

Their file is `torch.save(DataParallel(Spatial_TemporalNet).state_dict())`: a ResNet trunk as
`module.spatial.net.{0..7}` and the three attention/SRU branches under `module.temporal.*`.
It maps onto ModelConfig(preset="reference", fusion="early", feature_fusion="concat").

    python -m glanet.convert --src THEIRS.pth --out OURS.pt --class-names classes.txt
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from glanet.checkpoint import FORMAT, CheckpointError, save_checkpoint
from glanet.cli import Parser, number
from glanet.config import DataConfig, build_section
from glanet.data.lists import read_class_names
from glanet.models.backbone import TRUNK
from glanet.models.config import ConfigError, ModelConfig
from glanet.models.glanet import GLANet

log = logging.getLogger(__name__)

SOURCE = "ZhenxingZheng/attention-network (DataParallel state_dict; PyTorch 0.4, sru 2.1)"
# Their Attention_learned.conv (Conv1d(49, 49, 1)) is built but never called in forward.
UNUSED_KEYS = ("temporal.attention_learned.conv.0.weight", "temporal.attention_learned.conv.0.bias")
# Their Recurrent_model instances -> our branch heads: GP alone, [GP, SA] and [GP, LA] (Models.py).
BRANCHES = {"reason_average": "gp", "reason_auto": "gs", "reason_learned": "gl"}

_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"temporal\.attention_auto\.conv\.(weight|bias)"), r"sa.conv.\1"),
    (re.compile(r"temporal\.attention_learned\.linear\.0\.(weight|bias)"), r"la.w0.\1"),
    (re.compile(r"temporal\.attention_learned\.linear\.2\.(weight|bias)"), r"la.w1.\1"),
)
_TRUNK_KEY = re.compile(r"spatial\.net\.(\d+)\.(.+)")
_SRU_KEY = re.compile(r"temporal\.(reason_\w+)\.rnn\.rnn_lst\.(\d+)\.(weight|weight_c|bias|scale_x)")
_FC_KEY = re.compile(r"temporal\.(reason_\w+)\.fc\.(weight|bias)")


def _strip_prefix(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Keys without DataParallel's `module.` prefix (files saved without DataParallel lack it)."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise ValueError(f"not a state_dict: entry {key!r} is a {type(value).__name__}, not a tensor")
        name = key.removeprefix("module.")
        if name in out:
            raise ValueError(f"key {name!r} appears both with and without the 'module.' prefix")
        out[name] = value
    return out


def _our_key(key: str) -> str | None:
    """The glanet state_dict key for one of theirs (prefix stripped); None if it has no counterpart."""
    m = _TRUNK_KEY.fullmatch(key)
    if m:
        index = int(m.group(1))
        return f"backbone.{TRUNK[index]}.{m.group(2)}" if index < len(TRUNK) else None
    for pattern, replacement in _RULES:
        if pattern.fullmatch(key):
            return pattern.sub(replacement, key)
    m = _SRU_KEY.fullmatch(key)
    if m and m.group(1) in BRANCHES:
        return f"heads.{BRANCHES[m.group(1)]}.sru.rnn_lst.{m.group(2)}.{m.group(3)}"
    m = _FC_KEY.fullmatch(key)
    if m and m.group(1) in BRANCHES:
        return f"heads.{BRANCHES[m.group(1)]}.fc.{m.group(2)}"
    return None


def _their_key(ours: str) -> str:
    """The authors' key (with `module.`) that maps onto our key `ours`, for error messages."""
    head, _, rest = ours.partition(".")
    if head == "backbone":
        part, _, tail = rest.partition(".")
        return f"module.spatial.net.{TRUNK.index(part)}.{tail}" if part in TRUNK else ours
    if ours.startswith("sa.conv."):
        return f"module.temporal.attention_auto.{rest}"
    if ours.startswith(("la.w0.", "la.w1.")):
        index = 0 if ours.startswith("la.w0.") else 2
        return f"module.temporal.attention_learned.linear.{index}.{ours.rsplit('.', 1)[1]}"
    theirs = {v: k for k, v in BRANCHES.items()}
    branch, _, tail = rest.partition(".")
    if head == "heads" and branch in theirs:
        tail = tail.replace("sru.", "rnn.", 1)
        return f"module.temporal.{theirs[branch]}.{tail}"
    return ours


def _need(state: Mapping[str, Tensor], key: str) -> Tensor:
    if key not in state:
        raise ValueError(f"not the authors' layout: key 'module.{key}' is missing")
    return state[key]


def infer_config(state: Mapping[str, Tensor]) -> ModelConfig:
    """Their architecture as a ModelConfig, read from the shapes of a prefix-stripped state_dict."""
    if any(k.startswith("spatial.net.4.0.conv3.") for k in state):
        backbone = "resnet50"  # bottleneck blocks
    else:
        blocks = {int(m.group(1)) for k in state if (m := re.match(r"spatial\.net\.4\.(\d+)\.", k))}
        by_blocks = {2: "resnet18", 3: "resnet34"}
        if len(blocks) not in by_blocks:
            raise ValueError(
                f"not the authors' layout: the trunk's layer1 (module.spatial.net.4.*) has {len(blocks)} "
                "blocks; expected 2 (resnet18), 3 (resnet34) or bottleneck blocks (resnet50)"
            )
        backbone = by_blocks[len(blocks)]
    num_classes, hidden = _need(state, "temporal.reason_average.fc.weight").shape
    layers = {
        int(m.group(1))
        for k in state
        if (m := re.match(r"temporal\.reason_average\.rnn\.rnn_lst\.(\d+)\.", k))
    }
    if not layers:
        raise ValueError("not the authors' layout: no 'module.temporal.reason_average.rnn.rnn_lst.*' keys")
    la_hidden = _need(state, "temporal.attention_learned.linear.0.weight").shape[0]
    table = {
        "preset": "reference",
        "backbone": backbone,
        "fusion": "early",
        "feature_fusion": "concat",
        "num_classes": int(num_classes),
        "sru_hidden": int(hidden),
        "sru_layers": max(layers) + 1,
        "la_hidden": int(la_hidden),
    }
    return build_section(ModelConfig, table, "model")


def convert_authors_state_dict(state: Mapping[str, Tensor]) -> tuple[ModelConfig, dict[str, Tensor]]:
    """The authors' state_dict (with or without `module.`) -> (our ModelConfig, our state_dict).

    Every tensor keeps its values; the unused Conv1d is dropped and a missing BatchNorm
    `num_batches_tracked` (PyTorch 0.4 files) is filled with 0. Raises ValueError naming the keys
    that are missing, unexpected or of another shape if the file is not in that layout.
    """
    src = _strip_prefix(state)
    if not any(k.startswith("spatial.net.") for k in src):
        sample = ", ".join(list(src)[:3])
        if any(k.startswith(("backbone.", "heads.")) for k in src):
            raise ValueError(
                f"not the authors' layout: keys like {sample} are already glanet's own; such a state_dict "
                "needs no conversion, save it with glanet.checkpoint.save_checkpoint"
            )
        raise ValueError(
            f"not the authors' layout: no module.spatial.net.* keys (found {sample or 'nothing'})"
        )
    cfg = infer_config(src)
    with torch.device("meta"):  # shapes only: no time spent initialising weights
        expected = GLANet(cfg).state_dict()

    out: dict[str, Tensor] = {}
    unexpected: list[str] = []
    for key, value in src.items():
        if key in UNUSED_KEYS:
            continue
        ours = _our_key(key)
        if ours is None or ours not in expected:
            unexpected.append(f"module.{key}")
            continue
        want = expected[ours].shape
        if value.shape != want and key.endswith("scale_x") and value.numel() == want.numel():
            value = value.reshape(want)  # a 0-d scale_x from an older sru release
        out[ours] = value
    missing = []
    for key, meta in expected.items():
        if key in out:
            continue
        if key.endswith("num_batches_tracked"):
            out[key] = torch.zeros((), dtype=meta.dtype)  # PyTorch 0.4 did not track it
        else:
            missing.append(key)
    shapes = [
        f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}"
        for k, v in out.items()
        if v.shape != expected[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({', '.join(_their_key(k) for k in missing[:4])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({', '.join(unexpected[:4])})")
        if shapes:
            parts.append(f"{len(shapes)} of another shape ({'; '.join(shapes[:4])})")
        raise ValueError(f"not the authors' layout for a {cfg.backbone} GLANet: {'; '.join(parts)}")
    dropped = [k for k in UNUSED_KEYS if k in src]
    if dropped:
        log.info("dropped %s: unused by the authors' forward", ", ".join(f"module.{k}" for k in dropped))
    return cfg, {k: out[k] for k in expected}  # our key order


def load_authors_file(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read their file with weights_only=True; refuses anything that would need to run code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: source file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # old pickle protocols make torch warn
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only load failed" in str(e).lower():
            raise ValueError(
                f"{path}: holds pickled objects other than tensors (code or classes) and glanet loads "
                "only with weights_only=True; if you trust the file, load it once with weights_only=False, "
                "torch.save its state_dict (tensors only) and convert that"
            ) from None
        raise ValueError(f"{path}: could not be read as a torch file ({e})") from None
    except Exception as e:  # truncated, empty, not a torch file
        detail = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise ValueError(f"{path}: could not be read as a torch file ({detail})") from None
    if isinstance(raw, Mapping) and raw.get("format") == FORMAT:
        raise ValueError(f"{path}: is already a glanet checkpoint; nothing to convert")
    if isinstance(raw, Mapping) and isinstance(raw.get("state_dict"), Mapping):
        raw = raw["state_dict"]  # a training wrapper around the state_dict
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path}: holds a {type(raw).__name__}, not a state_dict")
    return dict(raw)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def convert_file(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    class_names: Sequence[str] | None = None,
    fps: float = 25.0,
    window: int = 12,
    stride: int = 12,
    segments: int = 12,
) -> Path:
    """Convert their file `src` into our checkpoint `out`; returns `out`."""
    src, out = Path(src), Path(out)
    if out.resolve() == src.resolve():
        raise ValueError(f"{out}: --out must differ from --src (the source would be overwritten)")
    state = load_authors_file(src)
    cfg, ours = convert_authors_state_dict(state)
    names = (
        list(class_names) if class_names is not None else [f"class_{i:03d}" for i in range(cfg.num_classes)]
    )
    if len(names) != cfg.num_classes:
        raise ValueError(f"{len(names)} class names given, but {src.name} has {cfg.num_classes} classes")
    model = GLANet(cfg)
    model.load_state_dict(ours, strict=True)
    # Their transforms: Resize(256) on the short side, CenterCrop(224) at test time, ImageNet statistics;
    # TSN sampling of `segments` segments, one frame each.
    data = DataConfig(
        sampling="tsn",
        fps=float(fps),
        window=window,
        stride=stride,
        segments=segments,
        frames_per_segment=1,
        resize=(256,),
        crop=224,
        train_crop="random",
    )
    stripped = _strip_prefix(state)
    mapped = {_our_key(k) for k in stripped}
    provenance = {
        "converted_from": src.name,  # the name only: a full path would leak the converting machine's layout
        "source_sha256": _file_sha256(src),
        "source": SOURCE,
        "converter": "glanet.convert",
        "dropped_keys": [f"module.{k}" for k in UNUSED_KEYS if k in stripped],
        "filled_keys": [k for k in ours if k not in mapped],  # num_batches_tracked absent from 0.4 files
        "class_names_given": class_names is not None,
    }
    return save_checkpoint(out, model, class_names=names, data=data, provenance=provenance)


def main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(
        prog="python -m glanet.convert",
        description="Convert the authors' published GLANet weights into a glanet checkpoint.",
    )
    parser.add_argument("--src", required=True, type=Path, help="their .pth/.pkl (a DataParallel state_dict)")
    parser.add_argument("--out", required=True, type=Path, help="the glanet checkpoint to write")
    parser.add_argument("--class-names", type=Path, help="text file, one class name a line, in label order")
    parser.add_argument(
        "--fps", type=number(float, 0, above=True), default=25.0, help="frame rate the model runs at"
    )
    parser.add_argument("--window", type=number(int, 1), default=12, help="frames per clip")
    parser.add_argument("--stride", type=number(int, 1), default=12, help="frames between clip starts")
    parser.add_argument("--segments", type=number(int, 1), default=12, help="TSN segments")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what is converted")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        names = read_class_names(args.class_names) if args.class_names is not None else None
        out = convert_file(
            args.src,
            args.out,
            class_names=names,
            fps=args.fps,
            window=args.window,
            stride=args.stride,
            segments=args.segments,
        )
    except (CheckpointError, ConfigError, ValueError, FileNotFoundError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
