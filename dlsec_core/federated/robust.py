"""Robust aggregation: how a server combines client updates when some clients may be malicious.

- FedAvg (McMahan et al. 2017): the example-weighted mean Σ_k (n_k / Σ n) Δ_k. One client can move it anywhere.
- Coordinate-wise median (Yin, Chen, Ramchandran, Bartlett 2018, "Byzantine-Robust Distributed Learning: Towards
  Optimal Statistical Rates"): each coordinate is the median of the clients' values (the mean of the two middle
  values for an even count, as `numpy.median`).
- Coordinate-wise trimmed mean (same paper): each coordinate drops its ⌊βn⌋ largest and ⌊βn⌋ smallest values and
  averages the rest (`scipy.stats.trim_mean(updates, β, axis=0)`).
- Krum (Blanchard, El Mhamdi, Guerraoui, Stainer 2017, "Machine Learning with Adversaries: Byzantine Tolerant
  Gradient Descent"): for f assumed Byzantine clients, each update's score is the sum of its squared distances to
  its n − f − 2 nearest other updates; the update with the lowest score is the aggregate (n > 2f + 2 needed).

The robust rules are unweighted, as in their papers: a client's example count is its own claim, and a malicious
client could inflate it. They need the updates one by one, so they cannot be combined with secure aggregation (the
server sees only the sum) or with the noisy sum of client-level DP.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import torch

from dlsec_core.errors import InvalidInputError


class Aggregator(StrEnum):
    FEDAVG = "fedavg"
    MEDIAN = "median"
    TRIMMED_MEAN = "trimmed_mean"
    KRUM = "krum"


#: short labels for tables and legends
AGGREGATOR_LABELS = {
    Aggregator.FEDAVG: "FedAvg (weighted mean)",
    Aggregator.MEDIAN: "coordinate-wise median",
    Aggregator.TRIMMED_MEAN: "trimmed mean",
    Aggregator.KRUM: "Krum",
}


@dataclass(frozen=True)
class Aggregate:
    """The aggregated update and, for Krum, which client's update was picked (its index in the input)."""

    update: torch.Tensor
    chosen: int | None = None


def _stack(updates: Sequence[torch.Tensor]) -> torch.Tensor:
    if not updates:
        raise InvalidInputError("Nothing to aggregate: no client sent an update.")
    size = updates[0].numel()
    if any(u.ndim != 1 or u.numel() != size for u in updates):
        raise InvalidInputError("Aggregation takes flat update vectors, all of one length.")
    return torch.stack(list(updates))  # (n, d)


def weighted_mean(updates: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """FedAvg: Σ_k w_k Δ_k / Σ_k w_k."""
    stacked = _stack(updates)
    w = torch.as_tensor(list(weights), dtype=stacked.dtype)
    if w.numel() != stacked.shape[0] or not bool((w >= 0).all()) or float(w.sum()) <= 0:
        raise InvalidInputError(
            f"FedAvg needs one non-negative weight per update, not all zero; got {list(weights)}."
        )
    return (w[:, None] * stacked).sum(0) / w.sum()


def coordinate_median(updates: Sequence[torch.Tensor]) -> torch.Tensor:
    """The coordinate-wise median (mean of the two middle values for an even count)."""
    ordered = _stack(updates).sort(dim=0).values
    n = ordered.shape[0]
    if n % 2:
        return ordered[n // 2]
    return (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def trimmed_mean(updates: Sequence[torch.Tensor], beta: float) -> torch.Tensor:
    """The coordinate-wise β-trimmed mean: drop ⌊βn⌋ values at each end of every coordinate, average the rest."""
    if not 0 <= beta < 0.5:
        raise InvalidInputError(f"The trimmed share β must be in [0, 0.5), got {beta!r}.")
    ordered = _stack(updates).sort(dim=0).values
    n = ordered.shape[0]
    cut = int(beta * n)
    return ordered[cut : n - cut].mean(0)


def krum_scores(updates: Sequence[torch.Tensor], f: int) -> torch.Tensor:
    """Each update's Krum score: the sum of squared L2 distances to its n − f − 2 nearest other updates."""
    stacked = _stack(updates).to(torch.float64)
    n = stacked.shape[0]
    neighbours = n - f - 2
    if f < 0 or n <= 2 * f + 2:  # Blanchard et al.'s condition (it also leaves n − f − 2 >= 1 neighbours)
        raise InvalidInputError(
            f"Krum with f = {f} assumed Byzantine clients needs more than 2f + 2 = {2 * f + 2} updates per round; "
            f"this round has {n}. Lower f or pick more clients per round."
        )
    distances = torch.cdist(stacked, stacked) ** 2  # (n, n)
    distances.fill_diagonal_(float("inf"))  # an update is not its own neighbour
    return distances.sort(dim=1).values[:, :neighbours].sum(1)


def krum(updates: Sequence[torch.Tensor], f: int) -> Aggregate:
    """Krum: the update with the lowest score (ties: the lowest index)."""
    chosen = int(torch.argmin(krum_scores(updates, f)))
    return Aggregate(update=updates[chosen].clone(), chosen=chosen)


def aggregate(
    kind: Aggregator | str,
    updates: Sequence[torch.Tensor],
    *,
    weights: Sequence[float] | None = None,
    beta: float = 0.1,
    f: int = 1,
) -> Aggregate:
    """Aggregate flat client updates by rule `kind` (FedAvg uses `weights`, trimmed mean `beta`, Krum `f`)."""
    try:
        kind = Aggregator(kind)
    except ValueError:
        raise InvalidInputError(
            f"Unknown aggregator {kind!r}; choose one of {', '.join(a.value for a in Aggregator)}."
        ) from None
    rules: dict[Aggregator, Callable[[], Aggregate]] = {
        Aggregator.FEDAVG: lambda: Aggregate(weighted_mean(updates, weights or [1.0] * len(updates))),
        Aggregator.MEDIAN: lambda: Aggregate(coordinate_median(updates)),
        Aggregator.TRIMMED_MEAN: lambda: Aggregate(trimmed_mean(updates, beta)),
        Aggregator.KRUM: lambda: krum(updates, f),
    }
    return rules[kind]()
