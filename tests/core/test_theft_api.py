"""The prediction API: budgets are never overrun, every answer is logged, rate limits hold, policies do what
their papers say.

Oracles: counts and refusals against the arithmetic of the budget; the sliding window's waiting time computed
by hand; reverse sigmoid recomputed from Lee et al.'s formula in numpy; MAD's L1 budget and top-1 label checked
on every row; label-only answers are exactly one-hot.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlsec_core.errors import InvalidInputError, NotFoundError
from dlsec_core.theft.api import (
    OUTPUT_POLICIES,
    MADPolicy,
    Oracle,
    PredictionAPI,
    QueryBudgetError,
    RateLimit,
    RateLimitError,
    ReverseSigmoidPolicy,
    SimulatedClock,
    get_policy,
)
from dlsec_core.training.loop import TrainResult


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, 1, 8, 8), generator=torch.Generator().manual_seed(seed))


def _api(
    victim: TrainResult, policy: str = "full", clock: SimulatedClock | None = None, **params: object
) -> PredictionAPI:
    return PredictionAPI(
        victim.model, victim.spec, get_policy(policy, **params), clock=clock or SimulatedClock()
    )


def test_the_api_never_answers_past_a_budget(trained_digits: TrainResult) -> None:
    api = _api(trained_digits)
    api.register("thief", budget=10)
    assert api.query("thief", _images(6)).shape == (6, 10)
    with pytest.raises(QueryBudgetError, match="query budget is 10 and 4 remain"):
        api.query("thief", _images(5))  # would overrun: refused whole, nothing answered
    assert api.query("thief", _images(4)).shape == (4, 10)
    with pytest.raises(QueryBudgetError, match="query budget is 10 and 0 remain"):
        api.query("thief", _images(1))
    log = api.log("thief")
    assert (log.answered, log.refused, log.remaining) == (10, 6, 0)
    with pytest.raises(NotFoundError, match="registered clients only"):
        api.query("stranger", _images(1))


def test_every_answered_query_is_logged_with_its_input_and_time(trained_digits: TrainResult) -> None:
    clock = SimulatedClock(100.0)
    api = _api(trained_digits, clock=clock)
    api.register("a", budget=100)
    api.register("b", budget=100)
    first, second = _images(3, 1), _images(2, 2)
    api.query("a", first)
    clock.sleep(5.0)
    api.query("a", second)
    api.query("b", _images(1, 3))
    log = api.log("a")
    assert torch.equal(log.inputs, torch.cat([first, second]))
    assert log.times.tolist() == [100.0] * 3 + [105.0] * 2
    assert api.log("b").answered == 1 and api.clients() == ["a", "b"]


def test_bad_inputs_and_accounts_are_refused(trained_digits: TrainResult) -> None:
    api = _api(trained_digits)
    api.register("a", budget=5)
    with pytest.raises(InvalidInputError, match="already registered"):
        api.register("a", budget=5)
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        api.query("a", _images(1) + 1.0)
    with pytest.raises(InvalidInputError, match="takes images"):
        api.query("a", torch.zeros(1, 1, 28, 28))
    assert api.log("a").answered == 0


def test_the_rate_limit_is_a_sliding_window(trained_digits: TrainResult) -> None:
    clock = SimulatedClock()
    api = _api(trained_digits, clock=clock)
    api.register("a", budget=100, rate_limit=RateLimit(queries=5, per_seconds=10.0))
    api.query("a", _images(3))
    clock.sleep(4.0)
    api.query("a", _images(2))
    with pytest.raises(RateLimitError) as err:
        api.query("a", _images(2))  # the 2 oldest (at t = 0) must leave the window: at t = 10
    assert err.value.retry_after == pytest.approx(6.0)
    clock.sleep(6.0)
    api.query("a", _images(2))
    # an attacker waiting on the same clock: 12 more answers at 5 per 10 s
    oracle = Oracle(api, "a", sleep=clock.sleep)
    assert oracle(_images(12)).shape == (12, 10)
    assert oracle.spent == 12 and oracle.waited > 0
    times = api.log("a").times
    for t in times.tolist():  # the window never held more than 5 answers
        assert int(((times > t - 10.0) & (times <= t)).sum()) <= 5


@pytest.mark.parametrize("name", sorted(OUTPUT_POLICIES))
def test_every_policy_answers_probability_like_vectors(name: str, trained_digits: TrainResult) -> None:
    api = _api(trained_digits, name)
    api.register("a", budget=200)
    full = _api(trained_digits)
    full.register("a", budget=200)
    x = _images(200, 7)
    out, truth = api.query("a", x), full.query("a", x)
    assert out.shape == (200, 10) and out.dtype == torch.float64
    slack = 0.06 if name == "rounded" else 1e-9  # ten values each rounded by up to ±0.005
    assert bool((out >= 0).all()) and bool((out.sum(1) <= 1 + slack).all())
    if name != "top-k":
        assert torch.allclose(
            out.sum(1), torch.ones(200, dtype=torch.float64), atol=0.06
        )  # rounding: ±5·0.005
    if name in ("full", "top-k", "label", "mad"):
        assert torch.equal(out.argmax(1), truth.argmax(1)), "this policy keeps the top-1 label"


def test_label_only_and_rounded_answers_are_what_they_say(trained_digits: TrainResult) -> None:
    x = _images(50)
    label = _api(trained_digits, "label")
    label.register("a", budget=50)
    out = label.query("a", x)
    assert set(out.unique().tolist()) == {0.0, 1.0} and bool((out.sum(1) == 1).all())
    rounded = _api(trained_digits, "rounded", decimals=1)
    rounded.register("a", budget=50)
    out = rounded.query("a", x).numpy()
    assert np.allclose(out * 10, np.round(out * 10))
    with pytest.raises(InvalidInputError, match="Decimals kept"):
        get_policy("rounded", decimals=-1)


def test_reverse_sigmoid_follows_lee_et_al() -> None:
    y = torch.tensor([[0.7, 0.2, 0.1], [0.98, 0.01, 0.01]], dtype=torch.float64)
    policy = ReverseSigmoidPolicy(beta=0.8, gamma=0.3)
    out = policy.transform(y, torch.Generator()).numpy()
    yn = y.numpy()
    r = 0.8 * (1 / (1 + np.exp(-0.3 * np.log(yn / (1 - yn)))) - 0.5)
    expected = np.clip(yn - r, 0, 1)
    expected /= expected.sum(1, keepdims=True)
    assert np.allclose(out, expected)


def test_mad_stays_within_its_l1_budget_keeps_the_label_and_moves_the_gradient() -> None:
    gen = torch.Generator().manual_seed(0)
    y = torch.softmax(3 * torch.randn(300, 10, generator=gen, dtype=torch.float64), 1)
    p = torch.softmax(torch.randn(300, 10, generator=gen, dtype=torch.float64), 1)
    out = MADPolicy(eps=0.4).poison(y, p)
    assert bool(((out - y).abs().sum(1) <= 0.4 + 1e-9).all())
    assert torch.equal(out.argmax(1), y.argmax(1))
    assert torch.allclose(out.sum(1), torch.ones(300, dtype=torch.float64))

    def angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cosine_similarity(a, b, dim=1)

    # the poisoned answer turns the attacker's last-layer gradient direction p − ỹ away from p − y
    assert float(angle(p - out, p - y).mean()) < 0.95
    assert torch.equal(MADPolicy(eps=0.0).poison(y, p), y)


def test_atlas_tags() -> None:
    """MITRE ATLAS (5.6.0) tags: the API implements Restrict Number of AI Model Queries (M0004), Control Access to
    AI Models (M0019) and AI Telemetry Logging (M0024); the full answer is the undefended baseline, every other policy Passive AI Output
    Obfuscation (M0002); every extraction attack is Extract AI Model (T0024.002)."""
    from dlsec_core.theft.extraction import EXTRACTION_ATTACKS

    assert PredictionAPI.atlas_ids == ("AML.M0004", "AML.M0019", "AML.M0024")
    assert {n: p.atlas_ids for n, p in OUTPUT_POLICIES.items()} == {
        n: ("DLSEC.no-mitigation",) if n == "full" else ("AML.M0002",) for n in OUTPUT_POLICIES
    }
    assert {a.atlas_ids for a in EXTRACTION_ATTACKS.values()} == {("AML.T0024.002",)}
