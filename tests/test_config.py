"""Config files: the shipped ones load; unknown keys and bad values name themselves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from glanet.config import Config, ConfigError, TrainConfig, config_from_dict, config_to_dict, load_config
from glanet.models.config import ModelConfig, SMNetConfig

CONFIG_DIR = Path(__file__).parent.parent / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.toml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)


def test_paper_settings():
    hmdb = load_config(CONFIG_DIR / "glanet_r34_hmdb51.toml")
    assert (hmdb.model.backbone, hmdb.model.num_classes, hmdb.model.sru_hidden, hmdb.model.sru_layers) == (
        "resnet34",
        51,
        1024,
        3,
    )
    assert (hmdb.data.window, hmdb.data.stride, hmdb.data.max_clips, hmdb.data.crop) == (30, 15, 20, 224)
    assert (hmdb.train.optimizer, hmdb.train.lr, hmdb.train.milestones, hmdb.train.epochs) == (
        "adam",
        1e-5,
        (8,),
        16,
    )
    assert hmdb.train.batch_size == 28 and hmdb.model.sru_dropout == 0.6
    assert load_config(CONFIG_DIR / "glanet_r34_ucf101.toml").model.num_classes == 101
    kinetics = load_config(CONFIG_DIR / "glanet_r34_kinetics600.toml")
    assert (kinetics.model.num_classes, kinetics.data.segments, kinetics.data.frames_per_segment) == (
        600,
        3,
        4,
    )
    assert (kinetics.train.batch_size, kinetics.train.lr, kinetics.train.epochs) == (64, 1e-3, 25)


def test_reference_preset_applies_and_file_keys_win(tmp_path):
    cfg = load_config(write(tmp_path, '[model]\npreset = "reference"\nhead_dropout = 0.1\n'))
    assert cfg.model.sa_map == "mean_sq_affine" and cfg.model.score_fusion == "logits"
    assert cfg.model.head_dropout == 0.1


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'model\.sru_hiden'"):
        load_config(write(tmp_path, "[model]\nsru_hiden = 12\n"))
    with pytest.raises(ConfigError, match=r"unknown section \[modle\]"):
        load_config(write(tmp_path, "[modle]\nnum_classes = 3\n"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[model]\nnum_classes = "ten"\n', "model.num_classes = 'ten' must be an integer"),
        ("[model]\nbackbone = 'vgg16'\n", "model.backbone = 'vgg16' is not one of"),
        ("[data]\nwindow = 30\nstride = 7\n", r"data.window \(30\) must be a multiple of data.stride \(7\)"),
        ("[data]\nmean = [0.5, 0.5]\n", "must have 3 items"),
        ("[model]\nsru_dropout = 1.0\n", r"must be in \[0, 1\)"),
        ("[model]\nnum_classes = 3\n[data]\nclass_names = ['a', 'b']\n", "2 names but model.num_classes = 3"),
        ("[model\n", "not valid TOML"),
    ],
)
def test_bad_values_are_named(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_overrides(tmp_path):
    path = write(tmp_path, "[model]\nnum_classes = 4\n")
    cfg = load_config(path, ["model.sru_hidden=256", "data.root=/data/hmdb", "train.milestones=[3, 6]"])
    assert cfg.model.sru_hidden == 256 and cfg.data.root == "/data/hmdb" and cfg.train.milestones == (3, 6)
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        load_config(path, ["sru_hidden=3"])
    with pytest.raises(ConfigError, match=r"unknown key 'model\.nope'"):
        load_config(path, ["model.nope=1"])


def test_ints_stand_for_floats_and_dict_round_trip():
    cfg = load_config(CONFIG_DIR / "glanet_r18_synth_cpu.toml")
    d = config_to_dict(cfg)
    assert d["model"]["backbone"] == "resnet18" and d["data"]["resize"] == [128, 128]
    assert (
        ModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d["model"].items()}) == cfg.model
    )


def test_from_preset():
    ref = ModelConfig.from_preset("reference", num_classes=7)
    assert ref.preset == "reference" and ref.la_out_tanh and ref.num_classes == 7
    with pytest.raises(ConfigError, match="is not one of"):
        ModelConfig.from_preset("authors")


def test_sa_anneal_is_checked():
    assert TrainConfig(sa_anneal=(2, 5, 0.05)).sa_anneal == (2, 5, 0.05)
    for bad in ((1, 2), (3, 3, 0.1), (0, 2, 0.0), (-1, 2, 0.1)):
        with pytest.raises(ConfigError, match="sa_anneal"):
            TrainConfig(sa_anneal=bad)


@pytest.mark.parametrize(
    "override", ["train.lr=nan", "train.weight_decay=inf", "data.fps=nan", "model.sa_temperature=-inf"]
)
def test_a_number_that_is_not_finite_is_refused_by_name(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"{re.escape(key)} = .*must be a finite number"):
        load_config(CONFIG_DIR / "glanet_r10_synth_demo.toml", [override])


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("train.momentum=1.5", "train.momentum = 1.5 must be in [0, 1)"),
        ("train.gamma=0", "train.gamma = 0.0 must be positive"),
        ("train.workers=-1", "train.workers = -1 must be >= 0"),
        ("train.weight_decay=-0.1", "train.weight_decay = -0.1 must be >= 0"),
        ("train.milestones=[-1]", "train.milestones = [-1]"),
        ("data.flip=2", "data.flip = 2.0 must be a probability"),
        ("data.crop_scale=[0.5, 0.1]", "data.crop_scale = [0.5, 0.1]"),
        ("data.crop_ratio=[0, 1]", "data.crop_ratio"),
        ("data.std=[0, 1, 1]", "data.std"),
        ("model.sru_dropout=1.0", "model.sru_dropout = 1.0 must be in [0, 1)"),
    ],
)
def test_config_values_out_of_range_are_named(override: str, words: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config("glanet_r10_synth_demo", [override])
    assert words in str(e.value)


def test_a_folder_or_a_binary_file_as_config_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)
    (tmp_path / "x.toml").write_bytes(bytes(range(128, 256)))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(tmp_path / "x.toml")


def test_smnet_config_is_chosen_by_arch() -> None:
    cfg = config_from_dict({"model": {"arch": "smnet", "backbone": "resnet18", "num_classes": 5}})
    assert isinstance(cfg.model, SMNetConfig) and cfg.model.branch_names == ("SM",)
    with pytest.raises(ConfigError, match=r"unknown key 'model\.fusion'"):
        config_from_dict({"model": {"arch": "smnet", "fusion": "early"}})
    with pytest.raises(ConfigError, match=r"model\.temporal_kernel = 2 must be an odd number"):
        config_from_dict({"model": {"arch": "smnet", "temporal_kernel": 2}})
    with pytest.raises(ConfigError, match=r"model\.arch = 'c3d' is not one of glanet, smnet"):
        config_from_dict({"model": {"arch": "c3d"}})


def test_a_wrong_config_name_lists_the_shipped_ones():
    with pytest.raises(ConfigError) as caught:
        load_config("glanet_r34_hmdb")
    text = str(caught.value)
    assert text.startswith("config file not found: glanet_r34_hmdb; did you mean glanet_r34_hmdb51? ")
    assert "shipped configs: " in text and "glanet_r10_synth_demo" in text and "smnet_r50_sthv2" in text
    with pytest.raises(ConfigError, match="shipped configs: ") as caught:
        load_config("zzzz")  # nothing like any: the list, no guess
    assert "did you mean" not in str(caught.value)


def test_a_missing_file_in_a_folder_gets_no_list(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "run" / "config.toml")
    assert "shipped configs" not in str(caught.value)
