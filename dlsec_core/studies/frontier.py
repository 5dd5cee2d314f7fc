"""The privacy-utility frontier: test accuracy against ε over stored DP runs, and a sweep that fills it in
(`FrontierStudy`, the registered study: a run that trains and stores one DP model per target ε).

Every point carries the accountant and δ that produced its ε (points from different accountants are never
silently mixed: the chart groups by accountant). The non-private baseline is a model of the same architecture
on the same dataset trained with the standard recipe (ε = ∞).
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from dlsec_core.config import param
from dlsec_core.errors import DlsecError, InvalidInputError
from dlsec_core.models.architectures import ARCHITECTURES
from dlsec_core.privacy.dp_sgd import DPSGDRecipe
from dlsec_core.store import ModelCard, Store
from dlsec_core.studies.base import (
    Study,
    StudyConfig,
    StudyEvent,
    StudyOutcome,
    built,
    check_name,
    param_like,
)
from dlsec_core.text import plural
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

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> FrontierPoint:
        """The inverse of `to_record` (a stored run's point)."""
        return cls(
            model_id=data["model_id"], name=data["model"], accuracy=data["test_accuracy"],
            epsilon=math.inf if data["epsilon"] is None else data["epsilon"], delta=data["delta"],
            accountant=data["accountant"], noise_multiplier=data["noise_multiplier"],
        )  # fmt: skip


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


def check_targets(targets: Sequence[float]) -> list[float]:
    """The target ε values, sorted and without repeats; 1 to MAX_SWEEP_RUNS values in (0, 100]."""
    if isinstance(targets, str) or not all(
        isinstance(t, int | float) and not isinstance(t, bool) for t in targets
    ):
        raise InvalidInputError(f"The target ε values are numbers, got {targets!r}.")
    clean = sorted({float(t) for t in targets})
    if not clean or len(clean) > MAX_SWEEP_RUNS:
        raise InvalidInputError(f"Give 1 to {MAX_SWEEP_RUNS} target ε values, got {len(clean)}.")
    if any(not (math.isfinite(t) and 0 < t <= 100) for t in clean):
        raise InvalidInputError(
            f"Target ε values must be in (0, 100], got {', '.join(f'{t:g}' for t in clean)}."
        )
    return clean


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
    clean = check_targets(targets)
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


# -- the registered study ------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class FrontierStudyConfig(StudyConfig):
    """One DP-SGD model per target ε (σ calibrated by `accountant`), plus the non-private baseline when none is
    stored and `baseline`; `train` holds `TrainConfig` fields (the ones left out take DP-SGD's suggested values)."""

    title: ClassVar[str] = "Frontier sweep"

    dataset: str = param(
        "mnist5k", "Dataset", help="A built-in or added dataset (its existence is checked on run)."
    )
    arch: str = param("cnn", "Architecture", options=tuple(ARCHITECTURES))
    targets: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0, 4.0, 8.0])
    train: dict[str, Any] = field(default_factory=dict)
    accountant: str = param_like(DPSGDRecipe, "accountant")
    max_grad_norm: float = param_like(DPSGDRecipe, "max_grad_norm")
    delta: float = param_like(DPSGDRecipe, "delta")
    baseline: bool = param(
        True, "Non-private baseline", help="Also train the standard-recipe model (ε = ∞) when none is stored."
    )

    def check_plain(self, problems: list[str]) -> None:
        super().check_plain(problems)
        check_name(self.dataset, "Dataset", "dataset", problems)
        try:
            check_targets(self.targets)
        except (DlsecError, TypeError) as err:
            problems.append(f"targets: {str(err).rstrip('.')}")
        built(problems, "train", lambda **kw: TrainConfig.suggested(DPSGDRecipe, **kw), self.train)

    def train_config(self) -> TrainConfig:
        return TrainConfig.suggested(DPSGDRecipe, **self.train)


@dataclass(frozen=True, kw_only=True)
class FrontierStudyResult:
    """The points the sweep added (each a model it stored), in the order they landed."""

    dataset: str
    arch: str
    points: list[FrontierPoint]

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "arch": self.arch, "points": [p.to_record() for p in self.points]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FrontierStudyResult:
        points = [FrontierPoint.from_record(p) for p in data["points"]]
        return cls(dataset=data["dataset"], arch=data["arch"], points=points)


class FrontierStudy(Study[FrontierStudyConfig]):
    name = "frontier"
    title = "Privacy-utility frontier"
    atlas_ids = ("DLSEC.differential-privacy",)  # ATLAS has no entry for differential privacy
    config_type = FrontierStudyConfig

    def title_for(self, config: FrontierStudyConfig) -> str:
        targets = plural(len(check_targets(config.targets)), "ε value")
        return f"Privacy-utility sweep ({targets}, {config.arch} on {config.dataset})"

    def seed(self, config: FrontierStudyConfig) -> int | None:
        return config.train_config().seed

    def execute(self, store: Store, config: FrontierStudyConfig) -> Generator[StudyEvent, None, StudyOutcome]:
        work = frontier_sweep(
            store, dataset=config.dataset, arch=config.arch, targets=config.targets, config=config.train_config(),
            accountant=config.accountant, max_grad_norm=config.max_grad_norm, delta=config.delta,
            baseline=config.baseline,
        )  # fmt: skip
        points: list[FrontierPoint] = []
        progress = 0.0
        while True:
            try:
                item = next(work)
            except StopIteration:
                break
            if isinstance(item, FrontierPoint):
                points.append(item)
                yield StudyEvent(progress, f"stored {item.name}", {"type": "point", **item.to_record()})
                continue
            progress, e = item.progress, item.event
            yield StudyEvent(
                progress, f"run {item.index + 1}/{item.total} ({item.label}), epoch {e.epoch}/{e.epochs}"
            )
        result = FrontierStudyResult(dataset=config.dataset, arch=config.arch, points=points)
        return StudyOutcome(result=result.to_json(), model_ids=[p.model_id for p in points])
