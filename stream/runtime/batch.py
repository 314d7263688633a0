"""One round of the model for many cameras: one `encode` over their frames, one `temporal_step` over all
their rows (a frame that fills several ticks takes part in as many steps), and each session's rows back.

The engine reads its weights once per round for every camera (the paper model's SRUs are 110 MB), which
is what makes N cameras in one process cheaper than N processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from engines.backend import Backend, encode_images
from glanet.models.online import StepOutput, cat_states, split_state
from stream.runtime.session import Session
from stream.types import Event, Frame, Prediction


@dataclass(frozen=True)
class Work:
    """One session's share of a round: its frame and the model ticks that frame fills."""

    session: Session
    frame: Frame
    ticks: int
    since: float  # latency is measured from here: the capture time, or when a --fast frame was taken


def step_batch(backend: Backend, work: Sequence[Work]) -> list[tuple[Prediction, list[Event]]]:
    """Run the round; the prediction (and the events it fired) of each item, in order."""
    if not work or any(w.ticks < 1 for w in work):
        raise ValueError("every item of a round fills at least one model tick")
    spec = backend.spec
    # a camera whose scene shows nothing new since its last encoded frame reuses that frame's features
    kept = [w.session.reusable(w.frame) for w in work]
    todo = [i for i, k in enumerate(kept) if k is None]
    per_item: list[tuple[dict[str, Tensor], dict[str, Tensor]] | None] = list(kept)
    enc_features: dict[str, Tensor] = {}
    enc_maps: dict[str, Tensor] = {}
    if todo:
        sessions = [work[i].session for i in todo]
        transform = sessions[0].transform  # the model's preprocessing: every session has the same
        if any(s.transform != transform for s in sessions):
            raise ValueError("the sessions of one round preprocess their frames differently")
        # cropped uint8 frames: the engine converts and normalises them (in its graph where it can)
        images = np.stack([transform.geometry(work[i].frame.image) for i in todo])
        enc_state = cat_states([s.encode_state for s in sessions]) if spec.encode_state else None
        enc = encode_images(backend, images, transform, enc_state)
        if spec.encode_state:
            for s, state_rows in zip(sessions, split_state(enc.state, [1] * len(todo)), strict=True):
                s.encode_state = state_rows
        enc_features, enc_maps = dict(enc.features), dict(enc.maps)
        for k, (s, i) in enumerate(zip(sessions, todo, strict=True)):
            one = (
                {n: f[k : k + 1] for n, f in enc_features.items()},
                {n: m[k : k + 1] for n, m in enc_maps.items()},
            )
            s.keep_encoded(*one)
            per_item[i] = one
    if len(todo) < len(work):  # some reused: every item's features and maps, in order
        items = [one for one in per_item if one is not None]
        enc_features = {n: torch.cat([one[0][n] for one in items]) for n in items[0][0]}
        enc_maps = {n: torch.cat([one[1][n] for one in items]) for n in items[0][1]}
    last: list[StepOutput | None] = [None] * len(work)
    for j in range(max(w.ticks for w in work)):
        active = [i for i, w in enumerate(work) if w.ticks > j]
        sizes = [work[i].session.num_rows for i in active]
        for i in active:
            work[i].session.begin_tick()
        state = cat_states([work[i].session.step_state for i in active])
        # each frame's features, once per row of its session: (sum(sizes), D)
        index = torch.repeat_interleave(torch.tensor(active), torch.tensor(sizes))
        feats = {name: f[index.to(f.device)] for name, f in enc_features.items()}
        out, state = backend.temporal_step(feats, state)
        start = 0
        for i, size, rows in zip(active, sizes, split_state(state, sizes), strict=True):
            work[i].session.end_tick(rows)
            last[i] = StepOutput(*(t[start : start + size] for t in out[:3]))
            start += size
    results = []
    for i, w in enumerate(work):
        out_i = last[i]
        assert out_i is not None
        frame_maps = {name: m[i] for name, m in enc_maps.items()}
        results.append(w.session.predict(w.frame, out_i, frame_maps, w.since, reused=kept[i] is not None))
    return results
