"""DeepFool.

Moosavi-Dezfooli, Fawzi, Frossard, "DeepFool: a simple and accurate method to fool deep neural networks",
CVPR 2016. Linearise the classifier at the current point and step onto the nearest linearised decision boundary
between the true class y and a candidate class k. With f_k = Z_k - Z_y and w_k its input gradient, the nearest
candidate is k* = argmin_k |f_k| / ||w_k||_q (q the dual norm: 2 for L2, 1 for L∞), and the step is
    L2: r = (|f_k*| + 1e-4) / ||w_k*||_2^2 * w_k*        L∞: r = (|f_k*| + 1e-4) / ||w_k*||_1 * sign(w_k*).
Steps accumulate into r_tot and the iterate is x + (1 + overshoot) * r_tot (clipped to [0, 1]), until the
prediction leaves y or `steps` steps are spent. The candidates are the highest-scoring classes of the clean
input, label included (the paper's top 10).

DeepFool minimises the perturbation itself, so it has no budget by default (`eps=math.inf`, `minimal`): the
result is the smallest change it found. A finite ε caps that change (the base projects into the ε-ball), which
asks "is there an adversarial example this close?" and can cut a successful change back to a failing one.

Targeted (our extension; the paper is untargeted): the reference class is the current prediction and the only
candidate is the target, so each step crosses the linearised boundary between them until the target wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from dlsec_core.attacks.base import Attack, _check_classes, param, register_attack
from dlsec_core.attacks.norms import Norm


def class_gradients(f: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(N, M, C, H, W) input gradients of the logits f (N, M) picked from one forward pass of x (N, C, H, W).

    One backward pass per column (M is the small number of candidate classes): cheaper than repeating the
    forward pass M times, and no Jacobian of every class is ever formed.
    """
    m = f.shape[1]
    rows = [torch.autograd.grad(f[:, j].sum(), x, retain_graph=j < m - 1)[0] for j in range(m)]
    return torch.stack(rows, dim=1)


@register_attack
@dataclass(frozen=True, kw_only=True)
class DeepFool(Attack):
    """Repeated steps onto the nearest linearised decision boundary, with a small overshoot."""

    name = "deepfool"
    title = "DeepFool"
    paper = "Moosavi-Dezfooli, Fawzi, Frossard 2016, DeepFool: a simple and accurate method to fool deep neural networks"
    #: ATLAS: evasion (AML.T0015) by white-box optimisation (AML.T0043.000), which needs full model access (AML.T0044)
    atlas_ids = ("AML.T0015", "AML.T0043.000", "AML.T0044")
    minimal = True

    eps: float = param(
        math.inf,
        "ε cap (pixel units; inf = no cap: DeepFool finds the smallest change itself)",
        help="DeepFool minimises the size of the change itself; a cap only cuts back a larger change.",
        min=0.0,
        allow_inf=True,
        step=0.05,
    )
    norm: Norm = param(Norm.L2, "Norm of the budget (and of DeepFool's steps)", options=tuple(Norm))
    steps: int = param(50, "Maximum steps", min=1, max=10_000, step=1)
    overshoot: float = param(
        0.02, "Overshoot (step past the boundary by this fraction)", min=0.0, max=10.0, step=0.01
    )
    candidates: int = param(
        10, "Candidate classes (highest-scoring, label included)", min=2, max=100_000, step=1
    )

    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        with torch.no_grad():
            clean = model(x)
        _check_classes(clean.shape[1], y, target)
        k = min(self.candidates, clean.shape[1])
        # Untargeted candidates: the label first, then the k - 1 highest-scoring other classes.
        ranked = clean.scatter(1, y[:, None], float("inf")).topk(k, dim=1).indices  # (N, k)
        x_adv, r_tot = x.clone(), torch.zeros_like(x)
        active = torch.arange(x.shape[0], device=x.device)
        for step in range(self.steps + 1):
            xa = x_adv[active].requires_grad_(True)
            logits = model(xa)
            pred = logits.argmax(dim=1)
            done = pred != y[active] if target is None else pred == target[active]
            if bool(done.all()) or step == self.steps:
                break
            # Column 0: the reference class (the label; targeted: the current prediction), then candidates.
            classes = ranked[active] if target is None else torch.stack([pred, target[active]], dim=1)
            f = logits.gather(1, classes)  # (n, M)
            grads = class_gradients(f, xa)[~done]
            active, f = active[~done], f.detach()[~done]
            f_diff = (f[:, 1:] - f[:, :1]).abs()  # (n, M-1): how far each candidate is behind the reference
            w_diff = (grads[:, 1:] - grads[:, :1]).flatten(2)  # (n, M-1, C, H, W) -> (n, M-1, D)
            w_norm = w_diff.norm(p=2 if self.norm == "l2" else 1, dim=2).clamp_min(1e-8)  # dual norm
            nearest = (f_diff / w_norm).argmin(dim=1)  # (n,)
            rows = torch.arange(active.numel(), device=x.device)
            f_k, w_k, norm_k = f_diff[rows, nearest], w_diff[rows, nearest], w_norm[rows, nearest]
            if self.norm == "l2":
                r = ((f_k + 1e-4) / norm_k**2)[:, None] * w_k
            else:
                r = ((f_k + 1e-4) / norm_k)[:, None] * w_k.sign()
            r_tot[active] += r.view(-1, *x.shape[1:])
            x_adv[active] = (x[active] + (1 + self.overshoot) * r_tot[active]).clamp(0.0, 1.0)
        return x_adv
