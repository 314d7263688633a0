"""The `openvino` backend: the exported graphs on the CPU in fp32, bf16 or int8 (the CPU default engine).

    backend = OpenVINOBackend.from_manifest("exports/demo", precision="bf16")

`encode` runs in the chosen precision (int8: `encode_int8.xml`, made by `glanet build`);
`temporal_step` keeps its state in fp32 (it must stay exact over time); its weights are fp32, or int8 with
precision int8 where `engines.build` compressed them (`temporal_step_int8.xml`). It is small in FLOPs but
not in bytes: the paper model's three 3x1024 SRUs are 110 MB in fp32, read per step (~5 ms; int8: ~1.6 ms).
Inputs may be torch tensors or numpy arrays; outputs are the torch backend's NamedTuples of CPU tensors,
so the streaming runtime runs unchanged. Graph names and state come from the manifest's online spec.
One backend object per thread: its infer requests are reused.

Compiled models are cached on disk (OpenVINO's CACHE_DIR) in `default_cache_dir()`: under the user's cache
(`$GLANET_CACHE_DIR`, else `$XDG_CACHE_HOME/glanet/openvino`, else `~/.cache/glanet/openvino`), not beside
the graphs, because an export may be read-only or shared; OpenVINO keys each blob by the model's content,
the device and the configuration, so one directory serves every export and precision.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import torch
from openvino.preprocess import ColorFormat, PrePostProcessor
from torch import Tensor

from engines import cache
from engines.errors import EngineError, EngineUnavailable
from engines.graph_io import FRAMES, step_inputs, unpack_encoded, unpack_step
from engines.manifest import ENCODE, TEMPORAL_STEP, Manifest, read_manifest, verify_files
from glanet.data.transforms import EvalTransform
from glanet.models.online import Encoded, OnlineSpec, State, StepOutput, init_rows

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "int8")
INT8_BUILD = "openvino_int8"  # the manifest's builds entry written by engines.build
INT8_XML = "encode_int8.xml"
INT8_BIN = "encode_int8.bin"
STEP_INT8_BUILD = "openvino_step_int8"  # temporal_step with int8-compressed weights (engines.build)
STEP_INT8_XML = "temporal_step_int8.xml"
STEP_INT8_BIN = "temporal_step_int8.bin"
# OpenVINO's CPU plugin quantises the inputs of int8-weight matmuls per group of this many values on the fly
# (its default; set here so that an upgrade cannot change it silently): most of the compressed step's speed
# (2.5-3.6x vs fp32 at 2-32 rows, against 1.3-2.2x for weights alone). The state stays fp32 in and out.
STEP_DYNAMIC_QUANT_GROUP = 32
_HINT = {"fp32": "f32", "bf16": "bf16"}


def default_cache_dir() -> Path:
    return cache.default_cache_dir() / "openvino"


def cpu_supports_bf16(core: ov.Core) -> bool:
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _array(x: Tensor | np.ndarray) -> np.ndarray:
    """A contiguous float32 numpy array (expanded/strided tensors are copied)."""
    if isinstance(x, Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def _tensor(x: np.ndarray) -> Tensor:
    return torch.from_numpy(np.asarray(x))


def _compile(core: ov.Core, path: Path | ov.Model, config: Mapping[str, Any]) -> ov.CompiledModel:
    """core.compile_model, with a graph OpenVINO cannot read (truncated, not ONNX) as one EngineError line.

    With a CACHE_DIR, compiles are one at a time across processes (a lock file in it): OpenVINO writes a
    blob straight to its final name, so a second process compiling the same model at that moment read the
    half-written blob and failed (two cluster nodes starting on a cold cache; 2 of 18 tries). A blob that is
    damaged anyway (a process killed while writing it) costs a warning and a compile without the cache.
    """
    cache_dir = config.get("CACHE_DIR")
    if cache_dir is None:
        return _compile_graph(core, path, config)
    with _cache_lock(Path(cache_dir)):
        try:
            return core.compile_model(_source(path), "CPU", dict(config))
        except RuntimeError as e:
            without = {k: v for k, v in config.items() if k != "CACHE_DIR"}
            compiled = _compile_graph(core, path, without)  # the graph's own fault: raised from here
            log.warning(
                "openvino: the model cache in %s failed (%s); compiled without it: remove that folder if "
                "this repeats", cache_dir, _first_line(e)
            )  # fmt: skip
            return compiled


def _compile_graph(core: ov.Core, path: Path | ov.Model, config: Mapping[str, Any]) -> ov.CompiledModel:
    try:
        return core.compile_model(_source(path), "CPU", dict(config))
    except RuntimeError as e:
        raise _damaged(path, e) from None


def _damaged(path: Path | ov.Model, e: RuntimeError) -> EngineError:
    return EngineError(
        f"{path}: OpenVINO cannot read this graph ({_first_line(e)}): the file is damaged; "
        "export again with glanet export"
    )


def _source(path: Path | ov.Model) -> str | ov.Model:
    return path if isinstance(path, ov.Model) else str(path)


def _first_line(e: BaseException) -> str:
    first = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
    return first[:200]


@contextlib.contextmanager
def _cache_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on `folder`'s `.compile.lock`, released when the block ends (or the process dies)."""
    try:
        handle = open(folder / ".compile.lock", "a+b")  # noqa: SIM115 (held for the block)
    except OSError:
        yield  # a read-only cache: OpenVINO only reads it, nothing to race on
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def int8_files(manifest: Manifest) -> Mapping[str, str]:
    """The int8 encode files and their sha256 from the manifest; EngineError saying how to build them."""
    build = manifest.builds.get(INT8_BUILD)
    how = f"run glanet build --manifest {manifest.directory} --backend openvino --precision int8"
    if build is None or not (manifest.directory / INT8_XML).is_file():
        raise EngineError(f"{manifest.directory}: no int8 encode model ({INT8_XML}) yet: {how}")
    if build.get("source_sha256") != manifest.graph(ENCODE)["sha256"]:
        raise EngineError(f"{manifest.directory}: {INT8_XML} was built from another encode.onnx: {how}")
    return build["files"]


def faster_float_precision(manifest: Manifest, cache_dir: str | os.PathLike[str] | None = None) -> str:
    """bf16 or fp32: whichever runs this export's encode faster on this CPU, measured once (a few calls
    of each at batch 1) and remembered in the cache per CPU, OpenVINO version and graph.

    Having bf16 instructions is not enough: on the AMD Zen 4 this project was first measured on bf16 was
    1.8x faster than fp32, on an Intel Xeon with AVX512-BF16 and no AMX it was 1.5x slower (ResNet-34).
    """
    core = ov.Core()
    if not cpu_supports_bf16(core):
        return "fp32"
    cpu = core.get_property("CPU", "FULL_DEVICE_NAME")
    key = f"{cpu}|{ov.get_version()}|{manifest.graph(ENCODE)['sha256']}"
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    record = folder / "float_precision.json"
    try:
        known = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if known.get(key) in ("bf16", "fp32"):
        return str(known[key])
    h, w = manifest.image_size
    x = {FRAMES: np.random.default_rng(0).standard_normal((1, 3, h, w), dtype=np.float32)}
    for f in manifest.spec.encode_state:  # a backbone with state (SMNet's causal buffers): fresh rows
        x[f.name] = np.full((1, *f.shape), f.reset, dtype=np.float32)
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    encode = manifest.graph(ENCODE)
    verify_files(manifest.directory, {encode["file"]: encode["sha256"]})  # never time a changed graph
    graph = manifest.graph_path(ENCODE)
    requests = {
        p: _compile(core, graph, {"INFERENCE_PRECISION_HINT": _HINT[p]}).create_infer_request() for p in times
    }
    for _ in range(2):  # warm-up, then interleaved so that a change in load hits both alike
        for r in requests.values():
            r.infer(x)
    for _ in range(5):
        for p, r in requests.items():
            start = time.perf_counter()
            r.infer(x)
            times[p].append(time.perf_counter() - start)
    best = min(times, key=lambda p: float(np.median(times[p])))
    log.info(
        "openvino: encode fp32 %.1f ms, bf16 %.1f ms on %s: default %s",
        1e3 * np.median(times["fp32"]), 1e3 * np.median(times["bf16"]), cpu, best,
    )  # fmt: skip
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = record.with_name(f".{record.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**known, key: best}, indent=1), encoding="utf-8")
        os.replace(tmp, record)
    except OSError:
        pass  # measured again next time
    return best


def best_built_precision(
    manifest: Manifest, cache_dir: str | os.PathLike[str] | None = None
) -> tuple[str, str]:
    """The fastest precision an export directory can run here, and a sentence saying which and why:
    int8 when `engines.build` made its model for this encode graph, else the faster of bf16 and fp32."""
    try:
        verify_files(manifest.directory, int8_files(manifest))
        return "int8", f"running the int8 engine built there ({INT8_XML})"
    except EngineError:
        pass
    best = faster_float_precision(manifest, cache_dir)
    how = "glanet build ... --precision int8"
    return best, f"no int8 engine built there; running {best}, the faster float precision here ({how})"


def step_int8_files(manifest: Manifest) -> Mapping[str, str] | None:
    """The int8-weight temporal_step's files and sha256, if `engines.build` made them for this export."""
    build = manifest.builds.get(STEP_INT8_BUILD)
    if build is None or not (manifest.directory / STEP_INT8_XML).is_file():
        return None
    if build.get("source_sha256") != manifest.graph(TEMPORAL_STEP)["sha256"]:
        return None
    return build["files"]


class OpenVINOBackend:
    name = "openvino"

    def __init__(
        self,
        manifest: Manifest,
        precision: str = "fp32",
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        cache: bool = True,
        threads: int | None = None,
        step_weights: str | None = None,
    ) -> None:
        """Compile the manifest's graphs (already verified: use `from_manifest`).

        `step_weights`: "int8" runs the temporal_step whose weights `engines.build` compressed (its state
        stays fp32), "fp32" the exported one; None: int8 with `precision` int8 where it was built."""
        if precision not in PRECISIONS:
            raise EngineError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)} for openvino")
        self.manifest = manifest
        self.precision = precision
        self.core = ov.Core()
        if precision == "bf16" and not cpu_supports_bf16(self.core):
            raise EngineUnavailable(
                "this CPU has no bf16 support (OpenVINO's OPTIMIZATION_CAPABILITIES lacks BF16): "
                "use --precision fp32 or int8"
            )
        self.cache_dir = self._cache(cache_dir) if cache else None
        common: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            common["INFERENCE_NUM_THREADS"] = int(threads)
        if self.cache_dir is not None:
            common["CACHE_DIR"] = str(self.cache_dir)
        if precision == "int8":
            # The ops NNCF left unquantised (the attention heads) run in fp32: exact, and faster than bf16
            # for them (0.56 vs 0.74 ms a frame for the demo model).
            encode_path, encode_hint = manifest.directory / INT8_XML, "f32"
        else:
            encode_path, encode_hint = manifest.graph_path(ENCODE), _HINT[precision]
        self.encode_path = encode_path
        self._encode_config = {**common, "INFERENCE_PRECISION_HINT": encode_hint}
        # The streaming runtime calls encode_images: its graph (with the model's own preprocessing) is
        # compiled now, so that the first round is not slow and a damaged graph is told at once; the
        # float-input graph of `encode` is compiled when first called (tests, benchmarks).
        self._float_encode: ov.CompiledModel | None = None
        self._float_request: ov.InferRequest | None = None
        self._image_requests: dict[EvalTransform, ov.InferRequest] = {}
        own = EvalTransform.from_preprocessing(manifest.preprocessing)
        self._image_requests[own] = self._image_model(own).create_infer_request()
        if step_weights is None:
            step_weights = "int8" if precision == "int8" and step_int8_files(manifest) else "fp32"
        if step_weights not in ("fp32", "int8"):
            raise EngineError(f"temporal_step weights {step_weights!r} must be fp32 or int8")
        step_config: dict[str, Any] = {**common, "INFERENCE_PRECISION_HINT": "f32"}
        if step_weights == "int8":
            if step_int8_files(manifest) is None:
                raise EngineError(
                    f"{manifest.directory}: no int8 temporal_step ({STEP_INT8_XML}) for this export yet: run "
                    f"glanet build --manifest {manifest.directory} --backend openvino "
                    "--precision int8"
                )
            step_path = manifest.directory / STEP_INT8_XML
            step_config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = STEP_DYNAMIC_QUANT_GROUP
        else:
            step_path = manifest.graph_path(TEMPORAL_STEP)
        self.step_weights = step_weights
        self._step = _compile(self.core, step_path, step_config)
        self._step_request = self._step.create_infer_request()
        self._spec = manifest.spec
        self._step_inputs = step_inputs(self._spec)
        log.info("openvino %s: %s", precision, encode_path.name)

    @classmethod
    def from_manifest(
        cls,
        directory: str | os.PathLike[str],
        precision: str = "fp32",
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        cache: bool = True,
        threads: int | None = None,
        step_weights: str | None = None,
    ) -> OpenVINOBackend:
        """Read `directory/manifest.json`, check the graphs' sha256, compile. EngineError on any problem."""
        manifest = read_manifest(directory)
        manifest.verify()
        if precision == "int8":
            verify_files(manifest.directory, int8_files(manifest))
        step_files = step_int8_files(manifest)
        if (
            step_files is not None
            and step_weights != "fp32"
            and (precision == "int8" or step_weights == "int8")
        ):
            verify_files(manifest.directory, step_files)
        return cls(
            manifest, precision, cache_dir=cache_dir, cache=cache, threads=threads, step_weights=step_weights
        )

    @staticmethod
    def _cache(cache_dir: str | os.PathLike[str] | None) -> Path | None:
        path = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            log.warning("openvino: no model cache (%s: %s); compiling every time", path, e.strerror)
            return None
        return path

    @property
    def spec(self) -> OnlineSpec:
        return self._spec

    def describe(self) -> str:
        step = (
            "temporal_step int8 weights, fp32 state" if self.step_weights == "int8" else "temporal_step fp32"
        )
        return f"openvino {self.precision} on CPU ({self.encode_path.name}; {step})"

    def encode(self, frames: Tensor | np.ndarray, state: State | None = None) -> Encoded:
        """frames (N, 3, H, W) normalised -> features, maps and the next backbone state."""
        x = _array(frames)
        size = self.manifest.image_size
        if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != size:
            raise ValueError(f"frames {tuple(x.shape)} must be (N, 3, {size[0]}, {size[1]}) for this export")
        inputs = {FRAMES: x}
        if state is None and self._spec.encode_state:  # fresh streams, as encode(frames) on a model
            state = init_rows(self._spec.encode_state, x.shape[0])
        for f in self._spec.encode_state:
            inputs[f.name] = _array(state[f.name])
        if self._float_request is None:
            self._float_request = self._encode.create_infer_request()
        return unpack_encoded(self._spec, self._float_request.infer(inputs), _tensor)

    @property
    def _encode(self) -> ov.CompiledModel:
        """The compiled float-input encode graph (compiled on first use)."""
        if self._float_encode is None:
            self._float_encode = _compile(self.core, self.encode_path, self._encode_config)
        return self._float_encode

    def encode_images(
        self, images: np.ndarray, transform: EvalTransform, state: State | None = None
    ) -> Encoded:
        """`engines.backend.encode_images`: uint8 (N, H, W, 3) BGR crops in, converted to float, put in the
        model's colour order, normalised and transposed inside the graph (OpenVINO's PrePostProcessor: the
        mean and scale fold into the first convolution), instead of in torch on the caller's thread."""
        size = self.manifest.image_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (*size, 3) or images.dtype != np.uint8:
            raise ValueError(
                f"images {images.dtype} {tuple(images.shape)} must be uint8 (N, {size[0]}, {size[1]}, 3)"
            )
        request = self._image_requests.get(transform)
        if request is None:
            request = self._image_model(transform).create_infer_request()
            self._image_requests[transform] = request
        inputs: dict[str, np.ndarray] = {FRAMES: np.ascontiguousarray(images)}
        if state is None and self._spec.encode_state:
            state = init_rows(self._spec.encode_state, images.shape[0])
        for f in self._spec.encode_state:
            inputs[f.name] = _array(state[f.name])
        return unpack_encoded(self._spec, request.infer(inputs), _tensor)

    def _image_model(self, transform: EvalTransform) -> ov.CompiledModel:
        try:  # the file was checked against the manifest's sha256 when opened
            model = self.core.read_model(str(self.encode_path))
        except RuntimeError as e:
            raise _damaged(self.encode_path, e) from None
        ppp = PrePostProcessor(model)
        frames = ppp.input(FRAMES)
        frames.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(
            ColorFormat.BGR
        )
        frames.model().set_layout(ov.Layout("NCHW"))
        steps = frames.preprocess().convert_element_type(ov.Type.f32)
        if transform.color == "rgb":
            steps.convert_color(ColorFormat.RGB)
        steps.mean([255.0 * m for m in transform.mean]).scale([255.0 * s for s in transform.std])
        return _compile(self.core, ppp.build(), self._encode_config)

    def temporal_step(
        self, features: Mapping[str, Tensor | np.ndarray], state: State
    ) -> tuple[StepOutput, State]:
        spec = self._spec
        values = (*(features[f] for f in spec.feature_names), *(state[f.name] for f in spec.step_state))
        inputs = {name: _array(v) for name, v in zip(self._step_inputs, values, strict=True)}
        return unpack_step(self._spec, self._step_request.infer(inputs), _tensor)

    def init_state(self, batch: int) -> State:
        return init_rows((*self._spec.encode_state, *self._spec.step_state), batch)
