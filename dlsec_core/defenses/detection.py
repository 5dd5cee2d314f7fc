"""Detecting adversarial inputs by feature squeezing, and an attack that knows about the detector.

Xu, Evans, Qi, "Feature Squeezing: Detecting Adversarial Examples in Deep Neural Networks", NDSS 2018: squeeze
the input (fewer bits per pixel, a median filter) and compare the model's softmax on the original and on each
squeezed version. The score is the largest L1 distance; a legitimate input barely changes its prediction, an
adversarial one often does. The threshold is chosen on held-out clean data for a target false-positive rate.

The detector is not a robustness guarantee. Carlini & Wagner, "Adversarial Examples Are Not Easily Detected:
Bypassing Ten Detection Methods", AISec 2017 (and He et al. 2017 for feature squeezing itself) break such
detectors by attacking the model and the squeezed model together. `adaptive_attack` does exactly that: PGD
that makes the model wrong on x' and on every squeezed x' while it shrinks the detector's score; gradients
pass through both squeezers straight-through (BPDA, Athalye, Carlini, Wagner 2018), with random restarts and a
per-input search over the weight of the score.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlsec_core.attacks._projection import NORMS, normalize_step, project, random_start
from dlsec_core.attacks.base import Attack, AttackResult, check_inputs
from dlsec_core.config import Config, param
from dlsec_core.errors import InvalidInputError
from dlsec_core.evaluation.sweep import check_eps_values
from dlsec_core.models.modes import device_of

SQUEEZER_KINDS = ("bit_depth", "median")
SQUEEZER_SIZES = {"bit_depth": (1, 8), "median": (2, 5)}  # the smallest and largest size of each kind


# -- squeezers -----------------------------------------------------------------------------------------------
def _bit_depth(x: torch.Tensor, bits: int) -> torch.Tensor:
    levels = 2**bits - 1
    return torch.round(x * levels) / levels


def _median(x: torch.Tensor, size: int) -> torch.Tensor:
    """Median over a size x size window, as `scipy.ndimage.median_filter(mode="reflect")` computes it.

    Like scipy (and the paper's code, which calls it): the window around pixel i spans i - size//2 ..
    i + size - 1 - size//2, borders are extended by mirroring with the edge pixel repeated, and for an even
    window the upper of the two middle values is taken.
    """
    n, c, h, w = x.shape
    before, after = size // 2, size - 1 - size // 2
    # Symmetric padding (d c b a | a b c d): torch's "reflect" would drop the edge pixel.
    x = torch.cat([x[..., :before].flip(-1), x, x[..., w - after :].flip(-1)], dim=-1)
    x = torch.cat([x[..., :before, :].flip(-2), x, x[..., h - after :, :].flip(-2)], dim=-2)
    # (N, C, H+size-1, W+size-1) -> (N*C, 1, ...) -> unfold -> (N*C, size*size, H*W)
    windows = F.unfold(x.reshape(n * c, 1, h + size - 1, w + size - 1), kernel_size=size)
    values = windows.kthvalue(size * size // 2 + 1, dim=1).values  # (N*C, H*W)
    return values.reshape(n, c, h, w)


@dataclass(frozen=True)
class Squeezer(Config):
    """One feature squeezer: `Squeezer("bit_depth", 1)` (pixels rounded to 1 bit) or `Squeezer("median", 2)`.

    Attributes:
        kind: "bit_depth" or "median".
        size: bits per pixel (1-8) for bit depth; the window side (2-5) for the median filter.
    """

    title: ClassVar[str] = "Squeezer"

    kind: str = param(
        dataclasses.MISSING,
        "Squeezer",
        options=SQUEEZER_KINDS,
        help="Bit-depth reduction or a median filter.",
    )
    size: int = param(
        dataclasses.MISSING, "Size (bits per pixel, or the median window's side)", min=1, max=8,
        help="Bit depth: 1 to 8 bits per pixel; median filter: a 2 to 5 pixel window.",
    )  # fmt: skip

    def cross_check(self, problems: list[str]) -> None:
        super().cross_check(problems)
        low, high = SQUEEZER_SIZES[self.kind]
        if not low <= self.size <= high:
            what = "a bit depth" if self.kind == "bit_depth" else "a median window"
            problems.append(f"{what} (`size`) must be an integer from {low} to {high}, got {self.size!r}")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The squeezed inputs (N, C, H, W); differentiable for the median, zero gradient for bit depth."""
        if self.kind == "bit_depth":
            return _bit_depth(x, self.size)
        if self.size > min(x.shape[-2:]):
            raise InvalidInputError(
                f"A {self.size}x{self.size} median is larger than the {tuple(x.shape[-2:])} images."
            )
        return _median(x, self.size)

    def straight_through(self, x: torch.Tensor) -> torch.Tensor:
        """The squeezed inputs, with the identity's gradient (BPDA, Athalye, Carlini, Wagner 2018).

        Rounding has a zero gradient almost everywhere; the median's gradient reaches one pixel per window. An
        attacker does better treating both as the identity on the way back, as He et al. 2017 did against
        feature squeezing: the forward values stay the squeezed ones.
        """
        return x + (self(x) - x).detach()

    def describe(self) -> str:
        if self.kind == "bit_depth":
            return f"bit depth {self.size}"
        return f"median {self.size}x{self.size}"


DEFAULT_SQUEEZERS = (Squeezer("bit_depth", 1), Squeezer("median", 2))  # the paper's MNIST setting


# -- scores --------------------------------------------------------------------------------------------------


def _score_graph(
    model: nn.Module, x: torch.Tensor, squeezers: Sequence[Squeezer], *, straight_through: bool = False
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Scores (N,), the logits on x (N, K) and on each squeezed x, in one forward pass of the model."""
    squeezed = [s.straight_through(x) if straight_through else s(x) for s in squeezers]
    n = x.shape[0]
    logits = model(torch.cat([x, *squeezed]))  # ((1 + S) * N, K)
    probs = logits.softmax(dim=1)
    base = probs[:n]
    dists = [(probs[(i + 1) * n : (i + 2) * n] - base).abs().sum(dim=1) for i in range(len(squeezers))]
    score = torch.stack(dists, dim=1).amax(dim=1)  # (N, S) -> (N,)
    return score, logits[:n], [logits[(i + 1) * n : (i + 2) * n] for i in range(len(squeezers))]


@torch.no_grad()
def squeeze_scores(
    model: nn.Module, x: torch.Tensor, squeezers: Sequence[Squeezer], batch_size: int = 500
) -> torch.Tensor:
    """Feature-squeezing scores (N,) on CPU: max over squeezers s of ||softmax(f(x)) - softmax(f(s(x)))||_1.

    The model's train/eval mode is restored afterwards. Scores lie in [0, 2].
    """
    if x.shape[0] == 0:
        return torch.zeros(0)
    device = device_of(model)
    was_training = model.training
    model.eval()
    try:
        out = [
            _score_graph(model, x[i : i + batch_size].to(device), squeezers)[0].cpu()
            for i in range(0, x.shape[0], batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(out)


# -- the detector --------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class FeatureSqueezingDetector(Config):
    """The detector's configuration: which squeezers, and the false-positive rate to calibrate for."""

    name: ClassVar[str] = "feature_squeezing"
    title: ClassVar[str] = "Feature squeezing"
    paper: ClassVar[str] = "Xu, Evans, Qi 2018, Feature Squeezing: Detecting Adversarial Examples in DNNs"
    atlas_ids: ClassVar[tuple[str, ...]] = ("AML.M0015",)  # ATLAS mitigation: Adversarial Input Detection

    squeezers: tuple[Squeezer, ...] = param(
        DEFAULT_SQUEEZERS,
        "Squeezers (bit depth, median filter)",
        help="The paper's MNIST setting by default.",
    )
    fpr: float = param(
        0.05,
        "Target false-positive rate",
        help="Share of clean inputs flagged as adversarial, chosen on held-out clean data.",
        min=0.0,
        max=1.0,
        min_open=True,
        max_open=True,
        step=0.001,
    )

    def check_plain(self, problems: list[str]) -> None:
        super().check_plain(problems)
        if self.squeezers is None:
            return  # named by the field check
        squeezers = tuple(self.squeezers) if isinstance(self.squeezers, Iterable) else ()
        if not squeezers:
            problems.append("give at least one squeezer (`squeezers`): bit depth or median filter")
        elif not all(isinstance(s, Squeezer) for s in squeezers):
            problems.append("`squeezers` must be `Squeezer` objects, e.g. Squeezer('bit_depth', 1)")
        else:
            object.__setattr__(self, "squeezers", squeezers)

    def calibrate(
        self, model: nn.Module, x_clean: torch.Tensor, *, batch_size: int = 500
    ) -> CalibratedDetector:
        """Score held-out clean inputs and set the threshold for the target false-positive rate.

        The threshold is the ceil((1 - fpr) * (n + 1))-th smallest clean score (the conformal quantile), and
        an input is flagged when its score is strictly above it. At most a share `fpr` of the calibration
        scores is flagged, and a fresh clean input from the same distribution is flagged with probability at
        most `fpr` (averaged over the draw of the calibration set). With fewer than 1/fpr - 1 calibration
        inputs the threshold is the largest score: nothing of the calibration set is flagged.

        Args:
            model: the classifier to protect (logits out), used in eval mode.
            x_clean: (N, C, H, W) clean inputs in [0, 1] that were not used for training.
        """
        if not isinstance(x_clean, torch.Tensor) or x_clean.ndim != 4 or x_clean.shape[0] == 0:
            raise InvalidInputError("Calibration needs a non-empty (N, C, H, W) tensor of clean inputs.")
        x_clean, _, _ = check_inputs(x_clean, torch.zeros(x_clean.shape[0], dtype=torch.long), None)
        scores = squeeze_scores(model, x_clean, self.squeezers, batch_size)
        n = scores.shape[0]
        k = min(n, math.ceil((1.0 - self.fpr) * (n + 1)))
        threshold = float(scores.sort().values[k - 1])
        return CalibratedDetector(
            squeezers=self.squeezers,
            threshold=threshold,
            fpr_target=self.fpr,
            calibration_scores=scores,
            calibration_fpr=float((scores > threshold).float().mean()),
        )

    def with_params(self, **changes: Any) -> FeatureSqueezingDetector:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, eq=False)
class CalibratedDetector:
    """A feature-squeezing detector with its threshold; flags inputs whose score is above the threshold."""

    squeezers: tuple[Squeezer, ...]
    threshold: float
    fpr_target: float
    calibration_scores: torch.Tensor  # (N,) CPU, the clean scores the threshold came from
    calibration_fpr: float  # share of the calibration scores above the threshold (<= fpr_target)

    @property
    def n_calibration(self) -> int:
        return int(self.calibration_scores.shape[0])

    def scores(self, model: nn.Module, x: torch.Tensor, *, batch_size: int = 500) -> torch.Tensor:
        """Scores (N,) on CPU; higher means more likely adversarial."""
        x, _, _ = check_inputs(x, torch.zeros(_rows(x), dtype=torch.long), None)
        return squeeze_scores(model, x, self.squeezers, batch_size)

    def flag(self, model: nn.Module, x: torch.Tensor, *, batch_size: int = 500) -> torch.Tensor:
        """(N,) bool on CPU: True where the input is flagged as adversarial."""
        return self.scores(model, x, batch_size=batch_size) > self.threshold

    def describe(self) -> str:
        squeezers = ", ".join(s.describe() for s in self.squeezers)
        return (
            f"Feature squeezing ({squeezers}; threshold {self.threshold:.4g} for a target false-positive "
            f"rate of {self.fpr_target:.1%}, calibrated on {self.n_calibration} clean inputs)"
        )


def _rows(x: torch.Tensor) -> int:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise InvalidInputError(
            f"Inputs must be a (N, C, H, W) tensor, got shape {tuple(getattr(x, 'shape', ()))}."
        )
    return int(x.shape[0])


# -- ROC -----------------------------------------------------------------------------------------------------
class RocCurve(NamedTuple):
    """Receiver operating characteristic of a score (adversarial = positive); unpacks as (fpr, tpr, auc)."""

    fpr: np.ndarray  # (T,) increasing from 0 to 1
    tpr: np.ndarray  # (T,)
    auc: float

    def to_records(self) -> list[dict[str, float]]:
        return [{"fpr": float(f), "tpr": float(t)} for f, t in zip(self.fpr, self.tpr, strict=True)]

    def tpr_at(self, fpr: float) -> float:
        """The best true-positive rate whose false-positive rate is at most `fpr`."""
        ok = self.fpr <= fpr + 1e-12
        return float(self.tpr[ok].max()) if ok.any() else 0.0


def roc(scores_clean: torch.Tensor | np.ndarray, scores_adv: torch.Tensor | np.ndarray) -> RocCurve:
    """ROC curve and its area for telling adversarial (positive) from clean inputs by score (higher = adv.).

    One point per distinct score, starting at (0, 0); the area is the trapezoid rule over these points, which
    counts ties as half (the Mann-Whitney U statistic, as `sklearn.metrics.roc_auc_score`).
    """
    neg = np.asarray(scores_clean, dtype=np.float64).reshape(-1)
    pos = np.asarray(scores_adv, dtype=np.float64).reshape(-1)
    if neg.size == 0 or pos.size == 0:
        raise InvalidInputError("A ROC curve needs at least one clean and one adversarial score.")
    if not (np.isfinite(neg).all() and np.isfinite(pos).all()):
        raise InvalidInputError("Scores contain NaN or infinite values.")
    scores = np.concatenate([pos, neg])
    labels = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    # The last index of every run of equal scores: thresholds between distinct values.
    last = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    tp = np.cumsum(labels)[last]
    fp = (last + 1) - tp
    tpr = np.r_[0.0, tp / pos.size]
    fpr = np.r_[0.0, fp / neg.size]
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))
    return RocCurve(fpr=fpr, tpr=tpr, auc=auc)


# -- evaluation ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class DetectionResult:
    """An attack's outcome against a detector. Tensors are (N,) on CPU.

    Success is the attack's own (the prediction on x' differs from the label). An adversarial input *evades*
    when it succeeds and is not flagged: that is what the attacker of a detected model needs.
    """

    attack: str  # the attack's description
    eps: float
    detector: str  # the detector's description
    threshold: float
    success: torch.Tensor  # bool
    scores_adv: torch.Tensor
    scores_clean: torch.Tensor
    x_adv: torch.Tensor | None = None  # (N, C, H, W) the adversarial inputs, when kept

    @property
    def n(self) -> int:
        return int(self.success.shape[0])

    @property
    def flagged(self) -> torch.Tensor:
        return self.scores_adv > self.threshold

    @property
    def flagged_clean(self) -> torch.Tensor:
        return self.scores_clean > self.threshold

    @property
    def evaded(self) -> torch.Tensor:
        return self.success & ~self.flagged

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean())

    @property
    def detection_rate(self) -> float:
        """Share of the successful adversarial inputs that are flagged (NaN when none succeeded)."""
        if not bool(self.success.any()):
            return float("nan")
        return float(self.flagged[self.success].float().mean())

    @property
    def flag_rate(self) -> float:
        """Share of all adversarial inputs (successful or not) that are flagged."""
        return float(self.flagged.float().mean())

    @property
    def evaded_rate(self) -> float:
        """Share of all inputs whose adversarial version fools the model and is not flagged."""
        return float(self.evaded.float().mean())

    @property
    def false_positive_rate(self) -> float:
        """Share of the clean inputs that are flagged."""
        return float(self.flagged_clean.float().mean())

    def roc(self) -> RocCurve:
        """ROC of clean scores against the scores of the *successful* adversarial inputs."""
        return roc(self.scores_clean, self.scores_adv[self.success])

    def summary(self) -> dict[str, Any]:
        return {
            "attack": self.attack,
            "eps": self.eps,
            "n": self.n,
            "success_rate": self.success_rate,
            "detection_rate": self.detection_rate,
            "flag_rate": self.flag_rate,
            "evaded_rate": self.evaded_rate,
            "false_positive_rate": self.false_positive_rate,
        }

    def to_records(self) -> list[dict[str, Any]]:
        return [
            {
                "success": bool(self.success[i]),
                "score_clean": float(self.scores_clean[i]),
                "score_adv": float(self.scores_adv[i]),
                "flagged_clean": bool(self.flagged_clean[i]),
                "flagged": bool(self.flagged[i]),
                "evaded": bool(self.evaded[i]),
            }
            for i in range(self.n)
        ]


def detect(
    model: nn.Module, detector: CalibratedDetector, result: AttackResult, *, batch_size: int = 500
) -> DetectionResult:
    """Score an attack's clean and adversarial inputs with a calibrated detector."""
    return DetectionResult(
        attack=f"{result.attack} ε={result.eps:g}",
        eps=result.eps,
        detector=detector.describe(),
        threshold=detector.threshold,
        success=result.success.clone(),
        scores_adv=squeeze_scores(model, result.x_adv, detector.squeezers, batch_size),
        scores_clean=squeeze_scores(model, result.x, detector.squeezers, batch_size),
        x_adv=result.x_adv,
    )


@dataclass(frozen=True, kw_only=True)
class DetectionPoint:
    """The detector against one attack at one epsilon."""

    eps: float
    attack: str
    n: int
    n_success: int
    success_rate: float
    detection_rate: float  # among the successful adversarial inputs (NaN when none)
    flag_rate: float  # among all adversarial inputs
    evaded_rate: float  # successful and not flagged, among all
    false_positive_rate: float  # flagged clean inputs, among all
    auc: float  # clean vs successful adversarial scores (NaN when none succeeded)
    elapsed: float  # seconds since the evaluation started

    def to_record(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        record["elapsed"] = round(self.elapsed, 3)
        return record


@dataclass(frozen=True)
class DetectionCurve:
    """All points of `detection_rate_vs_eps`, in the order of the epsilons given."""

    detector: str
    points: tuple[DetectionPoint, ...]

    def to_records(self) -> list[dict[str, Any]]:
        return [p.to_record() for p in self.points]


def detection_rate_vs_eps(
    model: nn.Module,
    detector: CalibratedDetector,
    attack: Attack,
    x: torch.Tensor,
    y: torch.Tensor,
    eps_values: Sequence[float],
    *,
    batch_size: int = 500,
    seed: int = 0,
) -> Generator[DetectionPoint, None, DetectionCurve]:
    """Yield one `DetectionPoint` per epsilon (the attack's own eps is ignored); return the `DetectionCurve`.

    For FGSM-like attacks the gradient direction is computed once and reused for every epsilon (as `sweep`).
    Arguments are validated when this is called, before the first point is asked for.
    """
    eps_list = check_eps_values(eps_values, attack.norm)
    x, y, _ = check_inputs(x, y, None)
    return _detection_rate_vs_eps(model, detector, attack, x, y, eps_list, batch_size=batch_size, seed=seed)


def _detection_rate_vs_eps(
    model: nn.Module,
    detector: CalibratedDetector,
    attack: Attack,
    x: torch.Tensor,
    y: torch.Tensor,
    eps_list: list[float],
    *,
    batch_size: int,
    seed: int,
) -> Generator[DetectionPoint, None, DetectionCurve]:
    start = time.perf_counter()
    batches = [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    scores_clean = squeeze_scores(model, x, detector.squeezers, batch_size)
    directions: list[torch.Tensor] = []
    if attack.linear_in_eps:
        device = device_of(model)
        was_training = model.training
        model.eval()
        try:
            with torch.enable_grad():
                directions = [attack.direction(model, xb.to(device), yb.to(device)) for xb, yb in batches]
        finally:
            model.train(was_training)
    generator = torch.Generator().manual_seed(seed)
    points: list[DetectionPoint] = []
    for eps in eps_list:
        at = attack.with_params(eps=eps)
        success, adv_scores = [], []
        for j, (xb, yb) in enumerate(batches):
            if attack.linear_in_eps:
                result = at.apply_direction(model, xb, yb, directions[j])
            else:
                result = at(model, xb, yb, generator=generator)
            success.append(result.success)
            adv_scores.append(squeeze_scores(model, result.x_adv, detector.squeezers, batch_size))
        res = DetectionResult(
            attack=at.describe(),
            eps=eps,
            detector=detector.describe(),
            threshold=detector.threshold,
            success=torch.cat(success),
            scores_adv=torch.cat(adv_scores),
            scores_clean=scores_clean,
        )
        n_success = int(res.success.sum())
        point = DetectionPoint(
            eps=eps,
            attack=res.attack,
            n=res.n,
            n_success=n_success,
            success_rate=res.success_rate,
            detection_rate=res.detection_rate,
            flag_rate=res.flag_rate,
            evaded_rate=res.evaded_rate,
            false_positive_rate=res.false_positive_rate,
            auc=res.roc().auc if n_success else float("nan"),
            elapsed=time.perf_counter() - start,
        )
        points.append(point)
        yield point
    return DetectionCurve(detector=detector.describe(), points=tuple(points))


# -- the adaptive attack -------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class AdaptiveAttackConfig:
    """Hyperparameters of the detector-aware PGD (see `adaptive_attack`)."""

    eps: float = param(0.1, "ε (perturbation budget, pixel units)", min=0.0, max=1.0, step=0.01)
    norm: str = param("linf", "Norm of the budget", options=NORMS)
    steps: int = param(100, "Steps per restart", min=1, max=1000, step=1)
    alpha: float | None = param(None, "Step size α (empty = 2.5·ε/steps)", min=0.0, max=1.0, step=0.001)
    score_weight: float = param(
        1.0, "Starting weight λ of the detector score in the loss", min=0.0, max=100.0, step=0.1
    )
    restarts: int = param(
        4,
        "Restarts (fresh random start; λ searched per input)",
        help="After each restart an input still flagged gets 10x the λ, one not fooled a tenth of it.",
        min=1,
        max=20,
        step=1,
    )
    random_start: bool = param(True, "Random start inside the ε-ball")
    #: an iterate counts as evading only with a score below `score_margin` x threshold, so that a
    #: re-evaluation in other batch sizes (tiny floating-point differences) cannot flag it after all
    score_margin: float = field(
        default=0.95, metadata={"label": "Safety margin under the threshold", "describe": False}
    )

    def __post_init__(self) -> None:
        if not (isinstance(self.eps, int | float) and 0.0 <= float(self.eps) < float("inf")):
            raise InvalidInputError(f"ε must be a finite number >= 0, got {self.eps!r}.")
        if self.norm not in NORMS:
            raise InvalidInputError(f"Norm must be one of {', '.join(NORMS)}, got {self.norm!r}.")
        if self.norm == "linf" and self.eps > 1.0:
            raise InvalidInputError(f"An L∞ ε above 1 is meaningless for pixels in [0, 1], got {self.eps}.")
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or not 1 <= self.steps <= 10_000:
            raise InvalidInputError(f"Steps must be an integer between 1 and 10000, got {self.steps!r}.")
        if self.alpha is not None and not (0.0 < float(self.alpha) < float("inf")):
            raise InvalidInputError(f"The step size α must be a positive number, got {self.alpha!r}.")
        if not (isinstance(self.score_weight, int | float) and 0.0 < self.score_weight < float("inf")):
            raise InvalidInputError(f"The score weight λ must be a number > 0, got {self.score_weight!r}.")
        if (
            not isinstance(self.restarts, int)
            or isinstance(self.restarts, bool)
            or not 1 <= self.restarts <= 100
        ):
            raise InvalidInputError(f"Restarts must be an integer between 1 and 100, got {self.restarts!r}.")
        if not 0.0 < self.score_margin <= 1.0:
            raise InvalidInputError(f"The score margin must be in (0, 1], got {self.score_margin!r}.")
        object.__setattr__(self, "eps", float(self.eps))

    @property
    def step_size(self) -> float:
        return float(self.alpha) if self.alpha is not None else 2.5 * self.eps / self.steps

    def describe(self) -> str:
        unit = "L∞" if self.norm == "linf" else "L2"
        search = (
            f", λ searched from {self.score_weight:g} over {self.restarts} restarts"
            if self.restarts > 1
            else (f", λ={self.score_weight:g}")
        )
        return (
            f"Detector-aware PGD ({unit} ε={self.eps:g}, {self.steps} steps, α={self.step_size:.3g}{search}, "
            "straight-through gradients through every squeezer)"
        )


def adaptive_attack(
    model: nn.Module,
    detector: CalibratedDetector,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float = 0.1,
    steps: int = 100,
    alpha: float | None = None,
    norm: str = "linf",
    score_weight: float = 1.0,
    restarts: int = 4,
    random_start: bool = True,
    batch_size: int = 500,
    generator: torch.Generator | None = None,
) -> DetectionResult:
    """PGD against the model *and* its feature-squeezing detector; the result keeps x' (N, C, H, W) on CPU.

    Carlini & Wagner 2017's recipe for detectors, as He, Wei, Chen, Carlini, Song 2017 applied it to feature
    squeezing: make f(x') and f(squeeze(x')) both wrong and equal. Each step descends, per input,

        m(f(x')) + sum_s m(f(s(x'))) + λ * score(x'),   m(z) = max(z_y - max_{k != y} z_k, 0),

    the Carlini-Wagner margin (zero once that input is misclassified, so then only the score is pushed down).
    Every squeezer passes gradients straight-through (BPDA). An input stops once it fools the model with a score
    under the threshold (times a small safety margin), keeping that iterate. The attack runs `restarts` times,
    each from a fresh random start and only on the inputs that have not evaded yet, searching λ per input: an
    input that fooled the model but stayed flagged gets ten times the λ, one that did not fool it a tenth. An
    input that never evades keeps its least-flagged fooling iterate, else its last one.

    Bit depth 1 is hard to get around under a small L∞ budget: rounding undoes every change that does not
    carry a pixel across 0.5. L2 budgets, which concentrate the change on few pixels, evade it far more often.

    Args:
        model: the classifier (logits out), used in eval mode and restored.
        detector: the calibrated detector the attacker knows.
        x: (N, C, H, W) clean inputs in [0, 1]; y: (N,) labels.
        eps, steps, alpha, norm, random_start: as for PGD (steps per restart).
        score_weight: the starting λ, the weight of the detector score in the loss.
        restarts: how many runs, each from a fresh random start with each input's λ adapted.
        generator: CPU generator for the random starts.
    """
    config = AdaptiveAttackConfig(
        eps=eps, norm=norm, steps=steps, alpha=alpha, score_weight=score_weight, restarts=restarts,
        random_start=random_start,
    )  # fmt: skip
    x, y, _ = check_inputs(x, y, None)
    device = device_of(model)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x_adv = torch.cat(
                [
                    _adaptive_search(
                        model, detector, x[i : i + batch_size].to(device), y[i : i + batch_size].to(device),
                        config, generator,
                    ).cpu()
                    for i in range(0, x.shape[0], batch_size)
                ]
            )  # fmt: skip
        with torch.no_grad():
            pred = torch.cat(
                [
                    model(x_adv[i : i + batch_size].to(device)).argmax(1).cpu()
                    for i in range(0, x.shape[0], batch_size)
                ]
            )
    finally:
        model.train(was_training)
    return DetectionResult(
        attack=config.describe(),
        eps=config.eps,
        detector=detector.describe(),
        threshold=detector.threshold,
        success=pred != y,
        scores_adv=squeeze_scores(model, x_adv, detector.squeezers, batch_size),
        scores_clean=squeeze_scores(model, x, detector.squeezers, batch_size),
        x_adv=x_adv,
    )


def _adaptive_search(
    model: nn.Module,
    detector: CalibratedDetector,
    x: torch.Tensor,
    y: torch.Tensor,
    config: AdaptiveAttackConfig,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Restarts with a per-input λ search; returns the best iterate per input (evading, else least flagged)."""
    goal = config.score_margin * detector.threshold
    best = x.clone()
    best_score = torch.full(
        (x.shape[0],), float("inf"), device=x.device
    )  # lowest score among fooling iterates
    weight = torch.full((x.shape[0],), float(config.score_weight), device=x.device)
    todo = torch.arange(x.shape[0], device=x.device)
    for _ in range(config.restarts):
        if todo.numel() == 0:
            break
        x_adv = _adaptive_batch(model, detector, x[todo], y[todo], weight[todo], config, generator)
        with torch.no_grad():
            score, logits, _ = _score_graph(model, x_adv, detector.squeezers)
        fooled = logits.argmax(1) != y[todo]
        better = fooled & (score < best_score[todo])
        never = ~fooled & torch.isinf(best_score[todo])  # nothing fooling yet: keep the latest iterate
        best[todo[better | never]] = x_adv[better | never]
        best_score[todo[better]] = score[better]
        evaded = fooled & (score <= goal)
        # λ search: still flagged -> the score needs more weight; not fooled -> the margin does
        weight[todo[fooled & ~evaded]] *= 10.0
        weight[todo[~fooled]] /= 10.0
        todo = todo[~evaded]
    return best


def _adaptive_batch(
    model: nn.Module,
    detector: CalibratedDetector,
    x: torch.Tensor,
    y: torch.Tensor,
    weight: torch.Tensor,
    config: AdaptiveAttackConfig,
    generator: torch.Generator | None,
) -> torch.Tensor:
    x_adv = random_start(x, config.eps, config.norm, generator) if config.random_start else x.clone()
    active = torch.arange(x.shape[0], device=x.device)
    goal = config.score_margin * detector.threshold
    for i in range(config.steps + 1):  # step i = steps only checks the final iterate
        xa = x_adv[active].detach().requires_grad_(True)
        ya = y[active]
        score, logits, squeezed_logits = _score_graph(model, xa, detector.squeezers, straight_through=True)
        keep = ~((logits.argmax(1) != ya) & (score <= goal)).detach()  # evaded inputs keep this iterate
        if i == config.steps or not bool(keep.any()):
            break
        loss = _margin(logits, ya) + weight[active] * score
        for z in squeezed_logits:
            loss = loss + _margin(z, ya)
        # Only the inputs still being attacked contribute to the gradient (each input's loss is its own).
        (grad,) = torch.autograd.grad((loss * keep).sum(), xa)
        active, grad = active[keep], grad[keep]
        step = x_adv[active] - config.step_size * normalize_step(grad, config.norm)
        x_adv[active] = project(step, x[active], config.eps, config.norm)
    return x_adv.detach()


def _margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Carlini-Wagner margin max(z_y - max_{k != y} z_k, 0) (N,): zero once the input is misclassified."""
    z_y = logits.gather(1, y.view(-1, 1)).squeeze(1)
    z_other = logits.scatter(1, y.view(-1, 1), float("-inf")).amax(dim=1)
    return (z_y - z_other).clamp_min(0.0)
