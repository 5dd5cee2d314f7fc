"""The ownership study: does a suspect model carry the owner's trigger-set watermark (Adi et al. 2018;
`dlsec_core.theft.watermark`)?

The owner is a stored model trained with the `watermark` recipe: its keys are re-created from the seed in its
recipe parameters. Null models (same dataset, architecture and training settings as the owner, standard recipe,
their own seeds) are trained here and never stored: their key agreement is what chance looks like. The owner
itself is verified too, as the positive control. Optionally the suspect is fine-tuned on clean data and pruned,
and each modified copy is verified again (does the watermark survive what a thief would do?).

Events: one payload per null model (`type` "null"), the verdicts (`type` "verdict", `role` "owner" or
"suspect"), and one per survival check (`type` "survival").
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from dlsec_core.config import param
from dlsec_core.data.builtin import Dataset
from dlsec_core.errors import InvalidInputError
from dlsec_core.evaluation.metrics import accuracy
from dlsec_core.models.spec import ModelSpec
from dlsec_core.store import ModelCard, Store
from dlsec_core.studies.base import Study, StudyConfig, StudyEvent, StudyOutcome
from dlsec_core.text import plural
from dlsec_core.theft.watermark import (
    WATERMARK_TAG,
    FineTuneConfig,
    TriggerSet,
    WatermarkRecipe,
    WatermarkVerdict,
    fine_tune,
    key_accuracy,
    prune,
    pruned_fraction,
    verify,
)
from dlsec_core.training.loop import RunProgress, TrainConfig, TrainResult, in_series, train
from dlsec_core.training.recipes import StandardRecipe
from dlsec_core.workflows import resolve_dataset

MAX_NULL_MODELS = 50


@dataclass(frozen=True, kw_only=True)
class OwnershipStudyConfig(StudyConfig):
    """Which suspect to check against which watermarked owner, with how many null models, and which survival
    checks (fine-tuning epochs, 0 = none; pruned fractions, none = no pruning)."""

    owner_id: str
    suspect_id: str
    null_models: int = param(
        4, "Null models (trained without the watermark)", min=1, max=MAX_NULL_MODELS, step=1
    )
    null_epochs: int | None = param(None, "Null models' epochs (empty = the owner's)", min=1, max=500, step=1)
    alpha: float = param(
        1e-3, "Significance level α", min=0.0, min_open=True, max=0.5, step=1e-4,
        help="The watermark counts as found when the binomial p-value is below α and no null model did as well.",
    )  # fmt: skip
    fine_tune_epochs: int = param(0, "Fine-tuning epochs (0 = no fine-tuning check)", min=0, max=100, step=1)
    fine_tune_lr: float = param(1e-3, "Fine-tuning learning rate", min=0.0, min_open=True, max=1.0, step=1e-4)
    prune: list[float] = field(default_factory=list)
    seed: int = param(0, "Seed (null models, fine-tuning)", min=0, max=2**31 - 1, step=1)

    def cross_check(self, problems: list[str]) -> None:
        for what, value in (("owner", self.owner_id), ("suspect", self.suspect_id)):
            if not (isinstance(value, str) and value):
                problems.append(f"Pick a stored {what} model (got {value!r}).")
        fractions = self.prune
        if not isinstance(fractions, list) or not all(
            isinstance(f, int | float) and not isinstance(f, bool) and math.isfinite(f) and 0.0 < f < 1.0
            for f in fractions
        ):
            problems.append(f"The pruned fractions are a list of numbers in (0, 1), got {fractions!r}.")

    def null_seeds(self, owner_seed: int | None) -> list[int]:
        """The null models' training seeds: from `seed` up, skipping the owner's (its initialisation)."""
        seeds: list[int] = []
        s = self.seed
        while len(seeds) < self.null_models:
            if s != owner_seed:
                seeds.append(s)
            s += 1
        return seeds


@dataclass(frozen=True, kw_only=True)
class NullModel:
    seed: int
    test_accuracy: float
    key_accuracy: float

    def to_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "test_accuracy": self.test_accuracy, "key_accuracy": self.key_accuracy}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NullModel:
        return cls(**data)


@dataclass(frozen=True, kw_only=True)
class SurvivalCheck:
    """The suspect after one modification a thief might make, verified again."""

    kind: str  # "fine-tune" | "prune"
    description: str  # e.g. "fine-tuned 2 epochs on 1,437 clean training images (Adam, lr 0.001)"
    parameter: float  # epochs, or the pruned fraction
    test_accuracy: float
    verdict: WatermarkVerdict

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "description": self.description, "parameter": self.parameter,
            "test_accuracy": self.test_accuracy, "verdict": self.verdict.to_json(),
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SurvivalCheck:
        return cls(**{**data, "verdict": WatermarkVerdict.from_json(data["verdict"])})


@dataclass(frozen=True, kw_only=True)
class OwnershipStudyResult:
    owner_id: str
    owner_name: str
    suspect_id: str
    suspect_name: str
    keys: int
    key_kind: str
    null_models: list[NullModel]
    owner: WatermarkVerdict  # the positive control: the owner's own model
    suspect: WatermarkVerdict
    suspect_accuracy: float
    survival: list[SurvivalCheck] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "owner_id": self.owner_id, "owner_name": self.owner_name, "suspect_id": self.suspect_id,
            "suspect_name": self.suspect_name, "keys": self.keys, "key_kind": self.key_kind,
            "null_models": [n.to_json() for n in self.null_models], "owner": self.owner.to_json(),
            "suspect": self.suspect.to_json(), "suspect_accuracy": self.suspect_accuracy,
            "survival": [s.to_json() for s in self.survival],
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OwnershipStudyResult:
        return cls(**{
            **data, "null_models": [NullModel.from_json(n) for n in data["null_models"]],
            "owner": WatermarkVerdict.from_json(data["owner"]), "suspect": WatermarkVerdict.from_json(data["suspect"]),
            "survival": [SurvivalCheck.from_json(s) for s in data["survival"]],
        })  # fmt: skip


def watermark_of(card: ModelCard) -> WatermarkRecipe:
    """The owner's watermark recipe (its keys' seed and count), from its card."""
    if card.recipe != WatermarkRecipe.name:
        raise InvalidInputError(
            f"Model {card.name!r} was trained with the {card.recipe!r} recipe, not {WatermarkRecipe.name!r}: "
            "it has no watermark keys to verify against."
        )
    return WatermarkRecipe(**card.recipe_params)


def _check_same_task(owner: ModelSpec, suspect: ModelSpec, suspect_name: str) -> None:
    if tuple(owner.input_shape) != tuple(suspect.input_shape) or owner.num_classes != suspect.num_classes:
        raise InvalidInputError(
            f"The suspect {suspect_name!r} takes {tuple(suspect.input_shape)} inputs with {suspect.num_classes} "
            f"classes, the owner's model {tuple(owner.input_shape)} with {owner.num_classes}: it cannot be a copy."
        )


def modified_copies(
    suspect: nn.Module, data: Dataset, config: OwnershipStudyConfig
) -> Iterator[tuple[str, str, float, nn.Module]]:
    """(kind, description, parameter, modified copy) for each survival check, one copy made at a time."""
    if config.fine_tune_epochs > 0:
        tune = FineTuneConfig(epochs=config.fine_tune_epochs, lr=config.fine_tune_lr, seed=config.seed)
        what = (
            f"fine-tuned {plural(tune.epochs, 'epoch')} on {len(data.y_train):,} clean training images "
            f"(Adam, lr {tune.lr:g}, batch {tune.batch_size})"
        )
        yield "fine-tune", what, float(tune.epochs), fine_tune(suspect, data.x_train, data.y_train, tune)
    for fraction in config.prune:
        copy = prune(suspect, fraction)
        what = (
            f"pruned: the {fraction:.0%} smallest weights set to 0 (global magnitude pruning), "
            f"{pruned_fraction(copy):.1%} zero"
        )
        yield "prune", what, float(fraction), copy


def train_null_models(
    spec: ModelSpec,
    data: Dataset,
    base: TrainConfig,
    config: OwnershipStudyConfig,
    seeds: list[int],
    triggers: TriggerSet,
    total: int,
) -> Generator[StudyEvent, None, list[NullModel]]:
    """Train the null models (the owner's settings, standard recipe, their own seeds); each one's key accuracy."""
    nulls: list[NullModel] = []
    for index, seed in enumerate(seeds):
        settings = {**base.to_dict(), "seed": seed, "epochs": config.null_epochs or base.epochs}
        run = in_series(
            train(spec, data, TrainConfig(**settings), StandardRecipe()),
            index=index, total=total, label=f"null {index + 1}",
        )  # fmt: skip
        while True:
            try:
                item: RunProgress = next(run)
            except StopIteration as stop:
                trained: TrainResult = stop.value
                break
            yield StudyEvent(item.progress, f"null model {index + 1}/{len(seeds)}, epoch {item.event.epoch}")
        nulls.append(
            NullModel(
                seed=seed,
                test_accuracy=trained.test_accuracy,
                key_accuracy=key_accuracy(trained.model, triggers),
            )
        )
        message = f"null model {index + 1} trained: {nulls[-1].key_accuracy:.0%} of the keys by chance"
        yield StudyEvent((index + 1) / total, message, {"type": "null", **nulls[-1].to_json()})
    return nulls


class OwnershipStudy(Study[OwnershipStudyConfig]):
    name = "ownership"
    title = "Ownership (watermark verification)"
    config_type = OwnershipStudyConfig
    #: watermarking is not an ATLAS technique: a local tag (see `dlsec_core.theft.watermark.WATERMARK_TAG`)
    atlas_ids: ClassVar[tuple[str, ...]] = (WATERMARK_TAG,)

    def title_for(self, config: OwnershipStudyConfig) -> str:
        return f"Ownership: watermark of {config.owner_id} in {config.suspect_id} ({plural(config.null_models, 'null model')})"

    def model_ids(self, config: OwnershipStudyConfig) -> list[str]:
        return list(dict.fromkeys([config.owner_id, config.suspect_id]))

    def execute(
        self, store: Store, config: OwnershipStudyConfig
    ) -> Generator[StudyEvent, None, StudyOutcome]:
        owner_card = store.get_card(config.owner_id)
        recipe = watermark_of(owner_card)
        suspect_card = store.get_card(config.suspect_id)
        _check_same_task(owner_card.spec, suspect_card.spec, suspect_card.name)
        data = resolve_dataset(store, owner_card.dataset)
        spec = owner_card.spec
        triggers: TriggerSet = recipe.trigger_set(spec.input_shape, spec.num_classes)
        base = TrainConfig(**owner_card.train_config) if owner_card.train_config else TrainConfig()
        seeds = config.null_seeds(owner_card.seed)
        checks = config.fine_tune_epochs > 0, len(config.prune)
        total = len(seeds) + 1 + int(checks[0]) + checks[1]

        nulls = yield from train_null_models(spec, data, base, config, seeds, triggers, total)
        null_acc = [n.key_accuracy for n in nulls]
        owner_model, _ = store.load_model(owner_card.id)
        owner_verdict = verify(
            owner_model, triggers, null_acc, num_classes=spec.num_classes, alpha=config.alpha
        )
        yield StudyEvent(
            len(seeds) / total,
            f"owner (positive control): {owner_verdict.describe()}",
            {"type": "verdict", "role": "owner", **owner_verdict.to_record()},
        )
        suspect, _ = store.load_model(suspect_card.id)
        verdict = verify(suspect, triggers, null_acc, num_classes=spec.num_classes, alpha=config.alpha)
        suspect_accuracy = accuracy(suspect, data.x_test, data.y_test)
        done = len(seeds) + 1
        yield StudyEvent(
            done / total, verdict.describe(), {"type": "verdict", "role": "suspect", **verdict.to_record()}
        )

        survival: list[SurvivalCheck] = []
        for kind, what, parameter, copy in modified_copies(suspect, data, config):
            check = SurvivalCheck(
                kind=kind, description=what, parameter=parameter, test_accuracy=accuracy(copy, data.x_test, data.y_test),
                verdict=verify(copy, triggers, null_acc, num_classes=spec.num_classes, alpha=config.alpha),
            )  # fmt: skip
            survival.append(check)
            done += 1
            yield StudyEvent(
                done / total, f"{what}: {check.verdict.describe()}", {"type": "survival", **check.to_json()}
            )

        result = OwnershipStudyResult(
            owner_id=owner_card.id, owner_name=owner_card.name, suspect_id=suspect_card.id,
            suspect_name=suspect_card.name, keys=len(triggers), key_kind=str(recipe.key_kind), null_models=nulls,
            owner=owner_verdict, suspect=verdict, suspect_accuracy=suspect_accuracy, survival=survival,
        )  # fmt: skip
        return StudyOutcome(result=result.to_json())
