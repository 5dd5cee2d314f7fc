"""Projected Gradient Descent.

Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards Deep Learning Models Resistant to Adversarial Attacks",
ICLR 2018: from a random point in the eps-ball, repeat x <- proj(x + alpha * sign(grad)) (L-inf) or
x <- proj(x + alpha * grad / ||grad||_2) (L2).

With `stop_when_fooled`, a sample counts as fooled as soon as any iterate fools it: that iterate is kept and no
more steps are spent on it (faster, and never weaker than keeping only the last iterate).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dlsec_core.attacks._projection import normalize_step, project, random_start
from dlsec_core.attacks.base import Attack, input_gradient, param, register_attack


@register_attack
@dataclass(frozen=True, kw_only=True)
class PGD(Attack):
    """Iterated, projected gradient steps from a random start."""

    name = "pgd"
    title = "PGD"
    paper = "Madry et al. 2018, Towards Deep Learning Models Resistant to Adversarial Attacks"
    #: ATLAS: evasion (AML.T0015) by white-box optimisation (AML.T0043.000), which needs full model access (AML.T0044)
    atlas_ids = ("AML.T0015", "AML.T0043.000", "AML.T0044")

    steps: int = param(40, "Steps", min=1, max=10_000, step=1)
    alpha: float | None = param(
        None, "Step size α (pixel units; empty = 2.5·ε/steps)", min=0.0, min_open=True, max=10.0, step=0.001
    )
    random_start: bool = param(True, "Random start inside the ε-ball")
    stop_when_fooled: bool = param(True, "Stop a sample's steps once it is fooled", describe=False)

    def describe(self) -> str:
        start = "random start" if self.random_start else "no random start"
        unit = self.norm.symbol
        return f"{self.title} ({unit} ε={self.eps:g}, {self.steps} steps, α={self.step_size:.3g}, {start})"

    @property
    def step_size(self) -> float:
        return float(self.alpha) if self.alpha is not None else 2.5 * self.eps / self.steps

    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        x_adv = random_start(x, self.eps, self.norm, generator) if self.random_start else x.clone()
        # Indices still being attacked; the others already fool the model and keep their fooling iterate.
        active = torch.arange(x.shape[0], device=x.device)
        for _ in range(self.steps):
            xa, ya = x_adv[active], y[active]
            ta = None if target is None else target[active]
            grad, logits = input_gradient(model, xa, ya, ta)
            if self.stop_when_fooled:
                pred = logits.argmax(dim=1)
                fooled = (pred == ta) if ta is not None else (pred != ya)
                if fooled.any():
                    keep = ~fooled
                    active, xa, grad = active[keep], xa[keep], grad[keep]
                    ya = ya[keep]
                    if active.numel() == 0:
                        break
            step = xa + self.step_size * normalize_step(grad, self.norm)
            x_adv[active] = project(step, x[active], self.eps, self.norm)
        return x_adv
