"""Certified robustness by randomized smoothing.

Cohen, Rosenfeld, Kolter, "Certified Adversarial Robustness via Randomized Smoothing", ICML 2019. The
smoothed classifier g(x) = argmax_c P(f(x + δ) = c), δ ~ N(0, σ² I), returns the class the base model f picks
most often under Gaussian noise. If the top class has probability at least p_A, g's prediction cannot change
within the L2 radius R = σ Φ⁻¹(p_A). The probabilities are estimated by Monte Carlo sampling, so every answer
holds with probability at least 1 - α over the sampling; otherwise the classifier abstains (prediction -1).

- `predict` is the paper's PREDICT: n noisy samples, a two-sided binomial test of the top two counts.
- `certify` is the paper's CERTIFY: n0 samples choose the class, n fresh samples give a one-sided
  Clopper-Pearson lower bound p_A on its probability; abstain when p_A < 1/2, else R = σ Φ⁻¹(p_A).

Noise is drawn on the CPU with the caller's `torch.Generator` and then moved to the model's device, so the
same seed gives the same noise on any device (and the same certificates, up to the device's arithmetic).
A base model trained without noise is a poor base classifier: train it with Gaussian noise of the same σ
(the paper's recipe).
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlsec_core.attacks.base import check_inputs, param
from dlsec_core.errors import InvalidInputError
from dlsec_core.models.modes import device_of
from dlsec_core.training.recipes import Recipe, register_recipe

ABSTAIN = -1
MAX_SAMPLES = 1_000_000  # noise draws per image; bounds what a form can ask of a shared server


# -- statistics ----------------------------------------------------------------------------------------------
def _log_binom_tail(k: int, n: int, p: float) -> float:
    """log P(X >= k) for X ~ Binomial(n, p), by summing the pmf in log space (0 < p < 1, 0 <= k <= n)."""
    j = torch.arange(k, n + 1, dtype=torch.float64)
    log_pmf = (
        math.lgamma(n + 1)
        - torch.lgamma(j + 1)
        - torch.lgamma(n - j + 1)
        + j * math.log(p)
        + (n - j) * math.log1p(-p)
    )
    return float(torch.logsumexp(log_pmf, dim=0))


def _clopper_pearson_lower_bisect(k: int, n: int, alpha: float) -> float:
    """The p with P(Binomial(n, p) >= k) = alpha, by bisection (the tail grows with p)."""
    lo, hi, log_alpha = 0.0, 1.0, math.log(alpha)
    for _ in range(60):
        mid = (lo + hi) / 2
        if _log_binom_tail(k, n, mid) < log_alpha:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def clopper_pearson_lower(k: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson lower bound on a binomial proportion, k successes in n.

    Equal to the Beta(alpha; k, n - k + 1) quantile (`statsmodels.proportion_confint(k, n, alpha=2 * alpha,
    method="beta")[0]`, as in the paper's code); 0 when k = 0; alpha ** (1 / n) when k = n. Uses scipy when it
    is importable (it comes with scikit-learn), else a bisection on the binomial tail.
    """
    if not (isinstance(n, int) and n >= 1 and isinstance(k, int) and 0 <= k <= n):
        raise InvalidInputError(f"Need 0 <= k <= n and n >= 1, got k={k!r}, n={n!r}.")
    _check_alpha(alpha)
    if k == 0:
        return 0.0
    if k == n:
        return float(alpha ** (1.0 / n))
    try:
        from scipy.stats import beta
    except ImportError:  # pragma: no cover - scipy ships with scikit-learn, a requirement
        return _clopper_pearson_lower_bisect(k, n, alpha)
    return float(beta.ppf(alpha, k, n - k + 1))


def binomial_test_half(k: int, n: int) -> float:
    """Two-sided exact binomial test p-value of k successes in n trials against p = 1/2."""
    if not (isinstance(n, int) and n >= 1 and isinstance(k, int) and 0 <= k <= n):
        raise InvalidInputError(f"Need 0 <= k <= n and n >= 1, got k={k!r}, n={n!r}.")
    # Symmetric null: the outcomes at least as unlikely as k are both tails beyond max(k, n - k).
    if 2 * k == n:
        return 1.0
    return min(1.0, 2.0 * math.exp(_log_binom_tail(max(k, n - k), n, 0.5)))


def _check_alpha(alpha: float) -> None:
    if not (isinstance(alpha, int | float) and not isinstance(alpha, bool) and 0.0 < alpha < 0.5):
        raise InvalidInputError(f"The failure probability α must be in (0, 0.5), got {alpha!r}.")


def _check_count(value: int, what: str, low: int = 1, high: int = MAX_SAMPLES) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidInputError(f"{what} must be an integer from {low} to {high:,}, got {value!r}.")


# -- the smoothed classifier ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SmoothedClassifier:
    """g(x) = the class the base `model` predicts most often on x + N(0, σ² I).

    Attributes:
        model: the base classifier (logits out); used in eval mode, its mode is restored.
        sigma: σ, the noise level in pixel units (the model's input is in [0, 1]).
        num_classes: the number of classes the model outputs.
    """

    model: nn.Module
    sigma: float
    num_classes: int

    def __post_init__(self) -> None:
        if not (isinstance(self.sigma, int | float) and 0.0 < float(self.sigma) <= 10.0):
            raise InvalidInputError(f"The noise level σ must be a number in (0, 10], got {self.sigma!r}.")
        if not isinstance(self.num_classes, int) or not 2 <= self.num_classes <= 1000:
            raise InvalidInputError(
                f"The number of classes must be from 2 to 1000, got {self.num_classes!r}."
            )
        object.__setattr__(self, "sigma", float(self.sigma))

    def sample_counts(
        self, x: torch.Tensor, num: int, *, batch_size: int = 1000, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Counts (K,) of the base model's classes on `num` noisy copies of one image x (C, H, W)."""
        _check_count(num, "The number of noise samples", low=0)
        _check_count(batch_size, "The batch size", high=100_000)
        device = device_of(self.model)
        x = x.to(device)
        counts = torch.zeros(self.num_classes, dtype=torch.long)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                remaining = num
                while remaining > 0:
                    b = min(batch_size, remaining)
                    # Drawn on the CPU: the same generator state gives the same noise on every device.
                    noise = torch.randn((b, *x.shape), generator=generator) * self.sigma
                    logits = self.model(x.unsqueeze(0) + noise.to(device))  # (b, C, H, W) -> (b, K)
                    if logits.ndim != 2 or logits.shape[1] != self.num_classes:
                        raise InvalidInputError(
                            f"The model outputs {tuple(logits.shape[1:])} scores per input, "
                            f"not {self.num_classes} classes."
                        )
                    counts += torch.bincount(logits.argmax(1).cpu(), minlength=self.num_classes)
                    remaining -= b
        finally:
            self.model.train(was_training)
        return counts

    def predict(
        self,
        x: torch.Tensor,
        n: int = 1000,
        alpha: float = 0.001,
        *,
        batch_size: int = 1000,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """PREDICT: (N,) int64 smoothed predictions for x (N, C, H, W), -1 where the model abstains.

        For each image, n noisy samples; the top class is returned when a two-sided binomial test says it
        beats the runner-up at level α (then the answer differs from g(x) with probability at most α).
        """
        x = _check_images(x)
        _check_count(n, "The number of noise samples n")
        _check_alpha(alpha)
        out = torch.full((x.shape[0],), ABSTAIN, dtype=torch.long)
        for i in range(x.shape[0]):
            counts = self.sample_counts(x[i], n, batch_size=batch_size, generator=generator)
            top2 = counts.topk(2)
            n_a, n_b = int(top2.values[0]), int(top2.values[1])
            if binomial_test_half(n_a, n_a + n_b) <= alpha:
                out[i] = int(top2.indices[0])
        return out

    def certify(
        self,
        x: torch.Tensor,
        n0: int = 100,
        n: int = 1000,
        alpha: float = 0.001,
        *,
        batch_size: int = 1000,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """CERTIFY: (prediction (N,) int64 with -1 = abstain, radius (N,) float64 with 0 where abstained).

        For each image, n0 noisy samples choose the class c_A, n fresh ones bound p_A from below
        (Clopper-Pearson at level 1 - α); with p_A >= 1/2 the prediction c_A is certified in the L2 ball of
        radius σ Φ⁻¹(p_A).
        """
        x = _check_images(x)
        _check_count(n0, "The number of selection samples n0")
        _check_count(n, "The number of estimation samples n")
        _check_alpha(alpha)
        pred = torch.full((x.shape[0],), ABSTAIN, dtype=torch.long)
        radius = torch.zeros(x.shape[0], dtype=torch.float64)
        for i in range(x.shape[0]):
            pred[i], radius[i] = self._certify_one(x[i], n0, n, alpha, batch_size, generator)
        return pred, radius

    def _certify_one(
        self,
        x: torch.Tensor,
        n0: int,
        n: int,
        alpha: float,
        batch_size: int,
        generator: torch.Generator | None,
    ) -> tuple[int, float]:
        c_a = int(self.sample_counts(x, n0, batch_size=batch_size, generator=generator).argmax())
        n_a = int(self.sample_counts(x, n, batch_size=batch_size, generator=generator)[c_a])
        p_a = clopper_pearson_lower(n_a, n, alpha)
        if p_a < 0.5:
            return ABSTAIN, 0.0
        return c_a, self.sigma * NormalDist().inv_cdf(p_a)

    def describe(self) -> str:
        return f"Randomized smoothing (σ={self.sigma:g})"


def _check_images(x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise InvalidInputError(
            f"Images must be a (N, C, H, W) tensor (one image: x[None]), got shape "
            f"{tuple(getattr(x, 'shape', ()))}."
        )
    if x.shape[0] == 0:
        raise InvalidInputError("There are no images to classify.")
    x, _, _ = check_inputs(x, torch.zeros(x.shape[0], dtype=torch.long), None)
    return x


# -- training the base classifier ----------------------------------------------------------------------------
@register_recipe
@dataclass(frozen=True, kw_only=True)
class GaussianNoiseRecipe(Recipe):
    """Train on x + N(0, σ² I): the base classifier randomized smoothing needs (Cohen et al. 2019, Sec. 4).

    A model trained on clean images misclassifies most noisy copies, so its smoothed version abstains or is
    wrong; trained with the σ it will be smoothed with, it stays accurate under that noise.
    """

    name = "gaussian-noise"
    title = "Gaussian noise (base model for randomized smoothing)"
    paper = "Cohen, Rosenfeld, Kolter 2019, Certified Adversarial Robustness via Randomized Smoothing"
    #: ATLAS mitigation: Model Hardening (the base classifier of a certified defense)
    atlas_ids = ("AML.M0003",)

    sigma: float = param(
        0.25,
        "σ (noise level, pixel units)",
        help="Use the σ you will certify with. Larger σ: larger certified radii, lower accuracy.",
        min=0.0,
        min_open=True,
        max=1.0,
        step=0.01,
    )

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # Drawn on the CPU from the training generator: the same seed gives the same run on any device.
        noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype) * self.sigma
        logits = model(x + noise)
        return F.cross_entropy(logits, y), logits


# -- certified accuracy --------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class CertifyEvent:
    """Progress of `certified_accuracy_curve`: after each group of images."""

    done: int
    total: int
    correct: int  # certified and correct so far (at radius 0)
    abstained: int
    elapsed: float

    @property
    def progress(self) -> float:
        return self.done / max(1, self.total)

    def to_record(self) -> dict[str, Any]:
        return {
            "done": self.done,
            "total": self.total,
            "correct": self.correct,
            "abstained": self.abstained,
            "elapsed_s": round(self.elapsed, 3),
        }


@dataclass(frozen=True, eq=False)
class CertificationResult:
    """Per-image certificates and the certified-accuracy curve over a grid of radii. Tensors on CPU."""

    sigma: float
    n0: int
    n: int
    alpha: float
    radii: tuple[float, ...]  # the grid reported by `to_records`
    labels: torch.Tensor  # (N,) int64
    predictions: torch.Tensor  # (N,) int64, -1 = abstain
    radius: torch.Tensor  # (N,) float64 certified L2 radius, 0 where abstained
    seconds: float

    @property
    def correct(self) -> torch.Tensor:
        return self.predictions == self.labels

    @property
    def abstain_rate(self) -> float:
        return float((self.predictions == ABSTAIN).double().mean())

    def accuracy_at(self, r: float) -> float:
        """Certified accuracy at L2 radius r: the share of images predicted correctly with a radius >= r."""
        return float((self.correct & (self.radius >= r)).double().mean())

    def describe(self) -> str:
        return (
            f"Randomized smoothing, σ={self.sigma:g}: CERTIFY with n0={self.n0}, n={self.n}, "
            f"α={self.alpha:g} on {self.labels.shape[0]} images"
        )

    def to_records(self) -> list[dict[str, float]]:
        """One row per radius of the grid: the certified accuracy there."""
        return [{"radius": r, "certified_accuracy": self.accuracy_at(r)} for r in self.radii]

    def sample_records(self) -> list[dict[str, Any]]:
        """One row per image: label, smoothed prediction (-1 = abstain), certified radius."""
        return [
            {"label": int(lab), "prediction": int(p), "radius": float(r), "correct": bool(lab == p)}
            for lab, p, r in zip(self.labels, self.predictions, self.radius, strict=True)
        ]


def default_radii(sigma: float, points: int = 11) -> tuple[float, ...]:
    """0 to 2.5 σ: with n = 1000 and α = 0.001 no radius can exceed σ Φ⁻¹(α^(1/n)) ≈ 2.46 σ."""
    return tuple(round(2.5 * sigma * i / (points - 1), 6) for i in range(points))


def certified_accuracy_curve(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    sigma: float,
    radii: Sequence[float] | None = None,
    *,
    n0: int = 100,
    n: int = 1000,
    alpha: float = 0.001,
    batch_size: int = 1000,
    generator: torch.Generator | None = None,
    images_per_event: int = 5,
) -> Generator[CertifyEvent, None, CertificationResult]:
    """CERTIFY every image, yielding a `CertifyEvent` after each group; return the `CertificationResult`.

    Use `for event in ...` for progress, or drain it and take `StopIteration.value`. Arguments are validated
    when this is called, before the first event is asked for.

    Args:
        model: the base classifier (logits out), ideally trained with Gaussian noise of this σ.
        x: (N, C, H, W) images in [0, 1]; y: (N,) labels.
        sigma: σ, the noise level in pixel units.
        radii: the L2 radii at which `to_records` reports certified accuracy (default 0 to 2.5 σ).
        n0, n, alpha: CERTIFY's selection samples, estimation samples and failure probability.
        batch_size: noisy copies per forward pass.
        generator: CPU generator for the noise (same seed, same certificates).
        images_per_event: how many images between two events.
    """
    x = _check_images(x)
    smoothed = SmoothedClassifier(model, sigma, _num_classes(model, x))
    _, y, _ = check_inputs(x, y, None)
    _check_count(n0, "The number of selection samples n0")
    _check_count(n, "The number of estimation samples n")
    _check_count(batch_size, "The batch size", high=100_000)
    _check_count(images_per_event, "Images per event", high=1_000_000)
    _check_alpha(alpha)
    grid = default_radii(smoothed.sigma) if radii is None else tuple(float(r) for r in radii)
    if not grid or any(not math.isfinite(r) or r < 0 for r in grid):
        raise InvalidInputError(f"Radii must be finite numbers >= 0, got {list(grid)}.")
    return _certify_all(smoothed, x, y, grid, n0, n, alpha, batch_size, generator, images_per_event)


def _num_classes(model: nn.Module, x: torch.Tensor) -> int:
    """The number of classes, from one forward pass on the first image (mode restored)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(x[:1].float().to(device_of(model)))
    finally:
        model.train(was_training)
    return int(logits.shape[1])


def _certify_all(
    smoothed: SmoothedClassifier,
    x: torch.Tensor,
    y: torch.Tensor,
    grid: tuple[float, ...],
    n0: int,
    n: int,
    alpha: float,
    batch_size: int,
    generator: torch.Generator | None,
    images_per_event: int,
) -> Generator[CertifyEvent, None, CertificationResult]:
    start = time.perf_counter()
    total = x.shape[0]
    pred = torch.full((total,), ABSTAIN, dtype=torch.long)
    radius = torch.zeros(total, dtype=torch.float64)
    for i in range(total):
        pred[i], radius[i] = smoothed._certify_one(x[i], n0, n, alpha, batch_size, generator)
        if (i + 1) % images_per_event == 0 or i + 1 == total:
            yield CertifyEvent(
                done=i + 1,
                total=total,
                correct=int((pred[: i + 1] == y[: i + 1]).sum()),
                abstained=int((pred[: i + 1] == ABSTAIN).sum()),
                elapsed=time.perf_counter() - start,
            )
    return CertificationResult(
        sigma=smoothed.sigma,
        n0=n0,
        n=n,
        alpha=alpha,
        radii=grid,
        labels=y.clone(),
        predictions=pred,
        radius=radius,
        seconds=time.perf_counter() - start,
    )
