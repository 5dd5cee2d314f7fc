"""Empirical privacy auditing with one training run: a lower bound on ε that any DP claim must respect.

Steinke, Nasr, Jagielski, "Privacy Auditing with One (1) Training Run", NeurIPS 2023. Take m canaries and flip a
fair coin S_i ∈ {+1, -1} for each: +1 puts it into the training set, -1 leaves it out. Train once. Score every
canary; guess "in" for the k₊ highest scores and "out" for the k₋ lowest, abstaining on the rest: r = k₊ + k₋
guesses, v of them correct. If training is (ε, δ)-DP, v cannot be much larger than a Binomial(r, e^ε / (1 + e^ε))
draw (their Theorem 3.1, with δ handled as in their Proposition 5.7). `p_value_dp_audit` and `eps_lower_bound`
reproduce the paper's appendix code (`p_value_DP_audit`, `get_eps_audit`); the bound holds with the stated
confidence over the coin flips, whatever the model, the scores or the data.

Our canaries are test images with a wrong label (a random other class): nothing else in the data supports that
label, so the model can only get it right by memorising that very example. The training set is the train split
plus the canaries that drew +1; test accuracy is measured on the test images that are not canaries. The score is
the negative loss on the canary's (wrong) label. One fixed (k₊, k₋) is used, so no correction for trying several
is needed (taking the best of n choices would need p / n, Bonferroni).

The bound is a *lower* bound: a non-private model should show ε clearly above 0; a correct DP implementation must
never show a bound above its claimed ε (if it does at 95% confidence, the implementation or its accounting is
wrong). With one run and m canaries the bound is far below the claimed ε for realistic DP-SGD; the paper's point is
that it costs one training run, not thousands. Measured on mnist5k, cnn, the default 600 canaries (60 + 60
guesses): standard training for 10 epochs gives ε ≥ 0.95 (95 of 120 correct); DP-SGD with a claimed ε of 8 or 1
(RDP, δ = 1e-5, 8 epochs) gives ε ≥ 0 (57 and 58 correct, chance level).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import binom
from torch import nn

from dlsec_core.config import Config, param
from dlsec_core.data.builtin import Dataset
from dlsec_core.errors import InvalidInputError
from dlsec_core.evaluation.rates import MeasuredRate, measured_rate
from dlsec_core.models.modes import device_of, eval_mode
from dlsec_core.models.spec import ModelSpec
from dlsec_core.privacy.accounting import ACCOUNTANTS
from dlsec_core.training.loop import TrainConfig, TrainEvent, TrainResult, train
from dlsec_core.training.recipes import Recipe, StandardRecipe

MAX_CANARIES = 100_000
DEFAULT_DELTA = 1e-5


# -- the statistics (pure) -----------------------------------------------------------------------------------
def p_value_dp_audit(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """The p-value of v correct guesses out of r, among m canaries, under the hypothesis "(ε, δ)-DP".

    The paper's `p_value_DP_audit`: P[Binomial(r, q) >= v] with q = e^ε / (1 + e^ε), plus the δ term
    2 m δ · max_i (1/i) Σ_{j=1..i} P[Binomial(r, q) = v - j]; capped at 1. The paper's loop over i is a cumulative
    sum here (same terms, same order).
    """
    _check_counts(m, r, v)
    if not (_is_number(eps) and eps >= 0):
        raise InvalidInputError(f"ε must be a finite number >= 0, got {eps!r}.")
    _check_delta(delta)
    q = 1 / (1 + math.exp(-eps))
    beta = float(binom.sf(v - 1, r, q))  # P[Binomial(r, q) >= v]
    alpha = 0.0
    if v > 0:
        i = np.arange(1, v + 1)
        s = np.cumsum(binom.pmf(v - i, r, q))  # s_i = Σ_{j<=i} P[Binomial(r, q) = v - j]
        alpha = max(0.0, float(np.max(s / i)))
    return min(beta + alpha * delta * 2 * m, 1.0)


def eps_lower_bound(m: int, r: int, v: int, delta: float, p: float = 0.05) -> float:
    """The largest ε (to 30 halvings) that v correct of r guesses among m canaries reject at level p.

    The paper's `get_eps_audit`: with confidence 1 - p, training was not (ε, δ)-DP for any ε below the result.
    0 means the guesses are no evidence of a privacy loss at all.
    """
    _check_counts(m, r, v)
    _check_delta(delta)
    if not (_is_number(p) and 0 < p < 1):
        raise InvalidInputError(f"The significance level p = 1 - confidence must be in (0, 1), got {p!r}.")
    eps_min, eps_max = 0.0, 1.0
    # p_value grows with ε and reaches 1 (q -> 1 makes every guess count consistent): the loop ends by ε ≈ 40.
    while p_value_dp_audit(m, r, v, eps_max, delta) < p:
        eps_max += 1
    for _ in range(30):
        eps = (eps_min + eps_max) / 2
        if p_value_dp_audit(m, r, v, eps, delta) < p:
            eps_min = eps
        else:
            eps_max = eps
    return eps_min


def guess_membership(scores: torch.Tensor, k_plus: int, k_minus: int) -> torch.Tensor:
    """(m,) int64 guesses from (m,) scores: +1 ("in") for the k₊ highest, -1 ("out") for the k₋ lowest, else 0.

    Ties keep index order (a stable sort); the coin flips are independent of the index, so this adds no bias.
    """
    if not isinstance(scores, torch.Tensor) or scores.ndim != 1:
        raise InvalidInputError("The canary scores must be a 1-D tensor, one score per canary.")
    m = scores.shape[0]
    for name, k in (("k₊", k_plus), ("k₋", k_minus)):
        if not _is_int(k) or k < 0:
            raise InvalidInputError(f"{name} must be an integer >= 0, got {k!r}.")
    if k_plus + k_minus > m:
        raise InvalidInputError(f"k₊ + k₋ = {k_plus + k_minus} guesses, but there are only {m} canaries.")
    if not torch.isfinite(scores).all():
        raise InvalidInputError("The canary scores contain NaN or infinite values.")
    order = torch.argsort(scores.detach().cpu(), descending=True, stable=True)
    guesses = torch.zeros(m, dtype=torch.long)
    guesses[order[:k_plus]] = 1
    guesses[order[m - k_minus :]] = -1
    return guesses


# -- the audit -----------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class AuditConfig(Config):
    """The canaries and the guessing rule. k₊ and k₋ default to a tenth of the canaries each.

    Checked from the `param` metadata (`Config.validate`); k₊ + k₋ against m is the one cross-field rule."""

    title: ClassVar[str] = "Audit settings"

    canaries: int = param(
        600, "Canaries m (test images with a wrong label)", min=10, max=MAX_CANARIES, step=50
    )
    k_plus: int | None = param(None, "Guesses “in” k₊ (empty = m / 10)", min=0, step=10)
    k_minus: int | None = param(None, "Guesses “out” k₋ (empty = m / 10)", min=0, step=10)
    confidence: float = param(
        0.95, "Confidence of the bound", min=0.0, max=1.0, min_open=True, max_open=True, step=0.01
    )
    delta: float | None = param(
        None, "δ (empty = the recipe's claimed δ, else 1e-5)", min=0.0, max=1.0, max_open=True, step=1e-6
    )
    keep_test: int = param(
        200, "Test images kept for accuracy (never canaries)", min=1, step=50,
        help="The canaries come from the test split; these test images stay out of it to measure accuracy.",
    )  # fmt: skip
    seed: int = param(0, "Seed (canary choice, wrong labels, coin flips)", min=0, max=2**63 - 1, step=1)

    def cross_check(self, problems: list[str]) -> None:
        super().cross_check(problems)
        k_plus, k_minus = self.guesses()
        if k_plus + k_minus == 0 or k_plus + k_minus > self.canaries:
            problems.append(
                f"k₊ + k₋ must be from 1 to the number of canaries ({self.canaries}), got {k_plus} + {k_minus}"
            )

    def guesses(self) -> tuple[int, int]:
        """(k₊, k₋): the numbers of "in" and "out" guesses, a tenth of the canaries each unless given."""
        default = max(1, round(self.canaries / 10))
        return (
            default if self.k_plus is None else self.k_plus,
            default if self.k_minus is None else self.k_minus,
        )


@dataclass(frozen=True, eq=False)
class Canaries:
    """m mislabeled test images, who is in (S_i = +1), and the dataset to train on. Tensors on CPU."""

    x: torch.Tensor  # (m, C, H, W)
    y: torch.Tensor  # (m,) the wrong labels the model is trained on when included
    true_labels: torch.Tensor  # (m,)
    included: torch.Tensor  # (m,) bool, S_i = +1
    test_indices: torch.Tensor  # (m,) int64 positions in the source dataset's test split
    dataset: Dataset  # train split + included canaries; test split without any canary


def plant_canaries(dataset: Dataset, config: AuditConfig) -> Canaries:
    """Choose the canaries from the test split, relabel them, flip the coins, build the training set."""
    n_test, m = dataset.x_test.shape[0], config.canaries
    if m > n_test - config.keep_test:
        raise InvalidInputError(
            f"{dataset.name} has {n_test} test images; keeping {config.keep_test} for measuring accuracy leaves "
            f"room for at most {max(0, n_test - config.keep_test)} canaries, not {m}."
        )
    k = dataset.num_classes
    gen = torch.Generator().manual_seed(config.seed)
    perm = torch.randperm(n_test, generator=gen)
    idx, rest = perm[:m], perm[m:].sort().values
    true = dataset.y_test[idx]
    wrong = (true + torch.randint(1, k, (m,), generator=gen)) % k  # a uniformly random *other* class
    included = torch.randint(0, 2, (m,), generator=gen).bool()
    x = dataset.x_test[idx]
    audit_set = Dataset(
        name=f"{dataset.name}+canaries",
        x_train=torch.cat([dataset.x_train, x[included]]),
        y_train=torch.cat([dataset.y_train, wrong[included]]),
        x_test=dataset.x_test[rest],
        y_test=dataset.y_test[rest],
        class_names=dataset.class_names,
        description=f"{dataset.name} with {int(included.sum())} of {m} mislabeled canaries (privacy audit)",
    )
    return Canaries(x=x, y=wrong, true_labels=true, included=included, test_indices=idx, dataset=audit_set)


@torch.no_grad()
def score_canaries(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """(m,) float64 scores: the negative cross-entropy of each canary's (wrong) label; high = looks trained on."""
    device = device_of(model)
    with eval_mode(model):
        losses = [
            F.cross_entropy(
                model(x[i : i + batch_size].to(device)), y[i : i + batch_size].to(device), reduction="none"
            )
            for i in range(0, x.shape[0], batch_size)
        ]
    return -torch.cat(losses).double().cpu()


@dataclass(frozen=True, kw_only=True)
class AuditBound:
    """The measured lower bound on ε, next to the claimed ε (if the recipe claims one): every number of an audit,
    plain JSON (`to_json`/`from_json`), without its arrays and model (`AuditResult` adds them)."""

    eps_lower_bound: float
    confidence: float
    m: int  # canaries
    r: int  # guesses (k₊ + k₋)
    v: int  # correct guesses
    k_plus: int
    k_minus: int
    delta: float
    claimed_epsilon: float | None  # None: no claim, not trained with DP
    accountant: str | None  # the accountant behind the claim ("rdp", "prv")
    test_accuracy: float  # on the test images that are not canaries
    recipe: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(AuditBound)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuditBound:
        return AuditBound(**data)

    @property
    def bound(self) -> AuditBound:
        """Just the numbers (an `AuditResult` without its arrays and model)."""
        return AuditBound(**self.to_json())

    @property
    def claim_refuted(self) -> bool:
        """True when the measured bound exceeds the claimed ε: the DP implementation or its accounting is wrong
        (with the stated confidence)."""
        return self.claimed_epsilon is not None and self.eps_lower_bound > self.claimed_epsilon

    @property
    def max_provable_epsilon(self) -> float:
        """The largest lower bound this audit could show at all, with every one of its r guesses right: claims
        above it cannot be refuted by an audit of this size, whatever the training leaks."""
        return eps_lower_bound(self.m, self.r, self.r, self.delta, p=1 - self.confidence)

    @property
    def claim_refutable(self) -> bool | None:
        """Whether any outcome of this audit could refute the claimed ε (None without a claim): the claim must lie
        below `max_provable_epsilon`. `claim_testable` gives the rate behind it and the guesses a test needs."""
        if self.claimed_epsilon is None:
            return None
        return self.claimed_epsilon < self.max_provable_epsilon

    @property
    def claim_testable(self) -> MeasuredRate | None:
        """Whether the r guesses can test the claimed ε at all (None without a claim).

        Under ε-DP a guess is wrong with probability at least about 1 / (1 + e^ε) (the paper's q = e^ε/(1 + e^ε)
        is the best chance of a right one); refuting the claim means measuring an error rate below that, and r
        guesses resolve no rate below 1/r: the rule of `dlsec_core.evaluation.rates`. `n_needed` is the number
        of guesses that would, at least (the confidence asks for more: see `claim_refutable`).
        """
        if self.claimed_epsilon is None or self.r == 0:
            return None
        e = math.exp(-min(self.claimed_epsilon, 700.0))
        level = max(e / (1 + e), 1e-300)  # 1 / (1 + e^ε) without overflow
        return measured_rate((self.r - self.v) / self.r, level=level, n=self.r)

    def describe(self) -> str:
        """e.g. "claimed ε ≤ 2 (RDP), measured ε ≥ 0.4 (95% confidence, 1000 canaries, 200 guesses, 190 correct)"."""
        if self.claimed_epsilon is None:
            claim = "no claim (not trained with DP)"
        else:
            acc = self.accountant or "accountant not named"
            claim = f"claimed ε ≤ {self.claimed_epsilon:.3g} ({acc.upper() if acc in ACCOUNTANTS else acc})"
        text = (
            f"{claim}, measured ε ≥ {self.eps_lower_bound:.3g} ({self.confidence:.0%} confidence, {self.m} canaries, "
            f"{self.r} guesses, {self.v} correct)"
        )
        if self.claim_refuted:
            text += "; the measured bound exceeds the claim: the DP training or its accounting is wrong"
        return text

    def to_record(self) -> dict[str, Any]:
        return {
            "eps_lower_bound": self.eps_lower_bound, "confidence": self.confidence, "m": self.m, "r": self.r,
            "v": self.v, "k_plus": self.k_plus, "k_minus": self.k_minus, "delta": self.delta,
            "claimed_epsilon": self.claimed_epsilon, "accountant": self.accountant,
            "test_accuracy": self.test_accuracy, "recipe": self.recipe, "claim_refuted": self.claim_refuted,
            "max_provable_epsilon": self.max_provable_epsilon, "claim_refutable": self.claim_refutable,
        }  # fmt: skip


@dataclass(frozen=True, kw_only=True, eq=False)
class AuditResult(AuditBound):
    """An audit's numbers with its arrays and the trained model. Tensors on CPU."""

    scores: torch.Tensor  # (m,) float64
    included: torch.Tensor  # (m,) bool, S_i = +1
    guesses: torch.Tensor  # (m,) int64 in {+1, -1, 0}
    train_result: TrainResult


def audit_privacy(
    spec: ModelSpec,
    dataset: Dataset,
    train_config: TrainConfig | None = None,
    recipe: Recipe | None = None,
    *,
    config: AuditConfig | None = None,
    device: torch.device | None = None,
) -> Generator[TrainEvent, None, AuditResult]:
    """Audit one training run of `recipe` (Steinke, Nasr, Jagielski 2023), yielding its training events.

    Args:
        spec: the model to train.
        dataset: the data; canaries are drawn from its test split (see `AuditConfig.keep_test`).
        train_config: optimisation settings, as for `train`.
        recipe: the training recipe to audit (e.g. DP-SGD; default: standard training, a positive control).
        config: the canaries and the guessing rule.
        device: where to train.

    Returns:
        (as the generator's return value) the measured lower bound next to the recipe's claim, if any.
    """
    config = config or AuditConfig()
    recipe = recipe or StandardRecipe()
    start = time.perf_counter()
    canaries = plant_canaries(dataset, config)
    result = yield from train(spec, canaries.dataset, train_config, recipe, device=device)
    scores = score_canaries(result.model, canaries.x, canaries.y)
    k_plus, k_minus = config.guesses()
    guesses = guess_membership(scores, k_plus, k_minus)
    truth = torch.where(canaries.included, 1, -1)
    r = k_plus + k_minus
    v = int((guesses == truth).sum())  # abstentions (0) never match ±1
    claimed = result.privacy  # the accountant's (ε, δ) for a DP-SGD recipe, None for standard training
    delta = config.delta if config.delta is not None else (claimed.delta if claimed else DEFAULT_DELTA)
    return AuditResult(
        eps_lower_bound=eps_lower_bound(config.canaries, r, v, delta, p=1 - config.confidence),
        confidence=config.confidence,
        m=config.canaries,
        r=r,
        v=v,
        k_plus=k_plus,
        k_minus=k_minus,
        delta=delta,
        claimed_epsilon=None if claimed is None else claimed.epsilon,
        accountant=None if claimed is None else claimed.accountant,
        test_accuracy=result.test_accuracy,
        recipe=recipe.name or type(recipe).__name__,
        scores=scores,
        included=canaries.included,
        guesses=guesses,
        train_result=result,
        seconds=time.perf_counter() - start,
    )


# -- validation ----------------------------------------------------------------------------------------------
def _check_counts(m: int, r: int, v: int) -> None:
    if not (_is_int(m) and _is_int(r) and _is_int(v) and 0 <= v <= r <= m and m >= 1):
        raise InvalidInputError(
            f"Need 0 <= correct guesses v <= guesses r <= canaries m, m >= 1; got m={m!r}, r={r!r}, v={v!r}."
        )


def _check_delta(delta: float) -> None:
    if not (_is_number(delta) and 0 <= delta < 1):
        raise InvalidInputError(f"δ must be in [0, 1), got {delta!r}.")


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float | np.floating) and not isinstance(value, bool) and math.isfinite(value)
    )
