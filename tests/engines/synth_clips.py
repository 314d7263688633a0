"""Held-out SynthActions clips for a checkpoint, shared by the engine agreement tests."""

from __future__ import annotations

from pathlib import Path

import torch

from glanet.checkpoint import load_checkpoint
from glanet.data.synth_render import CLASSES, generate_video
from glanet.data.transforms import EvalTransform


def validation_clips(checkpoint: Path, count: int, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(clips (N, T, 3, S, S), PyTorch's fused probabilities of each clip (N, K)): seeds 5000+, never seen in
    training, classes in turn, preprocessed as the checkpoint says."""
    ck = load_checkpoint(checkpoint)
    transform = EvalTransform.from_preprocessing(ck.preprocessing)
    fps = float(ck.sampling["fps"])
    clips = torch.stack(
        [
            transform(generate_video(i % len(CLASSES), 5000 + i, num_frames=frames, size=128, fps=fps).frames)
            for i in range(count)
        ]
    )
    with torch.no_grad():
        return clips, ck.model(clips).fused
