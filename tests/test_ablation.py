"""glanet.ablation: which runs and rows each table plans, and Table IV end to end with a resumable rerun."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny import CONFIG, tiny_overrides

from glanet.ablation import RUNS, main, plan, table_rows
from glanet.config import load_config
from glanet.data.synth import write_dataset
from glanet.data.synth_render import CLASSES
from glanet.models.config import ConfigError


def test_every_table_plans_its_rows() -> None:
    runs, rows = plan(["all"])
    assert [r.name for r in runs] == ["I_late", "II_max", "II_multiply", "II_average", "II_concat", "IV_off"]
    assert [(r.label, r.key) for r in table_rows("I")] == [
        ("GP", "GP"),
        ("SA", "SA"),
        ("LA", "LA"),
        ("GP+SA+LA (late fusion)", "fused"),
    ]
    assert {r.run for r in table_rows("I")} == {"I_late"}
    assert [(r.run, r.key) for r in table_rows("II")] == [
        (f"II_{f}", "GS") for f in ("max", "multiply", "average", "concat")
    ]
    assert [(r.run, r.key) for r in table_rows("III")] == [
        (f"II_{f}", "GL") for f in ("max", "multiply", "average", "concat")
    ]
    assert [(r.label, r.run) for r in table_rows("IV")] == [("GA off", "IV_off"), ("GA on", "II_concat")]
    assert [(r.label, r.run) for r in table_rows("V")] == [
        ("early fusion", "II_concat"),
        ("late fusion", "I_late"),
    ]
    assert len(rows) == 4 + 4 + 4 + 2 + 2
    # one table asks only for its own runs, in first-use order, and repeats nothing
    assert [r.name for r in plan(["IV"])[0]] == ["IV_off", "II_concat"]
    assert [r.name for r in plan(["V", "I", "V"])[0]] == ["I_late", "II_concat"]


def test_overrides_make_the_models_the_tables_compare() -> None:
    def cfg(run: str):
        return load_config(CONFIG, RUNS[run].overrides)

    assert cfg("I_late").model.fusion == "late"
    assert cfg("I_late").model.branch_names == ("GP", "SA", "LA")
    for f in ("max", "multiply", "average", "concat"):
        c = cfg(f"II_{f}")
        assert (c.model.fusion, c.model.feature_fusion, c.train.ga) == ("early", f, True)
    off, on = cfg("IV_off"), cfg("II_concat")
    assert (off.train.ga, on.train.ga) == (False, True)
    assert off.model == on.model  # GA is the only difference
    # the rows' own settings win over the user's --set
    user = ["train.ga=false", "model.feature_fusion=max"]
    assert load_config(CONFIG, [*user, *RUNS["II_concat"].overrides]).train.ga is True


def test_smnet_has_its_own_table_and_refuses_glanet_s() -> None:
    runs, rows = plan(["all"], "smnet")
    assert [r.name for r in runs] == ["SM_none", "SM_se", "SM_me", "SM_se_me"]
    assert [(r.label, r.key) for r in rows] == [(m, "fused") for m in ("none", "se", "me", "se+me")]
    smnet = "smnet_r18_synth_cpu"
    assert [load_config(smnet, RUNS[r.name].overrides).model.modules for r in runs] == [
        "none",
        "se",
        "me",
        "se+me",
    ]
    with pytest.raises(ConfigError, match="--table IV is not a table of smnet's"):
        plan(["IV"], "smnet")
    with pytest.raises(ConfigError, match="--table SM is not a table of glanet's"):
        plan(["SM"], "glanet")


def test_unknown_table_is_refused(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--config", CONFIG, "--table", "VI", "--out", "x"])
    assert e.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    for split, seed in (("train", 1), ("val", 2)):
        write_dataset(
            root, videos_per_class=1, seed=seed, split=split, num_frames=8, size=48, classes=CLASSES[:3]
        )
    return root


def tiny(root: Path) -> list[str]:
    return tiny_overrides(root, **{"model.sru_hidden": 16, "train.batch_size": 4, "train.epochs": 1})


def test_table_iv_end_to_end_and_resume(synth: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "ablation"
    argv = ["--config", CONFIG, "--table", "IV", "--out", str(out), "--epochs", "1", "--examples", "1"]
    argv += ["--device", "cpu", *tiny(synth)]
    assert main(argv) == 0
    md = (out / "ablation.md").read_text()
    assert "Table IV" in md and "| GA off |" in md and "| GA on |" in md
    data = json.loads((out / "ablation.json").read_text())
    rows = data["tables"]["IV"]
    assert [r["row"] for r in rows] == ["GA off", "GA on"]
    for r in rows:
        assert 0.0 <= r["top1"] <= 1.0 and set(r["per_branch_top1"]) == {"GS", "GL", "GP"}
    for run in ("IV_off", "II_concat"):
        report = json.loads((out / run / "report.json").read_text())
        assert report["ablation"]["epochs"] == 1 and report["videos"] == 3
        assert (out / run / "last.pt").is_file() and (out / run / "confusion.png").is_file()

    reports = {run: (out / run / "report.json").stat().st_mtime_ns for run in ("IV_off", "II_concat")}
    weights = {run: (out / run / "last.pt").stat().st_mtime_ns for run in ("IV_off", "II_concat")}
    capsys.readouterr()
    assert main(argv) == 0  # a rerun: both rows are finished, nothing trains
    assert {run: (out / run / "report.json").stat().st_mtime_ns for run in reports} == reports
    assert {run: (out / run / "last.pt").stat().st_mtime_ns for run in weights} == weights
    assert json.loads((out / "ablation.json").read_text())["tables"] == data["tables"]

    # other settings for the same folder are refused rather than mixed in
    code = main([*argv, "--set", "train.lr=0.5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "was run with settings" in err[0]


def test_the_smnet_table_end_to_end(synth: Path, tmp_path: Path) -> None:
    out = tmp_path / "sm"
    values = {
        "model.num_classes": len(CLASSES),
        "model.backbone": '"resnet10"',
        "data.root": f'"{synth}"',
        "data.train_list": f'"{synth / "train.txt"}"',
        "data.val_list": f'"{synth / "val.txt"}"',
        "data.resize": "[48, 48]",
        "data.crop": 40,
        "data.segments": 2,
        "train.batch_size": 3,
        "train.workers": 0,
    }
    argv = ["--config", "smnet_r18_synth_cpu", "--table", "SM", "--out", str(out), "--epochs", "1"]
    argv += [
        "--examples",
        "1",
        "--device",
        "cpu",
        *(a for k, v in values.items() for a in ("--set", f"{k}={v}")),
    ]
    assert main(argv) == 0
    md = (out / "ablation.md").read_text()
    assert md.startswith("# SMNet ablations") and "| se+me |" in md and "| none |" in md
    rows = json.loads((out / "ablation.json").read_text())["tables"]["SM"]
    assert [r["row"] for r in rows] == ["none", "se", "me", "se+me"]
    assert all(0.0 <= r["top1"] <= 1.0 for r in rows)
