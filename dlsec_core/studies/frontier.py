"""The privacy-utility frontier: test accuracy against ε over stored DP runs, and a sweep that fills it in.

Every point carries the accountant and δ that produced its ε (points from different accountants are never
silently mixed: the chart groups by accountant). The non-private baseline is a model of the same architecture
on the same dataset trained with the standard recipe (ε = ∞).
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

from dlsec_core.errors import InvalidInputError
from dlsec_core.privacy.dp_sgd import DPSGDRecipe
from dlsec_core.store import ModelCard, Store
from dlsec_core.training.loop import RunProgress, TrainConfig, in_series
from dlsec_core.training.recipes import Recipe, StandardRecipe
from dlsec_core.workflows import train_and_store

MAX_SWEEP_RUNS = 12


@dataclass(frozen=True, kw_only=True)
class FrontierPoint:
    """One stored model on the frontier; `epsilon` is math.inf for the non-private baseline."""

    model_id: str
    name: str
    accuracy: float
    epsilon: float
    delta: float | None
    accountant: str | None
    noise_multiplier: float | None

    @property
    def private(self) -> bool:
        return math.isfinite(self.epsilon)

    def to_record(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id, "model": self.name, "test_accuracy": self.accuracy,
            "epsilon": self.epsilon if self.private else None, "delta": self.delta, "accountant": self.accountant,
            "noise_multiplier": self.noise_multiplier,
        }  # fmt: skip


def point_of(card: ModelCard) -> FrontierPoint | None:
    """A stored model as a frontier point: DP runs by their last epoch's ε, standard runs as the baseline."""
    if card.clean_accuracy is None:
        return None
    if card.recipe == "standard":
        return FrontierPoint(
            model_id=card.id, name=card.name, accuracy=card.clean_accuracy, epsilon=math.inf, delta=None,
            accountant=None, noise_multiplier=None,
        )  # fmt: skip
    spend = card.privacy
    if card.recipe != "dp-sgd" or spend is None:  # imported copies of DP models would repeat their originals
        return None
    return FrontierPoint(
        model_id=card.id, name=card.name, accuracy=card.clean_accuracy, epsilon=spend.epsilon, delta=spend.delta,
        accountant=spend.accountant, noise_multiplier=spend.noise_multiplier,
    )  # fmt: skip


def frontier_points(store: Store, dataset: str, arch: str) -> list[FrontierPoint]:
    """All stored DP and standard models of `arch` on `dataset`, sorted by ε (baselines last)."""
    points = [
        p
        for c in store.list_models(dataset=dataset)
        if c.spec.arch == arch and (p := point_of(c)) is not None
    ]
    return sorted(points, key=lambda p: p.epsilon)


def frontier_sweep(
    store: Store,
    *,
    dataset: str,
    arch: str,
    targets: Sequence[float],
    config: TrainConfig,
    accountant: str = "rdp",
    max_grad_norm: float = 1.0,
    delta: float = 1e-5,
    baseline: bool = True,
) -> Generator[RunProgress | FrontierPoint, None, list[FrontierPoint]]:
    """Train one DP model per target ε (σ calibrated for it) and, if none is stored yet, the non-private baseline.

    Yields the training progress of each run and a `FrontierPoint` as each model lands in the store.
    """
    clean = sorted({float(t) for t in targets})
    if not clean or len(clean) > MAX_SWEEP_RUNS:
        raise InvalidInputError(f"Give 1 to {MAX_SWEEP_RUNS} target ε values, got {len(clean)}.")
    if any(not (math.isfinite(t) and 0 < t <= 100) for t in clean):
        raise InvalidInputError(
            f"Target ε values must be in (0, 100], got {', '.join(f'{t:g}' for t in clean)}."
        )
    recipes: list[tuple[str, Recipe]] = [
        (f"ε ≤ {t:g}", DPSGDRecipe(
            target_epsilon=t, accountant=accountant, max_grad_norm=max_grad_norm, delta=delta
        ))
        for t in clean
    ]  # fmt: skip
    has_baseline = any(not p.private for p in frontier_points(store, dataset, arch))
    if baseline and not has_baseline:
        recipes.append(("no DP", StandardRecipe()))
    points: list[FrontierPoint] = []
    for index, (label, recipe) in enumerate(recipes):
        name = f"{arch}-{dataset}-" + (
            f"dp-eps{label.split()[-1]}" if recipe.name == "dp-sgd" else "standard"
        )
        run = train_and_store(
            store, dataset=dataset, arch=arch, name=f"{name}-s{config.seed}", config=config, recipe=recipe
        )
        card: ModelCard = yield from in_series(run, index=index, total=len(recipes), label=label)
        point = point_of(card)
        if point is not None:
            points.append(point)
            yield point
    return points
