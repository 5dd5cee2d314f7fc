"""Robust accuracy under an attack with random restarts: an image counts as robust only if every restart fails.

A single random start can land in a poor basin; the standard evaluation (Madry et al. 2018's MNIST challenge,
AutoAttack's APGD) reruns the attack from fresh random starts and keeps, per image, the worst case. This is the
per-image form of that rule, so that a caller can combine it with other attacks on the same images (e.g. a
black-box check on the first few) and report numbers that anyone can recompute with the same seed.
"""

from __future__ import annotations

import torch
from torch import nn

from dlsec_core.attacks.base import Attack, check_inputs
from dlsec_core.errors import InvalidInputError
from dlsec_core.models.modes import device_of, eval_mode

MAX_RESTARTS = 100


def robust_under_restarts(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: Attack,
    *,
    restarts: int = 1,
    seed: int = 0,
    batch_size: int = 500,
) -> torch.Tensor:
    """(N,) bools on CPU: whether image i is still classified correctly after every one of `restarts` runs.

    One generator, seeded with `seed`, feeds every random start in order (restart 1 over all batches, then
    restart 2, ...), so the same seed gives the same mask; every restart attacks every image (as
    `workflows._strong_accuracy`), so the random starts do not depend on earlier restarts' outcomes. A wrong clean
    prediction is never robust.

    Raises:
        InvalidInputError: bad inputs, or `restarts` not an integer from 1 to `MAX_RESTARTS`.
    """
    if isinstance(restarts, bool) or not isinstance(restarts, int) or not 1 <= restarts <= MAX_RESTARTS:
        raise InvalidInputError(f"Restarts must be an integer from 1 to {MAX_RESTARTS}, got {restarts!r}.")
    x, y, _ = check_inputs(x, y, None)
    device = device_of(model)
    generator = torch.Generator().manual_seed(seed)
    robust = correct_mask(model, x, y, batch_size=batch_size)
    with eval_mode(model):
        for _ in range(restarts):
            for i in range(0, len(y), batch_size):
                xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
                x_adv = attack.perturb(model, xb, yb, generator=generator)
                with torch.no_grad():
                    robust[i : i + batch_size] &= (model(x_adv).argmax(1) == yb).cpu()
    return robust


@torch.no_grad()
def correct_mask(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 500
) -> torch.Tensor:
    """(N,) bools on CPU: whether the model classifies each clean image correctly (eval mode, restored after)."""
    x, y, _ = check_inputs(x, y, None)
    device = device_of(model)
    with eval_mode(model):
        return (
            torch.cat(
                [
                    model(x[i : i + batch_size].to(device)).argmax(1).cpu()
                    for i in range(0, len(y), batch_size)
                ]
            )
            == y
        )
