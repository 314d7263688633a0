"""One round of the model for many cameras: one `encode` over their frames, one `temporal_step` over all
their rows (a frame that fills several ticks takes part in as many steps), and each session's rows back.

The engine reads its weights once per round for every camera (the paper model's SRUs are 110 MB), which
is what makes N cameras in one process cheaper than N processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from engines.backend import Backend
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
    frames = torch.cat([w.session.transform([w.frame.image]) for w in work]).to(torch.float32)  # (M, 3, H, W)
    enc_state = cat_states([w.session.encode_state for w in work]) if spec.encode_state else None
    enc = backend.encode(frames, enc_state)
    if spec.encode_state:
        for w, rows in zip(work, split_state(enc.state, [1] * len(work)), strict=True):
            w.session.encode_state = rows
    last: list[StepOutput | None] = [None] * len(work)
    for j in range(max(w.ticks for w in work)):
        active = [i for i, w in enumerate(work) if w.ticks > j]
        sizes = [work[i].session.num_rows for i in active]
        for i in active:
            work[i].session.begin_tick()
        state = cat_states([work[i].session.step_state for i in active])
        # each frame's features, once per row of its session: (sum(sizes), D)
        index = torch.repeat_interleave(torch.tensor(active), torch.tensor(sizes))
        feats = {name: f[index.to(f.device)] for name, f in enc.features.items()}
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
        maps = {name: m[i] for name, m in enc.maps.items()}
        results.append(w.session.predict(w.frame, out_i, maps, w.since))
    return results
