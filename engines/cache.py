"""Where built engines are cached, and the digest that names a model's encode graph.

`$GLANET_CACHE_DIR`, else `$XDG_CACHE_HOME/glanet`, else `~/.cache/glanet`; one subdirectory per kind:
exports/, openvino/, tensorrt/, torch_tensorrt/. Its own module so that the selection and the backends
can all use it without importing each other.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any


def default_cache_dir() -> Path:
    if os.environ.get("GLANET_CACHE_DIR"):
        return Path(os.environ["GLANET_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "glanet"


def encode_digest(model_config: Any, weights_sha256: str, input_shape: tuple[int, int, int]) -> str:
    """sha256 naming the encode graph: weights, model config (it shapes the graph) and frame size."""
    text = f"{weights_sha256}|{tuple(int(d) for d in input_shape)}|{model_config!r}"
    return hashlib.sha256(text.encode()).hexdigest()
