"""The `glanet` command: one entry point with a subcommand per tool.

    glanet run --source demo          # = python run_camera.py
    glanet archive --videos recordings/ --out results/
    glanet train --config glanet_r10_synth_demo --out runs/demo
    glanet eval | export | build | synth | convert | summary | ablation | extract | splits ...
    glanet --version

Each subcommand is the `main(argv)` of the module that `python -m ...` runs, so both ways stay the same.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from glanet import __version__

# subcommand -> (module with main(argv), one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("stream.cli.run", "recognise actions live: cameras, files or the demo source (run_camera.py)"),
    "archive": ("stream.cli.archive", "recognise actions in recorded videos (a folder or a list), resumable"),
    "train": ("glanet.train", "train a model from a config"),
    "eval": ("glanet.evaluate", "evaluate a checkpoint: accuracy, confusion matrix, attention figures"),
    "export": ("engines.export", "export a checkpoint to ONNX graphs, verified against PyTorch"),
    "build": ("engines.build", "build an engine from an export (OpenVINO int8, TensorRT)"),
    "synth": ("glanet.data.synth", "generate SynthActions videos (or a preview)"),
    "convert": ("glanet.convert", "convert the authors' published checkpoint to glanet's format"),
    "summary": ("glanet.summary", "print a model's layers and sizes from a config"),
    "ablation": ("glanet.ablation", "train and report the paper's ablation tables"),
    "extract": ("glanet.data.extract", "videos -> frame folders and a list file"),
    "splits": ("glanet.data.splits", "official HMDB51/UCF101 split files -> list files"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: glanet <command> [options]   (glanet <command> --help for its options)"]
    lines += ["       glanet --version", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        print(f"glanet {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        from glanet.cli import did_you_mean

        close = did_you_mean(name, list(COMMANDS))
        hint = f"did you mean {close}? " if close else ""
        print(f"glanet: unknown command {name!r}; {hint}one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    sys.argv[0] = f"glanet {name}"
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
