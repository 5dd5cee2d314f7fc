"""Transfer attack: craft on a surrogate model, evaluate on the target.

Papernot, McDaniel, Goodfellow, Jha, Celik, Swami, "Practical Black-Box Attacks against Machine Learning",
AsiaCCS 2017 (and Szegedy et al. 2014, who first saw adversarial examples transfer between models): run a
white-box attack (PGD or FGSM) on a surrogate the attacker owns, then feed its adversarial inputs to the target.
The target model is never queried while crafting; the base classifies the result on it.

The surrogate is data, not a hyperparameter: it is excluded from equality, hashing and `repr`, and the UI fills
it from the model store (`metadata["kind"] == "model"`). With no surrogate the attack runs on the target model
itself, i.e. plain white-box PGD/FGSM (the upper bound a transfer attack is compared with); `describe()` says so.
PGD on a real surrogate runs all its steps (no early stop once the surrogate is fooled): more confident
adversarial inputs transfer better.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dlsec_core.attacks.base import Attack, param, register_attack
from dlsec_core.attacks.fgsm import FGSM
from dlsec_core.attacks.pgd import PGD
from dlsec_core.models.modes import device_of

INNER = ("pgd", "fgsm")


@register_attack
@dataclass(frozen=True, kw_only=True)
class Transfer(Attack):
    """PGD or FGSM on a surrogate model; the target only sees the finished adversarial inputs."""

    name = "transfer"
    title = "Transfer (from a surrogate model)"
    paper = "Papernot et al. 2017, Practical Black-Box Attacks against Machine Learning"
    #: ATLAS: evasion (AML.T0015) by black-box transfer (AML.T0043.002) from a proxy model trained on the same
    #: (gathered) data (AML.T0005.000)
    atlas_ids = ("AML.T0015", "AML.T0043.002", "AML.T0005.000")

    inner: str = param("pgd", "Attack run on the surrogate", options=INNER)
    steps: int = param(40, "Steps (PGD)", min=1, max=10_000, step=1)
    alpha: float | None = param(
        None,
        "Step size α (PGD; pixel units; empty = 2.5·ε/steps)",
        min=0.0,
        min_open=True,
        max=10.0,
        step=0.001,
    )
    surrogate: nn.Module | None = param(
        None,
        "Surrogate model",
        help="The attacker's own model; empty = the target model itself (white-box).",
        kind="model",
        describe=False,
        compare=False,
        repr=False,
    )

    def cross_check(self, problems: list[str]) -> None:
        super().cross_check(problems)
        if self.surrogate is not None and not isinstance(self.surrogate, nn.Module):
            problems.append(f"the surrogate must be a model, got {type(self.surrogate).__name__}")

    def crafting_attack(self) -> Attack:
        """The white-box attack that runs on the surrogate."""
        if self.inner == "fgsm":
            return FGSM(eps=self.eps, norm=self.norm)
        return PGD(
            eps=self.eps,
            norm=self.norm,
            steps=self.steps,
            alpha=self.alpha,
            # Early stopping keeps barely-fooling inputs: right for white-box, weak for transfer.
            stop_when_fooled=self.surrogate is None,
        )

    def describe(self) -> str:
        source = "a surrogate model" if self.surrogate is not None else "the target itself (white-box)"
        return f"Transfer from {source}: {self.crafting_attack().describe()}"

    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        surrogate = model if self.surrogate is None else self.surrogate
        device = device_of(surrogate)
        x_adv = self.crafting_attack().perturb(
            surrogate,
            x.to(device),
            y.to(device),
            target=None if target is None else target.to(device),
            generator=generator,
        )
        return x_adv.to(x.device)
