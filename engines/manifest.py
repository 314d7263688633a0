"""The export manifest: `manifest.json` beside the exported graphs says what they are, where from.

It records each graph's file, sha256, inputs and outputs (batch symbolic), the model's online spec, classes,
preprocessing and sampling, and the source checkpoint; builds (e.g. OpenVINO int8) add their own entry
under `builds`. Backends load graphs only through `Manifest.graph_path`/`verify`, so a graph changed after
export is refused, not run.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.errors import EngineError
from glanet.models.online import OnlineSpec

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
        return tuple(self.data["class_names"])

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
        return self.directory / self.graph(name)["file"]

    def verify(self, files: Mapping[str, str] | None = None) -> None:
        """Check the sha256 of every graph (or of `files`: name -> sha256) against the manifest."""
        if files is None:
            files = {g["file"]: g["sha256"] for g in self.data["graphs"].values()}
        verify_files(self.directory, files)


def verify_files(directory: Path, files: Mapping[str, str]) -> None:
    for name, digest in files.items():
        path = directory / name
        if not path.is_file():
            raise ManifestError(directory, f"{name} is missing; export again with python -m engines.export")
        if file_sha256(path) != digest:
            raise ManifestError(
                directory,
                f"{name} does not match the sha256 in {MANIFEST}: the file was modified or corrupted; "
                "export again with python -m engines.export",
            )


def read_manifest(directory: str | os.PathLike[str]) -> Manifest:
    """Read and check `directory/manifest.json` (not the graphs' hashes: `Manifest.verify` does that)."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not directory.is_dir():
        raise ManifestError(directory, "export directory not found (make one with python -m engines.export)")
    if not path.is_file():
        raise ManifestError(directory, f"no {MANIFEST}: not an export directory of python -m engines.export")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(directory, f"{MANIFEST} cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ManifestError(directory, f"{MANIFEST} is not a glanet engine manifest (format != {FORMAT!r})")
    version = data.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ManifestError(directory, f"{MANIFEST}: format_version {version!r} is not a positive integer")
    if version < FORMAT_VERSION:
        raise ManifestError(
            directory,
            f"manifest format {version} was written by an older glanet; "
            "export again with python -m engines.export",
        )
    if version > FORMAT_VERSION:
        raise ManifestError(
            directory,
            f"manifest format {version} is newer than this glanet reads ({FORMAT_VERSION}); upgrade",
        )
    for name, kind in _FIELDS.items():
        if not isinstance(data.get(name), kind):
            raise ManifestError(directory, f"{MANIFEST}: field {name!r} is missing or not a {kind.__name__}")
    for graph in (ENCODE, TEMPORAL_STEP):
        spec = data["graphs"].get(graph)
        if not isinstance(spec, dict) or not {"file", "sha256", "inputs", "outputs"} <= set(spec):
            raise ManifestError(directory, f"{MANIFEST}: graph {graph!r} is missing or incomplete")
    return Manifest(directory, data)


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
