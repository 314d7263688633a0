"""GLANet assembled: backbone -> GP/SA/LA -> composite features -> one SRU per branch -> fusion.

It implements the online-model contract (glanet/models/online.py), one set of weights run three ways:
    encode(frames (N,3,H,W)) -> Encoded                     # heavy; the backbone is stateless
    temporal_step(features, state) -> (StepOutput, State)   # light: SRU step + head per branch
    forward(clip (B,T,3,H,W)) -> ClipOutput                 # equals T calls of the two above
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from glanet.models.attention import GlobalPooling, LearnedAttention, StatisticAttention
from glanet.models.backbone import ResNetTrunk, load_imagenet_weights
from glanet.models.config import ModelConfig
from glanet.models.fusion import FeatureFusion
from glanet.models.online import (
    ClipOutput,
    Encoded,
    OnlineSpec,
    State,
    StateField,
    StepOutput,
    TensorInfo,
    init_rows,
)
from glanet.models.sru import SRU

STATE = (  # GLANet's temporal state per row (the SRU cells, the running sum of logits, the step count)
    "c",  # (S, L, H) SRU cell states per branch and layer
    "logit_sum",  # (S, K) sum of the per-step logits since the sequence began
    "steps",  # () steps since the sequence began (float)
)


def fused_log_probs(logits: Tensor, score_fusion: str) -> Tensor:
    """Log of the fused prediction from per-branch logits (B, S, K) -> (B, K).

    probs: log((1/S) sum_s softmax(z_s)) (eqs. 19-20); logits: log_softmax((1/S) sum_s z_s) (reference).
    """
    if score_fusion == "logits":
        return torch.log_softmax(logits.mean(dim=1), dim=-1)
    return torch.logsumexp(torch.log_softmax(logits, dim=-1), dim=1) - math.log(logits.shape[1])


class BranchHead(nn.Module):
    """One branch's temporal model: 3-layer SRU (eqs. 11-15), per-step linear classifier (eq. 16)."""

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
            dropout_on=cfg.sru_dropout_on,
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
        self.heads = nn.ModuleDict({name.lower(): BranchHead(dims[name], cfg) for name in self.branch_names})

    @property
    def branch_names(self) -> tuple[str, ...]:
        return self.cfg.branch_names

    @property
    def feature_dims(self) -> tuple[int, ...]:
        return tuple(head.sru.input_size for head in self.heads.values())

    @property
    def spec(self) -> OnlineSpec:
        cfg, s = self.cfg, len(self.branch_names)
        return OnlineSpec(
            branch_names=self.branch_names,
            num_classes=cfg.num_classes,
            features=tuple(
                TensorInfo(name.lower(), (dim,))
                for name, dim in zip(self.branch_names, self.feature_dims, strict=True)
            ),
            maps=("sa", "la"),
            step_state=(
                StateField(STATE[0], (s, cfg.sru_layers, cfg.sru_hidden)),
                StateField(STATE[1], (s, cfg.num_classes)),
                StateField(STATE[2], ()),
            ),
            restarts=True,  # a clip's prediction is the mean of its steps' logits: it has a start
        )

    # -- spatial part ---------------------------------------------------------------------------
    def encode(self, frames: Tensor, state: State | None = None) -> Encoded:
        """frames (N, 3, H, W), normalised -> per-branch features and the SA/LA maps (no state)."""
        fmap = self.backbone(frames)  # (N, C, h, w)
        gp = self.gp(fmap)  # eq. 2, (N, C)
        sa, sa_map = self.sa(fmap)  # eqs. 3-5
        la, la_map = self.la(fmap)  # eqs. 6-8
        if self.cfg.fusion == "early":
            branches = (self.fusion(gp, sa), self.fusion(gp, la), gp)  # eqs. 9-10: GS, GL, GP
        else:
            branches = (gp, sa, la)
        names = (name.lower() for name in self.branch_names)
        return Encoded(dict(zip(names, branches, strict=True)), {"sa": sa_map, "la": la_map}, {})

    # -- temporal part --------------------------------------------------------------------------
    def init_state(self, batch: int, device: torch.device | str | None = None) -> State:
        """A fresh state of `batch` sequences (GLANet's backbone has none: it is the temporal rows' state)."""
        spec = self.spec
        return init_rows((*spec.encode_state, *spec.step_state), batch, device)

    def _scores(self, logits: Tensor) -> tuple[Tensor, Tensor]:
        return torch.softmax(logits, dim=-1), fused_log_probs(logits, self.cfg.score_fusion).exp()

    def temporal_step(
        self, features: Encoded | Mapping[str, Tensor], state: State
    ) -> tuple[StepOutput, State]:
        """Advance every branch by one frame. `features` may be an Encoded or its features."""
        feats = features.features if isinstance(features, Encoded) else features
        c_in, logit_sum, steps = (state[k] for k in STATE)
        c_out, step_logits = [], []
        for i, (name, head) in enumerate(zip(self.branch_names, self.heads.values(), strict=True)):
            h, c = head.sru.step(feats[name.lower()], c_in[:, i].transpose(0, 1))  # c: (L, B, H)
            c_out.append(c.transpose(0, 1))
            step_logits.append(head.fc(head.dropout(h)))  # (B, K)
        logit_sum = logit_sum + torch.stack(step_logits, dim=1)  # (B, S, K)
        steps = steps + 1
        logits = logit_sum / steps[:, None, None]
        probs, fused = self._scores(logits)
        state = dict(zip(STATE, (torch.stack(c_out, dim=1), logit_sum, steps), strict=True))
        return StepOutput(logits, probs, fused), state

    def step(self, frames: Tensor, state: State) -> tuple[StepOutput, State]:
        """encode + temporal_step, one frame per sequence: frames (B, 3, H, W); `state` from `init_state`."""
        enc = self.encode(frames)
        out, state = self.temporal_step(enc.features, state)
        return out._replace(maps=enc.maps), state

    # -- clips ----------------------------------------------------------------------------------
    def forward(self, clip: Tensor) -> ClipOutput:
        """clip (B, T, 3, H, W) -> per-branch and fused predictions for the clip, and the maps."""
        if clip.dim() != 5:
            raise ValueError(f"clip {tuple(clip.shape)} must be (B, T, 3, H, W)")
        b, t = clip.shape[:2]
        enc = self.encode(clip.flatten(0, 1))  # (B*T, ...)
        logits = []
        for name, head in zip(self.branch_names, self.heads.values(), strict=True):
            x = enc.features[name.lower()].view(b, t, -1).transpose(0, 1)  # (T, B, D)
            h, _ = head.sru(x)  # (T, B, H)
            logits.append(head.fc(head.dropout(h)).mean(dim=0))  # eq. 16: mean over the steps, (B, K)
        stacked = torch.stack(logits, dim=1)  # (B, S, K)
        probs, fused = self._scores(stacked)
        maps = {k: m.view(b, t, *m.shape[1:]) for k, m in enc.maps.items()}
        return ClipOutput(stacked, probs, fused, maps)


def build_model(cfg: ModelConfig, imagenet_weights: str | None = None, pretrained: bool = False) -> GLANet:
    """A GLANet; with `pretrained` (or a weights path) its trunk starts from ImageNet weights."""
    model = GLANet(cfg)
    if pretrained or imagenet_weights is not None:
        load_imagenet_weights(model.backbone, imagenet_weights)
    return model
