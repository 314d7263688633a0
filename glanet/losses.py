"""Training objective: cross-entropy on the fused prediction plus global-attention (GA)
regularisation of the attention branches (paper eqs. 17-18).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from glanet.models.glanet import fused_log_probs


class LossParts(NamedTuple):
    total: Tensor
    ce: Tensor
    ga: Tensor  # sum of the GA terms (0 when there are none)


def ga_regularisation(
    global_probs: Tensor,
    attention_probs: Tensor,
    target: Tensor,
    margin: float = 0.1,
    detach_global: bool = False,
) -> Tensor:
    """Eq. 17: mean over the batch of max(0, P_GP(y) - P_att(y) + margin).

    The probabilities are of the ground-truth class y; zero when the attention branch leads GP by
    at least `margin`. Nothing is detached by default, as in the published code: the hinge can then
    also be met by pushing GP's probability of the right class down, which the fused loss does not
    prevent (seen on SynthActions: a GP branch at 0% while the fused prediction was at 95%).
    `detach_global` stops that: GA then only lifts the attention branch.
    """
    p_global = global_probs.gather(1, target[:, None]).squeeze(1)
    if detach_global:
        p_global = p_global.detach()
    p_att = attention_probs.gather(1, target[:, None]).squeeze(1)
    return torch.clamp(p_global - p_att + margin, min=0).mean()


def glanet_loss(
    logits: Tensor,
    target: Tensor,
    branch_names: tuple[str, ...],
    score_fusion: str = "probs",
    ga: bool = True,
    margin: float = 0.1,
    detach_global: bool = False,
) -> LossParts:
    """Eq. 18: CE(fused) + GA(GS) + GA(GL). `logits` (B, S, K) per branch, `target` (B,) class ids.

    With `score_fusion="probs"` the fused prediction is the mean of the branches' softmaxes (eq. 19)
    and the CE is its negative log; with "logits" it is the softmax of the mean logits (reference).
    GA applies where there is a GP branch and composite branches GS/GL (early fusion); late fusion has none.
    """
    ce = F.nll_loss(fused_log_probs(logits, score_fusion), target)
    ga_total = logits.new_zeros(())
    if ga and "GP" in branch_names:
        probs = torch.softmax(logits, dim=-1)
        gp = probs[:, branch_names.index("GP")]
        for name in ("GS", "GL"):
            if name in branch_names:
                ga_total = ga_total + ga_regularisation(
                    gp, probs[:, branch_names.index(name)], target, margin, detach_global
                )
    return LossParts(ce + ga_total, ce, ga_total)
