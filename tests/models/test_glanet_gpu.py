"""GLANet on CUDA: the same parity as on the CPU, and bf16 autocast agreeing on the top-1 class.
Marked `gpu`: skipped visibly where there is no CUDA device."""

from __future__ import annotations

import pytest
import torch

from glanet.models import GLANet
from glanet.models.config import ModelConfig

pytestmark = pytest.mark.gpu


def test_cuda_forward_equals_steps_and_matches_cpu():
    torch.manual_seed(0)
    model = GLANet(ModelConfig(backbone="resnet18", num_classes=6, sru_hidden=64)).eval()
    clip = torch.randn(2, 5, 3, 112, 112)
    with torch.no_grad():
        cpu = model(clip)
        gpu_model = model.cuda()
        gpu = gpu_model(clip.cuda())
        state = gpu_model.init_state(2, device="cuda")
        for t in range(clip.shape[1]):
            out, state = gpu_model.step(clip[:, t].cuda(), state)
    assert (out.logits - gpu.logits).abs().max().item() <= 1e-4
    assert (gpu.fused.cpu() - cpu.fused).abs().max().item() <= 1e-4


def test_cuda_bf16_autocast_keeps_top1():
    torch.manual_seed(0)
    model = GLANet(ModelConfig(backbone="resnet18", num_classes=6, sru_hidden=64)).eval().cuda()
    clip = torch.randn(4, 4, 3, 112, 112, device="cuda")
    with torch.no_grad():
        ref = model(clip)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = model(clip)
    assert torch.isfinite(low.fused).all()
    assert (low.fused.float() - ref.fused).abs().max().item() < 0.05
