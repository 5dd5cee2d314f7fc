"""The ownership study: does a suspect model carry the owner's trigger-set watermark (Adi et al. 2018;
`dlsec_core.theft.watermark`)?

The owner is a stored model trained with the `watermark` recipe: its keys are re-created from the seed in its
recipe parameters. Null models (same dataset, architecture and training settings as the owner, standard recipe,
their own seeds) are trained here and never stored: their key agreement is what chance looks like. The owner
itself is verified too, as the positive control. Optionally the suspect is fine-tuned on clean data and pruned,
and each modified copy is verified again (does the watermark survive what a thief would do?). Optionally the
owner's model is also stolen through a prediction API (full probabilities) with each chosen extraction attack, and
each stolen copy is verified: the literature finds extraction usually loses the watermark (Lukas et al. 2022,
"SoK: How Robust is Image Classification Deep Neural Network Watermarking?"), since the keys are out of the
distribution the thief queries.

Fine-tuning on `held-out` data uses a seeded half of the test split (images the owner never trained on, as a
thief's own data would be); that copy's accuracy is then measured on the other half.

Events: one payload per null model (`type` "null"), the verdicts (`type` "verdict", `role` "owner" or
"suspect"), and one per survival check (`type` "survival", `kind` "fine-tune", "prune" or "extraction").
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

import torch
from torch import nn

from dlsec_core.config import param
from dlsec_core.data.builtin import Dataset
from dlsec_core.errors import InvalidInputError
from dlsec_core.evaluation.metrics import accuracy
from dlsec_core.models.spec import ModelSpec
from dlsec_core.store import ModelCard, Store
from dlsec_core.studies.base import Study, StudyConfig, StudyEvent, StudyOutcome
from dlsec_core.text import plural
from dlsec_core.theft.api import Oracle, PredictionAPI
from dlsec_core.theft.extraction import EXTRACTION_ATTACKS, ExtractionAttack, Judge, PoolKind, query_pool
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
from dlsec_core.training.loop import TrainConfig, TrainResult, in_series, relay, train
from dlsec_core.training.recipes import StandardRecipe
from dlsec_core.workflows import resolve_dataset

MAX_NULL_MODELS = 50
THIEF = "thief"


class TuneData(StrEnum):
    """What the thief fine-tunes on: the owner's own training split, or held-out images (half the test split)."""

    TRAIN = "train"
    HELD_OUT = "held-out"


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
    fine_tune_data: TuneData = param(
        TuneData.HELD_OUT, "Fine-tuning data",
        help="held-out: half the test split (the owner never trained on it), accuracy on the other half; "
        "train: the owner's training split.",
    )  # fmt: skip
    prune: list[float] = field(default_factory=list)
    # extraction attacks that steal the owner's model (full probabilities, pool: its training split, labels
    # withheld), each copy verified; the surrogate has the owner's architecture
    steal: list[str] = field(default_factory=list)
    steal_queries: int = param(1000, "Queries per stolen copy", min=1, max=100_000, step=1)
    steal_epochs: int = param(10, "Stolen copies' training epochs", min=1, max=500, step=1)
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
        attacks = self.steal
        if not isinstance(attacks, list) or not all(
            isinstance(a, str) and a in EXTRACTION_ATTACKS for a in attacks
        ):
            problems.append(
                f"`steal` lists extraction attacks ({', '.join(EXTRACTION_ATTACKS)}), got {attacks!r}."
            )

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

    kind: str  # "fine-tune" | "prune" | "extraction"
    description: str  # e.g. "fine-tuned 2 epochs on 1,437 clean training images (Adam, lr 0.001)"
    parameter: float  # epochs, the pruned fraction, or the queries an extraction spent
    test_accuracy: float
    verdict: WatermarkVerdict
    fidelity: float | None = None  # a stolen copy's agreement with the owner's model on the test split
    label: str = ""  # a short name for tables: "knockoff, 1,000 queries", "pruned 70 %", ...

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "description": self.description, "parameter": self.parameter,
            "test_accuracy": self.test_accuracy, "verdict": self.verdict.to_json(), "fidelity": self.fidelity,
            "label": self.label,
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


def held_out_halves(data: Dataset, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Test-split indexes in two seeded halves: the thief's fine-tuning data, and where that copy is scored."""
    order = torch.randperm(len(data.y_test), generator=torch.Generator().manual_seed(seed))
    half = len(order) // 2
    return order[:half], order[half:]


def modified_copies(
    suspect: nn.Module, data: Dataset, config: OwnershipStudyConfig
) -> Iterator[tuple[str, str, str, float, nn.Module, tuple[torch.Tensor, torch.Tensor]]]:
    """(kind, label, description, parameter, modified copy, (x, y) it is scored on) per survival check, one copy
    made at a time."""
    test = (data.x_test, data.y_test)
    if config.fine_tune_epochs > 0:
        tune = FineTuneConfig(epochs=config.fine_tune_epochs, lr=config.fine_tune_lr, seed=config.seed)
        x, y, scored = data.x_train, data.y_train, test
        source, where = "clean training images", "the test split"
        if config.fine_tune_data == TuneData.HELD_OUT:
            mine, rest = held_out_halves(data, config.seed)
            x, y, scored = data.x_test[mine], data.y_test[mine], (data.x_test[rest], data.y_test[rest])
            source, where = "held-out images (half the test split)", f"the other {len(rest):,} test images"
        what = (
            f"fine-tuned {plural(tune.epochs, 'epoch')} on {len(y):,} {source} "
            f"(Adam, lr {tune.lr:g}, batch {tune.batch_size}); accuracy on {where}"
        )
        label = f"fine-tuned {plural(tune.epochs, 'epoch')} ({config.fine_tune_data})"
        yield "fine-tune", label, what, float(tune.epochs), fine_tune(suspect, x, y, tune), scored
    for fraction in config.prune:
        copy = prune(suspect, fraction)
        what = (
            f"pruned: the {fraction:.0%} smallest weights set to 0 (global magnitude pruning), "
            f"{pruned_fraction(copy):.1%} zero"
        )
        yield "prune", f"pruned {fraction:.0%}", what, float(fraction), copy, test


def steal_attack(name: str, spec: ModelSpec, config: OwnershipStudyConfig) -> ExtractionAttack:
    """The extraction attack `name` with the owner's architecture and `steal_epochs` where it trains a surrogate."""
    settings = {"arch": spec.arch, "epochs": config.steal_epochs}
    known = {f.name for f in dataclasses.fields(EXTRACTION_ATTACKS[name])}
    return EXTRACTION_ATTACKS.build(name, **{k: v for k, v in settings.items() if k in known})


def stolen_copies(
    owner: nn.Module, spec: ModelSpec, data: Dataset, config: OwnershipStudyConfig
) -> Generator[StudyEvent, None, list[tuple[str, str, float, float, nn.Module]]]:
    """Steal the owner's model with each attack in `config.steal`; (label, description, queries, fidelity, copy)."""
    judge = Judge.of(owner, data.x_test, data.y_test)
    out = []
    for name in config.steal:
        attack = steal_attack(name, spec, config)
        api = PredictionAPI(owner, spec, seed=config.seed)
        api.register(THIEF, budget=config.steal_queries)
        gen = torch.Generator().manual_seed(config.seed)
        pool = query_pool(PoolKind.SAME, data, attack.pool_size([config.steal_queries]), gen,
                          up_to=attack.pool_choice([config.steal_queries])) if attack.uses_pool else None  # fmt: skip
        work = attack.run(Oracle(api, THIEF), judge, [config.steal_queries], pool=pool, seed=config.seed)
        said = f"stealing with {attack.title}"  # relay drains the attack within this iteration
        result = yield from relay(work, lambda event: StudyEvent(-1.0, f"{said}: {event.message}"))  # noqa: B023
        point = result.points[-1]
        what = (
            f"stolen with {result.description} {point.queries:,} queries to the owner's model (full probabilities); "
            f"fidelity {point.fidelity:.1%}"
        )
        out.append((f"stolen: {name}, {point.queries:,} queries", what, float(point.queries), point.fidelity,
                    result.surrogate))  # fmt: skip
    return out


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
        said = f"null model {index + 1}/{len(seeds)}"  # relay drains the training within this iteration
        trained: TrainResult = yield from relay(
            run,
            lambda item: StudyEvent(item.progress, f"{said}, epoch {item.event.epoch}"),  # noqa: B023
        )
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
        total = len(seeds) + 1 + int(checks[0]) + checks[1] + len(config.steal)

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

        def checked(check: SurvivalCheck) -> StudyEvent:
            survival.append(check)
            return StudyEvent(
                (done + len(survival)) / total, f"{check.label}: {check.verdict.describe()}",
                {"type": "survival", **check.to_json()},
            )  # fmt: skip

        for kind, label, what, parameter, copy, (x, y) in modified_copies(suspect, data, config):
            yield checked(SurvivalCheck(
                kind=kind, label=label, description=what, parameter=parameter, test_accuracy=accuracy(copy, x, y),
                verdict=verify(copy, triggers, null_acc, num_classes=spec.num_classes, alpha=config.alpha),
            ))  # fmt: skip
        if config.steal:
            copies = yield from relay(
                stolen_copies(owner_model, spec, data, config),
                lambda event: StudyEvent((done + len(survival)) / total, event.message),
            )
            for label, what, queries, fidelity, copy in copies:
                yield checked(SurvivalCheck(
                    kind="extraction", label=label, description=what, parameter=queries, fidelity=fidelity,
                    test_accuracy=accuracy(copy, data.x_test, data.y_test),
                    verdict=verify(copy, triggers, null_acc, num_classes=spec.num_classes, alpha=config.alpha),
                ))  # fmt: skip

        result = OwnershipStudyResult(
            owner_id=owner_card.id, owner_name=owner_card.name, suspect_id=suspect_card.id,
            suspect_name=suspect_card.name, keys=len(triggers), key_kind=str(recipe.key_kind), null_models=nulls,
            owner=owner_verdict, suspect=verdict, suspect_accuracy=suspect_accuracy, survival=survival,
        )  # fmt: skip
        return StudyOutcome(result=result.to_json())
