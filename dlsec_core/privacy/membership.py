"""Membership inference: did this example belong to the model's training set?

- Loss threshold (Yeom, Giacomelli, Fredrikson, Jha 2018, "Privacy Risk in Machine Learning: Analyzing the
  Connection to Overfitting"): score = -cross-entropy of the true label; training examples have lower loss.
- LiRA, the likelihood-ratio attack (Carlini, Chien, Nasr, Song, Terzis, Tramèr 2022, "Membership Inference
  Attacks From First Principles", IEEE S&P): train K shadow models on random halves of a data pool that holds
  the candidates, so each candidate is IN for some shadows and OUT for the others; model the candidate's
  logit-scaled confidence φ = log p_y - log(1 - p_y) under IN and OUT shadows as Gaussians and score the target
  model's φ by their likelihood ratio (online), or by how far above the OUT Gaussian it lies (offline).

Every result is judged the way the paper asks: the full ROC, AUC, and above all the true-positive rate at a low
false-positive rate (0.1 % and 1 %), with the number of non-members that makes such a rate measurable.

Departures from the paper, for a lab that runs on CPUs: no query augmentations (flips, shifts) of the
candidates; the shadow models train on half of the pool (train ∪ test split) while the target trained on the
whole train split, so shadows see fewer examples than the target did.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import torch
from scipy.special import log_ndtr
from sklearn.metrics import roc_auc_score, roc_curve
from torch import nn

from dlsec_core.config import Config, param
from dlsec_core.data.builtin import Dataset
from dlsec_core.errors import InvalidInputError
from dlsec_core.evaluation.rates import MeasuredRate, measured_rate, smallest_measurable_rate
from dlsec_core.models.modes import device_of, eval_mode
from dlsec_core.models.spec import ModelSpec
from dlsec_core.training.loop import TrainConfig, TrainResult, train
from dlsec_core.training.recipes import Recipe, StandardRecipe

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

MEMBERSHIP_ATTACKS: dict[str, str] = {
    "loss": "Loss threshold (Yeom et al. 2018)",
    "lira": "LiRA, likelihood-ratio attack with shadow models (Carlini et al. 2022)",
}
LIRA_VARIANTS = ("online", "offline")
LOW_FPRS = (0.001, 0.01)  # the paper's headline operating points
MIN_CANDIDATES = 10
MAX_SHADOWS = 64
ROC_POINTS = 500  # at most this many points in a result's ROC (for plotting)
SHADOW_TEST_IMAGES = 500  # held-out pool images each shadow is evaluated on (only reported)
_MIN_STD = 1e-4  # floor for the Gaussians' std: identical φ values must not divide by zero


# -- metrics -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, eq=False)
class RocMetrics:
    """How well scores separate members (label 1) from non-members (label 0).

    `tpr_at_0_1pct` / `tpr_at_1pct` are the largest TPR whose FPR does not exceed 0.1 % / 1 % (Carlini et al.
    2022). A rate below `min_meaningful_fpr` = 1 / non-members cannot be measured: with 500 non-members the FPR
    steps are 0.2 %, so "TPR at 0.1 % FPR" is the TPR at zero false positives. These two floats are the raw
    readings; `tpr_at_low_fpr` tags them with that rule (`dlsec_core.evaluation.rates`), and `to_record` reports
    an unmeasurable one as None.
    """

    auc: float
    tpr_at_0_1pct: float
    tpr_at_1pct: float
    advantage: float  # max over thresholds of TPR - FPR (Yeom et al.'s membership advantage)
    balanced_accuracy: float  # best threshold's accuracy on a balanced set = (1 + advantage) / 2
    n_members: int
    n_nonmembers: int
    fpr: FloatArray  # ROC points for plotting: at most ROC_POINTS, log-spaced in FPR, increasing
    tpr: FloatArray

    @property
    def min_meaningful_fpr(self) -> float:
        return smallest_measurable_rate(self.n_nonmembers)

    @property
    def tpr_at_low_fpr(self) -> dict[float, MeasuredRate]:
        """TPR at 0.1 % and 1 % FPR (keys: `LOW_FPRS`), each tagged with whether the non-members can measure it."""
        values = (self.tpr_at_0_1pct, self.tpr_at_1pct)
        return {
            level: measured_rate(v, level=level, n=self.n_nonmembers)
            for level, v in zip(LOW_FPRS, values, strict=True)
        }

    def to_record(self) -> dict[str, Any]:
        """A flat row; a TPR at an FPR the non-members cannot resolve is None, with the number of non-members that
        would resolve it (e.g. "tpr_at_0_1pct_needs": 1000)."""
        low = self.tpr_at_low_fpr
        return {
            "auc": self.auc, "tpr_at_0_1pct": low[LOW_FPRS[0]].reading, "tpr_at_1pct": low[LOW_FPRS[1]].reading,
            "advantage": self.advantage, "balanced_accuracy": self.balanced_accuracy, "n_members": self.n_members,
            "n_nonmembers": self.n_nonmembers, "min_meaningful_fpr": self.min_meaningful_fpr,
            **{f"{key}_needs": r.n_needed for key, r in zip(("tpr_at_0_1pct", "tpr_at_1pct"), low.values(), strict=True)
               if not r.measurable},
        }  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """Every field as plain JSON (the plotted ROC as lists), for a stored run; `from_json` reads it back."""
        return {
            "auc": self.auc, "tpr_at_0_1pct": self.tpr_at_0_1pct, "tpr_at_1pct": self.tpr_at_1pct,
            "advantage": self.advantage, "balanced_accuracy": self.balanced_accuracy, "n_members": self.n_members,
            "n_nonmembers": self.n_nonmembers, "fpr": self.fpr.tolist(), "tpr": self.tpr.tolist(),
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RocMetrics:
        return cls(
            **{k: v for k, v in data.items() if k not in ("fpr", "tpr")},
            fpr=np.asarray(data["fpr"], dtype=np.float64), tpr=np.asarray(data["tpr"], dtype=np.float64),
        )  # fmt: skip


def roc_metrics(scores: npt.ArrayLike, is_member: npt.ArrayLike) -> RocMetrics:
    """ROC, AUC, TPR at 0.1 % and 1 % FPR, and the best-threshold advantage of membership scores.

    Args:
        scores: (N,) finite scores, higher = more likely a member.
        is_member: (N,) booleans (or 0/1), at least one of each.

    Ties count half in the AUC (Mann-Whitney) and are never split by a threshold.
    """
    s = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(is_member)
    if s.ndim != 1 or labels.shape != s.shape:
        raise InvalidInputError(
            f"Scores and membership labels must be two 1-D arrays of one length, got {s.shape} and {labels.shape}."
        )
    if not np.isin(labels, (0, 1)).all():
        raise InvalidInputError("Membership labels must be booleans or 0/1.")
    if not np.isfinite(s).all():
        raise InvalidInputError("Membership scores must be finite numbers.")
    labels = labels.astype(bool)
    n_members, n_nonmembers = int(labels.sum()), int((~labels).sum())
    if n_members == 0 or n_nonmembers == 0:
        raise InvalidInputError(
            f"Scoring an attack needs members and non-members, got {n_members} and {n_nonmembers}."
        )
    fpr, tpr, _ = roc_curve(
        labels, s, drop_intermediate=False
    )  # starts at (0, 0), FPR and TPR non-decreasing
    advantage = float(np.max(tpr - fpr))
    keep = _log_spaced(fpr, n_nonmembers)
    return RocMetrics(
        auc=float(roc_auc_score(labels, s)),
        tpr_at_0_1pct=_tpr_at(fpr, tpr, LOW_FPRS[0]),
        tpr_at_1pct=_tpr_at(fpr, tpr, LOW_FPRS[1]),
        advantage=advantage,
        balanced_accuracy=0.5 + advantage / 2,
        n_members=n_members,
        n_nonmembers=n_nonmembers,
        fpr=fpr[keep].astype(np.float64),
        tpr=tpr[keep].astype(np.float64),
    )


def _tpr_at(fpr: FloatArray, tpr: FloatArray, level: float) -> float:
    return float(tpr[fpr <= level].max())  # (0, 0) is always a point, so the set is never empty


def _log_spaced(fpr: FloatArray, n_nonmembers: int) -> npt.NDArray[np.intp]:
    """Indices of at most ROC_POINTS real ROC points: for each FPR on a log grid, the last point at or below it.

    A log grid keeps the low-FPR region, where membership attacks are judged, as detailed as the rest.
    """
    if fpr.size <= ROC_POINTS:
        return np.arange(fpr.size)
    grid = np.logspace(math.log10(1.0 / n_nonmembers), 0.0, ROC_POINTS - 2)
    idx = np.searchsorted(fpr, grid, side="right") - 1
    return np.unique(np.concatenate([[0], idx, [fpr.size - 1]]))


# -- results and events --------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, eq=False)
class MembershipResult:
    """One attack's verdict on one model's candidates. Arrays are numpy, aligned with `is_member`."""

    attack: str  # "loss" or "lira"
    description: str  # names the attack and its strength, e.g. "LiRA online, 8 shadow models (cnn, ...)"
    scores: FloatArray  # (N,) higher = more likely a member
    is_member: BoolArray  # (N,) members first, then non-members
    roc: RocMetrics
    member_accuracy: float  # the target's accuracy on the member candidates (train)...
    nonmember_accuracy: float  # ...and on the non-members (test): the gap is what the attack feeds on
    details: dict[str, Any] = dataclasses.field(default_factory=dict)  # attack-specific numbers, JSON-able

    @property
    def auc(self) -> float:
        return self.roc.auc

    @property
    def tpr_at_0_1pct(self) -> float:
        return self.roc.tpr_at_0_1pct

    @property
    def tpr_at_1pct(self) -> float:
        return self.roc.tpr_at_1pct

    @property
    def advantage(self) -> float:
        return self.roc.advantage

    def to_record(self) -> dict[str, Any]:
        """A flat row without arrays."""
        return {
            "attack": self.attack,
            "description": self.description,
            **self.roc.to_record(),
            "member_accuracy": self.member_accuracy,
            "nonmember_accuracy": self.nonmember_accuracy,
            **self.details,
        }


@dataclass(frozen=True, kw_only=True)
class ShadowEvent:
    """Progress of LiRA's shadow training.

    `kind` is "train" (an event of shadow `index`'s training loop) or "shadow" (shadow `index` is trained and
    has scored the candidates). Closing the generator between events cancels the attack.
    """

    kind: str
    index: int  # 1-based
    shadows: int
    train_progress: float  # of this shadow's training, in [0, 1]
    test_accuracy: float | None  # this shadow's accuracy on held-out pool images, once an epoch has finished
    elapsed: float  # seconds since the attack started

    @property
    def progress(self) -> float:
        return (self.index - 1 + self.train_progress) / self.shadows

    def to_record(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "shadow": self.index, "shadows": self.shadows, "progress": self.progress,
            "test_accuracy": self.test_accuracy, "elapsed": self.elapsed,
        }  # fmt: skip


# -- model outputs -------------------------------------------------------------------------------------------


@torch.no_grad()
def _logits(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """(N, K) float64 logits on CPU, in eval mode (restored afterwards), on the model's device."""
    device = device_of(model)
    with eval_mode(model):
        out = [
            model(x[i : i + batch_size].to(device)).double().cpu() for i in range(0, x.shape[0], batch_size)
        ]
    return torch.cat(out)


def _true_class_log_prob(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """log p_y = -cross-entropy, per example (float64, so that tiny member losses do not all round to 0)."""
    return logits.log_softmax(1).gather(1, y.view(-1, 1)).squeeze(1)


def logit_scaled_confidence(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """φ = log p_y - log(1 - p_y), computed stably as z_y - logsumexp(z_others) (Carlini et al. 2022, eq. 4).

    Args:
        logits: (N, K) logits.
        y: (N,) true labels.

    Returns:
        (N,) float64 φ on the logits' device.
    """
    z = logits.double()
    true = z.gather(1, y.view(-1, 1)).squeeze(1)
    others = z.scatter(1, y.view(-1, 1), float("-inf"))  # mask out the true class
    return true - others.logsumexp(1)


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y).double().mean())


def _check_xy(x: torch.Tensor, y: torch.Tensor, what: str) -> None:
    if x.ndim != 4 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise InvalidInputError(
            f"The {what} must be images (N, C, H, W) with labels (N,), got {tuple(x.shape)} and {tuple(y.shape)}."
        )
    if x.shape[0] == 0:
        raise InvalidInputError(f"The {what} are empty; membership inference needs examples of both kinds.")


# -- the loss-threshold attack -------------------------------------------------------------------------------


def loss_threshold_attack(
    model: nn.Module,
    x_members: torch.Tensor,
    y_members: torch.Tensor,
    x_nonmembers: torch.Tensor,
    y_nonmembers: torch.Tensor,
    *,
    batch_size: int = 500,
) -> MembershipResult:
    """Yeom et al.'s attack: score = -cross-entropy of the true label (one query per example, no shadows).

    Args:
        model: the target classifier; queried in eval mode on its own device, its mode restored afterwards.
        x_members, y_members: examples it was trained on, (N, C, H, W) in [0, 1] and (N,).
        x_nonmembers, y_nonmembers: examples it never saw.

    Returns:
        The scores and their ROC; the best threshold's advantage is Yeom et al.'s membership advantage.
    """
    _check_xy(x_members, y_members, "members")
    _check_xy(x_nonmembers, y_nonmembers, "non-members")
    logits_in, logits_out = _logits(model, x_members, batch_size), _logits(model, x_nonmembers, batch_size)
    scores = torch.cat(
        [
            _true_class_log_prob(logits_in, y_members.cpu()),
            _true_class_log_prob(logits_out, y_nonmembers.cpu()),
        ]
    ).numpy()
    is_member = np.arange(scores.size) < x_members.shape[0]
    return MembershipResult(
        attack="loss",
        description="Loss threshold (Yeom et al. 2018): one query per example, no shadow models",
        scores=scores,
        is_member=is_member,
        roc=roc_metrics(scores, is_member),
        member_accuracy=_accuracy(logits_in, y_members.cpu()),
        nonmember_accuracy=_accuracy(logits_out, y_nonmembers.cpu()),
    )


# -- LiRA ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class LiraConfig(Config):
    """LiRA's own settings; the shadows train like the target (its TrainConfig and recipe) unless overridden.

    Checked from the `param` metadata (`Config.validate`): every bad setting named in one error."""

    title: ClassVar[str] = "LiRA settings"

    shadows: int = param(
        8, "Shadow models", min=2, max=MAX_SHADOWS, step=1,
        help="Each trains on a random half of the data; more shadows give a sharper test (the paper uses 64+).",
    )  # fmt: skip
    variant: str = param(
        "online", "Variant", options=LIRA_VARIANTS,
        help="online: compare the IN and OUT Gaussians; offline: only the OUT shadows (no retraining per target).",
    )  # fmt: skip
    epochs: int | None = param(
        None, "Shadow epochs (empty = as the target)", min=1, max=500, step=1,
        help="Fewer epochs than the target make the shadows cheaper but less like it.",
    )  # fmt: skip
    seed: int = param(0, "Seed", min=0, max=2**31 - 1, step=1, help="Draws the halves and seeds the shadows.")


def _pooled_std(phi: FloatArray, mask: BoolArray, mean: FloatArray) -> float:
    """One std for all candidates (the paper's global variance, for few shadows): pooled within-candidate spread.

    With a single observation per candidate there is no within-candidate spread; then the std of all
    observations is used (what the paper's code does), an overestimate that includes the spread between
    candidates. NaN when there are fewer than two observations.
    """
    counts = mask.sum(0)
    dof = int(np.maximum(counts - 1, 0).sum())
    if dof > 0:
        sq = np.where(mask, (phi - np.nan_to_num(mean)) ** 2, 0.0).sum()
        return max(math.sqrt(float(sq) / dof), _MIN_STD)
    if int(counts.sum()) >= 2:
        return max(float(np.std(phi[mask])), _MIN_STD)
    return math.nan


def lira_scores(
    target_phi: npt.ArrayLike, shadow_phi: npt.ArrayLike, shadow_in: npt.ArrayLike, *, variant: str = "online"
) -> FloatArray:
    """LiRA's per-candidate scores from φ values (higher = more likely a member).

    Args:
        target_phi: (M,) φ of each candidate under the target model.
        shadow_phi: (K, M) φ of each candidate under each shadow model.
        shadow_in: (K, M) booleans: shadow k trained on candidate m.
        variant: "online": log N(φ; μ_in, σ_in) - log N(φ; μ_out, σ_out); "offline": -log Pr[Z > φ] for
            Z ~ N(μ_out, σ_out), a monotone form of the paper's one-sided test (its CDF) that does not saturate
            at 1 for confident members.

    μ_in, μ_out are each candidate's means; σ_in, σ_out are pooled over all candidates (`_pooled_std`). A candidate
    with no IN shadow (or no OUT shadow) gets μ_in = μ_out + the average IN-OUT gap of the candidates that have
    both (or μ_out = μ_in - gap), so its score stays on the same scale as the others'. `lira_attack` assigns the
    halves so that this never happens; the fallback serves direct callers. When no candidate has both, the
    online variant falls back to the offline score, and a candidate without any OUT shadow is an error.
    """
    if variant not in LIRA_VARIANTS:
        raise InvalidInputError(
            f"Unknown LiRA variant {variant!r}; choose one of {', '.join(LIRA_VARIANTS)}."
        )
    target = np.asarray(target_phi, dtype=np.float64)
    phi = np.asarray(shadow_phi, dtype=np.float64)
    inside = np.asarray(shadow_in, dtype=bool)
    if target.ndim != 1 or phi.ndim != 2 or phi.shape[1] != target.size or inside.shape != phi.shape:
        raise InvalidInputError(
            f"LiRA needs target φ (M,), shadow φ (K, M) and IN flags (K, M), got {target.shape}, {phi.shape} and "
            f"{inside.shape}."
        )
    if not (np.isfinite(target).all() and np.isfinite(phi).all()):
        raise InvalidInputError("LiRA's φ values must be finite numbers.")
    outside = ~inside
    n_in, n_out = inside.sum(0), outside.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):  # NaN where a candidate has no IN (OUT) shadow
        mu_in = np.where(inside, phi, 0.0).sum(0) / n_in
        mu_out = np.where(outside, phi, 0.0).sum(0) / n_out
    std_in, std_out = _pooled_std(phi, inside, mu_in), _pooled_std(phi, outside, mu_out)
    both = (n_in > 0) & (n_out > 0)
    if both.any():
        gap = float(np.mean(mu_in[both] - mu_out[both]))
        mu_in = np.where(n_in > 0, mu_in, mu_out + gap)
        mu_out = np.where(n_out > 0, mu_out, mu_in - gap)
    elif variant == "online":
        variant = "offline"  # no candidate shows what training on it does: only the OUT side can be modelled
    if np.isnan(mu_out).any():
        raise InvalidInputError(
            "LiRA needs every candidate to have at least one shadow that did not train on it."
        )
    if math.isnan(std_out):
        std_out = std_in
    if math.isnan(std_in):
        std_in = std_out
    if math.isnan(std_out):
        raise InvalidInputError("LiRA needs at least two shadow observations to estimate a variance.")
    z_out = (target - mu_out) / std_out
    if variant == "offline":
        return np.asarray(-log_ndtr(-z_out), dtype=np.float64)  # -log survival = -log(1 - CDF)
    z_in = (target - mu_in) / std_in
    # log N(φ; μ_in, σ_in) - log N(φ; μ_out, σ_out); the 1/sqrt(2π) factors cancel.
    return np.asarray(
        -0.5 * z_in**2 - math.log(std_in) + 0.5 * z_out**2 + math.log(std_out), dtype=np.float64
    )


def _assign_halves(shadows: int, pool: int, generator: torch.Generator) -> torch.Tensor:
    """(K, P) bool: shadow k trains on pool example p. Every example is IN for half of the shadows.

    The paper's code draws it this way (a random rank per example among the shadows, IN if the rank is below
    K / 2), so each example has IN and OUT shadows and each shadow gets about half of the pool. With an odd K
    a fair coin decides whether an example gets the extra IN shadow.
    """
    ranks = (
        torch.rand(shadows, pool, generator=generator).argsort(0).argsort(0)
    )  # (K, P) a random order per column
    extra = (torch.rand(pool, generator=generator) < 0.5).long() * (shadows % 2)
    return ranks < (shadows // 2 + extra)


def _check_candidates(dataset: Dataset, n_members: int, n_nonmembers: int) -> None:
    for n, what, size, split in (
        (n_members, "members", dataset.x_train.shape[0], "training"),
        (n_nonmembers, "non-members", dataset.x_test.shape[0], "test"),
    ):
        if isinstance(n, bool) or not isinstance(n, int) or not MIN_CANDIDATES <= n <= size:
            raise InvalidInputError(
                f"The number of {what} must be an integer from {MIN_CANDIDATES} to {size} (the {split} split of "
                f"{dataset.name}), got {n!r}."
            )


def lira_attack(
    target_model: nn.Module,
    spec: ModelSpec,
    dataset: Dataset,
    *,
    config: TrainConfig | None = None,
    recipe: Recipe | None = None,
    lira: LiraConfig | None = None,
    n_members: int = 500,
    n_nonmembers: int = 500,
) -> Generator[ShadowEvent, None, MembershipResult]:
    """LiRA (Carlini et al. 2022) against a model trained on `dataset`'s training split, yielding shadow progress.

    Candidates: the first `n_members` training images (members) and the first `n_nonmembers` test images
    (non-members). Shadow k trains, from seed `lira.seed + k + 1`, with `config` and `recipe` (those of the target,
    so a DP-SGD target gets DP-SGD shadows) on its half of the pool = training ∪ test split; the halves come from
    a generator seeded with `lira.seed`, so one seed gives one result. Close the generator to cancel.

    Args:
        target_model: the attacked model (queried in eval mode; shadows train on its device).
        spec: the target's spec; the shadows are built from it.
        dataset: the target's dataset.
        config: the target's training settings (default `TrainConfig()`); `lira.epochs` overrides the epochs.
        recipe: the target's training recipe (default standard training).
        lira: shadows, variant, seed.
        n_members, n_nonmembers: how many candidates of each kind.

    Returns:
        The candidates' scores and their ROC; `details` holds the shadows' held-out accuracies.
    """
    config = config or TrainConfig()
    recipe = recipe or StandardRecipe()
    lira = lira or LiraConfig()
    _check_candidates(dataset, n_members, n_nonmembers)
    if tuple(dataset.input_shape) != tuple(spec.input_shape) or dataset.num_classes != spec.num_classes:
        raise InvalidInputError(
            f"The model expects {spec.input_shape} inputs and {spec.num_classes} classes, but {dataset.name} has "
            f"{dataset.input_shape} and {dataset.num_classes}."
        )
    start = time.perf_counter()
    device = device_of(target_model)
    n_train = dataset.x_train.shape[0]
    pool_x = torch.cat([dataset.x_train, dataset.x_test])
    pool_y = torch.cat([dataset.y_train, dataset.y_test])
    candidates = torch.cat([torch.arange(n_members), n_train + torch.arange(n_nonmembers)])  # pool indices
    x_c, y_c = pool_x[candidates], pool_y[candidates]
    target_logits = _logits(target_model, x_c)
    target_phi = logit_scaled_confidence(target_logits, y_c).numpy()

    keep = _assign_halves(lira.shadows, pool_x.shape[0], torch.Generator().manual_seed(lira.seed))
    shadow_phi = np.empty((lira.shadows, candidates.numel()), dtype=np.float64)
    shadow_accuracy: list[float] = []
    epochs = lira.epochs or config.epochs
    for k in range(lira.shadows):
        inside = keep[k].nonzero().squeeze(1)
        outside = (~keep[k]).nonzero().squeeze(1)[:SHADOW_TEST_IMAGES]
        half = Dataset(
            name=f"{dataset.name}-shadow{k + 1}", x_train=pool_x[inside], y_train=pool_y[inside],
            x_test=pool_x[outside], y_test=pool_y[outside], class_names=dataset.class_names,
        )  # fmt: skip
        shadow_config = dataclasses.replace(config, seed=lira.seed + k + 1, epochs=epochs)
        events = train(spec, half, shadow_config, recipe, device=device)
        test_accuracy: float | None = None
        try:
            while True:
                try:
                    event = next(events)
                except StopIteration as stop:
                    result: TrainResult = stop.value
                    break
                test_accuracy = event.test_accuracy if event.test_accuracy is not None else test_accuracy
                yield ShadowEvent(
                    kind="train", index=k + 1, shadows=lira.shadows, train_progress=event.progress,
                    test_accuracy=test_accuracy, elapsed=time.perf_counter() - start,
                )  # fmt: skip
        finally:
            events.close()  # a cancelled attack stops the shadow's training loop too
        shadow_phi[k] = logit_scaled_confidence(_logits(result.model, x_c), y_c).numpy()
        shadow_accuracy.append(result.test_accuracy)
        yield ShadowEvent(
            kind="shadow", index=k + 1, shadows=lira.shadows, train_progress=1.0,
            test_accuracy=result.test_accuracy, elapsed=time.perf_counter() - start,
        )  # fmt: skip

    shadow_in = keep[:, candidates].numpy()
    scores = lira_scores(target_phi, shadow_phi, shadow_in, variant=lira.variant)
    is_member = np.arange(scores.size) < n_members
    return MembershipResult(
        attack="lira",
        description=(
            f"LiRA {lira.variant}, {lira.shadows} shadow models ({spec.arch}, {recipe.name} recipe, {epochs} epochs)"
        ),
        scores=scores,
        is_member=is_member,
        roc=roc_metrics(scores, is_member),
        member_accuracy=_accuracy(target_logits[:n_members], y_c[:n_members]),
        nonmember_accuracy=_accuracy(target_logits[n_members:], y_c[n_members:]),
        details={
            "shadows": lira.shadows,
            "variant": lira.variant,
            "shadow_epochs": epochs,
            "shadow_test_accuracy": float(np.mean(shadow_accuracy)),
            "seconds": time.perf_counter() - start,
        },
    )
