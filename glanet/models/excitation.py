"""SMNet's excitation modules: SE (spatio-temporal excitation) and ME (motion excitation).

SMNet (Yang, Lu, Zhou, Entropy 2022) publishes no equations; the gaps are filled from its named sources:
  - SE spatial part, from ACTION-Net's STE: the channel mean of each frame, a (k,3,3) Conv3d (1 -> 1 channel)
    over (time, h, w), sigmoid -> one map s (N*T, 1, H, W).
  - SE channel part, SMNet's "group convolution over time", from ACTION-Net's CE: global average pool,
    1x1 squeeze C -> C/r, a channel-wise (groups = C/r) Conv1d over time of kernel k, ReLU (as ACTION-Net),
    1x1 expand C/r -> C, sigmoid -> c (N*T, C, 1, 1).
  - ME, TEA's: reduced = BN(1x1 conv C -> C/r); diff = dwconv3x3(reduced[t+1]) - reduced[t], the last
    frame's 0 (TEA pads the end); average pool, 1x1 expand + BN, sigmoid -> m (N*T, C, 1, 1).
  - the module's output y = x + x(s - 0.5) + x(c - 0.5) + x(m - 0.5) (TEA's x + x(sigma - 0.5), summed over
    the parts): identity when every sigmoid is 0.5, so an ImageNet trunk starts unchanged.
Every conv is bias-free, as in both sources.

Clip mode: x is (N*T, C, H, W) with the clip length T given (TSM/TEA's n_segment). Causal mode looks only at
the past: the temporal convolutions pad k-1 zero frames on the left instead of (k-1)/2 on each side, and ME
takes diff[t] = dwconv3x3(reduced[t]) - reduced[t-1], diff[0] = 0 (a stream's first frame has no motion).
`step` runs the causal mode one frame at a time, x (N, C, H, W), with the buffers of `state_shapes`; a
state of zeros is exactly the zero padding of the clip run, so T steps equal the causal clip run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PARTS = ("se", "me")


def time_pads(kernel: int, causal: bool) -> tuple[int, int]:
    """Zero frames before and after the clip for a temporal convolution of `kernel`."""
    return (kernel - 1, 0) if causal else ((kernel - 1) // 2, (kernel - 1) // 2)


def frames_first(x: Tensor, t: int) -> Tensor:
    """(N*T, ...) -> (N, T, ...)."""
    return x.view(-1, t, *x.shape[1:])


class SpatialExcitation(nn.Module):
    """SE's spatial part (ACTION-Net's STE): a sigmoid map over (h, w) from k frames' channel means."""

    def __init__(self, kernel: int = 3) -> None:
        super().__init__()
        self.kernel = kernel
        self.conv = nn.Conv3d(1, 1, (kernel, 3, 3), padding=(0, 1, 1), bias=False)  # time padded by hand

    def forward(self, x: Tensor, t: int, causal: bool) -> Tensor:
        m = frames_first(x.mean(dim=1), t).unsqueeze(1)  # (N, 1, T, H, W)
        m = F.pad(m, (0, 0, 0, 0, *time_pads(self.kernel, causal)))
        return torch.sigmoid(self.conv(m)).transpose(1, 2).flatten(0, 1)  # (N*T, 1, H, W)

    def step(self, x: Tensor, past: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """x (N, C, H, W), past (N, k-1, H, W): the last k-1 channel means (None when k = 1)."""
        m = x.mean(dim=1, keepdim=True)
        seq = m if past is None else torch.cat([past, m], dim=1)  # (N, k, H, W), oldest first
        s = torch.sigmoid(self.conv(seq.unsqueeze(1)))[:, :, 0]  # (N, 1, H, W)
        return s, None if past is None else seq[:, 1:]


class ChannelExcitation(nn.Module):
    """SE's channel part (ACTION-Net's CE, channel-wise in time): channel weights from k frames' pools."""

    def __init__(self, channels: int, reduction: int = 16, kernel: int = 3) -> None:
        super().__init__()
        reduced = max(1, channels // reduction)
        self.kernel = kernel
        self.squeeze = nn.Conv1d(channels, reduced, 1, bias=False)
        self.temporal = nn.Conv1d(reduced, reduced, kernel, groups=reduced, bias=False)
        self.expand = nn.Conv1d(reduced, channels, 1, bias=False)

    def forward(self, x: Tensor, t: int, causal: bool) -> Tensor:
        p = frames_first(x.mean(dim=(2, 3)), t).transpose(1, 2)  # (N, C, T)
        q = F.pad(self.squeeze(p), time_pads(self.kernel, causal))
        c = torch.sigmoid(self.expand(torch.relu(self.temporal(q))))  # (N, C, T)
        return c.transpose(1, 2).flatten(0, 1)[..., None, None]  # (N*T, C, 1, 1)

    def step(self, x: Tensor, past: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """x (N, C, H, W), past (N, k-1, C/r): the last k-1 squeezed vectors (None when k = 1)."""
        q = self.squeeze(x.mean(dim=(2, 3)).unsqueeze(-1))  # (N, C/r, 1)
        seq = q if past is None else torch.cat([past.transpose(1, 2), q], dim=2)  # (N, C/r, k)
        c = torch.sigmoid(self.expand(torch.relu(self.temporal(seq))))  # (N, C, 1)
        return c[..., None], None if past is None else seq[:, :, 1:].transpose(1, 2)


class MotionExcitation(nn.Module):
    """ME (TEA's): channel weights from the difference of adjacent frames' reduced features."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        reduced = max(1, channels // reduction)
        self.reduce = nn.Conv2d(channels, reduced, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(reduced)
        self.dwconv = nn.Conv2d(reduced, reduced, 3, padding=1, groups=reduced, bias=False)
        self.expand = nn.Conv2d(reduced, channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def _weights(self, diff: Tensor) -> Tensor:
        return torch.sigmoid(self.bn2(self.expand(diff.mean(dim=(2, 3), keepdim=True))))

    def forward(self, x: Tensor, t: int, causal: bool) -> Tensor:
        r = self.bn1(self.reduce(x))
        d, r = frames_first(self.dwconv(r), t), frames_first(r, t)
        moved = d[:, 1:] - r[:, :-1]  # dwconv(reduced[t+1]) - reduced[t]
        zero = torch.zeros_like(r[:, :1])
        diff = torch.cat([zero, moved] if causal else [moved, zero], dim=1)
        return self._weights(diff.flatten(0, 1))  # (N*T, C, 1, 1)

    def step(self, x: Tensor, prev: Tensor, seen: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (N, C, H, W); prev (N, C/r, H, W) the previous frame's reduced features; seen (N,) 1 once a
        previous frame exists. torch.where, not a Python branch: the step stays one exportable graph."""
        r = self.bn1(self.reduce(x))
        diff = torch.where(seen.view(-1, 1, 1, 1) > 0.5, self.dwconv(r) - prev, torch.zeros_like(r))
        return self._weights(diff), r, torch.ones_like(seen)


class SMModule(nn.Module):
    """SMNet's module: SE (spatial + channel parts) and/or ME, summed as TEA's residual excitation."""

    def __init__(self, channels: int, parts: str = "se+me", reduction: int = 16, kernel: int = 3) -> None:
        super().__init__()
        chosen = parts.split("+")
        if any(p not in PARTS for p in chosen):
            raise ValueError(f"SMModule parts {parts!r} must be 'se', 'me' or 'se+me'")
        self.kernel = kernel
        self.reduced = max(1, channels // reduction)
        self.spatial = SpatialExcitation(kernel) if "se" in chosen else None
        self.channel = ChannelExcitation(channels, reduction, kernel) if "se" in chosen else None
        self.motion = MotionExcitation(channels, reduction) if "me" in chosen else None

    @staticmethod
    def _excite(x: Tensor, gates: list[Tensor]) -> Tensor:
        return x + sum(x * (g - 0.5) for g in gates)

    def forward(self, x: Tensor, t: int, causal: bool = False) -> tuple[Tensor, Tensor | None]:
        """x (N*T, C, H, W) -> (y, the spatial map s (N*T, 1, H, W) or None without SE)."""
        s = None if self.spatial is None else self.spatial(x, t, causal)
        gates = [s] if s is not None else []
        if self.channel is not None:
            gates.append(self.channel(x, t, causal))
        if self.motion is not None:
            gates.append(self.motion(x, t, causal))
        return self._excite(x, gates), s

    def state_shapes(self, h: int, w: int) -> dict[str, tuple[int, ...]]:
        """The causal step's buffers at an (h, w) input: name -> per-row shape (all reset to 0)."""
        shapes: dict[str, tuple[int, ...]] = {}
        if self.spatial is not None and self.kernel > 1:
            shapes["se_s"] = (self.kernel - 1, h, w)
            shapes["se_c"] = (self.kernel - 1, self.reduced)
        if self.motion is not None:
            shapes["me_prev"] = (self.reduced, h, w)
            shapes["me_seen"] = ()
        return shapes

    def step(self, x: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
        """One causal frame: x (N, C, H, W) and the `state_shapes` buffers -> (y, s or None, next buffers)."""
        gates, new, s = [], {}, None
        if self.spatial is not None and self.channel is not None:
            buffered = self.kernel > 1  # a kernel of 1 looks at the current frame only
            s, past_s = self.spatial.step(x, state["se_s"] if buffered else None)
            c, past_c = self.channel.step(x, state["se_c"] if buffered else None)
            gates += [s, c]
            if past_s is not None and past_c is not None:
                new.update(se_s=past_s, se_c=past_c)
        if self.motion is not None:
            m, new["me_prev"], new["me_seen"] = self.motion.step(x, state["me_prev"], state["me_seen"])
            gates.append(m)
        return self._excite(x, gates), s, new
