"""engines/manifest.py: a manifest is checked whole before anything opens a file it names. Graph and build
file names that leave the export folder are refused; a tampered manifest (class count, branch names, shapes,
types, a truncated graph) is one ManifestError line naming the field, never a traceback; class names with
terminal escapes come back inert (glanet.text.safe_label)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from engines.errors import EngineError
from engines.export import export
from engines.manifest import MANIFEST, Manifest, ManifestError, file_sha256, read_manifest, verify_files
from engines.openvino_backend import OpenVINOBackend, faster_float_precision
from glanet.checkpoint import save_checkpoint
from glanet.models.config import ModelConfig
from glanet.models.glanet import build_model
from glanet.text import safe_label

CFG = ModelConfig(backbone="resnet10", num_classes=3, sru_hidden=8, sru_layers=1, la_hidden=8)
PRE = {"resize": [36, 36], "crop": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
NAMES = ["left", "right", "\x1b[31mred\x1b[0m"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model (3 classes, one with a terminal escape in its name) exported at 32 px."""
    root = tmp_path_factory.mktemp("manifest")
    torch.manual_seed(0)
    ckpt = save_checkpoint(root / "tiny.pt", build_model(CFG).eval(), class_names=NAMES, preprocessing=PRE)
    export(ckpt, root / "export")
    return root / "export"


def tampered(exported: Path, tmp_path: Path, change: Callable[[dict[str, Any]], Any]) -> Path:
    """A copy of the export whose manifest.json went through `change` (a dict edited in place)."""
    copy = tmp_path / "export"
    shutil.copytree(exported, copy)
    data = json.loads((copy / MANIFEST).read_text())
    change(data)
    (copy / MANIFEST).write_text(json.dumps(data))
    return copy


def one_line_error(fn: Callable[[], Any], kind: type[Exception] = ManifestError) -> str:
    with pytest.raises(kind) as err:
        fn()
    text = str(err.value)
    assert "\n" not in text and "Traceback" not in text, text
    return text


def test_the_export_reads_and_verifies(exported: Path) -> None:
    m = read_manifest(exported)
    m.verify()
    assert len(m.class_names) == 3 and m.spec.num_classes == 3


@pytest.mark.parametrize("resize", [[256], [256, 320]])
def test_a_short_side_or_a_height_and_width_resize_reads(
    exported: Path, tmp_path: Path, resize: list[int]
) -> None:
    # the reference config and SMNet's resize the short side ([256]); the others give [height, width]
    copy = tampered(exported, tmp_path, lambda d: d["preprocessing"].update(resize=resize))
    assert list(read_manifest(copy).preprocessing["resize"]) == resize


@pytest.mark.parametrize("resize", [[], [256, 256, 3], [0], "256"])
def test_a_bad_resize_is_refused(exported: Path, tmp_path: Path, resize: object) -> None:
    copy = tampered(exported, tmp_path, lambda d: d["preprocessing"].update(resize=resize))
    assert "preprocessing.resize" in one_line_error(lambda: read_manifest(copy))


# -- 1. file names stay inside the export folder --------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["../outside.onnx", "/tmp/outside.onnx", "sub/encode.onnx", "..", ".", "", "a\\b.onnx", 7]
)
def test_a_graph_file_outside_the_folder_is_refused(exported: Path, tmp_path: Path, name: object) -> None:
    # A real graph, with the right sha256, where the name points: the old code opened it.
    outside = tmp_path / "outside.onnx"
    shutil.copy(exported / "encode.onnx", outside)
    if name == "/tmp/outside.onnx":
        name = str(outside)

    def change(d: dict[str, Any]) -> None:
        d["graphs"]["encode"]["file"] = name

    copy = tampered(exported, tmp_path, change)
    assert (copy / "../outside.onnx").is_file()
    text = one_line_error(lambda: read_manifest(copy))
    assert "graphs.encode.file" in text
    assert "plain file name" in text or "expected" in text
    one_line_error(lambda: OpenVINOBackend.from_manifest(copy, cache=False))


def test_a_build_file_outside_the_folder_is_refused(exported: Path, tmp_path: Path) -> None:
    digest = file_sha256(exported / "encode.onnx")

    def change(d: dict[str, Any]) -> None:
        d["builds"]["openvino_int8"] = {"source_sha256": digest, "files": {"../../etc/passwd": digest}}

    copy = tampered(exported, tmp_path, change)
    text = one_line_error(lambda: read_manifest(copy))
    assert "builds.openvino_int8.files" in text and "'../../etc/passwd' is not a plain file name" in text


def test_a_manifest_made_in_code_cannot_name_a_file_outside_either(exported: Path) -> None:
    data = json.loads((exported / MANIFEST).read_text())
    data["graphs"]["encode"]["file"] = "../encode.onnx"
    m = Manifest(exported, data)
    assert "not a plain file name" in one_line_error(lambda: m.graph_path("encode"))
    assert "not a plain file name" in one_line_error(lambda: m.verify())
    one_line_error(lambda: verify_files(exported, {"/etc/passwd": "0" * 64}))


# -- 2. a tampered manifest is one line naming the field -------------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set data[a][b]... for path "a.b..." (integers index lists)."""

    def change(d: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            d = d[int(key)] if isinstance(d, list) else d[key]
        d[int(last) if isinstance(d, list) else last] = value

    return change


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            d = d[key]
        del d[last]

    return change


TAMPERED: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "fewer class names": (_set("class_names", ["left", "right"]), "field 'class_names' has 2 names"),
    "class names not strings": (_set("class_names", ["a", 2, "c"]), "field 'class_names' holds"),
    "other branch names": (
        _set("online_spec.branch_names", ["GS", "GL", "XX"]),
        "field 'online_spec.branch_names' ['GS', 'GL', 'XX'] are not the branches of model_config",
    ),
    "fewer branches": (_set("online_spec.branch_names", ["GS", "GL"]), "'online_spec.branch_names'"),
    "branches and config both changed": (
        lambda d: (
            d["online_spec"].__setitem__("branch_names", ["A", "B"]),
            d.pop("model_config"),
        ),
        "field \"graphs.temporal_step.outputs['logits'].shape\" ['batch', 3, 3] does not fit",
    ),
    "num_classes vs graphs": (
        lambda d: (
            d["online_spec"].__setitem__("num_classes", 4),
            d.pop("model_config"),
            d["class_names"].append("x"),
        ),
        "field \"graphs.temporal_step.outputs['logits'].shape\"",
    ),
    "online_spec missing a key": (_drop("online_spec.step_state"), "field 'online_spec' lacks 'step_state'"),
    "online_spec num_classes a string": (
        _set("online_spec.num_classes", "3"),
        "field 'online_spec.num_classes' is '3', expected an integer",
    ),
    "feature shape": (
        _set("online_spec.features.0.shape", [1, 2]),
        "field \"graphs.encode.outputs['feat_gs'].shape\"",
    ),
    "state shape not ints": (
        _set("online_spec.step_state.0.shape", ["x"]),
        "online_spec.step_state[0].shape",
    ),
    "graph input renamed": (
        _set("graphs.encode.inputs.0.name", "images"),
        "field 'graphs.encode.inputs' names ['images'] are not the online spec's ['frames']",
    ),
    "graph missing": (_drop("graphs.temporal_step"), "field 'graphs.temporal_step' is missing"),
    "graph lacks sha256": (_drop("graphs.encode.sha256"), "field 'graphs.encode' lacks 'sha256'"),
    "sha256 a number": (_set("graphs.encode.sha256", 5), "field 'graphs.encode.sha256' is not a sha256"),
    "image size": (_set("image_size", [32, "32"]), "field 'image_size'"),
    "image size vs graph": (
        lambda d: (d.__setitem__("image_size", [48, 48]), d["preprocessing"].__setitem__("crop", 48)),
        "field \"graphs.encode.inputs['frames'].shape\" ['batch', 3, 32, 32] does not fit",
    ),
    "crop vs image size": (_set("preprocessing.crop", 40), "field 'preprocessing.crop' 40 does not give"),
    "mean a string": (_set("preprocessing.mean", "0.5"), "field 'preprocessing.mean' is a str"),
    "fps a string": (_set("sampling.fps", "fast"), "field 'sampling.fps' is 'fast', expected a number > 0"),
    "sampling a list": (_set("sampling", [1, 2]), "field 'sampling' is a list, expected a dict"),
    "source without digest": (
        _set("source", {"checkpoint": "x.pt"}),
        "field 'source' lacks 'weights_sha256'",
    ),
    "model config unknown key": (_set("model_config.wings", 2), "field 'model_config' is not a model config"),
    "builds a list": (_set("builds", []), "field 'builds' is a list"),
    "class_names missing": (_drop("class_names"), "field 'class_names' is missing"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_a_tampered_manifest_is_one_line_naming_the_field(exported: Path, tmp_path: Path, case: str) -> None:
    change, reason = TAMPERED[case]
    copy = tampered(exported, tmp_path, change)
    text = one_line_error(lambda: read_manifest(copy))
    assert reason in text and str(copy) in text
    one_line_error(lambda: OpenVINOBackend.from_manifest(copy, cache=False))


def test_json_that_is_not_an_object_or_too_deep_is_one_line(exported: Path, tmp_path: Path) -> None:
    copy = tampered(exported, tmp_path, lambda d: None)
    (copy / MANIFEST).write_text("[" * 100_000 + "]" * 100_000)
    one_line_error(lambda: read_manifest(copy))
    (copy / MANIFEST).write_text('{"format": "glanet-engine", "format_version": 2, "graphs": []}')
    assert "field" in one_line_error(lambda: read_manifest(copy))


def test_a_truncated_graph_is_one_line(exported: Path, tmp_path: Path) -> None:
    copy = tampered(exported, tmp_path, lambda d: None)
    step = copy / "temporal_step.onnx"
    step.write_bytes(step.read_bytes()[:2000])
    assert "temporal_step.onnx does not match the sha256" in one_line_error(
        lambda: OpenVINOBackend.from_manifest(copy, cache=False)
    )
    # ... and with its sha256 brought up to date too, OpenVINO's parse error is one line as well
    data = json.loads((copy / MANIFEST).read_text())
    data["graphs"]["temporal_step"]["sha256"] = file_sha256(step)
    (copy / MANIFEST).write_text(json.dumps(data))
    text = one_line_error(lambda: OpenVINOBackend.from_manifest(copy, cache=False), EngineError)
    assert "OpenVINO cannot read this graph" in text and "export again" in text


def test_precision_timing_refuses_a_changed_graph(exported: Path, tmp_path: Path, monkeypatch) -> None:
    import engines.openvino_backend as ovb

    monkeypatch.setattr(ovb, "cpu_supports_bf16", lambda core: True)  # so that it measures, here too
    copy = tampered(exported, tmp_path, lambda d: None)
    (copy / "encode.onnx").write_bytes(b"not a graph")
    one_line_error(lambda: faster_float_precision(read_manifest(copy), tmp_path / "cache"))


# -- 5. class names cannot drive the terminal -------------------------------------------------------------


def test_manifest_class_names_come_back_inert(exported: Path) -> None:
    names = read_manifest(exported).class_names
    assert names == ("left", "right", "\\x1b[31mred\\x1b[0m")
    assert not any(ch in "".join(names) for ch in "\x1b\x9b\x07")
    assert json.loads((exported / MANIFEST).read_text())["class_names"][2] == "\\x1b[31mred\\x1b[0m"


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("walk", "walk"),
        ("sit_down 2", "sit_down 2"),
        ("Überschlag 空手", "Überschlag 空手"),  # printable non-ASCII stays
        ("\x1b[31mred", "\\x1b[31mred"),  # C0 ESC
        ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),  # OSC title change, BEL
        ("a\nb\rc\td\x00", "a\\x0ab\\x0dc\\x09d\\x00"),
        ("\x7f\x9b31m\x85", "\\x7f\\x9b31m\\x85"),  # DEL, C1 CSI, C1 NEL
        ("abc\u202edcba\u2028", "abc\\u202edcba\\u2028"),  # bidi override, line separator
    ],
)
def test_safe_label(raw: str, safe: str) -> None:
    assert safe_label(raw) == safe
    assert safe_label(safe) == safe  # idempotent: an escaped name stays as it is
