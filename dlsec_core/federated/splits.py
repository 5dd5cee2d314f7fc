"""Client splits of a dataset for simulated federated learning: IID, or non-IID by a Dirichlet prior per class.

The non-IID split is the one of Hsu, Qi and Brown (2019), "Measuring the effects of non-identical data distribution
for federated visual classification": for each class c, a vector of client shares p_c ~ Dir(α·1_K) is drawn and the
class's examples are dealt to the K clients in those proportions. Small α (0.1) gives clients that hold one or two
classes; large α (100) approaches the IID split. `ClientSplit.histogram` is the per-client class histogram the page
shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import torch

from dlsec_core.errors import InvalidInputError

MAX_CLIENTS = 1000


class SplitKind(StrEnum):
    IID = "iid"
    DIRICHLET = "dirichlet"


@dataclass(frozen=True, eq=False)
class ClientSplit:
    """Which training examples each client holds.

    `indices[k]` are client k's indices into the training set (int64, sorted); `histogram[k, c]` counts client k's
    examples of class c (shape (K, classes)); its sum is the dataset size: every example is dealt exactly once.
    """

    kind: SplitKind
    alpha: float | None  # the Dirichlet concentration (None for IID)
    indices: tuple[torch.Tensor, ...]
    histogram: np.ndarray  # (K, classes) int64

    @property
    def clients(self) -> int:
        return len(self.indices)

    @property
    def sizes(self) -> list[int]:
        return [int(i.numel()) for i in self.indices]

    def skew(self) -> float:
        """Mean total-variation distance between each client's class distribution and the whole dataset's (0 for a
        perfectly IID split, towards 1 when each client holds classes the others lack); empty clients count 1."""
        total = self.histogram.sum(axis=0)
        overall = total / max(1, int(total.sum()))
        distances = []
        for row in self.histogram:
            n = int(row.sum())
            distances.append(1.0 if n == 0 else 0.5 * float(np.abs(row / n - overall).sum()))
        return float(np.mean(distances))

    def describe(self) -> str:
        how = "IID" if self.kind is SplitKind.IID else f"non-IID (Dirichlet α = {self.alpha:g})"
        return f"{self.clients} clients, {how}, {min(self.sizes)}–{max(self.sizes)} examples each"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind), "alpha": self.alpha, "sizes": self.sizes,
            "histogram": self.histogram.tolist(), "skew": self.skew(),
        }  # fmt: skip


def split_clients(
    labels: torch.Tensor,
    clients: int,
    *,
    kind: SplitKind | str = SplitKind.IID,
    alpha: float = 0.5,
    num_classes: int | None = None,
    seed: int = 0,
) -> ClientSplit:
    """Deal the training examples (their labels `labels`, shape (N,)) to `clients` clients.

    IID: a seeded permutation cut into K near-equal parts. Dirichlet: per class, shares p_c ~ Dir(α·1_K), the
    class's (shuffled) examples cut at the cumulative shares. A client may end up with few or no examples at small
    α; FedAvg skips a selected client that holds none.

    Raises:
        InvalidInputError: K outside 1..min(N, MAX_CLIENTS), α not positive, or an unknown kind.
    """
    try:
        kind = SplitKind(kind)
    except ValueError:
        raise InvalidInputError(
            f"Unknown client split {kind!r}; choose one of {', '.join(s.value for s in SplitKind)}."
        ) from None
    n = int(labels.numel())
    if not isinstance(clients, int) or isinstance(clients, bool) or not 1 <= clients <= min(n, MAX_CLIENTS):
        raise InvalidInputError(f"Clients must be from 1 to {min(n, MAX_CLIENTS)}, got {clients!r}.")
    if kind is SplitKind.DIRICHLET and not (
        isinstance(alpha, int | float) and np.isfinite(alpha) and alpha > 0
    ):
        raise InvalidInputError(f"The Dirichlet α must be a positive number, got {alpha!r}.")
    y = labels.detach().cpu().numpy().astype(np.int64)
    classes = int(num_classes if num_classes is not None else (y.max() + 1 if n else 0))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xFED]))
    parts: list[list[np.ndarray]] = [[] for _ in range(clients)]
    if kind is SplitKind.IID:
        for k, chunk in enumerate(np.array_split(rng.permutation(n), clients)):
            parts[k].append(chunk)
    else:
        for c in range(classes):
            members = rng.permutation(np.flatnonzero(y == c))
            shares = rng.dirichlet(np.full(clients, float(alpha)))
            cuts = np.round(np.cumsum(shares)[:-1] * members.size).astype(np.int64)
            for k, chunk in enumerate(np.split(members, cuts)):
                parts[k].append(chunk)
    indices = tuple(torch.from_numpy(np.sort(np.concatenate(p)).astype(np.int64)) for p in parts)
    histogram = np.stack([np.bincount(y[i.numpy()], minlength=classes)[:classes] for i in indices]).astype(
        np.int64
    )
    return ClientSplit(
        kind=kind, alpha=None if kind is SplitKind.IID else float(alpha), indices=indices, histogram=histogram
    )
