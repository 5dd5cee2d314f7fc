"""Poisoning in federated learning: each robust aggregator against a direct computation on hand-made updates, the
attacks' data, label flipping and a backdoor against FedAvg and the robust rules, and local DP-SGD per client."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from dlsec_core.data.builtin import load_dataset
from dlsec_core.errors import InvalidInputError
from dlsec_core.federated import FedAvgConfig, FedAvgResult, federated_averaging
from dlsec_core.federated.poisoning import backdoor_inputs, flip_labels, poison_backdoor, stamp_trigger
from dlsec_core.federated.robust import (
    aggregate,
    coordinate_median,
    krum,
    krum_scores,
    trimmed_mean,
    weighted_mean,
)
from dlsec_core.training.loop import run_to_end
from dlsec_core.workflows import spec_for


@pytest.fixture(scope="module")
def digits():  # type: ignore[no-untyped-def]
    return load_dataset("digits")


def federate(data, **settings) -> FedAvgResult:  # type: ignore[no-untyped-def]
    return run_to_end(federated_averaging(spec_for(data, "logreg"), data, FedAvgConfig(**settings)))


def random_updates(n: int, d: int = 7, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(d, generator=g) for _ in range(n)]


# -- aggregators against direct computations --------------------------------------------------------------------
def test_fedavg_is_the_weighted_mean() -> None:
    updates = [torch.tensor([1.0, 0.0]), torch.tensor([0.0, 4.0]), torch.tensor([3.0, 3.0])]
    assert torch.allclose(weighted_mean(updates, [1, 2, 1]), torch.tensor([(1 + 0 + 3) / 4, (0 + 8 + 3) / 4]))


@pytest.mark.parametrize("n", [5, 6])  # odd: the middle value; even: the mean of the two middle values
def test_median_is_numpys_coordinate_wise_median(n: int) -> None:
    updates = random_updates(n)
    expected = np.median(torch.stack(updates).numpy(), axis=0)
    assert np.allclose(coordinate_median(updates).numpy(), expected, atol=1e-7)


def test_median_of_hand_made_updates() -> None:
    updates = [torch.tensor([1.0, -5.0]), torch.tensor([100.0, 0.0]), torch.tensor([2.0, 1.0])]
    assert torch.equal(coordinate_median(updates), torch.tensor([2.0, 0.0]))


def test_trimmed_mean_drops_the_extremes_of_each_coordinate() -> None:
    """β = 0.2 of 5 values drops one at each end, per coordinate: [1, 2, 3, 4, 100] -> mean(2, 3, 4) = 3, and in
    the second coordinate the dropped values come from other clients: [-50, 0, 0, 6, 9] -> mean(0, 0, 6) = 2."""
    updates = [torch.tensor([1.0, 0.0]), torch.tensor([2.0, -50.0]), torch.tensor([3.0, 9.0]),
               torch.tensor([4.0, 6.0]), torch.tensor([100.0, 0.0])]  # fmt: skip
    assert torch.allclose(trimmed_mean(updates, 0.2), torch.tensor([3.0, 2.0]))
    assert torch.allclose(trimmed_mean(updates, 0.0), torch.stack(updates).mean(0))  # β = 0: the plain mean


@pytest.mark.parametrize(("n", "beta"), [(10, 0.1), (10, 0.25), (7, 0.3)])
def test_trimmed_mean_is_scipys(n: int, beta: float) -> None:
    updates = random_updates(n, seed=n)
    expected = stats.trim_mean(torch.stack(updates).numpy(), beta, axis=0)
    assert np.allclose(trimmed_mean(updates, beta).numpy(), expected, atol=1e-6)


def test_krum_picks_the_update_closest_to_its_neighbours() -> None:
    """1-D updates 0, 0.1, 0.2, 5, 100 with f = 1: each score sums the n − f − 2 = 2 smallest squared distances;
    0.1 scores 0.01 + 0.01 = 0.02, the lowest, so Krum returns it."""
    updates = [torch.tensor([v]) for v in (0.0, 0.1, 0.2, 5.0, 100.0)]
    scores = krum_scores(updates, 1)
    assert torch.allclose(scores[:3], torch.tensor([0.05, 0.02, 0.05], dtype=torch.float64))
    result = krum(updates, 1)
    assert result.chosen == 1 and torch.equal(result.update, updates[1])


def test_krum_scores_match_a_brute_force_computation() -> None:
    updates = random_updates(8, d=5, seed=3)
    f = 2
    brute = []
    for i, u in enumerate(updates):
        distances = sorted(float(((u - v) ** 2).sum()) for j, v in enumerate(updates) if j != i)
        brute.append(sum(distances[: len(updates) - f - 2]))
    assert np.allclose(krum_scores(updates, f).numpy(), brute, rtol=1e-6)
    assert krum(updates, f).chosen == int(np.argmin(brute))


def test_aggregators_refuse_what_they_cannot_do() -> None:
    with pytest.raises(InvalidInputError, match="more than 2f"):
        krum(random_updates(4), 1)  # n = 4 is not > 2f + 2 = 4
    with pytest.raises(InvalidInputError, match="β"):
        trimmed_mean(random_updates(4), 0.5)
    with pytest.raises(InvalidInputError, match="aggregator"):
        aggregate("mean-of-medians", random_updates(3))
    with pytest.raises(InvalidInputError, match="no client"):
        aggregate("median", [])


def test_federation_settings_that_cannot_work_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="secure aggregation"):
        FedAvgConfig(aggregator="median", secure_aggregation=True)
    with pytest.raises(InvalidInputError, match="DP-FedAvg"):
        FedAvgConfig(aggregator="trimmed_mean", clip=1.0)
    with pytest.raises(InvalidInputError, match="malicious"):
        FedAvgConfig(clients=3, malicious=4)
    with pytest.raises(InvalidInputError, match="Krum"):
        FedAvgConfig(clients=10, fraction=0.5, aggregator="krum", krum_f=2)  # 5 per round, needs > 6


# -- the attacks' data ------------------------------------------------------------------------------------------
def test_label_flip_and_trigger() -> None:
    assert torch.equal(flip_labels(torch.tensor([0, 3, 9]), 10), torch.tensor([9, 6, 0]))
    x = torch.zeros(2, 1, 8, 8)
    stamped = stamp_trigger(x, 3)
    assert float(stamped.sum()) == 2 * 9 and torch.all(stamped[:, :, 5:, 5:] == 1) and float(x.sum()) == 0
    y = torch.tensor([0, 1, 2, 0, 4])
    tx, ty = backdoor_inputs(torch.zeros(5, 1, 8, 8), y, size=2, target=0)
    assert tx.shape[0] == 3 and torch.all(ty == 0)  # the target class's own images are not counted
    px, py = poison_backdoor(torch.zeros(10, 1, 8, 8), torch.arange(10), size=2, target=7, fraction=0.5,
                             generator=torch.Generator().manual_seed(0))  # fmt: skip
    changed = (px.flatten(1).sum(1) > 0).nonzero().flatten()
    assert changed.numel() == 5 and torch.all(py[changed] == 7)
    assert torch.equal(py[(px.flatten(1).sum(1) == 0)], torch.arange(10)[(px.flatten(1).sum(1) == 0)])


# -- poisoning against aggregators ------------------------------------------------------------------------------
FAST = {
    "clients": 10,
    "rounds": 10,
    "lr": 0.3,
    "batch_size": 32,
}  # digits, softmax regression: ~0.1 s a federation


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_median_keeps_accuracy_with_2_of_10_label_flippers_while_fedavg_loses_more(digits, seed: int) -> None:  # type: ignore[no-untyped-def]
    """Measured on digits (10 rounds, softmax regression): clean 92.5-93.6 %; 2 flippers cost FedAvg 1.7-3.6
    points and the median 0.3-0.9 points."""
    clean = federate(digits, **FAST, seed=seed).test_accuracy
    fedavg = federate(digits, **FAST, seed=seed, malicious=2).test_accuracy
    median = federate(digits, **FAST, seed=seed, malicious=2, aggregator="median").test_accuracy
    assert clean - median <= 0.05, (clean, median)
    assert clean - fedavg > clean - median, (clean, fedavg, median)


def test_a_backdoor_enters_fedavg_and_not_the_robust_rules(digits) -> None:  # type: ignore[no-untyped-def]
    """2 of 10 clients stamp a 2x2 trigger on half their images, relabelled 0: FedAvg learns it (69 % success after
    10 rounds, seed 0), the median and Krum do not, and clean accuracy stays high under all three."""
    results = {
        agg: federate(
            digits, **FAST, seed=0, malicious=2, attack="backdoor", trigger=2, target=0, aggregator=agg
        )
        for agg in ("fedavg", "median", "krum")
    }
    success = {agg: r.history[-1].backdoor_success for agg, r in results.items()}
    assert success["fedavg"] is not None and success["fedavg"] > 0.5, success
    assert success["median"] is not None and success["median"] < 0.1, success
    assert success["krum"] is not None and success["krum"] < 0.1, success
    assert all(r.test_accuracy > 0.85 for r in results.values())
    krum_run = results["krum"]
    assert all(e.krum_choice in e.participants for e in krum_run.history)
    assert len(krum_run.malicious) == 2 and set(krum_run.history[0].malicious) == set(krum_run.malicious)
    assert all(
        e.backdoor_success is None for e in federate(digits, **{**FAST, "rounds": 1}, malicious=2).history
    )


# -- local DP-SGD per client ------------------------------------------------------------------------------------
def test_local_dp_sgd_spends_each_client_s_epsilon_by_the_named_accountant(digits) -> None:  # type: ignore[no-untyped-def]
    """Each client runs the dp-sgd recipe (Poisson sampling at q = B / n_k, int(1/q) steps an epoch); its ε over
    all its rounds is the RDP bound of that many steps, checked against Google's dp-accounting within 1 %."""
    dp_accounting = pytest.importorskip("dp_accounting")
    result = federate(digits, clients=4, rounds=2, lr=0.3, batch_size=64, local_dp=True,
                      local_noise_multiplier=1.2, local_clip=1.0, seed=0)  # fmt: skip
    assert result.local_privacy is not None
    for k, spend in enumerate(result.local_privacy):
        assert spend is not None
        n = result.split.sizes[k]
        q = 64 / n
        assert spend.steps == 2 * int(1 / q)  # 2 rounds × 1 local epoch × int(1/q) Poisson batches
        event = dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(1.2)), spend.steps
        )
        google = dp_accounting.rdp.RdpAccountant().compose(event).get_epsilon(1e-5)
        assert spend.epsilon == pytest.approx(google, rel=0.01)
        assert spend.accountant == "rdp"
    assert result.history[-1].local_epsilon == pytest.approx(
        max(s.epsilon for s in result.local_privacy if s)
    )
    assert "local DP-SGD" in result.description() and "example-level ε" in result.description()
    assert result.to_json()["local_privacy"]["max_epsilon"] == pytest.approx(result.history[-1].local_epsilon)


@pytest.mark.parametrize(("fraction", "sigma", "rounds"), [(0.1, 1.1, 60), (0.2, 0.8, 25)])
def test_client_level_epsilon_over_many_rounds_matches_dp_accounting(  # type: ignore[no-untyped-def]
    digits, fraction: float, sigma: float, rounds: int
) -> None:
    """DP-FedAvg's client-level ε (Opacus's RDP over rounds of the Poisson-sampled Gaussian) against Google's
    dp-accounting RDP for the same event, within 1 %, beside test_federated.py's 4-round case."""
    dp_accounting = pytest.importorskip("dp_accounting")
    result = federate(
        digits, clients=10, rounds=rounds, fraction=fraction, clip=1.0, noise_multiplier=sigma, seed=0
    )
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(fraction, dp_accounting.GaussianDpEvent(sigma)), rounds
    )
    google = dp_accounting.rdp.RdpAccountant().compose(event).get_epsilon(1e-5)
    assert result.privacy is not None and result.privacy.accountant == "rdp"
    assert result.privacy.epsilon == pytest.approx(google, rel=0.01)
    assert result.history[-1].epsilon == result.privacy.epsilon


def test_local_dp_noise_costs_accuracy(digits) -> None:  # type: ignore[no-untyped-def]
    """The noise is really added: at σ = 8 the federation learns far less than without local DP."""
    plain = federate(digits, clients=4, rounds=2, lr=0.3, batch_size=64, seed=0).test_accuracy
    noisy = federate(digits, clients=4, rounds=2, lr=0.3, batch_size=64, seed=0, local_dp=True,
                     local_noise_multiplier=8.0, local_clip=0.1).test_accuracy  # fmt: skip
    assert noisy < plain - 0.2, (plain, noisy)


# -- the study ---------------------------------------------------------------------------------------------------
def test_the_federated_study_reports_clean_accuracy_and_backdoor_success_each_round(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dlsec_core.store import Store
    from dlsec_core.studies.base import run_study
    from dlsec_core.studies.federated import FederatedStudy, FederatedStudyConfig

    config = FederatedStudyConfig(dataset="digits", arch="logreg", clients=5, rounds=2, aggregator="krum", krum_f=1,
                                  malicious=1, attack="backdoor", trigger=2, target=3, seed=2)  # fmt: skip
    events = []
    outcome = run_study(FederatedStudy(), Store(tmp_path), config, events.append)
    rounds = [e.payload for e in events if e.payload and e.payload["type"] == "round"]
    assert [r["round"] for r in rounds] == [1, 2]
    assert all(0 <= r["backdoor_success"] <= 1 and r["krum_choice"] in r["participants"] for r in rounds)
    assert "backdoor success" in events[-1].message
    assert outcome.result["backdoor_success"] == rounds[-1]["backdoor_success"]
    assert len(outcome.result["malicious"]) == 1
    assert (
        "Krum" in outcome.result["description"]
        and "1 of 5 clients malicious (backdoor" in outcome.result["description"]
    )
    assert "1 backdoor clients" in FederatedStudy().title_for(config)
    with pytest.raises(InvalidInputError, match="secure aggregation"):
        FederatedStudyConfig(aggregator="median", secure_aggregation=True)
