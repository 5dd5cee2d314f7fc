"""Model extraction through the API, on the 8x8 digits softmax regression (d = 64 pixels, k = 10 classes).

Oracles: equation solving recovers the victim's own pixel-space weights (up to the softmax's shift) from d+1
queries; rounding to one decimal breaks it; retraining fidelity rises with the budget; on a label-only API a
soft-label attacker trains on one-hot vectors and does no better than a hard-label one; the API's log counts
exactly the budget spent; the same seed gives the same surrogate.
"""

from __future__ import annotations

from typing import cast

import pytest
import torch
from torch import nn

from dlsec_core.data.builtin import load_dataset
from dlsec_core.errors import InvalidInputError
from dlsec_core.theft.api import Oracle, PredictionAPI, QueryBudgetError, get_policy
from dlsec_core.theft.extraction import (
    EXTRACTION_ATTACKS,
    EquationSolving,
    ExtractionResult,
    Judge,
    PoolKind,
    get_extraction,
    query_pool,
)
from dlsec_core.training.loop import TrainResult, run_to_end

D, K = 64, 10


@pytest.fixture(scope="module")
def judge(trained_digits: TrainResult) -> Judge:
    data = load_dataset("digits")
    return Judge.of(trained_digits.model, data.x_test, data.y_test)


def _steal(
    victim: TrainResult, judge: Judge, attack: str, budgets: list[int], *, policy: str = "full",
    pool: PoolKind = PoolKind.SAME, budget: int | None = None, seed: int = 0, **params: object,
) -> tuple[ExtractionResult, PredictionAPI]:  # fmt: skip
    api = PredictionAPI(
        victim.model, victim.spec, get_policy(policy, **({"decimals": 1} if policy == "rounded" else {}))
    )
    api.register("thief", budget=budget or budgets[-1])
    x = query_pool(pool, load_dataset("digits"), budgets[-1], torch.Generator().manual_seed(seed))
    result = run_to_end(
        get_extraction(attack, **params).run(Oracle(api, "thief"), judge, budgets, pool=x, seed=seed)
    )
    return result, api


def _pixel_space(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """A logreg's weights on raw pixels, its Normalize layer folded in: W/std, b − W·mean/std."""
    norm, body = model[0], cast(nn.Sequential, model[1])
    linear = cast(nn.Linear, body[1])
    std, mean = norm.std.flatten().double(), norm.mean.flatten().double()  # one channel: scalars
    weight = linear.weight.double() / std
    return weight, linear.bias.double() - (linear.weight.double() * (mean / std)).sum(1)


def test_equation_solving_recovers_a_softmax_regression_from_d_plus_1_queries(
    trained_digits: TrainResult, judge: Judge
) -> None:
    result, api = _steal(trained_digits, judge, "equation-solving", [D + 1, (D + 1) * (K - 1)])
    assert [p.queries for p in result.points] == [65, 585] and api.log("thief").answered == 585
    assert all(p.fidelity >= 0.999 for p in result.points)
    w_hat, b_hat = _pixel_space(result.surrogate)
    w, b = _pixel_space(trained_digits.model)
    # the softmax is shift-invariant: compare the centred weights
    assert torch.allclose(w_hat - w_hat.mean(0), w - w.mean(0), atol=1e-4)
    assert torch.allclose(b_hat - b_hat.mean(), b - b.mean(), atol=1e-4)


def test_rounding_to_one_decimal_breaks_equation_solving(trained_digits: TrainResult, judge: Judge) -> None:
    result, _ = _steal(trained_digits, judge, "equation-solving", [D + 1], policy="rounded")
    assert result.points[0].fidelity < 0.9


def test_retraining_fidelity_rises_with_the_budget(trained_digits: TrainResult, judge: Judge) -> None:
    result, api = _steal(trained_digits, judge, "knockoff", [40, 160, 640], arch="mlp", epochs=8)
    fidelity = [p.fidelity for p in result.points]
    assert fidelity[0] < fidelity[1] < fidelity[2] and fidelity[2] > 0.85
    assert api.log("thief").answered == 640 and result.points[-1].queries == 640


def test_a_label_only_api_makes_soft_labels_no_better_than_hard_labels(
    trained_digits: TrainResult, judge: Judge
) -> None:
    # 20 epochs: at T = 4 (the default) distillation needs a few dozen steps before probabilities pay
    common = {"arch": "mlp", "epochs": 20, "policy": "label"}
    soft, _ = _steal(trained_digits, judge, "knockoff", [150], labels="soft", **common)
    hard, _ = _steal(trained_digits, judge, "knockoff", [150], labels="hard", **common)
    assert soft.points[0].fidelity <= hard.points[0].fidelity + 0.01
    # the control: with full probabilities the same soft-label attacker does learn more than from labels
    informed, _ = _steal(
        trained_digits, judge, "knockoff", [150], labels="soft", **{**common, "policy": "full"}
    )
    assert informed.points[0].fidelity > hard.points[0].fidelity + 0.01


def test_an_attack_cannot_spend_past_its_budget(trained_digits: TrainResult, judge: Judge) -> None:
    with pytest.raises(QueryBudgetError, match="query budget is 100"):
        _steal(trained_digits, judge, "copycat", [50, 200], budget=100, arch="logreg", epochs=1)


def test_same_seed_same_surrogate(trained_digits: TrainResult, judge: Judge) -> None:
    runs = [
        _steal(trained_digits, judge, "copycat", [60, 120], arch="mlp", epochs=3, seed=4)[0] for _ in range(2)
    ]
    assert [p.fidelity for p in runs[0].points] == [p.fidelity for p in runs[1].points]
    for a, b in zip(
        runs[0].surrogate.state_dict().values(), runs[1].surrogate.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_jacobian_augmentation_grows_a_seed_set_to_each_budget(
    trained_digits: TrainResult, judge: Judge
) -> None:
    result, api = _steal(
        trained_digits, judge, "jacobian", [50, 120, 300], arch="mlp", epochs=8, seed_size=20
    )
    assert [p.queries for p in result.points] == [50, 120, 300]
    log = api.log("thief")
    assert log.answered == 300
    seeds = query_pool(PoolKind.SAME, load_dataset("digits"), 300, torch.Generator().manual_seed(0))[:20]
    assert torch.equal(log.inputs[:20], seeds), "the first queries are the seed set"
    # each augmented query moves an earlier one by at most λ = 0.1 per pixel
    moved = log.inputs[20:40]
    assert float((moved - seeds).abs().max()) <= 0.1 + 1e-6 and not torch.equal(moved, seeds)
    assert result.points[-1].fidelity > result.points[0].fidelity


def test_pools_and_their_limits() -> None:
    digits = load_dataset("digits")
    gen = torch.Generator().manual_seed(0)
    other = query_pool(PoolKind.OTHER, digits, 300, gen)  # mnist5k resized from 28x28 to 8x8
    assert other.shape == (300, 1, 8, 8) and float(other.min()) >= 0 and float(other.max()) <= 1
    with pytest.raises(InvalidInputError, match="has 1,4"):
        query_pool(PoolKind.SAME, digits, 5000, gen)
    assert query_pool(PoolKind.NOISE, digits, 5000, gen).shape == (5000, 1, 8, 8)
    with pytest.raises(InvalidInputError, match="must increase"):
        run_to_end(EquationSolving().run(None, None, [10, 5], pool=None, seed=0))  # type: ignore[arg-type]
    assert set(EXTRACTION_ATTACKS) == {
        "equation-solving",
        "copycat",
        "knockoff",
        "knockoff-adaptive",
        "jacobian",
    }
    # an attacker that chooses gets more candidates when the source has them, and never fewer than the budget
    assert query_pool(PoolKind.SAME, digits, 300, gen, up_to=1200).shape[0] == 1200
    assert query_pool(PoolKind.SAME, digits, 300, gen, up_to=99_999).shape[0] == len(digits.y_train)


def _adaptive(
    victim: TrainResult, judge: Judge, pool: torch.Tensor, budgets: list[int], seed: int, **params: object
) -> tuple[ExtractionResult, PredictionAPI]:
    api = PredictionAPI(victim.model, victim.spec)
    api.register("thief", budget=budgets[-1])
    attack = get_extraction("knockoff-adaptive", arch="logreg", epochs=2, **params)
    return run_to_end(attack.run(Oracle(api, "thief"), judge, budgets, pool=pool, seed=seed)), api


def test_knockoff_adaptive_spends_exactly_its_budget_and_is_seeded(
    trained_digits: TrainResult, judge: Judge
) -> None:
    pool = query_pool(PoolKind.SAME, load_dataset("digits"), 150, torch.Generator().manual_seed(0), up_to=600)
    (a, api_a), (b, api_b), (c, api_c) = (
        _adaptive(trained_digits, judge, pool, [60, 150], seed, refit_every=50) for seed in (3, 3, 4)
    )
    assert [p.queries for p in a.points] == [60, 150] and api_a.log("thief").answered == 150
    sent = api_a.log("thief").inputs
    assert torch.equal(sent, api_b.log("thief").inputs) and [p.fidelity for p in a.points] == [
        p.fidelity for p in b.points
    ]
    assert not torch.equal(sent, api_c.log("thief").inputs)
    # every query is a distinct pool image (the bandit draws without replacement)
    flat = pool.flatten(1)
    index = [int(torch.nonzero((flat == q.flatten()).all(1))[0]) for q in sent]
    assert len(set(index)) == 150
    with pytest.raises(QueryBudgetError):
        api = PredictionAPI(trained_digits.model, trained_digits.spec)
        api.register("thief", budget=100)
        attack = get_extraction("knockoff-adaptive", arch="logreg", epochs=1)
        run_to_end(attack.run(Oracle(api, "thief"), judge, [60, 150], pool=pool, seed=0))


def test_the_bandit_learns_to_prefer_the_rewarding_cluster(trained_digits: TrainResult, judge: Judge) -> None:
    """Oracle: a pool of half digits, half flat grey images (two clusters k-means separates). The victim is far
    more certain on digits than on grey, so the certainty reward pulls the policy to the digits: later rounds
    draw them far more often than the first ones, where the policy is uniform."""
    digits = load_dataset("digits").x_train[:300]
    grey = torch.full_like(digits, 0.5) + 0.01 * torch.rand(
        digits.shape, generator=torch.Generator().manual_seed(1)
    )
    pool = torch.cat([digits, grey])

    def digit_share(bandit_lr: float) -> tuple[float, float, ExtractionResult]:
        result, api = _adaptive(trained_digits, judge, pool, [200], 0, reward="certainty", clusters=2,
                                round_size=10, bandit_lr=bandit_lr)  # fmt: skip
        is_digit = (api.log("thief").inputs - 0.5).abs().flatten(1).amax(1) > 0.05
        return float(is_digit.float().mean()), float(is_digit[-60:].float().mean()), result

    learned, late, result = digit_share(0.5)
    frozen, _, _ = digit_share(1e-9)  # the control: a policy that does not move stays uniform
    assert 0.35 < frozen < 0.65 and learned > 0.85 and late > 0.95, (frozen, learned, late)
    assert "Orekondy et al. 2019" in result.description and "gradient" not in result.description
