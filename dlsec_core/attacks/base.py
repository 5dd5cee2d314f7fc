"""The attack contract, owned by the base class so every registered attack keeps it.

An attack is a frozen config of hyperparameters; the model is passed at call time (foolbox v3's design). The base
`__call__`:

- validates inputs (shape (N, C, H, W), finite, in [0, 1]; labels and targets in range);
- puts the model in eval mode and restores its train/eval mode afterwards;
- never touches parameter gradients (subclasses use `input_gradient`, i.e. `torch.autograd.grad`);
- projects the result into the epsilon ball and the box [0, 1];
- returns an `AttackResult` of detached CPU tensors.

Labels are optional: with `y=None` the attack moves away from the model's own clean prediction (as ART does
without labels) and "success" means the prediction changed; the result's `reference` says which one was used.
`score` classifies adversarial inputs found elsewhere (e.g. on a defended pipeline's attack view) with another
model (the pipeline as deployed) under the same contract.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from dlsec_core.attacks._projection import flat_norm, project
from dlsec_core.attacks.norms import Norm
from dlsec_core.config import Config, param
from dlsec_core.errors import InvalidInputError
from dlsec_core.models.modes import device_of, eval_mode
from dlsec_core.registry import Registry


class Reference(StrEnum):
    """What an untargeted attack moves away from, and what "fooled" is measured against."""

    LABEL = "label"  # the true class, given by the caller
    PREDICTION = "prediction"  # no class given: the model's own prediction on the clean input

    def describe(self) -> str:
        return "the true class" if self is Reference.LABEL else "the model's own prediction (no class given)"


@dataclass(frozen=True, eq=False)
class AttackResult:
    """What an attack produced; tensors are detached and on CPU.

    `y` holds the reference classes: the true labels when the caller gave them (`reference` LABEL), otherwise the
    model's clean predictions (`reference` PREDICTION, and then `y == pred_clean`).
    """

    attack: str
    eps: float
    norm: Norm
    x: torch.Tensor  # (N, C, H, W) clean inputs
    x_adv: torch.Tensor  # (N, C, H, W) adversarial inputs
    y: torch.Tensor  # (N,) reference classes: true labels, or the clean predictions (see `reference`)
    target: torch.Tensor | None  # (N,) target classes for a targeted attack
    probs_clean: torch.Tensor  # (N, K) softmax of the clean logits
    probs_adv: torch.Tensor  # (N, K)
    reference: Reference = Reference.LABEL

    @property
    def targeted(self) -> bool:
        return self.target is not None

    @property
    def perturbation(self) -> torch.Tensor:
        return self.x_adv - self.x

    @property
    def pred_clean(self) -> torch.Tensor:
        return self.probs_clean.argmax(dim=1)

    @property
    def pred_adv(self) -> torch.Tensor:
        return self.probs_adv.argmax(dim=1)

    @property
    def target_is_reference(self) -> torch.Tensor:
        """(N,) bool: a targeted attack aimed at the reference class itself (nothing to reach, nothing fooled)."""
        if self.target is None:
            return torch.zeros_like(self.y, dtype=torch.bool)
        return self.target == self.y

    @property
    def already_wrong(self) -> torch.Tensor:
        """(N,) bool: the clean prediction already differs from the given true class (never with PREDICTION)."""
        return self.pred_clean != self.y

    @property
    def success(self) -> torch.Tensor:
        """(N,) bool: untargeted -> prediction differs from the reference (the robust-accuracy sense: an input
        that was already wrong counts); targeted -> prediction is the target, and the target is not the
        reference class."""
        if self.target is not None:
            return (self.pred_adv == self.target) & ~self.target_is_reference
        return self.pred_adv != self.y

    @property
    def fooled(self) -> torch.Tensor:
        """(N,) bool: the attack changed the decision: untargeted -> clean prediction right, adversarial one
        wrong; targeted -> the target reached from a clean prediction that was not the target."""
        if self.target is not None:
            return self.success & (self.pred_clean != self.target)
        return self.success & ~self.already_wrong

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean())

    @property
    def linf(self) -> torch.Tensor:
        return flat_norm(self.perturbation, "linf")

    @property
    def l2(self) -> torch.Tensor:
        return flat_norm(self.perturbation, "l2")

    @property
    def l0(self) -> torch.Tensor:
        """Number of changed pixel values (tiny float noise under 1e-6 not counted)."""
        return (self.perturbation.abs() > 1e-6).flatten(1).sum(dim=1)

    def to_records(self) -> list[dict[str, Any]]:
        rows = []
        for i in range(self.x.shape[0]):
            rows.append(
                {
                    "label": int(self.y[i]),
                    "reference": self.reference.value,
                    "target": None if self.target is None else int(self.target[i]),
                    "pred_clean": int(self.pred_clean[i]),
                    "conf_clean": float(self.probs_clean[i].max()),
                    "pred_adv": int(self.pred_adv[i]),
                    "conf_adv": float(self.probs_adv[i].max()),
                    "success": bool(self.success[i]),
                    "fooled": bool(self.fooled[i]),
                    "linf": float(self.linf[i]),
                    "l2": float(self.l2[i]),
                    "l0": int(self.l0[i]),
                }
            )
        return rows


def input_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the attacker's objective w.r.t. the input, and the logits.

    Untargeted: ascend the cross-entropy of the true label. Targeted: ascend the negative cross-entropy of the
    target. Uses `torch.autograd.grad` so parameter `.grad` fields are never written.
    """
    x = x.detach().requires_grad_(True)
    logits = model(x)
    # Check the label range here: cross_entropy would otherwise fail with a bare IndexError.
    _check_classes(logits.shape[1], y, target)
    if target is None:
        loss = F.cross_entropy(logits, y, reduction="sum")
    else:
        loss = -F.cross_entropy(logits, target, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad.detach(), logits.detach()


@dataclass(frozen=True, kw_only=True)
class Attack(Config):
    """Base class: subclasses set the class variables, declare hyperparameters with `param`, and implement `_run`.

    `Config` validates every field from its `param` metadata; the base adds the budget's rule (an L∞ ε above 1
    is meaningless for pixels in [0, 1]) and subclasses add theirs in `cross_check`.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    #: MITRE ATLAS technique and mitigation ids (or `DLSEC.` local tags) this attack demonstrates: see
    #: dlsec_core/atlas.py.
    atlas_ids: ClassVar[tuple[str, ...]] = ()
    #: True when the adversarial input is x + eps * d for a direction d that does not depend on eps (FGSM):
    #: then `direction` is computed once and reused for every eps (sliders, sweeps).
    linear_in_eps: ClassVar[bool] = False
    #: True for minimal-perturbation attacks (DeepFool, CW): they look for the smallest change themselves, so
    #: their natural budget is none (`eps=math.inf`); a finite ε only caps what they found.
    minimal: ClassVar[bool] = False

    eps: float = param(
        0.1, "ε (perturbation budget, pixel units)", help="At most 1 for L∞ (a pixel's whole range).",
        min=0.0, step=0.01,
    )  # fmt: skip
    norm: Norm = param(Norm.LINF, "Norm of the budget", options=tuple(Norm))

    def cross_check(self, problems: list[str]) -> None:
        super().cross_check(problems)
        if self.eps > self.norm.max_eps and not (self.minimal and self.eps == math.inf):
            problems.append(
                f"an {self.norm.symbol} ε above {self.norm.max_eps:g} is meaningless for pixels in [0, 1], "
                f"got {self.eps:g}"
            )

    # -- what subclasses implement -------------------------------------------------------------------------
    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """Return adversarial inputs (projection and clipping are applied afterwards by the base)."""
        raise NotImplementedError

    def direction(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None
    ) -> torch.Tensor:
        """For `linear_in_eps` attacks: the eps-independent direction d, so that x_adv = proj(x + eps * d)."""
        raise NotImplementedError(f"{self.name} does not have an eps-independent direction")

    # -- the contract --------------------------------------------------------------------------------------
    @property
    def unbounded(self) -> bool:
        """True when there is no budget (a minimal-perturbation attack with ε = inf)."""
        return self.eps == math.inf

    def __call__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        target: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> AttackResult:
        """Attack `model` on inputs `x` (N, C, H, W) in [0, 1].

        Args:
            model: a classifier returning logits; it is used in eval mode and its mode is restored.
            x: clean inputs.
            y: true labels (N,), or None: then the attack moves away from the model's own clean prediction and
                the result's `reference` is `Reference.PREDICTION`.
            target: classes to reach (targeted attack), or None (untargeted). Inputs whose target is their
                reference class are left unchanged: there is nothing to reach.
            generator: CPU random generator for any randomness (same seed, same result).
        """
        x, y, target, reference = self._inputs(model, x, y, target)
        with eval_mode(model):
            x_adv = self._perturb(model, x, y, target, generator)
            if target is not None:
                x_adv = torch.where((target == y).view(-1, *([1] * (x.ndim - 1))), x, x_adv)
            return self._result(model, x, x_adv, y, target, reference)

    def score(
        self,
        model: nn.Module,
        x: torch.Tensor,
        x_adv: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        target: torch.Tensor | None = None,
    ) -> AttackResult:
        """Score adversarial inputs found elsewhere on `model`, under this attack's contract.

        `x_adv` is projected into this attack's ε-ball around `x` and the box [0, 1], then `x` and `x_adv` are
        classified by `model` (eval mode, restored). The use: an attack crafted on a defended pipeline's
        `attack_view()` (BPDA, EOT) is scored on the pipeline as deployed. With `y=None` the reference is
        `model`'s own clean prediction.
        """
        x, y, target, reference = self._inputs(model, x, y, target)
        if not isinstance(x_adv, torch.Tensor) or x_adv.shape != x.shape:
            raise InvalidInputError(
                f"The adversarial inputs have shape {tuple(getattr(x_adv, 'shape', ()))}, the inputs "
                f"{tuple(x.shape)}."
            )
        x_adv = x_adv.detach().float().to(x.device)
        if not torch.isfinite(x_adv).all():
            raise InvalidInputError("The adversarial inputs contain NaN or infinite values.")
        with eval_mode(model):
            return self._result(model, x, x_adv, y, target, reference)

    def _inputs(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, target: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, Reference]:
        """Validated inputs on the model's device, and the reference classes (labels, or predictions)."""
        device = device_of(model)
        rows = x.shape[0] if isinstance(x, torch.Tensor) and x.ndim == 4 else 0
        placeholder = torch.zeros(rows, dtype=torch.long)
        x, labels, target = check_inputs(x, placeholder if y is None else y, target)
        x = x.to(device)
        target = None if target is None else target.to(device)
        if y is not None:
            return x, labels.to(device), target, Reference.LABEL
        return x, predict(model, x), target, Reference.PREDICTION

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        target: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Adversarial inputs only, detached, on the model's device, inside the ε-ball and [0, 1].

        The fast path for training-time defenses (adversarial training): no validation of `x` beyond what the
        caller guarantees, no CPU copies, no predictions. Same mode and gradient guarantees as `__call__`.
        """
        with eval_mode(model):
            return project(self._perturb(model, x, y, target, generator).detach(), x, self.eps, self.norm)

    def _perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        with torch.enable_grad():
            if self.linear_in_eps:
                return x + self.eps * self.direction(model, x, y, target)
            return self._run(model, x, y, target, generator)

    def apply_direction(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor | None,
        direction: torch.Tensor,
        *,
        target: torch.Tensor | None = None,
    ) -> AttackResult:
        """For `linear_in_eps` attacks: the result at this eps from a direction computed earlier (one forward
        pass; used by the ε slider so moving it never recomputes a gradient). `y=None`: as in `__call__`."""
        if not self.linear_in_eps:
            raise InvalidInputError(f"{self.title} has no ε-independent direction to reuse.")
        x, y, target, reference = self._inputs(model, x, y, target)
        if direction.shape != x.shape:
            raise InvalidInputError(
                f"The direction has shape {tuple(direction.shape)}, the inputs {tuple(x.shape)}."
            )
        x_adv = x + self.eps * direction.to(x.device)
        if target is not None:
            x_adv = torch.where((target == y).view(-1, *([1] * (x.ndim - 1))), x, x_adv)
        with eval_mode(model):
            return self._result(model, x, x_adv, y, target, reference)

    def _result(
        self,
        model: nn.Module,
        x: torch.Tensor,
        x_adv: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        reference: Reference = Reference.LABEL,
    ) -> AttackResult:
        """Project into the ball and the box, classify both, package as detached CPU tensors.

        With `Reference.PREDICTION` the reference is this classification's clean prediction, so that "success"
        means exactly "the prediction changed" (also for a randomized model, whose draws differ per call).
        """
        x_adv = project(x_adv.detach(), x, self.eps, self.norm)
        with torch.no_grad():
            logits = model(torch.cat([x, x_adv]))
        _check_classes(logits.shape[1], y, target)
        probs = logits.softmax(dim=1).cpu()
        n = x.shape[0]
        if reference is Reference.PREDICTION:
            y = probs[:n].argmax(dim=1)
        return AttackResult(
            attack=self.name,
            eps=self.eps,
            norm=self.norm,
            x=x.detach().cpu(),
            x_adv=x_adv.detach().cpu(),
            y=y.cpu(),
            target=None if target is None else target.cpu(),
            probs_clean=probs[:n],
            probs_adv=probs[n:],
            reference=reference,
        )

    def with_params(self, **changes: Any) -> Attack:
        """A copy with some hyperparameters changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        """One line naming the attack and its strength, for every robust-accuracy number."""
        extras = [
            f"{f.name}={getattr(self, f.name)}"
            for f in dataclasses.fields(self)
            if f.name not in ("eps", "norm") and f.metadata.get("describe", True)
        ]
        unit = self.norm.symbol
        more = f", {', '.join(extras)}" if extras else ""
        budget = f"{unit}, no budget: smallest change found" if self.unbounded else f"{unit} ε={self.eps:g}"
        return f"{self.title} ({budget}{more})"


def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N,) the model's clean predictions (eval mode, restored): the reference when no labels are given."""
    with eval_mode(model), torch.no_grad():
        return model(x).argmax(dim=1)


def _check_classes(n_classes: int, y: torch.Tensor, target: torch.Tensor | None) -> None:
    if int(y.max()) >= n_classes or (target is not None and int(target.max()) >= n_classes):
        raise InvalidInputError(f"Labels and targets must be below the model's {n_classes} classes.")


def check_inputs(
    x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Validate an attack's inputs; return them detached as float32 / int64."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise InvalidInputError(
            f"Inputs must be a (N, C, H, W) tensor, got shape {tuple(getattr(x, 'shape', ()))}."
        )
    if x.shape[0] == 0:
        raise InvalidInputError("There are no inputs to attack.")
    x = x.detach().float()
    if not torch.isfinite(x).all():
        raise InvalidInputError("Inputs contain NaN or infinite values.")
    if float(x.min()) < 0.0 or float(x.max()) > 1.0:
        raise InvalidInputError(
            f"Inputs must be pixels in [0, 1], found [{float(x.min()):.3g}, {float(x.max()):.3g}]."
        )
    y = torch.as_tensor(y).detach().long().reshape(-1)
    if y.shape[0] != x.shape[0]:
        raise InvalidInputError(f"Got {x.shape[0]} inputs but {y.shape[0]} labels.")
    if int(y.min()) < 0:
        raise InvalidInputError("Labels must be >= 0.")
    if target is not None:
        target = torch.as_tensor(target).detach().long().reshape(-1)
        if target.shape[0] == 1 and x.shape[0] > 1:
            target = target.expand(x.shape[0]).clone()
        if target.shape[0] != x.shape[0] or int(target.min()) < 0:
            raise InvalidInputError("Give one target class >= 0 per input (or one for all).")
    return x, y, target


ATTACKS: Registry[Attack] = Registry("attack")
register_attack = ATTACKS.register  # class decorator: add an attack to `ATTACKS` under its `name`


def get_attack(name: str, **params: Any) -> Attack:
    """Build a registered attack by name with hyperparameters, e.g. `get_attack("pgd", eps=0.1, steps=40)`."""
    return ATTACKS.build(name, **params)
