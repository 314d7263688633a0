"""SMNet: a ResNet with SE and ME modules in every residual block, a per-frame classifier, TSN consensus.

Yang, Lu, Zhou, "A Spatio-Temporal Motion Network for Action Recognition Based on Spatial Attention"
(Entropy 24(3):368, 2022); the modules are in glanet/models/excitation.py. Choices the paper leaves open:
  - placement (TSM's "blockres"): the module runs on each block's input inside the residual branch, before
    conv1; the shortcut gets the unmodified input. The block keeps torchvision's names (layer1.0.conv1) and
    the module is `layer1.0.smnet`, so an ImageNet state_dict loads with only the smnet keys missing.
  - head: global average pool -> dropout -> fc, one logit vector per frame; a clip's prediction is their
    mean over the T frames (TSN's average consensus), also for a causal model.
  - live (causal only): every temporal operation looks at the past, the modules' buffers are the encode
    state (one row per video), and the prediction is the mean of the last `window` frames' logits, kept in
    a ring buffer (the step state). It slides, so it never restarts (`restarts = False`).

It implements the online-model contract (glanet/models/online.py). A non-causal (offline) SMNet looks at
future frames, so it has no step: `set_causal(True)` keeps its weights, and it is fine-tuned causally.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping

import torch
from torch import Tensor, nn

from glanet.models.backbone import ResNetTrunk, load_imagenet_weights
from glanet.models.config import SMNetConfig
from glanet.models.excitation import SMModule
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

STEP_STATE = (  # the live prediction's state per row
    "logit_ring",  # (W, K) the last W per-frame logits, slot ring_pos written next
    "ring_pos",  # () the next slot to write (float)
    "ring_count",  # () how many slots hold a frame, up to W (float)
)
LAYERS = ("layer1", "layer2", "layer3", "layer4")


class SMBlock(nn.Module):
    """A torchvision BasicBlock or Bottleneck (its layers, under their names) with an SM module (or None)
    on its residual branch's input."""

    def __init__(self, block: nn.Module, module: SMModule | None) -> None:
        super().__init__()
        for name, child in block.named_children():
            self.add_module(name, child)
        self.downsample = block.downsample
        self.stride = block.stride
        self.smnet = module

    def _residual(self, x: Tensor, z: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(z)))
        out = self.bn2(self.conv2(out))
        if hasattr(self, "conv3"):  # Bottleneck
            out = self.bn3(self.conv3(self.relu(out)))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    def forward(self, x: Tensor, t: int, causal: bool) -> tuple[Tensor, Tensor | None]:
        z, s = (x, None) if self.smnet is None else self.smnet(x, t, causal)
        return self._residual(x, z), s

    def step(self, x: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
        z, s, state = (x, None, {}) if self.smnet is None else self.smnet.step(x, state)
        return self._residual(x, z), s, state


def _normalised(s: Tensor) -> Tensor:
    """A spatial map (N, 1, h, w) -> (N, h, w) summing to 1 per frame (the contract's maps)."""
    flat = s.flatten(1)
    return (flat / flat.sum(dim=1, keepdim=True)).view(s.shape[0], *s.shape[2:])


class SMNet(nn.Module):
    def __init__(self, cfg: SMNetConfig, input_size: int = 224) -> None:
        super().__init__()
        self.cfg = cfg
        self.input_size = input_size
        self.backbone = ResNetTrunk(cfg.backbone)
        parts = None if cfg.modules == "none" else cfg.modules
        for name in LAYERS:
            layer = getattr(self.backbone, name)
            for i, block in enumerate(layer):
                module = None
                if parts is not None:
                    module = SMModule(block.conv1.in_channels, parts, cfg.reduction, cfg.temporal_kernel)
                layer[i] = SMBlock(block, module)
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(self.backbone.out_channels, cfg.num_classes)

    @property
    def branch_names(self) -> tuple[str, ...]:
        return self.cfg.branch_names

    @property
    def causal(self) -> bool:
        return self.cfg.causal

    def set_causal(self, causal: bool = True) -> SMNet:
        """Run the same weights causally (or not); `cfg` follows, so a saved checkpoint says which."""
        self.cfg = dataclasses.replace(self.cfg, causal=causal)
        return self

    def _blocks(self) -> Iterator[tuple[str, SMBlock, int]]:
        """(state prefix, block, side of its input at `input_size`) for every block, in order."""
        side = (self.input_size - 1) // 2 + 1  # conv1, stride 2
        side = (side - 1) // 2 + 1  # maxpool, stride 2
        for li, name in enumerate(LAYERS, start=1):
            for bi, block in enumerate(getattr(self.backbone, name)):
                yield f"l{li}_{bi}", block, side
                side = (side - 1) // block.stride + 1

    @property
    def spec(self) -> OnlineSpec:
        encode_state, maps = [], ()
        for prefix, block, side in self._blocks():
            if block.smnet is not None:
                shapes = block.smnet.state_shapes(side, side)
                encode_state += [StateField(f"{prefix}_{k}", shape) for k, shape in shapes.items()]
                maps = ("se",) if block.smnet.spatial is not None else ()
        k, w = self.cfg.num_classes, self.cfg.window
        return OnlineSpec(
            branch_names=self.branch_names,
            num_classes=k,
            features=(TensorInfo("sm", (self.backbone.out_channels,)),),
            maps=maps,
            step_state=(
                StateField(STEP_STATE[0], (w, k)),
                StateField(STEP_STATE[1], ()),
                StateField(STEP_STATE[2], ()),
            ),
            encode_state=tuple(encode_state),
            restarts=False,  # a sliding window of the last W frames: it has no start to stagger
        )

    def _require_causal(self, what: str) -> None:
        if not self.cfg.causal:
            raise RuntimeError(
                f"SMNet.{what}: this model is offline (non-causal): its temporal convolutions and motion "
                "excitation look at future frames, so it cannot run one frame at a time. To run it live, "
                "make it causal (same weights: model.set_causal(True), or model.causal = true in the config) "
                "and fine-tune it causally."
            )

    def _stem(self, x: Tensor) -> Tensor:
        bb = self.backbone
        return bb.maxpool(bb.relu(bb.bn1(bb.conv1(x))))

    # -- clips ----------------------------------------------------------------------------------
    def _clip(self, clip: Tensor) -> tuple[Tensor, Tensor | None]:
        """clip (B, T, 3, H, W) -> per-frame logits (B, T, K) and the last SE map (B*T, 1, h, w) or None."""
        if clip.dim() != 5:
            raise ValueError(f"clip {tuple(clip.shape)} must be (B, T, 3, H, W)")
        b, t = clip.shape[:2]
        x, last = self._stem(clip.flatten(0, 1)), None
        for _, block, _ in self._blocks():
            x, s = block(x, t, self.cfg.causal)
            last = last if s is None else s
        return self.fc(self.dropout(x.mean(dim=(2, 3)))).view(b, t, -1), last

    def frame_logits(self, clip: Tensor) -> Tensor:
        """clip (B, T, 3, H, W) -> each frame's logits (B, T, K) from the clip run."""
        return self._clip(clip)[0]

    def forward(self, clip: Tensor) -> ClipOutput:
        """clip (B, T, 3, H, W) -> the TSN consensus (mean of the T frames' logits) and the SE maps."""
        frames, s = self._clip(clip)
        logits = frames.mean(dim=1, keepdim=True)  # (B, 1, K)
        probs = torch.softmax(logits, dim=-1)
        maps = {} if s is None else {"se": _normalised(s).view(*frames.shape[:2], *s.shape[2:])}
        return ClipOutput(logits, probs, probs[:, 0], maps)

    # -- live (causal) --------------------------------------------------------------------------
    def init_state(self, batch: int, device: torch.device | str | None = None) -> State:
        """A fresh state of `batch` videos: the modules' buffers and the logit ring, all zeros."""
        self._require_causal("init_state")
        spec = self.spec
        return init_rows((*spec.encode_state, *spec.step_state), batch, device)

    def encode(self, frames: Tensor, state: State | None = None) -> Encoded:
        """frames (N, 3, S, S), one per video, S = input_size -> the pooled feature, the SE map and the
        modules' next buffers. `state` None starts N fresh streams."""
        self._require_causal("encode")
        size = self.input_size
        if frames.dim() != 4 or tuple(frames.shape[-2:]) != (size, size):
            raise ValueError(
                f"SMNet.encode: frames {tuple(frames.shape)} must be (N, 3, {size}, {size}): the causal "
                f"buffers are sized for input_size={size} (resize the frames, or build the model for theirs)"
            )
        if state is None:
            state = init_rows(self.spec.encode_state, frames.shape[0], frames.device)
        x, last, new = self._stem(frames), None, {}
        for prefix, block, _ in self._blocks():
            mine = {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + "_")}
            x, s, nxt = block.step(x, mine)
            new.update({f"{prefix}_{k}": v for k, v in nxt.items()})
            last = last if s is None else s
        maps = {} if last is None else {"se": _normalised(last)}
        return Encoded({"sm": x.mean(dim=(2, 3))}, maps, new)

    def temporal_step(
        self, features: Encoded | Mapping[str, Tensor], state: State
    ) -> tuple[StepOutput, State]:
        """One frame's logits into the ring; the prediction is the mean of the ring's (up to W) logits,
        recomputed from the ring each step (no running sum to drift over hours of stream)."""
        self._require_causal("temporal_step")
        feats = features.features if isinstance(features, Encoded) else features
        ring, pos, count = (state[k] for k in STEP_STATE)
        z = self.fc(self.dropout(feats["sm"]))  # (B, K)
        slots = torch.arange(ring.shape[1], dtype=pos.dtype, device=pos.device)  # (W,)
        ring = torch.where((slots == pos[:, None])[..., None], z[:, None], ring)
        count = torch.clamp(count + 1, max=ring.shape[1])
        pos = torch.remainder(pos + 1, ring.shape[1])
        filled = (slots < count[:, None])[..., None]  # the slots written so far
        logits = (torch.where(filled, ring, torch.zeros_like(ring)).sum(dim=1) / count[:, None])[:, None]
        probs = torch.softmax(logits, dim=-1)
        return StepOutput(logits, probs, probs[:, 0]), dict(zip(STEP_STATE, (ring, pos, count), strict=True))

    def step(self, frames: Tensor, state: State) -> tuple[StepOutput, State]:
        """encode + temporal_step, one frame per video: frames (B, 3, S, S); `state` from `init_state`."""
        enc = self.encode(frames, state)
        out, step_state = self.temporal_step(enc.features, state)
        return out._replace(maps=enc.maps), {**enc.state, **step_state}


class _TorchvisionKeys:
    """The trunk as load_imagenet_weights sees it: only torchvision's keys (the SM modules start fresh),
    so its checks (no missing, unexpected or misshapen key) hold for everything else."""

    def __init__(self, trunk: ResNetTrunk) -> None:
        self.trunk = trunk
        self.name = trunk.name

    def state_dict(self) -> dict[str, Tensor]:
        return {k: v for k, v in self.trunk.state_dict().items() if ".smnet." not in k}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        self.trunk.load_state_dict(state, strict=False)


def build_smnet(
    cfg: SMNetConfig, imagenet_weights: str | None = None, pretrained: bool = False, input_size: int = 224
) -> SMNet:
    """An SMNet; with `pretrained` (or a weights path) its trunk starts from ImageNet weights."""
    model = SMNet(cfg, input_size)
    if pretrained or imagenet_weights is not None:
        load_imagenet_weights(_TorchvisionKeys(model.backbone), imagenet_weights)  # type: ignore[arg-type]
    return model
