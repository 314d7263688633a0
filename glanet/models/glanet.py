"""GLANet assembled: backbone -> GP/SA/LA -> composite features -> one SRU per stream -> fusion.

One set of weights, three ways to run it (DESIGN.md, "Explicit state"):
    encode(frames (N,3,H,W)) -> Features                    # heavy, stateless
    temporal_step(features, state) -> (StepOutput, State)   # light: SRU step + head per stream
    forward(clip (B,T,3,H,W)) -> ClipOutput                 # equals T calls of the two above
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from glanet.config import ModelConfig
from glanet.models.attention import GlobalPooling, LearnedAttention, StatisticAttention
from glanet.models.backbone import ResNetTrunk, load_imagenet_weights
from glanet.models.fusion import FeatureFusion
from glanet.models.sru import SRU


class Features(NamedTuple):
    """What `encode` gives for N frames."""

    streams: tuple[Tensor, ...]  # one (N, D_s) per stream, in `stream_names` order
    sa_map: Tensor  # (N, h, w) statistic attention T (eq. 4)
    la_map: Tensor  # (N, h, w) learned attention T (eq. 7)


class State(NamedTuple):
    """Temporal state of B independent sequences, batch first so rows can be batched and reset."""

    c: Tensor  # (B, S, L, H) SRU cell states per stream and layer
    logit_sum: Tensor  # (B, S, K) sum of the per-step logits since the sequence began
    steps: Tensor  # (B,) steps since the sequence began (float)


class StepOutput(NamedTuple):
    """The prediction for the clip seen so far (the mean of its per-step logits, eq. 16)."""

    logits: Tensor  # (B, S, K)
    probs: Tensor  # (B, S, K) softmax per stream
    fused: Tensor  # (B, K) eq. 19 / 20
    sa_map: Tensor | None = None  # (B, h, w), filled by `step`
    la_map: Tensor | None = None


class ClipOutput(NamedTuple):
    logits: Tensor  # (B, S, K) per stream, mean over time of the per-step logits (eq. 16)
    probs: Tensor  # (B, S, K)
    fused: Tensor  # (B, K)
    sa_map: Tensor  # (B, T, h, w)
    la_map: Tensor  # (B, T, h, w)


def fused_log_probs(logits: Tensor, score_fusion: str) -> Tensor:
    """Log of the fused prediction from per-stream logits (B, S, K) -> (B, K).

    probs: log((1/S) sum_s softmax(z_s)) (eqs. 19-20); logits: log_softmax((1/S) sum_s z_s) (reference).
    """
    if score_fusion == "logits":
        return torch.log_softmax(logits.mean(dim=1), dim=-1)
    return torch.logsumexp(torch.log_softmax(logits, dim=-1), dim=1) - math.log(logits.shape[1])


def reset_state(state: State, rows: Tensor) -> State:
    """Zero the rows (B,) bool of `state`: those sequences start again."""
    # torch.where, not a multiply by 0: a row whose state went NaN/inf must recover too.
    return State(
        torch.where(rows[:, None, None, None], 0.0, state.c),
        torch.where(rows[:, None, None], 0.0, state.logit_sum),
        torch.where(rows, 0.0, state.steps),
    )


class StreamHead(nn.Module):
    """One temporal stream: 3-layer SRU (eqs. 11-15), per-step linear classifier (eq. 16)."""

    def __init__(self, in_dim: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.sru = SRU(
            in_dim,
            cfg.sru_hidden,
            num_layers=cfg.sru_layers,
            dropout=cfg.sru_dropout,
            rescale=cfg.sru_rescale,
            use_tanh=cfg.sru_use_tanh,
            variant=cfg.sru_variant,
        )
        self.dropout = nn.Dropout(cfg.head_dropout)
        self.fc = nn.Linear(cfg.sru_hidden, cfg.num_classes)


class GLANet(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = ResNetTrunk(cfg.backbone)
        channels = self.backbone.out_channels
        self.gp = GlobalPooling()
        self.sa = StatisticAttention(cfg.sa_map, cfg.sa_temperature, cfg.sa_detach_map)
        self.la = LearnedAttention(channels, cfg.la_hidden, cfg.la_out_bias, cfg.la_out_tanh)
        self.fusion = FeatureFusion(cfg.feature_fusion)
        composite = self.fusion.out_dim(channels)
        dims = {"GS": composite, "GL": composite, "GP": channels, "SA": channels, "LA": channels}
        self.heads = nn.ModuleDict({name.lower(): StreamHead(dims[name], cfg) for name in self.stream_names})

    @property
    def stream_names(self) -> tuple[str, ...]:
        return self.cfg.stream_names

    @property
    def feature_dims(self) -> tuple[int, ...]:
        return tuple(head.sru.input_size for head in self.heads.values())

    # -- spatial part ---------------------------------------------------------------------------
    def encode(self, frames: Tensor) -> Features:
        """frames (N, 3, H, W), normalised -> per-stream features and the SA/LA maps."""
        fmap = self.backbone(frames)  # (N, C, h, w)
        gp = self.gp(fmap)  # eq. 2, (N, C)
        sa, sa_map = self.sa(fmap)  # eqs. 3-5
        la, la_map = self.la(fmap)  # eqs. 6-8
        if self.cfg.fusion == "early":
            streams = (self.fusion(gp, sa), self.fusion(gp, la), gp)  # eqs. 9-10: GS, GL, GP
        else:
            streams = (gp, sa, la)
        return Features(streams, sa_map, la_map)

    # -- temporal part --------------------------------------------------------------------------
    def init_state(
        self, batch: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> State:
        cfg = self.cfg
        dtype = dtype or torch.float32
        s = len(self.stream_names)
        return State(
            torch.zeros(batch, s, cfg.sru_layers, cfg.sru_hidden, device=device, dtype=dtype),
            torch.zeros(batch, s, cfg.num_classes, device=device, dtype=dtype),
            torch.zeros(batch, device=device, dtype=dtype),
        )

    def _scores(self, logits: Tensor) -> tuple[Tensor, Tensor]:
        return torch.softmax(logits, dim=-1), fused_log_probs(logits, self.cfg.score_fusion).exp()

    def temporal_step(
        self, features: Features | tuple[Tensor, ...], state: State
    ) -> tuple[StepOutput, State]:
        """Advance every stream by one frame. `features` may be a Features or its tuple of streams."""
        streams = features.streams if isinstance(features, Features) else features
        c_out, step_logits = [], []
        for i, head in enumerate(self.heads.values()):
            h, c = head.sru.step(streams[i], state.c[:, i].transpose(0, 1))  # c: (L, B, H)
            c_out.append(c.transpose(0, 1))
            step_logits.append(head.fc(head.dropout(h)))  # (B, K)
        logit_sum = state.logit_sum + torch.stack(step_logits, dim=1)  # (B, S, K)
        steps = state.steps + 1
        logits = logit_sum / steps[:, None, None]
        probs, fused = self._scores(logits)
        return StepOutput(logits, probs, fused), State(torch.stack(c_out, dim=1), logit_sum, steps)

    def step(self, frames: Tensor, state: State) -> tuple[StepOutput, State]:
        """encode + temporal_step for one frame per sequence: frames (B, 3, H, W)."""
        feats = self.encode(frames)
        out, state = self.temporal_step(feats, state)
        return out._replace(sa_map=feats.sa_map, la_map=feats.la_map), state

    # -- clips ----------------------------------------------------------------------------------
    def forward(self, clip: Tensor) -> ClipOutput:
        """clip (B, T, 3, H, W) -> per-stream and fused predictions for the clip, and the maps."""
        if clip.dim() != 5:
            raise ValueError(f"clip {tuple(clip.shape)} must be (B, T, 3, H, W)")
        b, t = clip.shape[:2]
        feats = self.encode(clip.flatten(0, 1))  # (B*T, ...)
        logits = []
        for i, head in enumerate(self.heads.values()):
            x = feats.streams[i].view(b, t, -1).transpose(0, 1)  # (T, B, D)
            h, _ = head.sru(x)  # (T, B, H)
            logits.append(head.fc(head.dropout(h)).mean(dim=0))  # eq. 16: mean over the steps, (B, K)
        stacked = torch.stack(logits, dim=1)  # (B, S, K)
        probs, fused = self._scores(stacked)
        hw = feats.sa_map.shape[1:]
        return ClipOutput(stacked, probs, fused, feats.sa_map.view(b, t, *hw), feats.la_map.view(b, t, *hw))


def build_model(cfg: ModelConfig, imagenet_weights: str | None = None, pretrained: bool = False) -> GLANet:
    """A GLANet; with `pretrained` (or a weights path) its trunk starts from ImageNet weights."""
    model = GLANet(cfg)
    if pretrained or imagenet_weights is not None:
        load_imagenet_weights(model.backbone, imagenet_weights)
    return model
