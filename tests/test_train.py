"""Training: a tiny run whose loss falls, exact resume, a 2-process DDP run on CPU, bad input."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from tiny import CONFIG, tiny_overrides

from glanet.checkpoint import load_checkpoint, read_checkpoint
from glanet.config import TrainConfig
from glanet.data.synth import write_dataset
from glanet.data.synth_render import CLASSES
from glanet.train import lr_at, main, parse_args, run, sa_temperature_at


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, videos_per_class=1, seed=1, split="train", num_frames=8, size=48)
    write_dataset(root, videos_per_class=1, seed=2, split="val", num_frames=8, size=48)
    return root


def overrides(root: Path, **extra: object) -> list[str]:
    return tiny_overrides(root, **extra)


def train(out: Path, root: Path, *more: str, **extra: object) -> int:
    return main(["--config", CONFIG, "--out", str(out), *overrides(root, **extra), *more])


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_lr_schedules():
    step = TrainConfig(lr=1e-5, schedule="step", milestones=(8,), gamma=0.1, epochs=16)
    assert [lr_at(e, step) for e in (0, 7, 8, 15)] == pytest.approx([1e-5, 1e-5, 1e-6, 1e-6])
    cos = TrainConfig(lr=1e-3, schedule="cosine", epochs=4)
    assert [lr_at(e, cos) for e in range(4)] == pytest.approx(
        [1e-3, 0.853553e-3, 0.5e-3, 0.146447e-3], rel=1e-4
    )
    assert lr_at(3, TrainConfig(lr=2e-3, schedule="constant")) == 2e-3


def test_tiny_run_loss_falls_and_writes_checkpoints(tmp_path, synth):
    out = tmp_path / "run"
    assert train(out, synth, **{"train.epochs": 6, "train.schedule": '"constant"'}) == 0
    rows = metrics(out)
    assert [r["epoch"] for r in rows] == list(range(1, 7))
    assert min(r["loss"] for r in rows[-2:]) < 0.85 * rows[0]["loss"]
    assert set(rows[-1]["val"]) == {"fused", "GS", "GL", "GP"}
    ck = load_checkpoint(out / "best.pt")
    assert ck.class_names == CLASSES
    assert ck.sampling["window"] == 4 and ck.preprocessing["crop"] == 40
    assert ck.provenance["config"]["data"]["window"] == 4
    assert "optimizer" in read_checkpoint(out / "last.pt")["extra"]


def test_resume_continues_exactly(tmp_path, synth):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train(straight, synth, "--no-eval") == 0
    assert train(split, synth, "--no-eval", **{"train.epochs": 1}) == 0
    assert train(split, synth, "--no-eval", "--resume", str(split / "last.pt")) == 0
    a = read_checkpoint(straight / "last.pt")["state_dict"]
    b = read_checkpoint(split / "last.pt")["state_dict"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in metrics(straight)] == [r["loss"] for r in metrics(split)]


def test_sa_temperature_anneals_geometrically_and_is_saved(tmp_path, synth):
    assert [sa_temperature_at(e, 1.0, (1, 3, 0.01)) for e in range(5)] == pytest.approx(
        [1, 1, 0.1, 0.01, 0.01]
    )
    assert sa_temperature_at(7, 0.5, ()) == 0.5
    straight, split = tmp_path / "straight", tmp_path / "split"
    anneal = {"model.sa_map": '"mean_sq"', "train.sa_anneal": "[0, 1, 0.25]", "train.epochs": 2}
    assert train(straight, synth, "--no-eval", **anneal) == 0
    assert [r["sa_temperature"] for r in metrics(straight)] == pytest.approx([1.0, 0.25])
    ck = load_checkpoint(straight / "last.pt")
    assert ck.cfg.sa_temperature == pytest.approx(0.25) and ck.model.sa.temperature == pytest.approx(0.25)
    # resuming from a checkpoint saved at another temperature is the same run, exactly
    assert train(split, synth, "--no-eval", **{**anneal, "train.epochs": 1}) == 0
    assert train(split, synth, "--no-eval", "--resume", str(split / "last.pt"), **anneal) == 0
    a = read_checkpoint(straight / "last.pt")["state_dict"]
    b = read_checkpoint(split / "last.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str, root: str) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank))
    torch.set_num_threads(1)
    args = ["--config", CONFIG, "--out", out, "--no-eval", *overrides(Path(root), **{"train.epochs": 1})]
    model, _ = run(parse_args(args))
    # Every rank must end with the same parameters: DDP averaged the gradients of both ranks' batches.
    # (BatchNorm buffers are broadcast from rank 0 at the start of each forward, so they may differ.)
    torch.save(dict(model.named_parameters()), Path(out) / f"rank{rank}.pt")


def test_two_process_ddp_on_cpu(tmp_path, synth):
    out = tmp_path / "ddp"
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(out), str(synth)), nprocs=2, join=True)
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
    assert (out / "last.pt").is_file()
    row = metrics(out)[0]
    assert row["clips"] > 0


def test_bad_inputs_exit_2_with_one_line(tmp_path, synth, capsys):
    assert main(["--config", CONFIG, "--out", str(tmp_path / "x"), "--set", "model.nope=1"]) == 2
    assert "unknown key 'model.nope'" in capsys.readouterr().err
    missing = overrides(synth, **{"data.train_list": f'"{tmp_path / "none.txt"}"'})
    assert main(["--config", CONFIG, "--out", str(tmp_path / "y"), *missing]) == 2
    assert "list file not found" in capsys.readouterr().err
    assert train(tmp_path / "z", synth, "--resume", str(tmp_path / "nothing.pt")) == 2
    assert "checkpoint file not found" in capsys.readouterr().err
    assert train(tmp_path / "w", synth, **{"train.batch_size": 1000}) == 2
    assert "no batch to train on" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["empty", "binary", "folder", "label_out_of_range", "no_videos_in_folder"])
def test_a_list_that_cannot_train_is_one_line(tmp_path, synth, capsys, case):
    source = tmp_path / "list.txt"
    if case == "empty":
        source.write_text("# nothing\n\n")
        words = "no videos"
    elif case == "binary":
        source.write_bytes(bytes(range(256)))
        words = "not UTF-8 text"
    elif case == "folder":
        source = tmp_path / "empty_folder"
        source.mkdir()
        words = "no videos"
    elif case == "no_videos_in_folder":
        source = tmp_path / "classes"
        (source / "wave").mkdir(parents=True)
        (source / "wave" / "broken.mp4").write_bytes(b"not a video")
        words = "none of the 1 videos could be read"
    else:
        lines = (synth / "train.txt").read_text().splitlines()
        path, frames, _ = lines[0].rsplit(None, 2)
        source.write_text(f"{path} {frames} 12\n")  # 12 classes: labels 0..11
        words = "has label 12, but model.num_classes = 12 (0..11)"
    given = overrides(synth, **{"data.train_list": f'"{source}"'})
    assert main(["--config", CONFIG, "--out", str(tmp_path / "run"), *given]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err


def test_trains_from_video_files_in_a_csv(tmp_path):
    root = tmp_path / "videos"
    write_dataset(root, videos_per_class=1, seed=3, split="train", num_frames=8, size=48, mp4=True,
                  classes=["walk", "sit_down"])  # fmt: skip
    mp4s = sorted((root / "train_mp4").rglob("*.mp4"))
    csv = tmp_path / "train.csv"
    csv.write_text("path,label\n" + "".join(f"{p},{p.parent.name}\n" for p in mp4s))
    out = tmp_path / "run"
    extra = {
        "model.num_classes": 2,
        "data.train_list": f'"{csv}"',
        "data.root": f'"{tmp_path}"',
        "train.epochs": 1,
        "train.batch_size": 2,
    }
    assert train(out, root, "--no-eval", **extra) == 0
    ck = load_checkpoint(out / "last.pt")
    assert ck.class_names == ("sit_down", "walk") and metrics(out)[0]["clips"] > 0


def test_flags_win_over_set_and_the_run_folder_keeps_its_config_and_log(tmp_path, synth, caplog):
    out = tmp_path / "run"
    caplog.set_level("INFO")
    args = ["--epochs", "1", "--batch-size", "2", "--lr", "0.0005", "--workers", "0"]
    assert train(out, synth, *args, **{"train.epochs": 4}) == 0  # --set says 4 epochs, --epochs 1
    assert [r["epoch"] for r in metrics(out)] == [1]
    from glanet.config import load_config

    cfg = load_config(out / "config.toml")  # the resolved config, reloadable
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.lr, cfg.train.workers) == (1, 2, 0.0005, 0)
    log = (out / "train.log").read_text()
    assert "training" in log and "epoch 1" in log
    # not on a terminal: progress lines, not a bar
    assert any("epoch 1:" in r.getMessage() and "batches" in r.getMessage() for r in caplog.records)
