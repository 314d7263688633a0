"""engines.select.export_dir_for, the model-export cache: an export is made in a private folder and renamed
into place whole, so two first runs at once both succeed and leave one complete export (two processes,
spawned, on the demo model); one that lands second is discarded; a failed one leaves nothing behind."""

from __future__ import annotations

import multiprocessing
import os
import queue
import traceback
from pathlib import Path
from typing import Any

import pytest
import torch

import engines.export
from engines.cache import encode_digest
from engines.manifest import FORMAT_VERSION, MANIFEST, read_manifest
from engines.select import export_dir_for
from glanet.checkpoint import LoadedCheckpoint, load_checkpoint, read_checkpoint, save_checkpoint
from glanet.models.config import ModelConfig
from glanet.models.glanet import build_model

DEMO = Path(__file__).parents[2] / "models" / "glanet_synthactions_demo.pt"


def _export_worker(checkpoint: str, cache_dir: str, barrier: Any, results: Any) -> None:
    """One first run: load, wait for the other, then ask the cache for the export and use it."""
    try:
        torch.set_num_threads(1)  # two of these share the machine
        ck = load_checkpoint(checkpoint)
        barrier.wait(timeout=300)
        out = export_dir_for(ck, Path(cache_dir))
        manifest = read_manifest(out)
        manifest.verify()
        results.put(("ok", str(out), manifest.source_weights_sha256))
    except BaseException as e:
        results.put(("error", f"{type(e).__name__}: {e}", traceback.format_exc()))


@pytest.mark.slow
def test_two_first_runs_at_once_both_succeed_with_one_complete_export(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    cache = tmp_path / "cache"  # empty: both runs are first runs
    procs = [
        ctx.Process(target=_export_worker, args=(str(DEMO), str(cache), barrier, results)) for _ in range(2)
    ]
    for p in procs:
        p.start()
    got = []
    try:
        for _ in procs:
            got.append(results.get(timeout=420))
    except queue.Empty:
        pytest.fail(f"a run did not finish: {got}")
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    assert [g[0] for g in got] == ["ok", "ok"], got
    assert got[0][1] == got[1][1]
    out = Path(got[0][1])
    assert out.parent == cache / "exports"
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no half export, no leftovers
    manifest = read_manifest(out)
    manifest.verify()
    assert manifest.source_weights_sha256 == read_checkpoint(DEMO)["weights_sha256"] == got[0][2]
    assert sorted(p.name for p in out.iterdir()) == ["encode.onnx", MANIFEST, "temporal_step.onnx"]


# -- the same, step by step, in one process: export stubbed -------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> LoadedCheckpoint:
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="resnet10", num_classes=2, sru_hidden=8, sru_layers=1, la_hidden=8)
    pre = {"resize": [36, 36], "crop": 32, "mean": [0.5] * 3, "std": [0.25] * 3}
    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    return load_checkpoint(save_checkpoint(path, build_model(cfg), class_names=["a", "b"], preprocessing=pre))


def _stub_export(monkeypatch: pytest.MonkeyPatch, before_return: Any = None) -> list[Path]:
    """engines.export.export replaced by one that writes a manifest saying "ours" into the folder given."""
    calls: list[Path] = []

    def fake(checkpoint: Any, out: Any, **_: Any) -> None:
        out = Path(out)
        calls.append(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / MANIFEST).write_text("ours")
        if before_return is not None:
            before_return()

    monkeypatch.setattr(engines.export, "export", fake)
    return calls


def _target(ck: LoadedCheckpoint, cache: Path) -> Path:
    digest = encode_digest(ck.model.cfg, ck.weights_sha256, (3, 32, 32))
    return cache / "exports" / f"v{FORMAT_VERSION}-{digest[:24]}"


def test_the_export_is_made_beside_and_renamed_into_place(tiny, tmp_path, monkeypatch):
    calls = _stub_export(monkeypatch)
    out = export_dir_for(tiny, tmp_path)
    assert out == _target(tiny, tmp_path)
    assert len(calls) == 1 and calls[0].parent == out.parent and calls[0] != out
    assert calls[0].name.startswith(".") and not calls[0].exists()
    assert (out / MANIFEST).read_text() == "ours"
    assert export_dir_for(tiny, tmp_path) == out and len(calls) == 1  # reused, not exported again


def test_an_export_that_lands_first_wins_and_ours_is_discarded(tiny, tmp_path, monkeypatch):
    out = _target(tiny, tmp_path)

    def theirs_lands() -> None:  # another run renames its whole export into place while ours finishes
        out.mkdir(parents=True)
        (out / MANIFEST).write_text("theirs")
        (out / "encode.onnx").write_text("their graph")

    calls = _stub_export(monkeypatch, theirs_lands)
    got = export_dir_for(tiny, tmp_path)
    assert got == out and len(calls) == 1
    assert (got / MANIFEST).read_text() == "theirs" and (got / "encode.onnx").is_file()
    assert sorted(p.name for p in got.parent.iterdir()) == [got.name]  # ours removed


def test_a_stale_folder_without_manifest_is_replaced(tiny, tmp_path, monkeypatch):
    _stub_export(monkeypatch)
    out = export_dir_for(tiny, tmp_path)
    (out / MANIFEST).unlink()  # what an in-place export of an older glanet left when it stopped
    (out / "encode.onnx").write_text("half")
    export_dir_for(tiny, tmp_path)
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST]
    assert (out / MANIFEST).read_text() == "ours"
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]


def test_a_failed_export_leaves_nothing_behind(tiny, tmp_path, monkeypatch):
    def failing(checkpoint: Any, out: Any, **_: Any) -> None:
        Path(out).mkdir(parents=True)
        (Path(out) / "encode.onnx").write_text("half")
        raise engines.export.ExportMismatch("does not match PyTorch")

    monkeypatch.setattr(engines.export, "export", failing)
    with pytest.raises(engines.export.ExportMismatch):
        export_dir_for(tiny, tmp_path)
    assert os.listdir(tmp_path / "exports") == []
