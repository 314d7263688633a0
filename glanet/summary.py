"""Build the model a config describes and print what it is: parts, parameters, shapes.

    python -m glanet.summary --config configs/glanet_r34_hmdb51.toml [--imagenet-weights PATH]

With `--imagenet-weights` (a path, or `cache` for torchvision's cache) the trunk loads them, which
checks the file before a long training run does.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

import torch
from rich.console import Console
from rich.table import Table

from glanet.cli import Parser
from glanet.config import load_config
from glanet.models import GLANet, SMNet, build_model
from glanet.models.config import ConfigError, ModelConfig
from glanet.models.excitation import SMModule


def main(argv: list[str] | None = None) -> int:
    parser = Parser(
        prog="python -m glanet.summary",
        description="Print the parts and shapes of the model a config describes.",
    )
    parser.add_argument("--config", required=True, help="a config file or the name of a shipped one")
    parser.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config key"
    )
    parser.add_argument("--imagenet-weights", metavar="PATH|cache", help="load the trunk's ImageNet weights")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.set)
        weights = None if args.imagenet_weights in (None, "cache") else args.imagenet_weights
        model = build_model(cfg.model, imagenet_weights=weights, pretrained=args.imagenet_weights is not None)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"glanet.summary: {e}", file=sys.stderr)
        return 2

    size = cfg.data.crop

    def count(module: torch.nn.Module) -> str:
        return f"{sum(p.numel() for p in module.parameters()):,}"

    if isinstance(model, SMNet):
        table = _smnet_table(args.config, model, size, count)
    else:
        table = _glanet_table(args.config, cfg.model, model, size, count)
    table.add_row("total", count(model), "")
    Console().print(table)
    return 0


def _glanet_table(name: str, mcfg: ModelConfig, model: GLANet, size: int, count: Callable) -> Table:
    with torch.no_grad():
        fmap = model.backbone(torch.zeros(1, 3, size, size))
    table = Table(title=f"{name}: GLANet, {mcfg.fusion} fusion, preset {mcfg.preset}")
    for col in ("part", "parameters", "output per frame"):
        table.add_column(col)
    table.add_row(
        f"backbone ({mcfg.backbone})", count(model.backbone), f"{tuple(fmap.shape[1:])} at {size} px"
    )
    table.add_row(
        "GP / SA / LA",
        f"0 / {count(model.sa)} / {count(model.la)}",
        f"attention maps {tuple(fmap.shape[2:])}",
    )
    for branch, head in zip(model.branch_names, model.heads.values(), strict=True):
        sru = head.sru
        table.add_row(
            f"branch {branch}: SRU {sru.num_layers}x{sru.hidden_size} + classifier",
            count(head),
            f"input {sru.input_size} -> {mcfg.num_classes} classes",
        )
    return table


def _smnet_table(name: str, model: SMNet, size: int, count: Callable) -> Table:
    cfg = model.cfg
    mode = f"causal, live window {cfg.window}" if cfg.causal else "offline (TSN consensus)"
    table = Table(title=f"{name}: SMNet ({cfg.modules}), {mode}")
    for col in ("part", "parameters", "output per frame"):
        table.add_column(col)
    modules = [m for m in model.modules() if isinstance(m, SMModule)]
    trunk = sum(p.numel() for p in model.backbone.parameters()) - sum(
        p.numel() for m in modules for p in m.parameters()
    )
    model.input_size = size  # the causal buffers' shapes follow the frames'
    model.eval()
    with torch.no_grad():
        x = model._stem(torch.zeros(1, 3, size, size))
        for _, block, _ in model._blocks():
            x, _ = block(x, 1, model.causal)
    side = x.shape[-1]
    table.add_row(
        f"trunk ({cfg.backbone})",
        f"{trunk:,}",
        f"{model.backbone.out_channels} x {side} x {side} at {size} px",
    )
    table.add_row(
        f"SE/ME modules ({len(modules)}, one per block)",
        f"{sum(p.numel() for m in modules for p in m.parameters()):,}",
        "",
    )
    table.add_row("classifier", count(model.fc), f"{cfg.num_classes} classes")
    if cfg.causal:
        state = sum(math.prod(f.shape) for f in model.spec.encode_state)
        table.add_row("causal buffers (state per camera)", "", f"{state:,} values")
    return table


if __name__ == "__main__":
    sys.exit(main())
