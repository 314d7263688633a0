"""The paper's ablation tables (I-V): train and evaluate one model per row, write ablation.md/.json.

    python -m glanet.ablation --config configs/glanet_r34_hmdb51.toml --table all --out runs/ablation \
        [--set train.epochs=8 ...] [--epochs N] [--device auto] [--examples 4]

The rows are our reading of the paper's Tables I-V (Zheng et al., TNNLS 2020), not the authors' scripts:

- Table I, single representations GP / SA / LA: one late-fusion model (`model.fusion=late`, Fig. 6)
  whose three branches each see one representation; each branch's own video top-1 is its row, and
  the late-fused prediction (eq. 20) a last row. (The paper may have trained each one alone.)
- Tables II and III, the composite-feature layer for [GP, SA] and [GP, LA]: early-fusion models
  with `model.feature_fusion` = max, multiply, average, concat; Table II reads the GS branch,
  Table III the GL branch, of the same four models.
- Table IV, GA regularisation (eq. 17) off vs on: the early-fusion model with `train.ga` false / true.
- Table V, early (eq. 19) vs late (eq. 20) fusion: the fused prediction of the full model and of
  the late-fusion model of Table I.

Rows that describe the same model share one run: the full model (early fusion, concat, GA on) is
Table II's `concat` row, Table IV's `on` and Table V's `early`; the late model is Table I's and
Table V's `late`. Each run lives in `<out>/<table>_<row>/` named after its first row (e.g.
`II_concat/`, `IV_off/`, `I_late/`), with the training checkpoints and the evaluation report of its
last epoch (`report.json`, `confusion.png`, `attention.png`). A run whose `report.json` exists is
not run again, so an interrupted ablation resumes; a run cut off mid-training resumes from its
`last.pt`. Evaluation is on `data.val_list`, once, after the last epoch (no best-epoch selection on it).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markdown import Markdown

from glanet import train
from glanet.checkpoint import load_checkpoint
from glanet.cli import Parser, error_line, number
from glanet.config import load_config
from glanet.data.lists import write_text_atomic
from glanet.evaluate import build_eval_dataset, evaluate_checkpoint, write_report
from glanet.models.config import ConfigError

log = logging.getLogger("glanet.ablation")

TABLES = ("I", "II", "III", "IV", "V")  # GLANet's paper tables
SMNET_TABLES = ("SM",)  # SMNet: which excitations each block gets
BRANCHES = ("GS", "GL", "GP", "SA", "LA", "SM")
SMNET_MODULES = ("none", "se", "me", "se+me")
FEATURE_FUSIONS = ("max", "multiply", "average", "concat")

_EARLY = ("model.fusion=early",)
_FULL = (*_EARLY, "model.feature_fusion=concat", "train.ga=true")
_LATE = ("model.fusion=late", "model.feature_fusion=concat", "train.ga=false")  # GA does not apply to late


@dataclass(frozen=True)
class Run:
    """One model to train: its folder name and the overrides that make it (applied after the user's --set)."""

    name: str
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class Row:
    """One row of a paper table: the run it reads and which accuracy (a branch, or "fused") it compares."""

    table: str
    label: str
    run: str
    key: str


RUNS: dict[str, Run] = {
    run.name: run
    for run in (
        Run("I_late", _LATE),
        *(
            Run(f"II_{f}", (*_EARLY, f"model.feature_fusion={f}", "train.ga=true"))
            for f in FEATURE_FUSIONS
            if f != "concat"  # concat is the full model
        ),
        Run("II_concat", _FULL),
        Run("IV_off", (*_EARLY, "model.feature_fusion=concat", "train.ga=false")),
        *(Run(f"SM_{m.replace('+', '_')}", (f'model.modules="{m}"',)) for m in SMNET_MODULES),
    )
}

TITLES = {
    "I": "Table I: single representations (one late-fusion model, each branch's own prediction)",
    "II": "Table II: fusion layer of the composite feature [GP, SA] (GS branch of early-fusion models)",
    "III": "Table III: fusion layer of the composite feature [GP, LA] (GL branch of early-fusion models)",
    "IV": "Table IV: GA regularisation (eq. 17), fused prediction of the early-fusion model",
    "V": "Table V: early (eq. 19) vs late (eq. 20) fusion, fused prediction",
    "SM": "SMNet: the excitation modules in each block (none = a TSN ResNet), its prediction",
}


def table_rows(table: str) -> list[Row]:
    """The rows of one paper table, as we read it."""
    if table == "I":
        rows = [Row("I", s, "I_late", s) for s in ("GP", "SA", "LA")]
        return [*rows, Row("I", "GP+SA+LA (late fusion)", "I_late", "fused")]
    if table in ("II", "III"):
        branch = "GS" if table == "II" else "GL"
        return [Row(table, f, f"II_{f}", branch) for f in FEATURE_FUSIONS]
    if table == "IV":
        return [Row("IV", "GA off", "IV_off", "fused"), Row("IV", "GA on", "II_concat", "fused")]
    if table == "V":
        return [Row("V", "early fusion", "II_concat", "fused"), Row("V", "late fusion", "I_late", "fused")]
    if table == "SM":
        return [Row("SM", m, f"SM_{m.replace('+', '_')}", "fused") for m in SMNET_MODULES]
    raise ValueError(f"table {table!r} is not one of {', '.join(TABLES)} or all")


def plan(tables: Iterable[str], arch: str = "glanet") -> tuple[list[Run], list[Row]]:
    """(runs to train, in first-use order without repeats; rows of the tables asked for). Runs nothing.
    "all" is every table of `arch`'s; a table of the other model's is refused."""
    own = SMNET_TABLES if arch == "smnet" else TABLES
    chosen: list[str] = []
    for t in tables:
        if t != "all" and t not in own:
            raise ConfigError(f"--table {t} is not a table of {arch}'s (its tables: {', '.join(own)} or all)")
        for name in own if t == "all" else (t,):
            if name not in chosen:
                chosen.append(name)
    rows = [row for t in sorted(chosen, key=own.index) for row in table_rows(t)]
    runs = [RUNS[name] for name in dict.fromkeys(row.run for row in rows)]
    return runs, rows


# -- running --------------------------------------------------------------------------------------


def _settings(sets: Sequence[str], run: Run, epochs: int | None) -> list[str]:
    return [*sets, *run.overrides, *([f"train.epochs={epochs}"] if epochs is not None else [])]


def execute_run(
    run: Run,
    config: str,
    out: Path,
    sets: Sequence[str],
    *,
    epochs: int | None,
    device: str,
    examples: int,
) -> dict[str, Any]:
    """Train (or resume) one run and evaluate its last epoch; a finished run is read back, not redone."""
    folder = out / run.name
    settings = _settings(sets, run, epochs)
    report = folder / "report.json"
    if report.is_file():
        result = json.loads(report.read_text())
        recorded = result.get("ablation", {}).get("settings")
        if recorded != settings:
            raise ConfigError(
                f"{folder} was run with settings {recorded}, not {settings}; "
                "use another --out, or delete the folder to run it again"
            )
        log.info("%s: finished before, skipped", run.name)
        return result
    argv = ["--config", config, "--out", str(folder), "--no-eval", "--device", device]
    for item in settings:
        argv += ["--set", item]
    if (folder / "last.pt").is_file():
        argv += ["--resume", str(folder / "last.pt")]
        log.info("%s: resuming from %s", run.name, folder / "last.pt")
    train.run(train.parse_args(argv))
    cfg = load_config(config, settings)
    ck = load_checkpoint(folder / "last.pt")
    result = evaluate_checkpoint(
        ck,
        cfg.data.root,
        cfg.data.val_list,
        batch_size=cfg.train.batch_size,
        workers=cfg.train.workers,
        device=device,
    )
    result["ablation"] = {"run": run.name, "settings": settings, "epochs": cfg.train.epochs}
    write_report(
        result, folder, ck, build_eval_dataset(ck, cfg.data.root, cfg.data.val_list), examples=examples
    )
    return result


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def _top1(result: dict[str, Any], key: str) -> float | None:
    if key == "fused":
        return result["fused"]["top1"]
    branch = result["per_branch"].get(key)
    return None if branch is None else branch["top1"]


def markdown(rows: Sequence[Row], results: dict[str, dict[str, Any]], header: str) -> str:
    """ablation.md: one table per paper table, the compared accuracy first, then fused and every branch."""
    lines = [header]
    for table in dict.fromkeys(row.table for row in rows):
        mine = [row for row in rows if row.table == table]
        branches = [s for s in BRANCHES if any(s in results[row.run]["branches"] for row in mine)]
        lines += ["", f"## {TITLES[table]}", ""]
        lines.append("| row | compared | top-1 | fused | " + " | ".join(branches) + " | run |")
        lines.append("|---|---|---:|---:|" + "---:|" * len(branches) + "---|")
        for row in mine:
            r = results[row.run]
            cells = [_pct(_top1(r, s)) for s in branches]
            lines.append(
                f"| {row.label} | {row.key} | **{_pct(_top1(r, row.key))}** | {_pct(r['fused']['top1'])} | "
                + " | ".join(cells)
                + f" | `{row.run}/` |"
            )
    return "\n".join(lines) + "\n"


def run_ablation(
    config: str,
    tables: Sequence[str],
    out: str | Path,
    sets: Sequence[str] = (),
    *,
    epochs: int | None = None,
    device: str = "auto",
    examples: int = 4,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run every run the tables need (skipping finished ones), write ablation.md and ablation.json."""
    out = Path(out)
    if epochs is not None and epochs < 1:
        raise ConfigError(f"--epochs {epochs} must be at least 1")
    cfg = load_config(config, sets)  # fail on a bad config before any training
    runs, rows = plan(tables, cfg.model.arch)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    for i, run in enumerate(runs, start=1):
        log.info("run %d/%d: %s (%s)", i, len(runs), run.name, " ".join(run.overrides))
        results[run.name] = execute_run(
            run, config, out, sets, epochs=epochs, device=device, examples=examples
        )
    header = (
        (
            "# SMNet ablations\n\nThe excitation modules, one set per run (see `glanet/ablation.py`). "
            if cfg.model.arch == "smnet"
            else "# GLANet ablations\n\nOur reading of the paper's Tables I-V (see `glanet/ablation.py`). "
        )
        + f"Config `{config}`"
        + (f", `--set {' '.join(sets)}`" if sets else "")
        + (f", train.epochs = {epochs}" if epochs else "")
        + f". Video-level top-1 (%) on `{cfg.data.val_list}` after the last epoch; "
        "**top-1** is the accuracy the row compares."
    )
    text = markdown(rows, results, header)
    write_text_atomic(out / "ablation.md", text)
    summary = {
        "config": config,
        "set": list(sets),
        "epochs": epochs,
        "val_list": cfg.data.val_list,
        "tables": {
            table: [
                {
                    "row": row.label,
                    "run": row.run,
                    "key": row.key,
                    "top1": _top1(results[row.run], row.key),
                    "fused_top1": results[row.run]["fused"]["top1"],
                    "per_branch_top1": {s: v["top1"] for s, v in results[row.run]["per_branch"].items()},
                }
                for row in rows
                if row.table == table
            ]
            for table in dict.fromkeys(row.table for row in rows)
        },
        "runs": {
            run.name: {
                "dir": str(out / run.name),
                "overrides": list(run.overrides),
                "fused": results[run.name]["fused"],
                "per_branch": results[run.name]["per_branch"],
            }
            for run in runs
        },
    }
    write_text_atomic(out / "ablation.json", json.dumps(summary, indent=1) + "\n")
    (console or Console()).print(Markdown(text))
    return summary


# -- command line ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = Parser(prog="python -m glanet.ablation", description="Run the paper's ablation tables.")
    p.add_argument("--config", required=True, help="a configs/*.toml file: the base of every row")
    p.add_argument(
        "--table",
        action="append",
        required=True,
        choices=(*TABLES, *SMNET_TABLES, "all"),
        help="a table; repeatable",
    )
    p.add_argument("--out", required=True, help="folder: one sub-folder per run, ablation.md, ablation.json")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="a config override for every run",
    )
    p.add_argument("--epochs", type=number(int, 1), help="train.epochs for every run")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to train")
    p.add_argument("--examples", type=number(int, 0), default=4, help="rows of each run's attention.png")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    try:
        run_ablation(
            args.config,
            args.table,
            args.out,
            args.set,
            epochs=args.epochs,
            device=args.device,
            examples=args.examples,
        )
    except (ValueError, OSError) as e:  # ConfigError, CheckpointError, ListError, FrameError, missing files
        print(f"glanet.ablation: {error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("glanet.ablation: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
