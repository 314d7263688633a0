"""Shared by the overlay and dashboard tests: a Prediction built from just the parts a test cares about."""

from __future__ import annotations

import numpy as np

from stream.types import Frame, Prediction


def fake_prediction(
    probs: np.ndarray,
    class_names: tuple[str, ...],
    *,
    image: np.ndarray,
    sa_map: np.ndarray,
    la_map: np.ndarray,
    box: tuple[float, float, float, float],
    history: int = 30,
    window: int = 30,
    index: int = 7,
    latency_s: float = 0.04,
    camera: str = "",
    truth: str | None = None,
) -> Prediction:
    """Branches GS/GL/GP whose probabilities are `probs` rolled by 0, 1, 2."""
    return Prediction(
        frame=Frame(image, index, index / 30, 0.0, camera=camera, truth=truth),
        step=index,
        history=history,
        window=window,
        probs=probs,
        raw_probs=probs,
        branch_probs=np.stack([np.roll(probs, s) for s in range(3)]),
        branch_names=("GS", "GL", "GP"),
        class_names=class_names,
        maps={"sa": sa_map, "la": la_map},
        crop_box=box,
        latency_s=latency_s,
    )
