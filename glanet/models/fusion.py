"""The composite-feature layer (eqs. 9-10): R_GS = fuse(R_GP, R_SA), R_GL = fuse(R_GP, R_LA).

Concatenation is the paper's choice; max, multiply and average are the ablations of Tables II-III.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

MODES = ("concat", "max", "multiply", "average")


class FeatureFusion(nn.Module):
    def __init__(self, mode: str = "concat") -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"feature fusion {mode!r} is not one of {', '.join(MODES)}")
        self.mode = mode

    def out_dim(self, channels: int) -> int:
        return 2 * channels if self.mode == "concat" else channels

    def forward(self, global_feat: Tensor, local_feat: Tensor) -> Tensor:
        """(N, C), (N, C) -> (N, 2C) for concat (GP first), else (N, C)."""
        if self.mode == "concat":
            return torch.cat([global_feat, local_feat], dim=-1)
        if self.mode == "max":
            return torch.maximum(global_feat, local_feat)
        if self.mode == "multiply":
            return global_feat * local_feat
        return (global_feat + local_feat) / 2
