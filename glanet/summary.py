"""Build the model a config describes and print what it is: parts, parameters, shapes.

    python -m glanet.summary --config configs/glanet_r34_hmdb51.toml [--imagenet-weights PATH]

With `--imagenet-weights` (a path, or `cache` for torchvision's cache) the trunk loads them, which
checks the file before a long training run does.
"""

from __future__ import annotations

import sys

import torch
from rich.console import Console
from rich.table import Table

from glanet.cli import Parser
from glanet.config import ConfigError, load_config
from glanet.models import build_model


def main(argv: list[str] | None = None) -> int:
    parser = Parser(
        prog="python -m glanet.summary",
        description="Print the parts and shapes of the GLANet a config describes.",
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
    with torch.no_grad():
        fmap = model.backbone(torch.zeros(1, 3, size, size))
    table = Table(title=f"{args.config}: GLANet, {cfg.model.fusion} fusion, preset {cfg.model.preset}")
    for col in ("part", "parameters", "output per frame"):
        table.add_column(col)

    def count(module: torch.nn.Module) -> str:
        return f"{sum(p.numel() for p in module.parameters()):,}"

    table.add_row(
        f"backbone ({cfg.model.backbone})", count(model.backbone), f"{tuple(fmap.shape[1:])} at {size} px"
    )
    table.add_row(
        "GP / SA / LA",
        f"0 / {count(model.sa)} / {count(model.la)}",
        f"attention maps {tuple(fmap.shape[2:])}",
    )
    for name, head in zip(model.branch_names, model.heads.values(), strict=True):
        sru = head.sru
        table.add_row(
            f"branch {name}: SRU {sru.num_layers}x{sru.hidden_size} + classifier",
            count(head),
            f"input {sru.input_size} -> {cfg.model.num_classes} classes",
        )
    table.add_row("total", count(model), "")
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
