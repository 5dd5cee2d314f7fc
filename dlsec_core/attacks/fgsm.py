"""Fast Gradient Sign Method.

Goodfellow, Shlens, Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015:
x_adv = clip(x + eps * sign(grad_x L(f(x), y)), 0, 1); targeted: x - eps * sign(grad_x L(f(x), t)).
With the L2 norm this is the fast gradient method, x + eps * g / ||g||_2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dlsec_core.attacks._projection import normalize_step
from dlsec_core.attacks.base import Attack, input_gradient, register_attack


@register_attack
@dataclass(frozen=True, kw_only=True)
class FGSM(Attack):
    """One step of size eps along the sign of the input gradient (the direction does not depend on eps)."""

    name = "fgsm"
    title = "FGSM"
    paper = "Goodfellow, Shlens, Szegedy 2015, Explaining and Harnessing Adversarial Examples"
    #: ATLAS: evasion (AML.T0015) by white-box optimisation (AML.T0043.000), which needs full model access (AML.T0044)
    atlas_ids = ("AML.T0015", "AML.T0043.000", "AML.T0044")
    linear_in_eps = True

    def direction(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None
    ) -> torch.Tensor:
        # input_gradient ascends CE(y) (untargeted) or -CE(target) (targeted), so one formula covers both.
        grad, _ = input_gradient(model, x, y, target)
        return normalize_step(grad, self.norm)
