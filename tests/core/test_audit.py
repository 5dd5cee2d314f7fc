"""Privacy auditing in one training run (Steinke, Nasr, Jagielski 2023): the paper's statistics against a literal
transcription of its code and closed forms, monotonicity, soundness under random guesses, the canaries, and an
end-to-end positive control (standard training memorises mislabeled canaries)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest
import torch
from scipy.stats import binom

from dlsec_core.data.builtin import Dataset, load_dataset
from dlsec_core.errors import InvalidInputError
from dlsec_core.privacy import (
    AuditConfig,
    AuditResult,
    audit_privacy,
    eps_lower_bound,
    guess_membership,
    p_value_dp_audit,
    plant_canaries,
)
from dlsec_core.studies.audit import audit_study
from dlsec_core.training import Recipe, TrainConfig, TrainEvent
from dlsec_core.training.recipes import TrainingSetup, get_recipe
from dlsec_core.workflows import spec_for


# -- the paper's appendix code, transcribed literally: the oracle ---------------------------------------------
def paper_p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    q = 1 / (1 + math.exp(-eps))
    beta = binom.sf(v - 1, r, q)
    alpha = 0.0
    s = 0.0
    for i in range(1, v + 1):
        s += binom.pmf(v - i, r, q)
        if s > i * alpha:
            alpha = s / i
    p = beta + alpha * delta * 2 * m
    return float(min(p, 1))


def paper_eps(m: int, r: int, v: int, delta: float, p: float) -> float:
    eps_min, eps_max = 0.0, 1.0
    while paper_p_value(m, r, v, eps_max, delta) < p:
        eps_max += 1
    for _ in range(30):
        eps = (eps_min + eps_max) / 2
        if paper_p_value(m, r, v, eps, delta) < p:
            eps_min = eps
        else:
            eps_max = eps
    return eps_min


@pytest.mark.parametrize(
    ("m", "r", "v"),
    [(1000, 100, 100), (1000, 200, 150), (1000, 200, 190), (200, 40, 30), (50, 10, 0), (10, 10, 10)],
)
@pytest.mark.parametrize("delta", [0.0, 1e-5, 1e-3])
def test_statistics_equal_the_papers_code(m: int, r: int, v: int, delta: float) -> None:
    for eps in (0.0, 0.3, 1.0, 2.5, 6.0):
        assert p_value_dp_audit(m, r, v, eps, delta) == pytest.approx(
            paper_p_value(m, r, v, eps, delta), rel=1e-12
        )
    assert eps_lower_bound(m, r, v, delta, p=0.05) == pytest.approx(
        paper_eps(m, r, v, delta, 0.05), abs=1e-12
    )


def test_all_correct_without_delta_is_the_closed_form() -> None:
    # v = r and δ = 0: the p-value is q^r, so the bound solves q^r = p: q = p^(1/r), ε = log(q / (1 - q)).
    q = 0.05 ** (1 / 100)
    assert eps_lower_bound(1000, 100, 100, 0.0, p=0.05) == pytest.approx(math.log(q / (1 - q)), abs=1e-7)


@pytest.mark.parametrize(("r", "v"), [(100, 70), (200, 150), (60, 60), (1000, 560)])
def test_without_delta_the_bound_is_where_the_binomial_tail_crosses_p(r: int, v: int) -> None:
    bound = eps_lower_bound(1000, r, v, 0.0, p=0.05)
    assert bound > 0

    def tail(eps: float) -> float:
        return float(binom.sf(v - 1, r, 1 / (1 + math.exp(-eps))))

    assert tail(bound) < 0.05 <= tail(bound + 1e-6)


def test_chance_level_guessing_gives_no_bound() -> None:
    for r in (20, 100, 200):
        for v in range(0, r // 2 + 1, max(1, r // 10)):
            assert eps_lower_bound(1000, r, v, 1e-5) == 0.0


def test_the_bound_grows_with_correct_guesses_and_confidence_and_shrinks_with_delta() -> None:
    bounds = [eps_lower_bound(1000, 200, v, 1e-5) for v in range(100, 201, 5)]
    assert bounds == sorted(bounds) and bounds[-1] > bounds[len(bounds) // 2] > 0
    by_delta = [eps_lower_bound(1000, 200, 190, d) for d in (0.0, 1e-6, 1e-4, 1e-3)]
    assert by_delta == sorted(by_delta, reverse=True) and by_delta[0] > by_delta[-1]
    assert eps_lower_bound(1000, 200, 190, 1e-5, p=0.01) < eps_lower_bound(1000, 200, 190, 1e-5, p=0.05)


def test_p_value_grows_with_epsilon_and_delta() -> None:
    by_eps = [p_value_dp_audit(1000, 200, 180, e, 1e-5) for e in np.linspace(0, 6, 25)]
    assert by_eps == sorted(by_eps) and by_eps[0] < 1e-3 and by_eps[-1] > 0.5
    assert p_value_dp_audit(1000, 200, 180, 1.0, 1e-3) > p_value_dp_audit(1000, 200, 180, 1.0, 1e-5)


def test_random_guesses_rarely_give_a_positive_bound() -> None:
    # Soundness: when the scores are independent of who is in, a positive bound at 95 % confidence is a false
    # alarm, which happens at most 5 % of the time (fewer: the test is conservative).
    rng = np.random.default_rng(0)
    m, k = 1000, 100
    positive = 0
    for _ in range(200):
        included = torch.from_numpy(rng.integers(0, 2, m).astype(bool))
        scores = torch.from_numpy(rng.normal(size=m))
        guesses = guess_membership(scores, k, k)
        v = int((guesses == torch.where(included, 1, -1)).sum())
        positive += eps_lower_bound(m, 2 * k, v, 1e-5) > 0
    assert positive <= 15  # 7.5 %; the expected count is at most 10


def test_guesses_are_the_top_and_bottom_scores() -> None:
    scores = torch.tensor([0.5, -2.0, 3.0, 0.0, 1.0, -1.0])
    assert guess_membership(scores, 2, 1).tolist() == [0, -1, 1, 0, 1, 0]
    assert guess_membership(scores, 0, 0).tolist() == [0] * 6
    with pytest.raises(InvalidInputError):
        guess_membership(scores, 4, 3)
    with pytest.raises(InvalidInputError):
        guess_membership(torch.tensor([0.0, float("nan")]), 1, 1)


@pytest.mark.parametrize(
    "args",
    [(0, 0, 0), (10, 11, 5), (10, 5, 6), (10, 5, -1), (10.0, 5, 2), (True, 1, 1)],
)
def test_bad_counts_are_refused(args: tuple[Any, Any, Any]) -> None:
    with pytest.raises(InvalidInputError):
        p_value_dp_audit(*args, 1.0, 1e-5)
    with pytest.raises(InvalidInputError):
        eps_lower_bound(*args, 1e-5)


@pytest.mark.parametrize("kwargs", [{"eps": -1.0}, {"eps": float("nan")}, {"delta": 1.0}, {"delta": -1e-5}])
def test_bad_eps_and_delta_are_refused(kwargs: dict[str, float]) -> None:
    args = {"m": 100, "r": 10, "v": 8, "eps": 1.0, "delta": 1e-5, **kwargs}
    with pytest.raises(InvalidInputError):
        p_value_dp_audit(**args)  # type: ignore[arg-type]


# -- canaries and the audit ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


def test_canaries_are_mislabeled_test_images_and_half_are_trained_on(digits: Dataset) -> None:
    config = AuditConfig(canaries=150, seed=3)
    c = plant_canaries(digits, config)
    m, n_test = 150, digits.x_test.shape[0]
    assert bool((c.y != c.true_labels).all()) and int(c.y.max()) < 10
    assert torch.equal(c.x, digits.x_test[c.test_indices]) and torch.equal(
        c.true_labels, digits.y_test[c.test_indices]
    )
    assert 50 < int(c.included.sum()) < 100
    n_in = int(c.included.sum())
    assert c.dataset.x_train.shape[0] == digits.x_train.shape[0] + n_in
    assert torch.equal(c.dataset.x_train[-n_in:], c.x[c.included])
    assert torch.equal(c.dataset.y_train[-n_in:], c.y[c.included])
    # The test split left for accuracy is exactly the test images that are not canaries.
    assert c.dataset.x_test.shape[0] == n_test - m
    rest = sorted(set(range(n_test)) - set(c.test_indices.tolist()))
    assert torch.equal(c.dataset.x_test, digits.x_test[rest])
    again = plant_canaries(digits, config)
    assert torch.equal(again.included, c.included) and torch.equal(again.y, c.y)


def test_too_many_canaries_for_the_test_split_is_refused(digits: Dataset) -> None:
    with pytest.raises(InvalidInputError, match="at most 159 canaries"):
        plant_canaries(digits, AuditConfig(canaries=160))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"canaries": 5},
        {"canaries": 10**6},
        {"canaries": 100.0},
        {"k_plus": -1},
        {"k_plus": 60, "k_minus": 50},  # more guesses than canaries
        {"k_plus": 0, "k_minus": 0},
        {"confidence": 1.0},
        {"confidence": float("nan")},
        {"delta": 1.0},
        {"keep_test": 0},
        {"seed": -1},
    ],
)
def test_bad_audit_config_is_refused_with_a_sentence(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError, match=r"\.$"):
        AuditConfig(**{"canaries": 100, **kwargs})


def test_guesses_default_to_a_tenth_of_the_canaries() -> None:
    assert AuditConfig().guesses() == (60, 60)
    assert AuditConfig(canaries=150, k_plus=30).guesses() == (30, 15)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClaimsEpsilon(Recipe):
    """Standard training that *claims* to be (0.5, 1e-5)-DP, as a DP recipe's metrics would: a false claim."""

    def epoch_metrics(self, setup: TrainingSetup) -> dict[str, Any]:
        return {"epsilon": 0.5, "accountant": "rdp", "delta": 1e-5}


def test_standard_training_memorises_canaries_and_refutes_a_false_claim(digits: Dataset) -> None:
    epochs = 20
    events = audit_privacy(
        spec_for(digits, "mlp"),
        digits,
        TrainConfig(epochs=epochs, shift=0),
        ClaimsEpsilon(),
        config=AuditConfig(canaries=150, k_plus=30, k_minus=30),
    )
    seen: list[TrainEvent] = []
    while True:
        try:
            seen.append(next(events))
        except StopIteration as stop:
            result: AuditResult = stop.value
            break
    assert [e.epoch for e in seen if e.kind == "epoch"] == list(range(1, epochs + 1))
    assert (result.m, result.r, result.delta) == (150, 60, 1e-5)
    assert result.test_accuracy > 0.9
    # Measured: 60 of 60 correct, the largest bound 60 guesses can give (q^60 = 0.05 -> ε ≈ 2.97).
    assert result.v >= 55 and result.eps_lower_bound > 1.5
    assert result.eps_lower_bound == eps_lower_bound(150, 60, result.v, 1e-5)
    assert result.v == int((result.guesses == torch.where(result.included, 1, -1)).sum())
    assert float(result.scores[result.included].mean()) > float(result.scores[~result.included].mean())
    assert result.claimed_epsilon == 0.5 and result.claim_refuted
    text = result.describe()
    assert (
        text.startswith("claimed ε ≤ 0.5 (RDP), measured ε ≥ ")
        and "95% confidence, 150 canaries, 60 guesses" in text
    )
    assert "wrong" in text
    unclaimed = dataclasses.replace(result, claimed_epsilon=None, accountant=None)
    assert unclaimed.describe().startswith("no claim (not trained with DP), measured ε ≥ ")
    assert not unclaimed.claim_refuted
    # What 60 guesses can test at all: every guess right proves ε ≥ 2.97 at most; a claim of ε ≤ 8 allows a guess
    # error rate of 1 / (1 + e^8) = 0.03 %, below the 1/60 that 60 guesses resolve: 2,982 guesses would.
    assert (
        result.max_provable_epsilon == eps_lower_bound(150, 60, 60, 1e-5)
        and 2.9 < result.max_provable_epsilon < 3
    )
    assert unclaimed.claim_testable is None and unclaimed.claim_refutable is None
    assert result.claim_refutable is True  # ε ≤ 0.5 < 2.97 (and it was refuted)
    assert (
        dataclasses.replace(result, claimed_epsilon=3.0).claim_refutable is False
    )  # rate measurable, guesses too few
    testable = result.claim_testable
    assert testable is not None and testable.measurable and testable.n == 60  # ε ≤ 0.5: error rate 38 %
    loose = dataclasses.replace(result, claimed_epsilon=8.0).claim_testable
    assert loose is not None and not loose.measurable and loose.n_needed == math.ceil(1 + math.exp(8))
    assert dataclasses.replace(result, claimed_epsilon=3547.0).claim_testable is not None  # no overflow


def test_dp_sgd_is_never_refuted_and_the_positive_control_leaks_more(digits: Dataset) -> None:
    """The same canaries and coin flips (audit_study): DP-SGD at ε ≤ 1 beside standard training (the positive
    control: no clipping, no noise). The DP bound stays below the claim; the control's is clearly higher."""
    study = audit_study(
        spec_for(digits, "mlp"), digits, TrainConfig(epochs=20, batch_size=64, shift=0),
        get_recipe("dp-sgd", target_epsilon=1.0), config=AuditConfig(canaries=150, k_plus=30, k_minus=30),
    )  # fmt: skip
    while True:
        try:
            next(study)
        except StopIteration as stop:
            (dp_label, dp), (control_label, control) = stop.value
            break
    assert "DP-SGD" in dp_label and "control" in control_label
    assert dp.claimed_epsilon is not None and dp.claimed_epsilon <= 1.0 and dp.accountant == "rdp"
    assert dp.eps_lower_bound <= dp.claimed_epsilon and not dp.claim_refuted
    assert control.claimed_epsilon is None
    assert control.eps_lower_bound > dp.eps_lower_bound + 1.0  # measured: 2.97 vs 0
    assert bool((dp.included == control.included).all())  # the same coin flips
