"""The train study: train a model with a recipe on a built-in or uploaded dataset and store it."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from dlsec_core.catalog import RECIPES, get_recipe
from dlsec_core.config import param
from dlsec_core.models.architectures import ARCHITECTURES
from dlsec_core.store import Store
from dlsec_core.studies.base import Study, StudyConfig, StudyEvent, StudyOutcome, built, check_name
from dlsec_core.training.loop import TrainConfig, TrainEvent
from dlsec_core.training.recipes import Recipe
from dlsec_core.workflows import train_and_store


@dataclass(frozen=True, kw_only=True)
class TrainStudyConfig(StudyConfig):
    """What to train. `train` holds `TrainConfig` fields; the ones left out take the recipe's suggested values."""

    title: ClassVar[str] = "Training"

    dataset: str = param(
        "mnist5k", "Dataset", help="A built-in or added dataset (its existence is checked on run)."
    )
    arch: str = param("cnn", "Architecture", options=tuple(ARCHITECTURES))
    name: str | None = param(None, "Name (empty = the architecture's)")
    recipe: str = param("standard", "Recipe", options=tuple(RECIPES))
    recipe_params: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    hparams: dict[str, Any] = field(default_factory=dict)

    def check_plain(self, problems: list[str]) -> None:
        super().check_plain(problems)
        check_name(self.dataset, "Dataset", "dataset", problems)
        if not isinstance(self.hparams, dict):
            problems.append(f"`hparams` is a JSON object, got {self.hparams!r}")

    def cross_check(self, problems: list[str]) -> None:  # a bad config fails at submission, not in a worker
        super().cross_check(problems)
        if self.recipe not in RECIPES:
            return  # named by its field check
        built(problems, "recipe_params", lambda **kw: get_recipe(self.recipe, **kw), self.recipe_params)
        built(problems, "train", lambda **kw: TrainConfig.suggested(RECIPES[self.recipe], **kw), self.train)

    def build(self) -> tuple[Recipe, TrainConfig]:
        recipe = get_recipe(self.recipe, **self.recipe_params)
        return recipe, TrainConfig.suggested(RECIPES[self.recipe], **self.train)

    @property
    def seed(self) -> int:
        return self.build()[1].seed


class TrainStudy(Study[TrainStudyConfig]):
    name = "train"
    title = "Training"
    #: what its recipes apply: model hardening (adversarial, Gaussian-noise training), differential privacy
    atlas_ids = ("AML.M0003", "DLSEC.differential-privacy", "DLSEC.no-mitigation")
    config_type = TrainStudyConfig

    def title_for(self, config: TrainStudyConfig) -> str:
        recipe, train = config.build()
        return f"Train {config.name or config.arch} ({config.arch} on {config.dataset}, {recipe.name}, seed {train.seed})"

    def execute(self, store: Store, config: TrainStudyConfig) -> Generator[StudyEvent, None, StudyOutcome]:
        recipe, train = config.build()
        work = train_and_store(
            store, dataset=config.dataset, arch=config.arch, name=config.name, config=train, recipe=recipe,
            hparams=config.hparams or None,
        )  # fmt: skip
        spent = ""
        while True:
            try:
                event: TrainEvent = next(work)
            except StopIteration as stop:
                card = stop.value
                return StudyOutcome(
                    result={"model_id": card.id, "name": card.name, "clean_accuracy": card.clean_accuracy,
                            "train_seconds": card.train_seconds},
                    model_ids=[card.id],
                )  # fmt: skip
            payload = {"type": "train", "kind": event.kind, "epochs": event.epochs, "total_steps": event.total_steps,
                       **event.to_record()}  # fmt: skip
            if (
                event.metrics.get("epsilon") is not None
            ):  # only epoch events carry ε: keep it for the steps after
                spent = f" · ε = {event.metrics['epsilon']:.3g} ({str(event.metrics.get('accountant', '')).upper()})"
            yield StudyEvent(event.progress, f"epoch {event.epoch}/{event.epochs}{spent}", payload)
