"""The export manifest: `manifest.json` beside the exported graphs says what they are, where from.

It records each graph's file, sha256, inputs and outputs (batch symbolic), the model's online spec, classes,
preprocessing and sampling, and the source checkpoint; builds (e.g. OpenVINO int8) add their own entry
under `builds`. Backends load graphs only through `Manifest.graph_path`/`verify`, so a graph changed after
export is refused, not run.

`read_manifest` checks the whole file before anyone uses it, and any problem is one ManifestError line that
names the field: every file name is a plain name inside the export folder (no separator, no "..", not
absolute), each field has its type, the class names are as many as the online spec's classes, and the
graphs' recorded inputs and outputs are those the online spec names, with its shapes (branches, classes,
features, state) and the image size. Class names come back through `glanet.text.safe_label`.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.errors import EngineError
from engines.graph_io import encode_inputs, encode_outputs, step_inputs, step_outputs
from glanet.config import build_section
from glanet.models.config import ConfigError, ModelConfig
from glanet.models.online import OnlineSpec
from glanet.text import safe_label, safe_labels

MANIFEST = "manifest.json"
FORMAT = "glanet-engine"
FORMAT_VERSION = 2  # 2: the online spec replaced GLANet's fixed stream names and graph names
ENCODE = "encode"
TEMPORAL_STEP = "temporal_step"
BATCH = "batch"  # the symbolic batch dimension in recorded shapes
_FIELDS: dict[str, type] = {
    "graphs": dict,
    "online_spec": dict,
    "class_names": list,
    "preprocessing": dict,
    "sampling": dict,
    "image_size": list,
    "source": dict,
}


_SHA256 = re.compile(r"[0-9a-f]{64}")
_AGAIN = "export again with glanet export"


class ManifestError(EngineError):
    """An export directory that cannot be used: no manifest, a bad one, or graphs that do not match it."""

    def __init__(self, directory: str | os.PathLike[str], problem: str) -> None:
        self.directory = Path(directory)
        self.problem = problem
        super().__init__(f"{self.directory}: {problem}")


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write `data` as JSON to `path` so that a crash leaves the previous file whole."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Manifest:
    """A read manifest; `data` is the JSON object, `directory` where it and its graphs live."""

    directory: Path
    data: dict[str, Any]

    @property
    def spec(self) -> OnlineSpec:
        return OnlineSpec.from_dict(self.data["online_spec"])

    @property
    def branch_names(self) -> tuple[str, ...]:
        return self.spec.branch_names

    @property
    def class_names(self) -> tuple[str, ...]:
        return safe_labels(self.data["class_names"])  # shown on terminals and overlays: never raw escapes

    @property
    def source_weights_sha256(self) -> str:
        """The weights digest of the checkpoint this export was made from."""
        return str(self.data["source"]["weights_sha256"])

    @property
    def source_checkpoint(self) -> str:
        return str(self.data["source"].get("checkpoint", "?"))

    @property
    def preprocessing(self) -> dict[str, Any]:
        return dict(self.data["preprocessing"])

    @property
    def sampling(self) -> dict[str, Any]:
        return dict(self.data["sampling"])

    @property
    def image_size(self) -> tuple[int, int]:
        h, w = self.data["image_size"]
        return int(h), int(w)

    @property
    def builds(self) -> dict[str, Any]:
        return dict(self.data.get("builds", {}))

    def graph(self, name: str) -> dict[str, Any]:
        try:
            return self.data["graphs"][name]
        except KeyError:
            raise ManifestError(self.directory, f"the manifest has no graph {name!r}") from None

    def graph_path(self, name: str) -> Path:
        file = self.graph(name).get("file")
        if not is_plain_file_name(file):
            raise ManifestError(self.directory, f"{MANIFEST}: {_not_plain(f'graphs.{name}.file', file)}")
        return self.directory / file

    def verify(self, files: Mapping[str, str] | None = None) -> None:
        """Check the sha256 of every graph (or of `files`: name -> sha256) against the manifest."""
        if files is None:
            files = {g["file"]: g["sha256"] for g in self.data["graphs"].values()}
        verify_files(self.directory, files)


def is_plain_file_name(name: object) -> bool:
    """True for a file name that stays inside its folder: no separator, not "." or "..", not absolute."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and not any(c in name for c in "/\\:\0")
        and not os.path.isabs(name)
        and Path(name).name == name
    )


def _not_plain(field: str, name: object) -> str:
    return (
        f"field {field!r}: {name!r} is not a plain file name inside the export folder "
        "(no separators, no '..', not absolute); refusing to open it"
    )


def verify_files(directory: Path, files: Mapping[str, str]) -> None:
    for name, digest in files.items():
        if not is_plain_file_name(name):
            raise ManifestError(directory, f"{MANIFEST}: {_not_plain('file', name)}")
        path = directory / name
        if not path.is_file():
            raise ManifestError(directory, f"{name} is missing; export again with glanet export")
        if file_sha256(path) != digest:
            raise ManifestError(
                directory,
                f"{name} does not match the sha256 in {MANIFEST}: the file was modified or corrupted; "
                "export again with glanet export",
            )


def read_manifest(directory: str | os.PathLike[str]) -> Manifest:
    """Read and check `directory/manifest.json` (not the graphs' hashes: `Manifest.verify` does that)."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not directory.is_dir():
        raise ManifestError(directory, "export directory not found (make one with glanet export)")
    if not path.is_file():
        raise ManifestError(directory, f"no {MANIFEST}: not an export directory of glanet export")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ManifestError(directory, f"{MANIFEST} cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ManifestError(directory, f"{MANIFEST} is not a glanet engine manifest (format != {FORMAT!r})")
    version = data.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ManifestError(directory, f"{MANIFEST}: format_version {version!r} is not a positive integer")
    if version < FORMAT_VERSION:
        raise ManifestError(
            directory,
            f"manifest format {version} was written by an older glanet; export again with glanet export",
        )
    if version > FORMAT_VERSION:
        raise ManifestError(
            directory,
            f"manifest format {version} is newer than this glanet reads ({FORMAT_VERSION}); upgrade",
        )
    try:
        _validate(data)
    except _Invalid as e:
        raise ManifestError(directory, f"{MANIFEST}: {e}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:  # a check this file lacks
        raise ManifestError(
            directory, f"{MANIFEST} cannot be parsed ({type(e).__name__}: {e}); {_AGAIN}"
        ) from None
    return Manifest(directory, data)


# -- validation: each problem is one line naming the field ---------------------------------------------


class _Invalid(Exception):
    """A field of the manifest that cannot be used; the message names it."""


def _fail(field: str, problem: str, again: bool = True) -> _Invalid:
    return _Invalid(f"field {field!r} {problem}" + (f"; {_AGAIN}" if again else ""))


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: object) -> bool:
    return (_is_int(x) or isinstance(x, float)) and math.isfinite(x)  # type: ignore[arg-type]


def _need(ok: bool, field: str, problem: str) -> None:
    if not ok:
        raise _fail(field, problem)


def _dict(value: object, field: str, keys: Iterable[str] = ()) -> dict[str, Any]:
    _need(isinstance(value, dict), field, f"is a {type(value).__name__}, expected a dict")
    assert isinstance(value, dict)
    missing = [k for k in keys if k not in value]
    _need(not missing, field, f"lacks {', '.join(map(repr, missing))}")
    return value


def _list(value: object, field: str) -> list[Any]:
    _need(isinstance(value, list), field, f"is a {type(value).__name__}, expected a list")
    assert isinstance(value, list)
    return value


def _name(value: object, field: str) -> str:
    """A non-empty name without control characters (it names a graph tensor or is shown)."""
    _need(isinstance(value, str) and value != "", field, f"is {value!r}, expected a non-empty string")
    assert isinstance(value, str)
    _need(safe_label(value) == value, field, f"{value!r} holds control characters")
    return value


def _ints(value: object, field: str, positive: bool = True) -> list[int]:
    items = _list(value, field)
    low = 1 if positive else 0
    _need(all(_is_int(d) and d >= low for d in items), field, f"{value!r} is not a list of integers >= {low}")
    return items


def _sha(value: object, field: str) -> str:
    _need(isinstance(value, str) and bool(_SHA256.fullmatch(value)), field, "is not a sha256 (64 hex digits)")
    assert isinstance(value, str)
    return value


def _validate_spec(raw: object) -> OnlineSpec:
    spec = _dict(raw, "online_spec", ("branch_names", "num_classes", "features", "maps", "step_state"))
    field = "online_spec.branch_names"
    branches = [_name(b, field) for b in _list(spec["branch_names"], field)]
    _need(len(branches) > 0, "online_spec.branch_names", "is empty")
    _need(len(set(branches)) == len(branches), "online_spec.branch_names", f"{branches} repeats a name")
    k = spec["num_classes"]
    _need(_is_int(k) and k >= 1, "online_spec.num_classes", f"is {k!r}, expected an integer >= 1")
    for i, f in enumerate(_list(spec["features"], "online_spec.features")):
        field = f"online_spec.features[{i}]"
        _name(_dict(f, field, ("name", "shape"))["name"], f"{field}.name")
        _ints(f["shape"], f"{field}.shape")
    for i, m in enumerate(_list(spec["maps"], "online_spec.maps")):
        _name(m, f"online_spec.maps[{i}]")
    for key in ("step_state", "encode_state"):
        for i, f in enumerate(_list(spec.get(key, []), f"online_spec.{key}")):
            field = f"online_spec.{key}[{i}]"
            _dict(f, field, ("name", "shape", "dtype", "reset"))
            _name(f["name"], f"{field}.name")
            _ints(f["shape"], f"{field}.shape", positive=False)
            _name(f["dtype"], f"{field}.dtype")
            _need(_is_number(f["reset"]), f"{field}.reset", f"is {f['reset']!r}, expected a number")
    _need(isinstance(spec.get("restarts", True), bool), "online_spec.restarts", "is not true or false")
    try:
        return OnlineSpec.from_dict(spec)
    except (ValueError, TypeError, KeyError) as e:
        raise _fail("online_spec", f"is not a valid online spec ({e})") from None


_IO = dict[str, tuple[list[str], list[list[Any]]]]


def _expected_io(spec: OnlineSpec, image_size: tuple[int, int]) -> _IO:
    """Per graph key and direction ("encode.inputs", ...): the names and shapes the online spec implies.

    A map's spatial size is not in the spec: None stands for "any size"."""
    k, s = spec.num_classes, len(spec.branch_names)
    feats = [[BATCH, *f.shape] for f in spec.features]
    enc_state = [[BATCH, *f.shape] for f in spec.encode_state]
    step_state = [[BATCH, *f.shape] for f in spec.step_state]
    return {
        f"{ENCODE}.inputs": (list(encode_inputs(spec)), [[BATCH, 3, *image_size], *enc_state]),
        f"{ENCODE}.outputs": (
            list(encode_outputs(spec)),
            [*feats, *([BATCH, None, None] for _ in spec.maps), *enc_state],
        ),
        f"{TEMPORAL_STEP}.inputs": (list(step_inputs(spec)), [*feats, *step_state]),
        f"{TEMPORAL_STEP}.outputs": (
            list(step_outputs(spec)),
            [[BATCH, s, k], [BATCH, s, k], [BATCH, k], *step_state],
        ),
    }


def _shape_fits(shape: list[Any], want: list[Any]) -> bool:
    return len(shape) == len(want) and all(
        d == w if w is not None else _is_int(d) and d >= 1 for d, w in zip(shape, want, strict=True)
    )


def _validate_graph(key: str, raw: object, expected: _IO) -> None:
    field = f"graphs.{key}"
    graph = _dict(raw, field, ("file", "sha256", "inputs", "outputs"))
    if not is_plain_file_name(graph["file"]):
        raise _Invalid(_not_plain(f"{field}.file", graph["file"]))
    _sha(graph["sha256"], f"{field}.sha256")
    for direction in ("inputs", "outputs"):
        where = f"{field}.{direction}"
        names, shapes = expected[f"{key}.{direction}"]
        items = _list(graph[direction], where)
        for i, item in enumerate(items):
            _dict(item, f"{where}[{i}]", ("name", "shape"))
            _name(item["name"], f"{where}[{i}].name")
            _list(item["shape"], f"{where}[{i}].shape")
        got = [item["name"] for item in items]
        _need(got == names, where, f"names {got} are not the online spec's {names}")
        for item, want in zip(items, shapes, strict=True):
            _need(
                _shape_fits(item["shape"], want),
                f"{where}[{item['name']!r}].shape",
                f"{item['shape']} does not fit the online spec and image size "
                f"({['h' if w is None else w for w in want]})",
            )


def _validate_model_config(table: dict[str, Any], spec: OnlineSpec) -> None:
    """A GLANet config must give the online spec's branches and classes (another arch: not checked here)."""
    if table.get("arch", "glanet") != "glanet":
        return
    try:
        cfg: ModelConfig = build_section(ModelConfig, table, "model")
    except (ConfigError, TypeError, ValueError) as e:
        raise _fail("model_config", f"is not a model config this glanet reads ({e})") from None
    _need(
        cfg.branch_names == spec.branch_names,
        "online_spec.branch_names",
        f"{list(spec.branch_names)} are not the branches of model_config {list(cfg.branch_names)}",
    )
    _need(
        cfg.num_classes == spec.num_classes,
        "online_spec.num_classes",
        f"{spec.num_classes} is not model_config.num_classes {cfg.num_classes}",
    )


def _validate(data: dict[str, Any]) -> None:
    """Raise _Invalid naming the first field of `data` (a format-2 manifest) that cannot be used."""
    for name, kind in _FIELDS.items():
        if name not in data:
            raise _fail(name, "is missing")
        if not isinstance(data[name], kind):
            raise _fail(name, f"is a {type(data[name]).__name__}, expected a {kind.__name__}")
    spec = _validate_spec(data["online_spec"])

    names = data["class_names"]
    _need(all(isinstance(n, str) for n in names), "class_names", "holds something other than strings")
    _need(
        len(names) == spec.num_classes,
        "class_names",
        f"has {len(names)} names but online_spec.num_classes is {spec.num_classes}",
    )

    size = _ints(data["image_size"], "image_size")
    _need(len(size) == 2, "image_size", f"{size} is not [height, width]")
    image_size = (size[0], size[1])

    pre = _dict(data["preprocessing"], "preprocessing", ("resize", "crop", "mean", "std"))
    resize = _ints(pre["resize"], "preprocessing.resize")
    _need(
        len(resize) in (1, 2) and min(resize) >= 1,
        "preprocessing.resize",
        f"{resize} is not [short side] or [height, width]",
    )
    crop = pre["crop"]
    _need(_is_int(crop) and crop >= 1, "preprocessing.crop", f"is {crop!r}, expected an integer >= 1")
    _need(
        (crop, crop) == image_size, "preprocessing.crop", f"{crop} does not give frames of image_size {size}"
    )
    for key in ("mean", "std"):
        values = _list(pre[key], f"preprocessing.{key}")
        ok = len(values) == 3 and all(_is_number(v) for v in values)
        _need(ok, f"preprocessing.{key}", f"{values!r} is not 3 numbers")
    _need(all(v != 0 for v in pre["std"]), "preprocessing.std", "holds a zero")
    for key in ("color", "interpolation"):
        if key in pre:
            _name(pre[key], f"preprocessing.{key}")

    samp = _dict(data["sampling"], "sampling", ("fps",))
    fps = samp["fps"]
    _need(_is_number(fps) and fps > 0, "sampling.fps", f"is {fps!r}, expected a number > 0")
    for key in ("window", "stride", "segments", "frames_per_segment", "max_clips", "test_clips"):
        if key in samp:
            value = samp[key]
            _need(_is_int(value) and value >= 0, f"sampling.{key}", f"is {value!r}, expected an integer")
    if "mode" in samp:
        _name(samp["mode"], "sampling.mode")

    source = _dict(data["source"], "source", ("weights_sha256",))
    _sha(source["weights_sha256"], "source.weights_sha256")
    if "checkpoint" in source:
        _need(isinstance(source["checkpoint"], str), "source.checkpoint", "is not a string")
    if "model_config" in data:
        _validate_model_config(_dict(data["model_config"], "model_config"), spec)

    graphs = data["graphs"]
    expected = _expected_io(spec, image_size)
    for key in (ENCODE, TEMPORAL_STEP):
        if key not in graphs:
            raise _fail(f"graphs.{key}", "is missing")
        _validate_graph(key, graphs[key], expected)
    for key, graph in graphs.items():  # another graph (none yet) must also stay inside the folder
        file = graph.get("file") if isinstance(graph, dict) else None
        if file is not None and not is_plain_file_name(file):
            raise _Invalid(_not_plain(f"graphs.{key}.file", file))

    builds = data.get("builds", {})
    _dict(builds, "builds")
    for key, build in builds.items():
        field = f"builds.{key}"
        _dict(build, field)
        if "source_sha256" in build:
            _sha(build["source_sha256"], f"{field}.source_sha256")
        if "files" in build:
            for file, digest in _dict(build["files"], f"{field}.files").items():
                if not is_plain_file_name(file):
                    raise _Invalid(_not_plain(f"{field}.files", file))
                _sha(digest, f"{field}.files[{file!r}]")


def write_manifest(directory: Path, data: Mapping[str, Any]) -> Manifest:
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, **data}
    write_json_atomic(directory / MANIFEST, data)
    return Manifest(directory, dict(data))


def record_build(directory: str | os.PathLike[str], key: str, entry: Mapping[str, Any]) -> Manifest:
    """Add (or replace) `builds[key]` in the manifest of `directory`, e.g. key "openvino_int8"."""
    manifest = read_manifest(directory)
    data = dict(manifest.data)
    data["builds"] = {**manifest.builds, key: {**entry, "created_utc": utc_now()}}
    write_json_atomic(manifest.directory / MANIFEST, data)
    return Manifest(manifest.directory, data)


def hashes(directory: Path, names: Iterable[str]) -> dict[str, str]:
    return {name: file_sha256(directory / name) for name in names}
