"""Accuracy vs. epsilon, one point at a time, so curves can draw live.

For attacks whose perturbation is eps times an eps-independent direction (FGSM), the direction is computed once
per batch and reused for every epsilon: one backward pass per batch instead of one per (batch, epsilon), with
identical results. Other attacks (PGD) run per epsilon; PGD stops spending steps on a sample once it is fooled.
At epsilon 0 no attack can change anything, so the point is the clean accuracy and no attack runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dlsec_core.attacks._projection import project
from dlsec_core.attacks.base import Attack, check_inputs
from dlsec_core.attacks.norms import Norm
from dlsec_core.errors import InvalidInputError
from dlsec_core.models.modes import device_of, eval_mode

MAX_POINTS = 101


@dataclass(frozen=True, kw_only=True)
class SweepPoint:
    """Robust accuracy of one model under one attack at one epsilon."""

    eps: float
    accuracy: float
    correct: int
    n: int
    attack: str  # the attack's full description, e.g. "PGD (L∞ ε=0.1, 40 steps, α=0.00625, random start)"
    norm: str
    elapsed: float  # seconds since this sweep (this curve) started: cumulative over its points
    point_seconds: float = 0.0  # seconds this point alone took
    draws: int = 1  # predictions per image for a random model (accuracy = correct / (n * draws))

    def to_record(self) -> dict[str, Any]:
        return {
            "eps": self.eps,
            "accuracy": self.accuracy,
            "correct": self.correct,
            "n": self.n,
            "attack": self.attack,
            "norm": self.norm,
            "point_s": round(self.point_seconds, 3),
            "curve_elapsed_s": round(self.elapsed, 3),
        }


def check_eps_values(eps_values: Sequence[float], norm: Norm | str) -> list[float]:
    values = [float(e) for e in eps_values]
    if not values:
        raise InvalidInputError("Give at least one ε value.")
    if len(values) > MAX_POINTS:
        raise InvalidInputError(f"At most {MAX_POINTS} ε values per sweep, got {len(values)}.")
    if any(not math.isfinite(e) or e < 0 for e in values):
        raise InvalidInputError(f"ε values must be finite and >= 0, got {values}.")
    limit = Norm(norm).max_eps
    if max(values) > limit:
        raise InvalidInputError(
            f"{Norm(norm).symbol} ε above {limit:g} is meaningless for pixels in [0, 1], got {max(values)}."
        )
    return values


def sweep(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: Attack,
    eps_values: Sequence[float],
    *,
    batch_size: int = 500,
    seed: int = 0,
    attack_model: nn.Module | None = None,
    draws: int = 1,
) -> Iterator[SweepPoint]:
    """Yield one `SweepPoint` per epsilon (in the order given) for `attack` (its own eps is ignored).

    Accuracy is measured on `model`, the deployed classifier. The attack differentiates `attack_model` when one
    is given: for a defended pipeline that is its adaptive view (straight-through gradients through
    non-differentiable transforms, expectation over random ones), while `model` stays the pipeline as deployed.
    For a random `model` (noise defenses), `draws` > 1 predicts every adversarial image that many times and
    averages: one draw per image leaves a curve on a few images at the mercy of the noise.
    Arguments are validated when this is called, before the first point is asked for.
    """
    eps_list = check_eps_values(eps_values, attack.norm)
    x, y, _ = check_inputs(x, y, None)
    if not isinstance(draws, int) or isinstance(draws, bool) or not 1 <= draws <= 1000:
        raise InvalidInputError(f"draws must be an integer from 1 to 1000, got {draws!r}.")
    return _sweep(
        model, attack_model or model, x, y, attack, eps_list, batch_size=batch_size, seed=seed, draws=draws
    )


def _sweep(
    model: nn.Module,
    attack_model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: Attack,
    eps_list: list[float],
    *,
    batch_size: int,
    seed: int,
    draws: int = 1,
) -> Iterator[SweepPoint]:
    device = device_of(model)
    batches = [
        (x[i : i + batch_size].to(device), y[i : i + batch_size].to(device))
        for i in range(0, len(x), batch_size)
    ]
    n = x.shape[0]
    start = time.perf_counter()

    @torch.no_grad()
    def hits(x_adv: torch.Tensor, yb: torch.Tensor) -> int:
        return sum(int((model(x_adv).argmax(1) == yb).sum()) for _ in range(draws))

    with eval_mode(model, attack_model):
        directions: list[torch.Tensor] = []
        if attack.linear_in_eps and any(eps > 0 for eps in eps_list):
            with torch.enable_grad():
                directions = [attack.direction(attack_model, xb, yb) for xb, yb in batches]
        generator = torch.Generator().manual_seed(seed)
        for eps in eps_list:
            began = time.perf_counter()
            at = attack.with_params(eps=eps)
            correct = 0
            for j, (xb, yb) in enumerate(batches):
                if eps == 0:  # nothing to search: the clean images are the only ones in the ball
                    x_adv = xb
                elif attack.linear_in_eps:
                    x_adv = project(xb + eps * directions[j], xb, eps, attack.norm)
                else:
                    x_adv = at.perturb(attack_model, xb, yb, generator=generator)
                correct += hits(x_adv, yb)
            now = time.perf_counter()
            yield SweepPoint(
                eps=at.eps,
                accuracy=correct / (n * draws),
                correct=correct,
                n=n,
                attack=at.describe(),
                norm=at.norm,
                elapsed=now - start,
                point_seconds=now - began,
                draws=draws,
            )
