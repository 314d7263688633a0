"""Eqs. 17-18 on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from glanet.losses import ga_regularisation, glanet_loss

EARLY = ("GS", "GL", "GP")


def logits_for(probs: list[list[float]]) -> torch.Tensor:
    """Logits whose softmax is exactly `probs` (rows sum to 1)."""
    return torch.log(torch.tensor(probs, dtype=torch.float64))


def test_ga_zero_when_attention_leads_by_the_margin():
    gp = torch.tensor([[0.5, 0.5], [0.2, 0.8]], dtype=torch.float64)
    att = torch.tensor([[0.4, 0.6], [0.0, 1.0]], dtype=torch.float64)
    target = torch.tensor([1, 1])
    # leads by exactly 0.1 and by 0.2: max(0, 0.5-0.6+0.1) = 0, max(0, 0.8-1.0+0.1) = 0
    assert ga_regularisation(gp, att, target).item() == pytest.approx(0.0, abs=1e-12)


def test_ga_hand_computed():
    gp = torch.tensor([[0.7, 0.3], [0.1, 0.9]], dtype=torch.float64)
    att = torch.tensor([[0.6, 0.4], [0.2, 0.8]], dtype=torch.float64)
    target = torch.tensor([0, 1])
    # row 0: 0.7-0.6+0.1 = 0.2; row 1: 0.9-0.8+0.1 = 0.2 -> mean 0.2
    assert ga_regularisation(gp, att, target).item() == pytest.approx(0.2)
    # a bigger margin adds to both
    assert ga_regularisation(gp, att, target, margin=0.3).item() == pytest.approx(0.4)
    # a lagging row and a leading row: (0.7-0.6+0.1 + 0) / 2
    att2 = torch.tensor([[0.6, 0.4], [0.0, 1.0]], dtype=torch.float64)
    assert ga_regularisation(gp, att2, target).item() == pytest.approx(0.1)


def test_total_loss_is_ce_of_fused_plus_both_ga_terms():
    # one sample, target 0; streams GS, GL, GP
    probs = [[[0.5, 0.5], [0.9, 0.1], [0.6, 0.4]]]
    logits = logits_for(probs[0])[None]
    parts = glanet_loss(logits, torch.tensor([0]), EARLY)
    fused = (0.5 + 0.9 + 0.6) / 3  # eq. 19
    ga_gs = max(0.0, 0.6 - 0.5 + 0.1)  # 0.2
    ga_gl = max(0.0, 0.6 - 0.9 + 0.1)  # 0
    assert parts.ce.item() == pytest.approx(-math.log(fused))
    assert parts.ga.item() == pytest.approx(ga_gs + ga_gl)
    assert parts.total.item() == pytest.approx(-math.log(fused) + 0.2)


def test_reference_fusion_of_logits():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]]], dtype=torch.float64)
    parts = glanet_loss(logits, torch.tensor([1]), EARLY, score_fusion="logits", ga=False)
    mean = logits.mean(dim=1)[0]
    expected = -(mean[1] - torch.logsumexp(mean, 0))
    assert parts.ce.item() == pytest.approx(expected.item())
    assert parts.ga.item() == 0.0


def test_late_fusion_has_no_ga():
    logits = torch.randn(4, 3, 5)
    parts = glanet_loss(logits, torch.tensor([0, 1, 2, 3]), ("GP", "SA", "LA"))
    assert parts.ga.item() == 0.0 and parts.total.item() == parts.ce.item()


def test_ga_switch_and_gradients():
    logits = torch.randn(3, 3, 4, requires_grad=True)
    target = torch.tensor([0, 3, 1])
    off = glanet_loss(logits, target, EARLY, ga=False)
    assert off.ga.item() == 0.0
    on = glanet_loss(logits, target, EARLY, margin=1.0)  # margin 1 keeps every hinge active
    assert on.ga.item() > 0
    on.total.backward()
    assert logits.grad is not None and logits.grad.abs().sum(dim=(0, 2)).gt(0).all()  # every stream


def test_ga_detach_global_only_lifts_the_attention_stream():
    gp = torch.tensor([[0.7, 0.3]], dtype=torch.float64, requires_grad=True)
    att = torch.tensor([[0.6, 0.4]], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0])
    kept = ga_regularisation(gp, att, target)
    kept.backward()
    assert gp.grad[0, 0] == 1.0 and att.grad[0, 0] == -1.0  # published code: GP is pushed down too
    gp.grad = att.grad = None
    detached = ga_regularisation(gp, att, target, detach_global=True)
    assert detached.item() == pytest.approx(kept.item())
    detached.backward()
    assert gp.grad is None and att.grad[0, 0] == -1.0
