"""Square Attack: score-based black-box random search.

Andriushchenko, Croce, Flammarion, Hein, "Square Attack: a query-efficient black-box adversarial attack via
random search", ECCV 2020. Only the model's outputs are used, never a gradient: from a random start on the
boundary of the ε-ball, each query proposes a change inside one random square window and keeps it if the
margin loss improves. Untargeted, the margin is max_{k != y} Z_k - Z_y; targeted, Z_t - max_{k != t} Z_k; the
model is fooled once it is positive, and a fooled sample costs no more queries. `n_queries` counts every
evaluation of an image: the clean input, the random start and each proposal.

- L∞: start from vertical stripes of ±ε; a proposal sets an s x s window to x ± ε (one random sign per channel).
- L2: start from a grid of ±"pseudo-Gaussian" bumps scaled to ||δ||_2 = ε; a proposal moves the budget of two
  windows into the first one, as a fresh bump plus the window's old content, then rescales δ to ε.

The window covers a fraction p of the image, halved on a fixed schedule of the query index (rescaled to a
10,000-query budget, as in the authors' code); p_init = 0.8 is the authors' setting for MNIST. One window
position is drawn per query for the whole batch (as in the reference code); all randomness comes from the
`generator`, so a seed gives the same result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from dlsec_core.attacks.base import Attack, _check_classes, param, register_attack
from dlsec_core.attacks.cw import fooling_margin

#: Query indices (out of 10,000) after which p is halved.
HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def _signs(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Random ±1 of `shape`, drawn on CPU (a seed gives the same draw on any device)."""
    return (torch.randint(0, 2, shape, generator=generator) * 2 - 1).float().to(device)


def _pyramid(a: int, b: int) -> torch.Tensor:
    """(a, b) nested centred rectangles, the d-th (Chebyshev radius d) weighted 1/(d+1)^2; unit L2 norm."""
    radius = max(a // 2, b // 2) + 1
    weights = 1.0 / torch.arange(1, radius + 1, dtype=torch.float32) ** 2
    tail = (
        weights.flip(0).cumsum(0).flip(0)
    )  # tail[d] = sum of the weights of every rectangle covering radius d
    di, dj = (torch.arange(a) - a // 2).abs(), (torch.arange(b) - b // 2).abs()
    out = tail[torch.maximum(di[:, None], dj[None, :])]
    return out / out.norm().clamp_min(1e-12)


def _bump(s: int, generator: torch.Generator | None) -> torch.Tensor:
    """(s, s) the paper's L2 window: a positive pyramid over a negative one, randomly transposed; unit norm."""
    bump = torch.cat([_pyramid(s // 2, s), -_pyramid(s - s // 2, s)])
    bump = bump / bump.norm().clamp_min(1e-12)
    return bump.T.contiguous() if bool(torch.randint(0, 2, (1,), generator=generator)) else bump


def _norm(t: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return t.pow(2).sum(dim=dims, keepdim=True).sqrt()


@register_attack
@dataclass(frozen=True, kw_only=True)
class Square(Attack):
    """Random search over square-shaped changes, keeping a change when the margin loss improves."""

    name = "square"
    title = "Square Attack (black-box)"
    paper = "Andriushchenko et al. 2020, Square Attack: a query-efficient black-box adversarial attack via random search"
    #: ATLAS: evasion (AML.T0015) by black-box optimisation (AML.T0043.001) through the inference API (AML.T0040)
    atlas_ids = ("AML.T0015", "AML.T0043.001", "AML.T0040")

    n_queries: int = param(
        1000,
        "Queries per image (model outputs only)",
        help="Every model evaluation counts: the clean input, the random start and each proposal.",
        min=2,
        max=1_000_000,
        step=100,
    )
    p_init: float = param(
        0.8, "p_init (initial fraction of the image in a square)", min=0.0, min_open=True, max=1.0, step=0.01
    )

    def _side(self, query: int, h: int, w: int) -> int:
        """Side s of the square at this query: s^2 ≈ p * h * w, with p halved on the schedule."""
        p = self.p_init / 2 ** sum(int(query / self.n_queries * 10_000) > t for t in HALVINGS)
        s = max(round(math.sqrt(p * h * w)), 1 if self.norm == "linf" else 3)
        if self.norm == "l2" and s % 2 == 0:
            s += 1  # an odd side keeps the bump symmetric
        return min(s, h, w)

    def _start(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n, c, h, w = x.shape
        if self.norm == "linf":
            return (x + self.eps * _signs((n, c, 1, w), generator, x.device)).clamp(0.0, 1.0)
        s = max(h // 5, 1)  # a grid of bumps, s x s each, centred
        top, left = (h - 5 * s) // 2 if h >= 5 * s else 0, (w - 5 * s) // 2 if w >= 5 * s else 0
        rows, cols = (h - top) // s, (w - left) // s
        tile = _bump(s, generator).repeat(rows, cols).to(x.device)  # (rows*s, cols*s)
        signs = (
            _signs((n, c, rows, cols), generator, x.device).repeat_interleave(s, 2).repeat_interleave(s, 3)
        )
        delta = torch.zeros_like(x)
        delta[:, :, top : top + rows * s, left : left + cols * s] = tile * signs
        return (x + self.eps * delta / _norm(delta, (1, 2, 3)).clamp_min(1e-12)).clamp(0.0, 1.0)

    def _propose(
        self, x: torch.Tensor, best: torch.Tensor, s: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        n, c, h, w = x.shape
        vh, vw = (int(torch.randint(0, side - s + 1, (1,), generator=generator)) for side in (h, w))
        window = (slice(None), slice(None), slice(vh, vh + s), slice(vw, vw + s))
        if self.norm == "linf":
            new = best.clone()
            new[window] = x[window] + self.eps * _signs((n, c, 1, 1), generator, x.device)
            return new.clamp(0.0, 1.0)
        vh2, vw2 = (int(torch.randint(0, side - s + 1, (1,), generator=generator)) for side in (h, w))
        window2 = (slice(None), slice(None), slice(vh2, vh2 + s), slice(vw2, vw2 + s))
        delta = best - x
        both = torch.zeros_like(x[:1, :1])
        both[window], both[window2] = 1.0, 1.0
        # Budget the first window may hold: the two windows' current mass plus any unused budget, per channel.
        unused = (self.eps**2 - _norm(delta, (1, 2, 3)) ** 2).clamp_min(0.0)
        mass = ((_norm(delta * both, (1, 2, 3)) ** 2 + unused) / c).sqrt()
        old = delta[window] / _norm(delta[window], (2, 3)).clamp_min(1e-12)
        new = _bump(s, generator).to(x.device) * _signs((n, c, 1, 1), generator, x.device) + old
        delta[window2] = 0.0
        delta[window] = new / _norm(new, (2, 3)).clamp_min(1e-12) * mass
        return (x + self.eps * delta / _norm(delta, (1, 2, 3)).clamp_min(1e-12)).clamp(0.0, 1.0)

    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        if self.eps == 0.0:
            return x.clone()
        labels, targeted = (y, False) if target is None else (target, True)
        h, w = x.shape[2:]
        with torch.no_grad():  # black-box: outputs only
            logits = model(x)
            _check_classes(logits.shape[1], y, target)
            best, margin = x.clone(), fooling_margin(logits, labels, targeted)
            todo = margin <= 0  # samples fooled already keep x
            if bool(todo.any()):
                start = self._start(x[todo], generator)
                best[todo], margin[todo] = start, fooling_margin(model(start), labels[todo], targeted)
            for query in range(2, self.n_queries):  # queries 0 and 1 were the clean input and the start
                active = (margin <= 0).nonzero().squeeze(1)
                if active.numel() == 0:
                    break
                new = self._propose(x[active], best[active], self._side(query, h, w), generator)
                new_margin = fooling_margin(model(new), labels[active], targeted)
                better = new_margin > margin[active]
                best[active[better]], margin[active[better]] = new[better], new_margin[better]
        return best
