"""The three frame representations of GLANet: global pooling (GP), statistic-based attention (SA)
and learning-based attention (LA), paper eqs. 2-8.

Each takes the conv5_x activation F (N, C, H, W); SA and LA also return their attention map T (N, H, W).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

SA_MAPS = ("sum_sq", "mean_sq", "mean_sq_affine")


def attend(fmap: Tensor, scores: Tensor) -> tuple[Tensor, Tensor]:
    """Softmax `scores` (N, H*W) over the positions and pool F with it -> R (N, C), T (N, H, W)."""
    n, c, h, w = fmap.shape
    weights = torch.softmax(scores, dim=-1)  # eqs. 4 / 7
    pooled = torch.bmm(fmap.reshape(n, c, h * w), weights.unsqueeze(-1)).squeeze(-1)  # eqs. 5 / 8
    return pooled, weights.view(n, h, w)


class GlobalPooling(nn.Module):
    """Eq. 2: R_GP = (1 / HW) sum_ij F_ij."""

    def forward(self, fmap: Tensor) -> Tensor:
        return fmap.mean(dim=(2, 3))  # (N, C)


class StatisticAttention(nn.Module):
    """Eqs. 3-5: M = sum_c |F_c|^2, T = softmax(M), R_SA = sum T * F. No parameters.

    `map_kind="mean_sq"` divides M by C: the same ranking with a softmax temperature of C, which keeps
    the attention soft on unnormalised features (a trunk trained from scratch), still parameter-free.
    `temperature` divides M before the softmax (1: the paper); `mean_sq` is `sum_sq` at temperature C.
    `map_kind="mean_sq_affine"` is the published code's variant: M = a * mean_c F_c^2 + b, with a
    learnable 1x1 convolution (a, b).
    `detach_map` computes M from F with the gradient stopped: the trunk then learns from what SA pools
    (the sum of eq. 5) but not from the softmax of its own energy, which is steep at low temperature.
    """

    def __init__(self, map_kind: str = "sum_sq", temperature: float = 1.0, detach_map: bool = False) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"SA temperature ({temperature}) must be positive")
        self.temperature = float(temperature)
        self.detach_map = bool(detach_map)
        if map_kind not in SA_MAPS:
            raise ValueError(f"SA map {map_kind!r} is not one of {', '.join(SA_MAPS)}")
        self.map_kind = map_kind
        self.conv = nn.Conv2d(1, 1, kernel_size=1) if map_kind == "mean_sq_affine" else None

    def forward(self, fmap: Tensor) -> tuple[Tensor, Tensor]:
        n = fmap.shape[0]
        source = fmap.detach() if self.detach_map else fmap
        if self.map_kind == "sum_sq":
            scores = source.pow(2).sum(dim=1)  # eq. 3, (N, H, W)
        elif self.conv is None:
            scores = source.pow(2).mean(dim=1)
        else:
            scores = self.conv(source.pow(2).mean(dim=1, keepdim=True)).squeeze(1)
        if self.temperature != 1.0:
            scores = scores / self.temperature
        return attend(fmap, scores.reshape(n, -1))


class LearnedAttention(nn.Module):
    """Eqs. 6-8: M_ij = W1 tanh(W0 f_ij + b0), T = softmax(M), R_LA = sum T * F. W0 is (hidden, C).

    `out_bias` adds b1 and `out_tanh` a tanh on M: the published code's variant.
    """

    def __init__(
        self, channels: int, hidden: int = 128, out_bias: bool = False, out_tanh: bool = False
    ) -> None:
        super().__init__()
        self.w0 = nn.Linear(channels, hidden)
        self.w1 = nn.Linear(hidden, 1, bias=out_bias)
        self.out_tanh = out_tanh

    def forward(self, fmap: Tensor) -> tuple[Tensor, Tensor]:
        n, c = fmap.shape[:2]
        positions = fmap.reshape(n, c, -1).transpose(1, 2)  # (N, HW, C)
        scores = self.w1(torch.tanh(self.w0(positions))).squeeze(-1)  # eq. 6, (N, HW)
        if self.out_tanh:
            scores = torch.tanh(scores)
        return attend(fmap, scores)
