"""Local DP-SGD on each federated client: the example-level ε per client is the named accountant's number for the
client's own steps, and accounting it costs the same whatever the number of rounds.

A federation used to convert every client's steps to ε about four times per round (the recipe's plan, its spent
report, the round's running maximum, the end), each a fresh RDP computation over Opacus's 151 orders: 75 s for
10 clients × 10 rounds of digits softmax regression, against 1.7 s without local DP. `LocalAccounting` computes
one step's RDP once per sampling rate and scales it (RDP adds up over steps); the plan is remembered by
`accounting._epsilon`. Same settings after: 1.6 s, with bit-identical weights and ε.
"""

from __future__ import annotations

import opacus.accountants.analysis.rdp as opacus_rdp
import pytest
from opacus.accountants import RDPAccountant

from dlsec_core.data.builtin import load_dataset
from dlsec_core.federated import FedAvgConfig, FedAvgResult, federated_averaging
from dlsec_core.federated.fedavg import LocalAccounting
from dlsec_core.privacy import accounting
from dlsec_core.privacy.accounting import epsilon_after
from dlsec_core.training.loop import run_to_end
from dlsec_core.workflows import spec_for


@pytest.fixture(scope="module")
def digits():  # type: ignore[no-untyped-def]
    return load_dataset("digits")


def federate(data, **settings) -> FedAvgResult:  # type: ignore[no-untyped-def]
    return run_to_end(federated_averaging(spec_for(data, "logreg"), data, FedAvgConfig(**settings)))


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_each_client_s_epsilon_is_exactly_epsilon_after_for_its_own_steps(digits, accountant: str) -> None:  # type: ignore[no-untyped-def]
    """Unequal non-IID clients (several sampling rates): every client's ε, and each round's maximum, equal
    `epsilon_after` (a fresh Opacus accountant) for its σ, q = B / n_k and steps so far, to the last bit."""
    result = federate(digits, clients=4, split="dirichlet", alpha=2.0, rounds=2, lr=0.3, batch_size=48,
                      local_dp=True, local_noise_multiplier=1.1, local_clip=1.0, local_accountant=accountant,
                      seed=3)  # fmt: skip
    assert result.local_privacy is not None
    assert len(set(result.split.sizes)) > 1  # several sampling rates
    steps_per_round = [int(n / 48) for n in result.split.sizes]  # int(1/q) Poisson batches per local epoch
    for k, spend in enumerate(result.local_privacy):
        assert spend is not None
        assert spend.steps == 2 * steps_per_round[k]
        assert spend == epsilon_after(
            1.1, 48 / result.split.sizes[k], spend.steps, 1e-5, accountant=accountant
        )
    for t, event in enumerate(result.history, start=1):
        assert event.local_epsilon == max(
            epsilon_after(1.1, 48 / n, t * s, 1e-5, accountant=accountant).epsilon
            for n, s in zip(result.split.sizes, steps_per_round, strict=True)
        )


def test_local_accounting_matches_a_fresh_accountant_at_many_step_counts() -> None:
    ledger = LocalAccounting(0.9, 1e-5, "rdp")
    for q in (0.05, 0.2, 0.71):
        for steps in (1, 7, 250, 3000):
            assert ledger.spent(q, steps) == epsilon_after(0.9, q, steps, 1e-5, accountant="rdp")


def test_local_dp_accounting_does_not_grow_with_the_rounds(digits, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The one-step RDP over Opacus's orders is computed once per client sampling rate (and once for the recipe's
    plan), not per client per round: 1 round and 4 rounds cost the same accounting."""
    calls = []
    one_order = opacus_rdp._compute_rdp
    monkeypatch.setattr(opacus_rdp, "_compute_rdp", lambda *a, **k: calls.append(1) or one_order(*a, **k))

    def orders_computed(rounds: int) -> int:
        accounting._epsilon.cache_clear()
        calls.clear()
        result = federate(digits, clients=10, rounds=rounds, batch_size=32, local_dp=True, seed=0)
        assert result.local_privacy is not None and all(s is not None for s in result.local_privacy)
        rates = len(set(result.split.sizes))
        assert len(calls) <= 2 * rates * len(RDPAccountant.DEFAULT_ALPHAS)
        return len(calls)

    assert orders_computed(1) == orders_computed(4)
