"""Malicious clients in federated learning: data poisoning by label flipping or a backdoor trigger.

- Label flipping (Tolpegin, Truex, Gursoy, Liu 2020, "Data Poisoning Attacks Against Federated Learning
  Systems"; Fang et al. 2020): a malicious client trains on its own images with every label l replaced by
  C − 1 − l, and sends the honest-looking update of that training.
- Backdoor (Gu, Dolan-Gavitt, Garg 2017, "BadNets"; in federated learning Bagdasaryan et al. 2020, "How To
  Backdoor Federated Learning"): a malicious client stamps a small white square (the trigger) into the bottom-right
  corner of a share of its images and relabels them as the target class; the model should keep its clean accuracy
  while learning "trigger -> target". Backdoor success is the share of test images of the other classes that the
  model sends to the target class once the trigger is stamped on them.

The attack changes only what a malicious client trains on; its update is then computed, sent and aggregated like
every other client's (no update boosting or model replacement here).
"""

from __future__ import annotations

from enum import StrEnum

import torch

from dlsec_core.errors import InvalidInputError


class AttackKind(StrEnum):
    LABEL_FLIP = "label_flip"
    BACKDOOR = "backdoor"


def flip_labels(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Label flipping: l -> C − 1 − l."""
    return (num_classes - 1) - y


def stamp_trigger(x: torch.Tensor, size: int) -> torch.Tensor:
    """The images (N, C, H, W) with a `size` x `size` square of the maximum pixel value 1 in the bottom-right
    corner (a copy; the input is untouched)."""
    if x.ndim != 4:
        raise InvalidInputError(f"A trigger is stamped on images (N, C, H, W), got shape {tuple(x.shape)}.")
    h, w = x.shape[-2:]
    if not 1 <= size <= min(h, w):
        raise InvalidInputError(f"The trigger must be 1 to {min(h, w)} pixels wide here, got {size!r}.")
    stamped = x.clone()
    stamped[..., h - size :, w - size :] = 1.0
    return stamped


def poison_backdoor(
    x: torch.Tensor, y: torch.Tensor, *, size: int, target: int, fraction: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A malicious client's training data: a random `fraction` of its images stamped and relabelled `target`."""
    if not 0 < fraction <= 1:
        raise InvalidInputError(f"The poisoned share must be in (0, 1], got {fraction!r}.")
    n = x.shape[0]
    chosen = torch.randperm(n, generator=generator)[: max(1, round(fraction * n))] if n else torch.tensor([])
    x, y = x.clone(), y.clone()
    if chosen.numel():
        x[chosen] = stamp_trigger(x[chosen], size)
        y[chosen] = target
    return x, y


def poison(
    kind: AttackKind | str,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    num_classes: int,
    size: int,
    target: int,
    fraction: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """What a malicious client trains on instead of its own (x, y)."""
    kind = AttackKind(kind)
    if kind is AttackKind.LABEL_FLIP:
        return x, flip_labels(y, num_classes)
    return poison_backdoor(x, y, size=size, target=target, fraction=fraction, generator=generator)


def backdoor_inputs(
    x: torch.Tensor, y: torch.Tensor, *, size: int, target: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The test images the backdoor success is measured on: those not of the target class, trigger stamped, and
    the target label for each."""
    keep = y != target
    stamped = stamp_trigger(x[keep], size)
    return stamped, torch.full((stamped.shape[0],), target, dtype=y.dtype)
