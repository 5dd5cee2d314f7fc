"""Federated learning: oracles for the split, FedAvg's aggregation, secure aggregation and client-level DP."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlsec_core.data.builtin import load_dataset
from dlsec_core.errors import InvalidInputError
from dlsec_core.federated import (
    FedAvgConfig,
    FedAvgResult,
    federated_averaging,
    local_update,
    mask_updates,
    secure_sum,
    split_clients,
)
from dlsec_core.federated.fedavg import derive_seed, flat_state, load_flat_state, state_keys
from dlsec_core.federated.secure_aggregation import decode
from dlsec_core.models.spec import build_model
from dlsec_core.privacy.accounting import epsilon_after
from dlsec_core.training.loop import run_to_end
from dlsec_core.workflows import spec_for


@pytest.fixture(scope="module")
def digits():  # type: ignore[no-untyped-def]
    return load_dataset("digits")


def federate(data, **settings) -> FedAvgResult:  # type: ignore[no-untyped-def]
    config = FedAvgConfig(**settings)
    return run_to_end(federated_averaging(spec_for(data, "logreg"), data, config))


# -- splits -----------------------------------------------------------------------------------------------------
def test_iid_split_deals_every_example_once(digits) -> None:  # type: ignore[no-untyped-def]
    split = split_clients(digits.y_train, 7, kind="iid", num_classes=10, seed=3)
    everything = torch.cat(split.indices).sort().values
    assert torch.equal(everything, torch.arange(digits.y_train.numel()))
    assert max(split.sizes) - min(split.sizes) <= 1
    assert split.skew() < 0.15


def test_dirichlet_histograms_sum_to_the_dataset_and_skew_grows_as_alpha_falls(digits) -> None:  # type: ignore[no-untyped-def]
    class_counts = np.bincount(digits.y_train.numpy(), minlength=10)
    skews = []
    for alpha in (100.0, 1.0, 0.1):
        split = split_clients(digits.y_train, 10, kind="dirichlet", alpha=alpha, num_classes=10, seed=0)
        assert split.histogram.shape == (10, 10)
        assert np.array_equal(split.histogram.sum(axis=0), class_counts)  # every example dealt...
        assert len(torch.cat(split.indices).unique()) == digits.y_train.numel()  # ...exactly once
        for k, idx in enumerate(split.indices):  # the histogram is what the client holds
            assert np.array_equal(np.bincount(digits.y_train[idx].numpy(), minlength=10), split.histogram[k])
        skews.append(split.skew())
    assert skews[0] < 0.15 < skews[1] < skews[2], skews
    assert skews[2] > 0.5


def test_split_refuses_bad_settings(digits) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInputError, match="Clients"):
        split_clients(digits.y_train, 0)
    with pytest.raises(InvalidInputError, match="α"):
        split_clients(digits.y_train, 3, kind="dirichlet", alpha=0.0)
    with pytest.raises(InvalidInputError, match="split"):
        split_clients(digits.y_train, 3, kind="shards")


# -- FedAvg -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("secure", [False, True])
def test_one_client_one_full_batch_step_is_one_centralised_sgd_step(digits, secure: bool) -> None:  # type: ignore[no-untyped-def]
    """K = 1, C = 1, E = 1, B >= n: FedAvg's round is exactly one step of full-batch SGD from the same weights
    (secure aggregation: up to its fixed-point encoding, 2^-21 per coordinate)."""
    n = digits.y_train.numel()
    result = federate(digits, clients=1, rounds=1, fraction=1.0, local_epochs=1, lr=0.5, batch_size=n, seed=4,
                      secure_aggregation=secure)  # fmt: skip
    spec = spec_for(digits, "logreg")
    with torch.random.fork_rng():
        torch.manual_seed(4)
        central = build_model(spec)
    optimizer = torch.optim.SGD(central.parameters(), lr=0.5)
    F.cross_entropy(central(digits.x_train), digits.y_train).backward()
    optimizer.step()
    keys = state_keys(central)
    moved = (flat_state(result.model, keys) - flat_state(build_model(spec), keys)).abs().max()
    assert moved > 1e-3  # the step did something
    gap = (flat_state(result.model, keys) - flat_state(central, keys)).abs().max()
    assert gap <= (1e-5 if secure else 1e-6), float(gap)


def test_the_global_update_is_the_size_weighted_average_of_the_client_updates(digits) -> None:  # type: ignore[no-untyped-def]
    """Unequal non-IID clients, full participation, one round: the new global weights equal a direct weighted
    average of the clients' locally trained weights (weights n_k / n)."""
    config = FedAvgConfig(clients=4, split="dirichlet", alpha=0.5, rounds=1, local_epochs=2, lr=0.2, batch_size=16,
                          seed=7)  # fmt: skip
    spec = spec_for(digits, "logreg")
    result = run_to_end(federated_averaging(spec, digits, config))
    with torch.random.fork_rng():
        torch.manual_seed(7)
        start = build_model(spec)
    keys = state_keys(start)
    sizes = result.split.sizes
    assert len(set(sizes)) > 1  # the weights matter
    expected = torch.zeros_like(flat_state(start, keys))
    for k, idx in enumerate(result.split.indices):
        local = local_update(start, digits.x_train[idx], digits.y_train[idx], epochs=2, lr=0.2, batch_size=16,
                             seed=derive_seed(7, 1, 1, k))  # fmt: skip
        expected += flat_state(local, keys) * (sizes[k] / sum(sizes))
    assert torch.allclose(flat_state(result.model, keys), expected, atol=1e-6)


def test_iid_fedavg_learns_digits_in_a_few_rounds_and_reports_every_round(digits) -> None:  # type: ignore[no-untyped-def]
    result = federate(digits, clients=10, rounds=5, fraction=0.5, lr=0.1, batch_size=32, seed=0)
    assert [e.round for e in result.history] == [1, 2, 3, 4, 5]
    assert all(len(e.participants) == 5 for e in result.history)  # C·K clients a round
    assert result.initial_accuracy < 0.3
    assert result.test_accuracy >= 0.8, result.test_accuracy
    lo, mean, hi = result.history[-1].client_spread()
    assert 0.7 <= lo <= mean <= hi <= 1.0
    assert result.privacy is None and "no client-level DP" in result.description()


def test_iid_fedavg_on_mnist5k_reaches_95_percent_within_20_rounds() -> None:
    """The issue's oracle, at FedAvg's default settings (10 IID clients, full participation, 1 local epoch, batch
    32, η 0.1) with the default cnn on the 4,000 training images of mnist5k: the global model's test accuracy (1,000
    held-out images) reaches 95 % by round 20. Measured: round 9 (95.2 %), 42-59 s on one core of a busy 2-core machine; the run stops at
    the first round that reaches it, so it is the costliest test here (the suite's time budget allows it)."""
    data = load_dataset("mnist5k")
    config = FedAvgConfig(seed=0)
    assert (config.clients, config.split, config.fraction, config.local_epochs, config.batch_size, config.lr) == (
        10, "iid", 1.0, 1, 32, 0.1
    )  # fmt: skip
    accuracies = []
    for event in federated_averaging(spec_for(data, "cnn"), data, dataclasses.replace(config, rounds=20)):
        assert len(event.participants) == 10
        accuracies.append(event.test_accuracy)
        if event.test_accuracy >= 0.95:
            break
    assert accuracies[0] < 0.9 and max(accuracies) >= 0.95, accuracies  # learnt over rounds, not at once


def test_same_seed_same_federation(digits) -> None:  # type: ignore[no-untyped-def]
    settings = dict(clients=5, split="dirichlet", alpha=0.3, rounds=2, fraction=0.6, secure_aggregation=True,
                    clip=2.0, noise_multiplier=0.5)  # fmt: skip
    a, b = federate(digits, seed=11, **settings), federate(digits, seed=11, **settings)
    other = federate(digits, seed=12, **settings)
    keys = state_keys(a.model)
    assert torch.equal(flat_state(a.model, keys), flat_state(b.model, keys))
    assert [e.to_record() | {"seconds": 0} for e in a.history] == [
        e.to_record() | {"seconds": 0} for e in b.history
    ]
    assert not torch.equal(flat_state(a.model, keys), flat_state(other.model, keys))


def test_state_vector_round_trips(digits) -> None:  # type: ignore[no-untyped-def]
    model = build_model(spec_for(digits, "cnn"))
    keys = state_keys(model)
    vector = torch.arange(flat_state(model, keys).numel(), dtype=torch.float32)
    load_flat_state(model, keys, vector)
    assert torch.equal(flat_state(model, keys), vector)


# -- secure aggregation -----------------------------------------------------------------------------------------
def test_masked_sum_is_the_plain_sum_and_each_masked_update_is_uncorrelated_with_its_own() -> None:
    generator = torch.Generator().manual_seed(0)
    updates = [torch.randn(5000, generator=generator) * 0.05 for _ in range(10)]
    total = secure_sum(updates, seed=42)
    assert (total - torch.stack(updates).sum(0)).abs().max() <= 1e-5
    masked = mask_updates(updates, seed=42)
    for update, seen in zip(updates, masked, strict=True):
        observed = decode(seen).float()  # what the server would read if it decoded one masked update
        corr = np.corrcoef(update.numpy(), observed.numpy())[0, 1]
        assert abs(corr) < 0.06, corr  # 5,000 coordinates: |corr| of independent vectors ~ 0.014
        assert observed.abs().mean() > 100 * update.abs().mean()  # nothing like the update
    assert not torch.equal(mask_updates(updates, seed=43)[0], masked[0])  # a new round, new masks


def test_secure_aggregation_refuses_what_it_cannot_encode() -> None:
    with pytest.raises(InvalidInputError, match="too large"):
        secure_sum([torch.full((3,), 1500.0), torch.full((3,), 1500.0)], seed=0)
    with pytest.raises(InvalidInputError, match="one length"):
        secure_sum([torch.zeros(3), torch.zeros(4)], seed=0)


# -- client-level DP ---------------------------------------------------------------------------------------------
def test_dp_fedavg_reports_the_rdp_epsilon_of_client_sampling(digits) -> None:  # type: ignore[no-untyped-def]
    result = federate(
        digits, clients=8, rounds=3, fraction=0.5, clip=1.0, noise_multiplier=1.2, delta=1e-4, seed=2
    )
    expected = epsilon_after(1.2, 0.5, 3, 1e-4, accountant="rdp")
    assert result.privacy is not None and result.privacy.accountant == "rdp"
    assert result.privacy.epsilon == pytest.approx(expected.epsilon, rel=1e-9)
    assert [e.epsilon for e in result.history][-1] == pytest.approx(expected.epsilon, rel=1e-9)
    assert [e.epsilon for e in result.history] == sorted(e.epsilon for e in result.history)  # type: ignore[type-var]
    assert "Rényi" in result.description() and "client-level ε" in result.description()


def test_clipping_bounds_each_round_s_step(digits) -> None:  # type: ignore[no-untyped-def]
    """Full participation, no noise: the global step is the mean of K updates of norm <= S, so at most S."""
    spec = spec_for(digits, "logreg")
    result = federate(digits, clients=4, rounds=1, fraction=1.0, lr=1.0, clip=0.01, seed=5)
    with torch.random.fork_rng():
        torch.manual_seed(5)
        start = build_model(spec)
    keys = state_keys(start)
    step = float((flat_state(result.model, keys) - flat_state(start, keys)).norm())
    assert max(result.history[0].update_norms) > 0.1  # clipping was needed...
    assert 0 < step <= 0.01 + 1e-6  # ...and bounded the step
    assert result.privacy is None and any("no differential privacy" in n for n in result.notes)


def test_server_noise_needs_a_clip() -> None:
    with pytest.raises(InvalidInputError, match="clip"):
        FedAvgConfig(noise_multiplier=1.0)
    assert dataclasses.replace(FedAvgConfig(), clip=1.0, noise_multiplier=1.0).private


def test_client_level_epsilon_matches_an_independent_accountant(digits) -> None:  # type: ignore[no-untyped-def]
    """Google's dp-accounting composes the same event (rounds × Poisson-sampled Gaussian over clients): within 1 %."""
    dp_accounting = pytest.importorskip("dp_accounting")
    result = federate(digits, clients=10, rounds=4, fraction=0.3, clip=1.0, noise_multiplier=1.0, seed=1)
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(0.3, dp_accounting.GaussianDpEvent(1.0)), 4
    )
    google = dp_accounting.rdp.RdpAccountant().compose(event).get_epsilon(1e-5)
    assert result.privacy is not None
    assert result.privacy.epsilon == pytest.approx(google, rel=0.01)
