"""glanet.checkpoint: round trip, weights_only loading, every refusal, digests (weights and metadata),
class names made inert, atomic write."""

from __future__ import annotations

import datetime
import logging
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import glanet
from glanet import checkpoint
from glanet.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    load_checkpoint,
    meta_digest,
    read_checkpoint,
    save_checkpoint,
    weights_digest,
)
from glanet.config import DataConfig, build_section
from glanet.data.transforms import preprocessing_dict
from glanet.models.config import ModelConfig
from glanet.models.glanet import GLANet

NAMES = ("run", "jump", "sit", "wave", "clap")
DEMO = Path(__file__).parents[1] / "models" / "glanet_synthactions_demo.pt"


def small_cfg(preset: str = "paper", **kw: Any) -> ModelConfig:
    table = {"preset": preset, "backbone": "resnet18", "sru_hidden": 64, "sru_layers": 3, "num_classes": 5}
    table.update(kw)
    return build_section(ModelConfig, table, "model")


def make_model(preset: str = "paper", seed: int = 0) -> GLANet:
    torch.manual_seed(seed)
    return GLANet(small_cfg(preset)).eval()


@pytest.fixture(scope="module")
def model() -> GLANet:
    return make_model()


@pytest.fixture
def saved(tmp_path: Path, model: GLANet) -> Path:
    return save_checkpoint(tmp_path / "model.pt", model, class_names=NAMES)


def rewrite(path: Path, change: Callable[[dict], Any], *, reseal: bool = True) -> None:
    """Load the raw dict, change it in place, save it back. The weights digest is not updated; the
    metadata digest is, unless `reseal` is False: so that a refusal test reaches the check it is about, as
    a file from a writer with a bug would (a file edited by hand fails the metadata digest first)."""
    raw = torch.load(path, weights_only=True)
    change(raw)
    if reseal and "meta_sha256" in raw:
        raw["meta_sha256"] = meta_digest(raw)
    torch.save(raw, path)


def clip() -> torch.Tensor:
    return torch.randn(1, 2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


# -- round trip -----------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["paper", "reference"])
def test_round_trip_keeps_weights_outputs_and_metadata(tmp_path: Path, preset: str) -> None:
    net = make_model(preset)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(clip()).fused.sum().backward()
    opt.step()
    net.eval()
    data = DataConfig(fps=25.0, window=8, stride=4, resize=(256,), crop=224)
    provenance = {"command": "glanet-train --config x.toml", "git_commit": "abc123", "config": {"lr": 0.1}}
    metrics = {"top1": 0.5, "per_class": [0.1, 0.2], "epoch": 3}
    path = save_checkpoint(
        tmp_path / "ck.pt",
        net,
        class_names=NAMES,
        data=data,
        provenance=provenance,
        metrics=metrics,
        extra={"optimizer": opt.state_dict(), "epoch": 3},
    )
    assert path == tmp_path / "ck.pt"
    torch.load(path, weights_only=True)  # only plain data and tensors inside

    ck = load_checkpoint(path)
    assert ck.cfg == net.cfg
    assert not ck.model.training
    assert ck.path == path
    mine, theirs = net.state_dict(), ck.model.state_dict()
    assert mine.keys() == theirs.keys()
    for key in mine:
        assert torch.equal(mine[key], theirs[key]), key
    with torch.no_grad():
        a, b = net(clip()), ck.model(clip())
    torch.testing.assert_close(a.logits, b.logits, rtol=0, atol=0)
    torch.testing.assert_close(a.fused, b.fused, rtol=0, atol=0)

    assert ck.class_names == NAMES
    assert ck.preprocessing == {
        "resize": [256], "crop": 224, "mean": list(data.mean), "std": list(data.std),
        "color": "rgb", "interpolation": "bilinear",
    }  # fmt: skip
    assert ck.sampling == {
        "fps": 25.0,
        "window": 8,
        "stride": 4,
        "mode": "clips",
        "segments": data.segments,
        "frames_per_segment": data.frames_per_segment,
        "max_clips": data.max_clips,
        "test_clips": data.test_clips,
    }
    for key, value in provenance.items():
        assert ck.provenance[key] == value
    assert ck.provenance["glanet_version"] == glanet.__version__
    assert ck.provenance["torch_version"] == torch.__version__
    created = datetime.datetime.fromisoformat(ck.provenance["created_utc"])
    assert created.utcoffset() == datetime.timedelta(0)
    assert ck.metrics == metrics
    assert ck.extra["epoch"] == 3
    opt2 = torch.optim.SGD(ck.model.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(ck.extra["optimizer"])  # resumable
    buf = ck.extra["optimizer"]["state"][0]["momentum_buffer"]
    assert torch.equal(buf, opt.state_dict()["state"][0]["momentum_buffer"])
    assert ck.weights_sha256 == weights_digest(mine)


def test_defaults_and_dicts_for_preprocessing_and_sampling(tmp_path: Path, model: GLANet) -> None:
    d = DataConfig()
    ck = load_checkpoint(save_checkpoint(tmp_path / "a.pt", model, class_names=NAMES))
    assert ck.preprocessing == preprocessing_dict(d)
    assert ck.sampling["fps"] == d.fps and ck.sampling["mode"] == d.sampling

    pre = {"resize": [128], "crop": 112, "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear"}
    samp = {"fps": 10.0, "window": 6, "stride": 3, "mode": "clips", "segments": 1, "frames_per_segment": 6}
    ck = load_checkpoint(
        save_checkpoint(tmp_path / "b.pt", model, class_names=NAMES, preprocessing=pre, sampling=samp)
    )
    assert ck.preprocessing == pre and ck.sampling == samp

    with pytest.raises(ValueError, match="preprocessing lacks crop"):
        save_checkpoint(
            tmp_path / "c.pt", model, class_names=NAMES, preprocessing={"resize": [1], "mean": 0, "std": 1}
        )


def test_read_checkpoint_returns_the_raw_dict(saved: Path, model: GLANet) -> None:
    raw = read_checkpoint(saved)
    assert raw["format"] == FORMAT and raw["format_version"] == FORMAT_VERSION and raw["arch"] == "glanet"
    assert raw["class_names"] == list(NAMES)
    assert raw["model_config"]["backbone"] == "resnet18"
    assert raw["weights_sha256"] == weights_digest(model.state_dict())


def test_save_refuses_bad_inputs_and_writes_nothing(tmp_path: Path, model: GLANet) -> None:
    with pytest.raises(ValueError, match="4 class names given for a model with num_classes = 5"):
        save_checkpoint(tmp_path / "a.pt", model, class_names=NAMES[:4])
    with pytest.raises(TypeError, match=r"extra\['opt'\] holds a object"):
        save_checkpoint(tmp_path / "a.pt", model, class_names=NAMES, extra={"opt": object()})
    assert list(tmp_path.iterdir()) == []


# -- weights_only: a checkpoint cannot run code ---------------------------------------------------


class Payload:
    """Unpickling this would create `marker`: proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_pickled_code_is_refused_and_never_runs(tmp_path: Path, saved: Path, writer: str) -> None:
    marker = tmp_path / "pwned"
    raw = torch.load(saved, weights_only=True)
    raw["extra"] = {"x": Payload(marker)}
    path = tmp_path / "evil.pt"
    if writer == "torch":
        torch.save(raw, path)
    else:
        path.write_bytes(pickle.dumps(raw, protocol=2))
    with pytest.raises(CheckpointError, match="refuses to run code") as err:
        load_checkpoint(path)
    assert "evil.pt" in str(err.value)
    assert not marker.exists()


def test_load_asks_torch_for_weights_only(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict] = []
    real = torch.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_checkpoint(saved)
    assert calls and all(c.get("weights_only") is True for c in calls)


# -- refusals -------------------------------------------------------------------------------------


def _authors_like(path: Path) -> None:
    torch.save({"module.spatial.net.0.weight": torch.zeros(64, 3, 7, 7)}, path)


def _set(key: str, value: Any) -> Callable[[dict], None]:
    return lambda raw: raw.__setitem__(key, value)


def _drop_and_add(raw: dict) -> None:
    state = raw["state_dict"]
    del state["heads.gp.fc.bias"]
    state["heads.gp.fc.extra"] = torch.zeros(1)
    raw["weights_sha256"] = weights_digest(state)


def _reshape(raw: dict) -> None:
    state = raw["state_dict"]
    state["la.w0.weight"] = torch.zeros(3, 512)
    raw["weights_sha256"] = weights_digest(state)


def _flip_weight(raw: dict) -> None:
    raw["state_dict"]["heads.gp.fc.weight"][0, 0] += 1.0


REFUSALS: dict[str, tuple[Callable[[Path, Path], None], dict, str]] = {
    # name: (make the file from a good one, load_checkpoint kwargs, what the message must say)
    "missing": (lambda good, p: None, {}, "not found"),
    "directory": (lambda good, p: p.mkdir(), {}, "is a directory"),
    "empty": (lambda good, p: p.write_bytes(b""), {}, "could not be read"),
    "truncated": (lambda good, p: p.write_bytes(good.read_bytes()[:5000]), {}, "could not be read"),
    "text": (lambda good, p: p.write_text("hello\n"), {}, "it is a text file"),
    "markdown": (lambda good, p: p.write_text("# glanet\n\nA README.\n"), {}, "it is a text file"),
    "binary, not torch's": (
        lambda good, p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64)),
        {},
        "not a file torch.save wrote",
    ),
    "not a dict": (lambda good, p: torch.save([1, 2], p), {}, "holds a list"),
    "bare state_dict": (
        lambda good, p: torch.save(make_model().state_dict(), p),
        {},
        "looks like a bare state_dict",
    ),
    "authors' state_dict": (lambda good, p: _authors_like(p), {}, "glanet convert --src FILE"),
    "other dict": (lambda good, p: torch.save({"epoch": 3, "model": {}}, p), {}, "without format"),
    "other dict, legacy format": (  # torch's pre-zip format is a pickle: it gets past the first look
        lambda good, p: torch.save({"epoch": 3}, p, _use_new_zipfile_serialization=False),
        {},
        "without format",
    ),
    "other format": (
        lambda good, p: (p.write_bytes(good.read_bytes()), rewrite(p, _set("format", "x"))),
        {},
        "format 'x'",
    ),
    "newer version": (
        lambda good, p: (
            p.write_bytes(good.read_bytes()),
            rewrite(p, _set("format_version", FORMAT_VERSION + 1)),
        ),
        {},
        "newer than this glanet reads",
    ),
    "missing field": (
        lambda good, p: (p.write_bytes(good.read_bytes()), rewrite(p, lambda r: r.pop("sampling"))),
        {},
        "field 'sampling' is missing",
    ),
    "arch": (
        lambda good, p: (p.write_bytes(good.read_bytes()), rewrite(p, _set("arch", "smnet"))),
        {},
        "model_config.arch 'glanet' is not arch 'smnet'",  # the two must agree
    ),
    "class count": (
        lambda good, p: p.write_bytes(good.read_bytes()),
        {"num_classes": 7},
        "has 5 classes, expected 7",
    ),
    "class names": (
        lambda good, p: (p.write_bytes(good.read_bytes()), rewrite(p, _set("class_names", list(NAMES[:4])))),
        {},
        "has 4 class names but model_config.num_classes = 5",
    ),
    "unknown config key": (
        lambda good, p: (
            p.write_bytes(good.read_bytes()),
            rewrite(p, lambda r: r["model_config"].update(foo=1)),
        ),
        {},
        "unknown key 'model.foo'",
    ),
    "digest": (
        lambda good, p: (p.write_bytes(good.read_bytes()), rewrite(p, _flip_weight)),
        {},
        "weights do not match their recorded digest: the file was modified or is corrupt",
    ),
    "keys": (
        lambda good, p: (p.write_bytes(good.read_bytes()), rewrite(p, _drop_and_add)),
        {},
        "1 missing (e.g. heads.gp.fc.bias); 1 unexpected (e.g. heads.gp.fc.extra)",
    ),
    "shapes": (
        lambda good, p: (p.write_bytes(good.read_bytes()), rewrite(p, _reshape)),
        {},
        "la.w0.weight (3, 512) vs (128, 512)",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_name_the_file_and_the_reason(tmp_path: Path, saved: Path, case: str) -> None:
    make, kwargs, reason = REFUSALS[case]
    path = tmp_path / f"bad_{case.replace(' ', '_').replace(chr(39), '')}.pt"
    make(saved, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, **kwargs)
    assert path.name in str(err.value)
    assert reason in str(err.value)


def _swap_two_names(raw: dict) -> None:
    names = raw["class_names"]
    names[0], names[1] = names[1], names[0]


METADATA_EDITS: dict[str, Callable[[dict], Any]] = {
    "swapped class names": _swap_two_names,
    "renamed class": lambda raw: raw["class_names"].__setitem__(2, "stand"),
    "preprocessing": lambda raw: raw["preprocessing"].__setitem__("crop", 112),
    "sampling": lambda raw: raw["sampling"].__setitem__("fps", 12.5),
    "model config": lambda raw: raw["model_config"].__setitem__("sa_temperature", 0.5),
}


@pytest.mark.parametrize("case", list(METADATA_EDITS))
def test_edited_metadata_is_refused_in_one_line(tmp_path: Path, saved: Path, case: str) -> None:
    assert isinstance(read_checkpoint(saved)["meta_sha256"], str)  # new checkpoints carry the digest
    rewrite(saved, METADATA_EDITS[case], reseal=False)  # weights untouched: their digest still matches
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(saved)
    text = str(err.value)
    assert "\n" not in text and saved.name in text
    assert "do not match their recorded digest (meta_sha256): the file was modified or is corrupt" in text


def test_meta_digest_is_kept_by_a_round_trip_and_must_be_a_string(tmp_path: Path, saved: Path) -> None:
    raw = read_checkpoint(saved)
    assert raw["meta_sha256"] == meta_digest(raw)
    rewrite(saved, _set("meta_sha256", 5), reseal=False)
    with pytest.raises(CheckpointError, match="field 'meta_sha256' is a int, expected a str"):
        load_checkpoint(saved)


def test_a_checkpoint_without_meta_digest_loads_as_before(
    saved: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rewrite(saved, lambda raw: raw.pop("meta_sha256"), reseal=False)  # as written before the digest
    with caplog.at_level(logging.DEBUG, logger="glanet.checkpoint"):
        ck = load_checkpoint(saved)
    assert ck.class_names == NAMES
    assert any("no meta_sha256" in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records)


@pytest.mark.parametrize("name", ["glanet_synthactions_demo.pt", "smnet_synthactions_demo.pt"])
def test_the_committed_demo_models_are_sealed(name: str, tmp_path: Path) -> None:
    """Both demo checkpoints carry meta_sha256: one with its class names swapped is refused."""
    demo = DEMO.parent / name
    raw = read_checkpoint(demo)
    assert raw["meta_sha256"] == meta_digest(raw)
    ck = load_checkpoint(demo)
    assert len(ck.class_names) == 12 and ck.class_names[0] == "walk"
    copy = tmp_path / name
    shutil.copyfile(demo, copy)
    rewrite(copy, lambda r: r["class_names"].reverse(), reseal=False)
    with pytest.raises(CheckpointError, match=r"meta_sha256"):
        load_checkpoint(copy)


def test_class_names_with_terminal_escapes_come_back_inert(tmp_path: Path, model: GLANet) -> None:
    names = ["run", "\x1b[2J\x1b[31mjump", "sit\x07", "wave\x9b0m", "clap\u202e"]
    path = save_checkpoint(tmp_path / "esc.pt", model, class_names=names)
    assert read_checkpoint(path)["class_names"] == names  # stored as given; the digest covers them so
    ck = load_checkpoint(path)
    assert ck.class_names == ("run", "\\x1b[2J\\x1b[31mjump", "sit\\x07", "wave\\x9b0m", "clap\\u202e")
    assert all(ch.isprintable() for name in ck.class_names for ch in name)


def test_expect_arch_refuses_another_model(tmp_path: Path, saved: Path) -> None:
    assert load_checkpoint(saved).class_names == NAMES  # any arch by default
    with pytest.raises(CheckpointError, match="checkpoint is for model 'glanet', not 'smnet'"):
        load_checkpoint(saved, expect_arch="smnet")


def test_a_flipped_byte_in_the_file_is_refused(tmp_path: Path, model: GLANet, saved: Path) -> None:
    weight = model.state_dict()["heads.gp.fc.weight"].numpy().tobytes()
    blob = bytearray(saved.read_bytes())
    at = blob.find(weight)
    assert at >= 0  # torch stores tensor data uncompressed
    blob[at + 3] ^= 0x40
    saved.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match=r"digest|could not be read") as err:
        load_checkpoint(saved)
    assert saved.name in str(err.value)


# -- atomic write ---------------------------------------------------------------------------------


def test_a_crash_mid_write_keeps_the_last_good_checkpoint(
    tmp_path: Path, model: GLANet, saved: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = saved.read_bytes()
    real_save = torch.save

    def crashing_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        import io

        buf = io.BytesIO()
        real_save(obj, buf)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        raise OSError("no space left on device")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(OSError, match="no space left"):
        save_checkpoint(saved, make_model(seed=1), class_names=NAMES)
    with pytest.raises(OSError, match="no space left"):
        save_checkpoint(tmp_path / "new.pt", model, class_names=NAMES)
    monkeypatch.setattr(torch, "save", real_save)

    assert saved.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == [saved.name]  # no temp files, no half file
    ck = load_checkpoint(saved)
    for key, value in model.state_dict().items():
        assert torch.equal(ck.model.state_dict()[key], value)


def test_save_replaces_an_existing_checkpoint(tmp_path: Path, saved: Path) -> None:
    other = make_model(seed=1)
    save_checkpoint(saved, other, class_names=NAMES)
    ck = load_checkpoint(saved)
    assert torch.equal(ck.model.state_dict()["heads.gp.fc.weight"], other.state_dict()["heads.gp.fc.weight"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [saved.name]


def test_digest_covers_names_dtypes_and_values() -> None:
    base = {"a": torch.zeros(2), "b": torch.ones(3)}
    d = weights_digest(base)
    assert weights_digest(dict(reversed(list(base.items())))) == d  # key order does not matter
    assert weights_digest({"a": torch.zeros(2), "c": torch.ones(3)}) != d
    assert weights_digest({"a": torch.zeros(2, dtype=torch.float64), "b": torch.ones(3)}) != d
    assert weights_digest({"a": torch.zeros(1, 2), "b": torch.ones(3)}) != d
    assert weights_digest({"a": torch.tensor([0.0, 1e-30]), "b": torch.ones(3)}) != d
    assert weights_digest({"x": torch.ones(2, dtype=torch.bfloat16)})  # any dtype hashes


def test_checkpoint_error_is_a_value_error() -> None:
    err = CheckpointError("/some/where/x.pt", "broken")
    assert isinstance(err, ValueError)
    assert str(err) == "/some/where/x.pt: broken"
    assert checkpoint.CheckpointError is CheckpointError


def test_metadata_is_made_plain(tmp_path: Path, model: GLANet) -> None:
    import enum

    import numpy as np

    class Split(enum.StrEnum):
        VAL = "val"

    path = save_checkpoint(
        tmp_path / "m.pt",
        model,
        class_names=NAMES,
        provenance={"torch": torch.__version__, "config_path": tmp_path / "x.toml", "split": Split.VAL},
        metrics={"top1": np.float32(0.25), "n": np.int64(7)},
    )
    raw = torch.load(path, weights_only=True)  # would fail on a TorchVersion, a Path, an enum, numpy
    assert raw["provenance"]["config_path"] == str(tmp_path / "x.toml")
    assert raw["provenance"]["split"] == "val" and type(raw["provenance"]["split"]) is str
    assert raw["metrics"] == {"top1": 0.25, "n": 7}


def test_a_wrapped_model_is_saved_without_the_wrapper_prefix(tmp_path: Path, model: GLANet) -> None:
    path = save_checkpoint(tmp_path / "dp.pt", torch.nn.DataParallel(model), class_names=NAMES)
    assert list(read_checkpoint(path)["state_dict"]) == list(model.state_dict())
    with pytest.raises(TypeError, match="needs a GLANet or an SMNet, got a Linear"):
        save_checkpoint(tmp_path / "x.pt", torch.nn.Linear(2, 2), class_names=NAMES)


def test_half_precision_storage_loads_as_float32(tmp_path: Path, model: GLANet) -> None:
    full = save_checkpoint(tmp_path / "full.pt", model, class_names=NAMES)
    half = save_checkpoint(tmp_path / "half.pt", model, class_names=NAMES, weights_dtype=torch.float16)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    ck = load_checkpoint(half)
    assert all(p.dtype == torch.float32 for p in ck.model.parameters())
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(ck.model.state_dict()[key], value.half().float())


def test_a_reference_checkpoint_saved_before_the_dropout_site_existed_keeps_the_one_it_was_trained_with(
    tmp_path: Path,
) -> None:
    """The reference preset now trains the SRU as sru 2.1.x did ("gc"); a checkpoint saved before the key
    existed was trained with the only site there was ("gated") and resumes with it."""
    path = save_checkpoint(tmp_path / "ref.pt", make_model("reference"), class_names=NAMES)
    assert load_checkpoint(path).model.cfg.sru_dropout_on == "gc"
    rewrite(path, lambda raw: raw["model_config"].pop("sru_dropout_on"))
    assert load_checkpoint(path).model.cfg.sru_dropout_on == "gated"
