"""glanet.convert: the authors' published key layout -> our checkpoint, values unchanged."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from torch import Tensor

from glanet.checkpoint import load_checkpoint
from glanet.convert import convert_authors_state_dict, main
from glanet.models.glanet import GLANet

K, H, C = 7, 64, 512  # classes, SRU hidden, resnet34 channels
TRUNK = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
# Their Recurrent_model names -> ours, with the SRU input width (Models.py: GP alone, [GP, SA], [GP, LA]).
STREAMS = {"reason_average": ("gp", C), "reason_auto": ("gs", 2 * C), "reason_learned": ("gl", 2 * C)}


def authors_state(backbone: str = "resnet34", seed: int = 0, tracked: bool = True) -> dict[str, Tensor]:
    """A state_dict with exactly the keys and shapes of torch.save(DataParallel(Spatial_TemporalNet))."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, Tensor] = {}
    for key, value in getattr(torchvision.models, backbone)(weights=None).state_dict().items():
        part, _, rest = key.partition(".")
        if part == "fc" or (not tracked and key.endswith("num_batches_tracked")):
            continue
        state[f"module.spatial.net.{TRUNK.index(part)}.{rest}"] = value
    channels = 2048 if backbone == "resnet50" else 512

    def rnd(*shape: int, scale: float = 0.1) -> Tensor:
        return torch.randn(*shape, generator=g) * scale

    t = "module.temporal."
    state[t + "attention_auto.conv.weight"] = rnd(1, 1, 1, 1, scale=1.0)
    state[t + "attention_auto.conv.bias"] = rnd(1)
    state[t + "attention_learned.linear.0.weight"] = rnd(128, channels)
    state[t + "attention_learned.linear.0.bias"] = rnd(128)
    state[t + "attention_learned.linear.2.weight"] = rnd(1, 128)
    state[t + "attention_learned.linear.2.bias"] = rnd(1)
    state[t + "attention_learned.conv.0.weight"] = rnd(49, 49, 1)
    state[t + "attention_learned.conv.0.bias"] = rnd(49)
    for name, mult in (("reason_average", 1), ("reason_auto", 2), ("reason_learned", 2)):
        for layer in range(3):
            n_in = channels * mult if layer == 0 else H
            k = 4 if n_in != H else 3
            prefix = f"{t}{name}.rnn.rnn_lst.{layer}."
            state[prefix + "weight"] = rnd(n_in, H * k, scale=1 / math.sqrt(n_in))
            state[prefix + "weight_c"] = rnd(2 * H)
            state[prefix + "bias"] = rnd(2 * H)
            state[prefix + "scale_x"] = torch.tensor([math.sqrt(3.0)])
        state[f"{t}{name}.fc.weight"] = rnd(K, H)
        state[f"{t}{name}.fc.bias"] = rnd(K)
    return state


def expected_key(theirs: str) -> str | None:
    """Our key for one of theirs, written out independently of glanet.convert."""
    key = theirs.removeprefix("module.")
    if key.startswith("spatial.net."):
        index, _, rest = key.removeprefix("spatial.net.").partition(".")
        return f"backbone.{TRUNK[int(index)]}.{rest}"
    fixed = {
        "temporal.attention_auto.conv.weight": "sa.conv.weight",
        "temporal.attention_auto.conv.bias": "sa.conv.bias",
        "temporal.attention_learned.linear.0.weight": "la.w0.weight",
        "temporal.attention_learned.linear.0.bias": "la.w0.bias",
        "temporal.attention_learned.linear.2.weight": "la.w1.weight",
        "temporal.attention_learned.linear.2.bias": "la.w1.bias",
    }
    if key in fixed:
        return fixed[key]
    if key.startswith("temporal.attention_learned.conv."):
        return None
    _, name, rest = key.split(".", 2)
    return f"heads.{STREAMS[name][0]}.{rest.replace('rnn.', 'sru.', 1)}"


@pytest.fixture(scope="module")
def theirs() -> dict[str, Tensor]:
    return authors_state()


@pytest.fixture(scope="module")
def converted(theirs: dict[str, Tensor]) -> tuple[Any, dict[str, Tensor], GLANet]:
    cfg, ours = convert_authors_state_dict(theirs)
    model = GLANet(cfg)
    model.load_state_dict(ours, strict=True)
    return cfg, ours, model.eval()


# -- the mapping ----------------------------------------------------------------------------------


def test_every_source_key_lands_with_identical_values(theirs: dict[str, Tensor], converted: Any) -> None:
    _, ours, model = converted
    used = 0
    for key, value in theirs.items():
        target = expected_key(key)
        if target is None:
            continue
        assert torch.equal(ours[target], value), key
        used += 1
    assert used == len(theirs) - 2  # all but the unused Conv1d's weight and bias
    assert list(ours) == list(model.state_dict())  # nothing extra, nothing missing


def test_inferred_config_is_the_published_architecture(converted: Any) -> None:
    cfg = converted[0]
    assert (cfg.backbone, cfg.preset, cfg.fusion, cfg.feature_fusion) == (
        "resnet34",
        "reference",
        "early",
        "concat",
    )
    assert (cfg.num_classes, cfg.sru_hidden, cfg.sru_layers, cfg.la_hidden) == (K, H, 3, 128)
    assert cfg.sa_map == "mean_sq_affine" and cfg.la_out_bias and cfg.la_out_tanh
    assert cfg.score_fusion == "logits" and cfg.sru_dropout == 0.5 and cfg.head_dropout == 0.5


def test_without_module_prefix_and_without_num_batches_tracked() -> None:
    src = {k.removeprefix("module."): v for k, v in authors_state(tracked=False).items()}
    cfg, ours = convert_authors_state_dict(src)
    assert cfg.backbone == "resnet34"
    tracked = [k for k in ours if k.endswith("num_batches_tracked")]
    assert tracked and all(ours[k].dtype == torch.long and int(ours[k]) == 0 for k in tracked)
    GLANet(cfg).load_state_dict(ours, strict=True)


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_other_trunks_are_inferred(backbone: str) -> None:
    cfg, ours = convert_authors_state_dict(authors_state(backbone))
    assert cfg.backbone == backbone
    assert ours["heads.gs.sru.rnn_lst.0.weight"].shape[0] == 2 * (2048 if backbone == "resnet50" else 512)


# -- the converted model computes what theirs did -------------------------------------------------


def _sru(x: Tensor, state: dict[str, Tensor], prefix: str) -> Tensor:
    """The `sru` recurrence (notes/reference.md) with their weights: x (T, D) -> h (T, H)."""
    layer = 0
    while f"{prefix}rnn_lst.{layer}.weight" in state:
        p = f"{prefix}rnn_lst.{layer}."
        w, v, b = state[p + "weight"], state[p + "weight_c"], state[p + "bias"]
        k = w.shape[1] // H  # 4 matrices when n_in != H, else 3
        u = (x @ w).view(-1, H, k)
        c = torch.zeros(H)
        hs = []
        for t in range(x.shape[0]):
            f = torch.sigmoid(u[t, :, 1] + v[:H] * c + b[:H])
            r = torch.sigmoid(u[t, :, 2] + v[H:] * c + b[H:])
            c = (c - u[t, :, 0]) * f + u[t, :, 0]
            skip = u[t, :, 3] if k == 4 else state[p + "scale_x"] * x[t]
            hs.append((c - skip) * r + skip)
        x = torch.stack(hs)
        layer += 1
    return x


def _pool(fmap: Tensor, scores: Tensor) -> Tensor:
    """fmap (C, h, w), scores (h*w,) -> sum of softmax(scores) * F over the positions, (C,)."""
    return fmap.flatten(1) @ torch.softmax(scores, dim=0)


def test_logits_equal_a_hand_computation_with_the_source_weights(
    theirs: dict[str, Tensor], converted: Any
) -> None:
    model = converted[2]
    clip = torch.randn(1, 2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    t = "module.temporal."
    with torch.no_grad():
        out = model(clip)
        fmaps = model.backbone(clip[0])  # (T, C, 2, 2); the trunk's weights are checked equal above
        gp, sa, la = [], [], []
        for f in fmaps:
            gp.append(f.mean(dim=(1, 2)))
            m = (
                theirs[t + "attention_auto.conv.weight"].flatten() * f.pow(2).mean(0)
                + theirs[t + "attention_auto.conv.bias"]
            )
            sa.append(_pool(f, m.flatten()))
            pos = f.flatten(1).T  # (h*w, C)
            hid = torch.tanh(
                pos @ theirs[t + "attention_learned.linear.0.weight"].T
                + theirs[t + "attention_learned.linear.0.bias"]
            )
            score = torch.tanh(
                hid @ theirs[t + "attention_learned.linear.2.weight"].T
                + theirs[t + "attention_learned.linear.2.bias"]
            )
            la.append(_pool(f, score.flatten()))
        gp_, sa_, la_ = torch.stack(gp), torch.stack(sa), torch.stack(la)
        inputs = {
            "reason_auto": torch.cat([gp_, sa_], 1),
            "reason_learned": torch.cat([gp_, la_], 1),
            "reason_average": gp_,
        }
        logits = {}
        for name, x in inputs.items():
            h = _sru(x, theirs, f"{t}{name}.rnn.")
            logits[name] = (h @ theirs[f"{t}{name}.fc.weight"].T + theirs[f"{t}{name}.fc.bias"]).mean(0)
    # Our stream order is (GS, GL, GP).
    for i, name in enumerate(("reason_auto", "reason_learned", "reason_average")):
        torch.testing.assert_close(out.logits[0, i], logits[name], rtol=1e-4, atol=1e-5)
    fused = torch.softmax(
        (logits["reason_average"] + logits["reason_auto"] + logits["reason_learned"]) / 3, dim=0
    )
    torch.testing.assert_close(out.fused[0], fused, rtol=1e-4, atol=1e-6)


def test_the_sa_stream_uses_the_affine_conv(theirs: dict[str, Tensor]) -> None:
    clip = torch.randn(1, 2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    outs = []
    for a in (1.0, -3.0):
        src = dict(theirs)
        src["module.temporal.attention_auto.conv.weight"] = torch.full((1, 1, 1, 1), a)
        cfg, ours = convert_authors_state_dict(src)
        model = GLANet(cfg)
        model.load_state_dict(ours)
        with torch.no_grad():
            outs.append(model.eval()(clip))
    assert not torch.allclose(outs[0].maps["sa"], outs[1].maps["sa"])
    assert not torch.allclose(outs[0].logits[0, 0], outs[1].logits[0, 0])  # GS
    torch.testing.assert_close(outs[0].logits[0, 2], outs[1].logits[0, 2])  # GP does not see SA


# -- refusals -------------------------------------------------------------------------------------


def test_a_missing_key_is_named(theirs: dict[str, Tensor]) -> None:
    src = dict(theirs)
    del src["module.temporal.reason_auto.rnn.rnn_lst.1.weight_c"]
    with pytest.raises(
        ValueError, match=r"1 missing \(module\.temporal\.reason_auto\.rnn\.rnn_lst\.1\.weight_c\)"
    ):
        convert_authors_state_dict(src)


def test_an_unexpected_key_is_named(theirs: dict[str, Tensor]) -> None:
    src = dict(theirs)
    src["module.temporal.alpha"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"1 unexpected \(module\.temporal\.alpha\)"):
        convert_authors_state_dict(src)


def test_a_wrong_shape_is_named(theirs: dict[str, Tensor]) -> None:
    src = dict(theirs)
    src["module.temporal.reason_learned.fc.bias"] = torch.zeros(K + 1)
    with pytest.raises(ValueError, match=r"heads\.gl\.fc\.bias \(8,\) vs \(7,\)"):
        convert_authors_state_dict(src)


def test_our_own_state_dict_is_refused(converted: Any) -> None:
    with pytest.raises(ValueError, match="already glanet's own"):
        convert_authors_state_dict(converted[2].state_dict())


def test_a_state_dict_of_something_else_is_refused() -> None:
    with pytest.raises(ValueError, match=r"no module\.spatial\.net"):
        convert_authors_state_dict({"encoder.weight": torch.zeros(2)})


# -- command line ---------------------------------------------------------------------------------


def test_cli_writes_a_checkpoint_that_loads(
    tmp_path: Path, theirs: dict[str, Tensor], converted: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out, names = tmp_path / "kinetics_glanet.pth", tmp_path / "out" / "ours.pt", tmp_path / "classes.txt"
    torch.save(theirs, src)
    names.write_text("".join(f"action {i}\n" for i in range(K)) + "\n")
    assert main(["--src", str(src), "--out", str(out), "--class-names", str(names), "--fps", "30"]) == 0
    assert "wrote" in capsys.readouterr().out

    ck = load_checkpoint(out, num_classes=K)
    assert ck.cfg == converted[0]
    assert ck.class_names == tuple(f"action {i}" for i in range(K))
    assert ck.preprocessing == {
        "resize": [256],
        "crop": 224,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "color": "rgb",
        "interpolation": "bilinear",
    }
    assert {
        k: ck.sampling[k] for k in ("fps", "window", "stride", "mode", "segments", "frames_per_segment")
    } == {
        "fps": 30.0,
        "window": 12,
        "stride": 12,
        "mode": "tsn",
        "segments": 12,
        "frames_per_segment": 1,
    }
    assert ck.provenance["converted_from"] == "kinetics_glanet.pth"
    assert str(tmp_path) not in repr(ck.provenance)
    assert ck.provenance["dropped_keys"] == [
        "module.temporal.attention_learned.conv.0.weight",
        "module.temporal.attention_learned.conv.0.bias",
    ]
    for key, value in converted[1].items():
        assert torch.equal(ck.model.state_dict()[key], value), key
    with torch.no_grad():
        res = ck.model(torch.randn(1, 2, 3, 64, 64))
    assert torch.isfinite(res.fused).all() and torch.isfinite(res.logits).all()


def test_cli_without_class_names(tmp_path: Path, theirs: dict[str, Tensor]) -> None:
    src, out = tmp_path / "theirs.pth", tmp_path / "ours.pt"
    torch.save(theirs, src)
    assert main(["--src", str(src), "--out", str(out)]) == 0
    assert load_checkpoint(out).class_names == tuple(f"class_{i:03d}" for i in range(K))


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def _cli_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    return err


def test_cli_errors_are_one_line(
    tmp_path: Path, theirs: dict[str, Tensor], capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = tmp_path / "theirs.pth", tmp_path / "ours.pt"
    assert "source file not found" in _cli_error(["--src", str(src), "--out", str(out)], capsys)

    torch.save(theirs, src)
    few = tmp_path / "few.txt"
    few.write_text("a\nb\n")
    assert "2 class names given, but theirs.pth has 7 classes" in _cli_error(
        ["--src", str(src), "--out", str(out), "--class-names", str(few)], capsys
    )
    assert "class file not found" in _cli_error(
        ["--src", str(src), "--out", str(out), "--class-names", str(tmp_path / "nope.txt")], capsys
    )
    assert "--out must differ from --src" in _cli_error(["--src", str(src), "--out", str(src)], capsys)
    assert "window (12) must be a multiple of data.stride (5)" in _cli_error(
        ["--src", str(src), "--out", str(out), "--stride", "5"], capsys
    )

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"module.x": Payload(marker)}, protocol=2))
    assert "weights_only=True" in _cli_error(["--src", str(evil), "--out", str(out)], capsys)
    assert not marker.exists()

    assert main(["--src", str(src), "--out", str(out)]) == 0
    capsys.readouterr()
    assert "already a glanet checkpoint" in _cli_error(
        ["--src", str(out), "--out", str(tmp_path / "x.pt")], capsys
    )
    assert not out.with_name("x.pt").exists()


def test_cli_as_a_module_exits_2_without_a_traceback(tmp_path: Path) -> None:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "glanet.convert",
            "--src",
            str(tmp_path / "missing.pth"),
            "--out",
            str(tmp_path / "o.pt"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error: ") and "missing.pth" in res.stderr
    assert "Traceback" not in res.stderr and res.stderr.count("\n") == 1
