"""Sanity checks that travel with every robust-accuracy number.

A robust-accuracy number is only as good as the attack behind it. These checks look for the usual signs that an
attack failed rather than that a model is robust (gradient masking, Athalye, Carlini, Wagner 2018, "Obfuscated
Gradients Give a False Sense of Security"; Carlini et al. 2019, "On Evaluating Adversarial Robustness"),
following AutoAttack's `checks.py` (Croce and Hein 2020, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks"):

- accuracy that rises when the attack gets stronger, or stays high at a budget that should defeat any model;
- inputs whose gradient is exactly zero;
- a black-box attack beating the white-box one (for a one-step white-box attack only when a strong iterative
  one loses too: otherwise the one-step attack is just weak);
- a detector-aware attack that is not clearly stronger than a plain one;
- outputs that already are probabilities (cross-entropy on them squashes the gradient);
- a randomized model attacked without averaging over its randomness;
- a naive attack reporting more robustness than an adaptive one.

Checks take plain numbers, tensors and models, and return `Finding`s; showing them is the caller's business.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn

from dlsec_core.attacks.base import Attack, check_inputs, input_gradient
from dlsec_core.attacks.norms import Norm
from dlsec_core.errors import InvalidInputError
from dlsec_core.evaluation.sweep import SweepPoint
from dlsec_core.models.modes import device_of, eval_mode

Severity = Literal["warning", "info"]

#: differences smaller than this (2 accuracy points) are never flagged, whatever the sample size
MIN_GAP = 0.02
#: an L-inf budget that lets the attacker turn every image into the same flat grey image
GREY_LINF = 0.5
#: the accuracy "near zero" means at a budget that should defeat any classifier
MAX_ACCURACY_AT_LARGE_EPS = 0.1
#: more than this fraction of inputs with an exactly-zero gradient is a warning (any at all is worth a note)
MAX_ZERO_GRADIENT_FRACTION = 0.1


@dataclass(frozen=True)
class Finding:
    """One sanity finding: a stable `code`, a `severity`, a short `title`, and a `sentence` for a participant."""

    code: str
    severity: Severity
    title: str
    sentence: str

    def to_record(self) -> dict[str, str]:
        return asdict(self)


def _tolerance(p1: float, p2: float, n: int | None) -> float:
    """Two standard errors of the difference of two accuracies on n samples, and never under `MIN_GAP`."""
    if not n:
        return MIN_GAP
    se = math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / n)
    return max(MIN_GAP, 2 * se)


def _pct(p: float) -> str:
    return f"{100 * p:.1f} %"


def check_curve(eps: Sequence[float], accuracy: Sequence[float], *, n: int | None = None) -> list[Finding]:
    """Accuracy must not rise as epsilon grows: a stronger attacker can always do what a weaker one did.

    Args:
        eps: the budgets, in any order.
        accuracy: robust accuracy at each budget (fractions in [0, 1]).
        n: how many inputs each accuracy was measured on (sets the sampling-noise tolerance); None: 2 points.
    """
    if len(eps) != len(accuracy):
        raise InvalidInputError(f"Got {len(eps)} ε values but {len(accuracy)} accuracies.")
    points = sorted(zip((float(e) for e in eps), (float(a) for a in accuracy), strict=True))
    worst: tuple[float, float, float, float] | None = None  # (rise, eps_low, eps_high, acc_high)
    for e, a in points:
        # Compare with the lowest accuracy at a strictly smaller eps (equal eps: repeated measurements).
        lower = [(pa, pe) for pe, pa in points if pe < e]
        if not lower:
            continue
        low_acc, low_eps = min(lower)
        rise = a - low_acc
        if rise > _tolerance(a, low_acc, n) and (worst is None or rise > worst[0]):
            worst = (rise, low_eps, e, a)
    if worst is None:
        return []
    rise, e_low, e_high, a_high = worst
    return [
        Finding(
            code="accuracy-rises-with-eps",
            severity="warning",
            title="Accuracy rose when the attack got stronger",
            sentence=(
                f"Accuracy was {_pct(a_high - rise)} at ε = {e_low:g} but {_pct(a_high)} at the larger ε = "
                f"{e_high:g}. A bigger budget allows everything a smaller one does, so this is a sign that the "
                "attack is failing (gradient masking), not that the model is robust."
            ),
        )
    ]


def check_large_eps(
    eps_max: float, accuracy_at_max: float, norm: Norm | str, *, dims: int | None = None
) -> list[Finding]:
    """At a budget that lets the attacker repaint every image into the same flat grey image, accuracy must be ~0.

    For L-inf that budget is 0.5 (every pixel can move to 0.5); for L2 it is 0.5 * sqrt(dims), the distance
    from any image to the grey one (`dims` = C*H*W; without it the L2 check is skipped).
    """
    if norm == Norm.LINF:
        limit = GREY_LINF
        budget = f"L∞ ε = {eps_max:g}"
    elif norm == Norm.L2:
        if dims is None:
            return []
        limit = GREY_LINF * math.sqrt(dims)
        budget = f"L2 ε = {eps_max:g} (≥ {limit:.3g}, the distance from any image to a flat grey one)"
    else:
        raise InvalidInputError(f"Unknown norm {norm!r}.")
    if eps_max < limit or accuracy_at_max <= MAX_ACCURACY_AT_LARGE_EPS:
        return []
    return [
        Finding(
            code="large-eps-not-defeated",
            severity="warning",
            title="The attack does not win even with a huge budget",
            sentence=(
                f"At {budget} an attacker can repaint every image into the same flat grey picture, yet "
                f"{_pct(accuracy_at_max)} of the images are still classified correctly. The attack is not "
                "working (often gradient masking), so the accuracies at smaller ε cannot be trusted either."
            ),
        )
    ]


def check_sweep(points: Sequence[SweepPoint], *, dims: int | None = None) -> list[Finding]:
    """`check_curve` and `check_large_eps` on the points of an accuracy-vs-epsilon sweep."""
    if not points:
        return []
    n = min(p.n for p in points)
    findings = check_curve([p.eps for p in points], [p.accuracy for p in points], n=n)
    top = max(points, key=lambda p: p.eps)
    return findings + check_large_eps(top.eps, top.accuracy, top.norm, dims=dims)


def zero_gradient_fraction(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 500
) -> float:
    """Fraction of inputs whose cross-entropy gradient with respect to the input is exactly zero."""
    x, y, _ = check_inputs(x, y, None)
    device = device_of(model)
    zero = 0
    with eval_mode(model), torch.enable_grad():
        for i in range(0, x.shape[0], batch_size):
            grad, _ = input_gradient(
                model, x[i : i + batch_size].to(device), y[i : i + batch_size].to(device), None
            )
            zero += int((grad.flatten(1).abs().sum(dim=1) == 0).sum())  # (N, C, H, W) -> (N,)
    return zero / x.shape[0]


def check_zero_gradients(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, threshold: float = MAX_ZERO_GRADIENT_FRACTION
) -> list[Finding]:
    """Gradient attacks cannot move an input whose gradient is exactly zero (AutoAttack's check)."""
    fraction = zero_gradient_fraction(model, x, y)
    if fraction == 0:
        return []
    count = round(fraction * x.shape[0])
    if fraction > threshold:
        return [
            Finding(
                code="zero-gradients",
                severity="warning",
                title="Many inputs have a zero gradient",
                sentence=(
                    f"For {count} of {x.shape[0]} inputs ({_pct(fraction)}) the gradient of the loss is exactly "
                    "zero, so a gradient attack cannot move them: they look robust because the attack is blind "
                    "(gradient masking). Attack through a differentiable approximation (BPDA) instead."
                ),
            )
        ]
    return [
        Finding(
            code="some-zero-gradients",
            severity="info",
            title="A few inputs have a zero gradient",
            sentence=(
                f"For {count} of {x.shape[0]} inputs the gradient of the loss is exactly zero: gradient attacks "
                "cannot move them, so their robustness is not measured."
            ),
        )
    ]


def is_one_step(attack: Attack) -> bool:
    """True for a single-gradient-step attack (FGSM, one-step PGD): fast, but no evidence of robustness."""
    return bool(attack.linear_in_eps) or getattr(attack, "steps", None) == 1


def check_black_box_vs_white_box(
    white_box_accuracy: float,
    black_box_accuracy: float,
    *,
    n: int | None = None,
    strong_accuracy: float | None = None,
    white_box: str = "the white-box attack",
    black_box: str = "the black-box attack",
    strong: str = "an iterative white-box attack",
) -> list[Finding]:
    """A black-box (or transfer) attack knows less than a white-box one; it should not do better.

    A one-step white-box attack (FGSM) losing to a black-box one says more about FGSM than about the gradients:
    give `strong_accuracy`, the accuracy under a strong iterative white-box attack (PGD) at the same budget on
    the same images. Gradient masking is then called only when that attack loses too; otherwise the finding
    says that the one-step attack is weak (`weak-white-box-attack`, a note) and which attack backs a claim.

    Args:
        white_box_accuracy: robust accuracy under the evaluated white-box attack.
        black_box_accuracy: robust accuracy under the black-box attack, same budget and images.
        n: how many images each accuracy was measured on (sets the tolerance).
        strong_accuracy: robust accuracy under a strong iterative white-box attack, when the evaluated one is
            a one-step attack; None: the evaluated attack is itself the strong one.
        white_box, black_box, strong: the attacks' names for the sentences.
    """
    gap = white_box_accuracy - black_box_accuracy
    if gap <= _tolerance(white_box_accuracy, black_box_accuracy, n):
        return []
    if strong_accuracy is not None and black_box_accuracy - strong_accuracy >= -_tolerance(
        strong_accuracy, black_box_accuracy, n
    ):
        return [
            Finding(
                code="weak-white-box-attack",
                severity="info",
                title=f"{white_box[:1].upper()}{white_box[1:]} is a weak attack (no sign of gradient masking)",
                sentence=(
                    f"{black_box} brought accuracy down to {_pct(black_box_accuracy)}, {white_box} only to "
                    f"{_pct(white_box_accuracy)}; but {strong}, which follows the same gradients for many steps, "
                    f"reached {_pct(strong_accuracy)}. The gradients work: a single step simply is not enough, so "
                    f"this curve overstates robustness. A robustness claim needs an iterative attack such as "
                    "PGD with many steps and restarts (better: several attacks, as AutoAttack)."
                ),
            )
        ]
    strong_part = (
        f" Even {strong}, at the same budget, only reached {_pct(strong_accuracy)}."
        if strong_accuracy is not None
        else ""
    )
    return [
        Finding(
            code="black-box-beats-white-box",
            severity="warning",
            title="A black-box attack beat the white-box attack",
            sentence=(
                f"{black_box.capitalize()}, which cannot see the model's gradients, brought accuracy down to "
                f"{_pct(black_box_accuracy)}, {white_box}, which can, only to {_pct(white_box_accuracy)}."
                f"{strong_part} The gradients are misleading the white-box attack (gradient masking): the lower "
                "number is the honest one."
            ),
        )
    ]


def check_detector_attack(
    plain_evaded: float,
    adaptive_evaded: float,
    *,
    n: int | None = None,
    adaptive: str = "the adaptive attack",
) -> list[Finding]:
    """A detector-aware attack must evade the detector clearly more often than a plain attack.

    When it does not, the detector's numbers rest on a weak attack: feature squeezing and its like fall to
    properly adaptive attacks (He, Wei, Chen, Carlini, Song 2017; Carlini & Wagner 2017), so a detector that
    "holds" here has not been shown to hold.

    Args:
        plain_evaded, adaptive_evaded: share of inputs that fooled the model without being flagged, for the
            plain attack and for the detector-aware one (same budget and images).
    """
    if adaptive_evaded - plain_evaded > _tolerance(plain_evaded, adaptive_evaded, n):
        return []
    return [
        Finding(
            code="adaptive-attack-not-stronger",
            severity="warning",
            title="The detector-aware attack was not clearly stronger than the plain one",
            sentence=(
                f"{adaptive.capitalize()} fooled the model without being flagged on {_pct(adaptive_evaded)} of the "
                f"images, the plain attack on {_pct(plain_evaded)}. Detectors like this one are known to fall to "
                "adaptive attacks (He, Wei, Chen, Carlini, Song 2017), so read this as a failure of the attack, not "
                "as proof that the detector holds: a stronger adaptive attack (more steps, restarts, another loss "
                "or budget) may well get through."
            ),
        )
    ]


@torch.no_grad()
def _outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with eval_mode(model):
        return model(x.to(device_of(model))).float().cpu()


def check_probability_outputs(model: nn.Module, x: torch.Tensor, *, tol: float = 1e-4) -> list[Finding]:
    """Attacks expect logits; a model that already outputs probabilities squashes the gradient (AutoAttack's check).

    Log-probabilities (log-softmax outputs) are not flagged: cross-entropy on them equals cross-entropy on the
    logits, since log-softmax leaves log-probabilities unchanged.
    """
    out = _outputs(model, x)
    if out.ndim != 2:
        raise InvalidInputError(f"The model should output (N, classes), got shape {tuple(out.shape)}.")
    in_range = float(out.min()) >= -tol and float(out.max()) <= 1 + tol
    if not (in_range and bool(((out.sum(dim=1) - 1).abs() < tol).all())):
        return []
    return [
        Finding(
            code="probability-outputs",
            severity="warning",
            title="The model outputs probabilities, not logits",
            sentence=(
                "Every output row is between 0 and 1 and sums to 1. Attacks apply softmax themselves, so a softmax "
                "inside the model is applied twice: the loss flattens out and its gradient nearly vanishes, which "
                "makes the model look robust. Remove the final softmax before attacking."
            ),
        )
    ]


def check_randomized(model: nn.Module, x: torch.Tensor, *, tol: float = 1e-5) -> list[Finding]:
    """A model that answers the same input differently twice needs EOT-style attacks (AutoAttack's check)."""
    first, second = _outputs(model, x), _outputs(model, x)
    scale = first.abs().max().clamp_min(1.0)
    if float((first - second).abs().max() / scale) <= tol:
        return []
    return [
        Finding(
            code="randomized-model",
            severity="info",
            title="The model is random",
            sentence=(
                "The same input gave different outputs on two calls. An attack on one random draw can be undone by "
                "the next: attack the average over many draws (Expectation over Transformation) and measure "
                "accuracy on fresh draws."
            ),
        )
    ]


def check_naive_vs_adaptive(
    naive_accuracy: float, adaptive_accuracy: float, *, n: int | None = None
) -> list[Finding]:
    """Compare an attack through the defense's own gradients (naive) with one designed for it (adaptive)."""
    tol = _tolerance(naive_accuracy, adaptive_accuracy, n)
    numbers = f"naive attack: {_pct(naive_accuracy)} accuracy, adaptive attack: {_pct(adaptive_accuracy)}"
    if naive_accuracy - adaptive_accuracy > tol:
        return [
            Finding(
                code="naive-overestimates",
                severity="warning",
                title="The naive attack overestimated robustness",
                sentence=(
                    f"{numbers.capitalize()}. The difference is robustness that only existed because the naive "
                    "attack followed useless gradients (obfuscated gradients); the defense did not remove the "
                    "adversarial examples, it hid them. Report the adaptive number."
                ),
            )
        ]
    if adaptive_accuracy - naive_accuracy > tol:
        return [
            Finding(
                code="adaptive-weaker",
                severity="warning",
                title="The adaptive attack did worse than the naive one",
                sentence=(
                    f"{numbers.capitalize()}. An adaptive attack should be at least as strong: it probably needs "
                    "more steps or more EOT samples. Report the lower number."
                ),
            )
        ]
    return [
        Finding(
            code="naive-matches-adaptive",
            severity="info",
            title="Naive and adaptive attacks agree",
            sentence=(
                f"{numbers.capitalize()}. This defense does not rely on hiding gradients: its numbers mean what "
                "they say (for this attack and budget)."
            ),
        )
    ]


def run_checks(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    curve: Sequence[SweepPoint] | None = None,
    white_box_accuracy: float | None = None,
    black_box_accuracy: float | None = None,
    naive_accuracy: float | None = None,
    adaptive_accuracy: float | None = None,
    n: int | None = None,
    max_samples: int = 500,
) -> list[Finding]:
    """Every check that the given numbers allow, warnings first.

    Args:
        model: the model as the attack saw it (for a defended model: its attack view).
        x, y: inputs and labels for the model checks (the first `max_samples` are used).
        curve: the points of an accuracy-vs-epsilon sweep.
        white_box_accuracy, black_box_accuracy: robust accuracies under both kinds of attack, at the same budget.
        naive_accuracy, adaptive_accuracy: robust accuracies under a naive and an adaptive attack.
        n: how many inputs the given accuracies were measured on (default: the sweep's, else len(x)).
    """
    if max_samples < 1:
        raise InvalidInputError(f"max_samples must be at least 1, got {max_samples}.")
    x, y = x[:max_samples], y[:max_samples]
    if n is None:
        n = min(p.n for p in curve) if curve else int(x.shape[0])
    findings = (
        check_probability_outputs(model, x) + check_randomized(model, x) + check_zero_gradients(model, x, y)
    )
    if curve:
        findings += check_sweep(curve, dims=int(x[0].numel()))
    if white_box_accuracy is not None and black_box_accuracy is not None:
        findings += check_black_box_vs_white_box(white_box_accuracy, black_box_accuracy, n=n)
    if naive_accuracy is not None and adaptive_accuracy is not None:
        findings += check_naive_vs_adaptive(naive_accuracy, adaptive_accuracy, n=n)
    return sorted(findings, key=lambda f: f.severity != "warning")
