"""The membership study: a membership attack (loss threshold or LiRA) on stored models, each on its own data,
LiRA's shadows trained like each model (its stored settings and recipe, DP-SGD included).

`membership_study` is the generator; `MembershipStudy` is the registered study (a run executed by a worker) that
stores a typed `MembershipStudyResult` and each model's scores as `scores-<i>.npy`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from dlsec_core.catalog import get_recipe
from dlsec_core.config import param
from dlsec_core.errors import InvalidInputError
from dlsec_core.privacy.membership import (
    MEMBERSHIP_ATTACKS,
    MIN_CANDIDATES,
    LiraConfig,
    MembershipResult,
    RocMetrics,
    ShadowEvent,
    _check_candidates,
    lira_attack,
    loss_threshold_attack,
)
from dlsec_core.privacy_spend import PrivacySpend, privacy_label
from dlsec_core.store import ModelCard, Store
from dlsec_core.studies.artifacts import npy_bytes
from dlsec_core.studies.base import Study, StudyConfig, StudyEvent, StudyOutcome, built, check_model_ids
from dlsec_core.text import plural
from dlsec_core.training.loop import TrainConfig, relay
from dlsec_core.training.recipes import Recipe, StandardRecipe
from dlsec_core.workflows import resolve_dataset


@dataclass(frozen=True, kw_only=True, eq=False)
class MembershipEvent:
    """Progress of a membership study over several models.

    `shadow` is set while LiRA trains shadow models; `result` is set on the one event that finishes a model.
    """

    model_id: str
    model_name: str
    model_index: int  # 1-based
    models: int
    shadow: ShadowEvent | None = None
    result: MembershipResult | None = None

    @property
    def progress(self) -> float:
        within = 1.0 if self.result is not None else self.shadow.progress if self.shadow is not None else 0.0
        return (self.model_index - 1 + within) / self.models


def _training_of(card: ModelCard) -> tuple[TrainConfig, Recipe, str]:
    """How to train shadows like the stored model: its TrainConfig and recipe, or defaults for an upload."""
    if card.source == "uploaded":
        note = "; uploaded model: shadows use standard training with default settings, which may differ from its own"
        return TrainConfig(), StandardRecipe(), note
    try:
        config = TrainConfig(**card.train_config)
    except TypeError as err:
        raise InvalidInputError(
            f"The training settings stored with model {card.name!r} cannot be reused for shadow models: {err}."
        ) from err
    return config, get_recipe(card.recipe, **card.recipe_params), ""


def membership_study(
    store: Store,
    model_ids: Sequence[str],
    *,
    attack: str = "loss",
    n: int = 500,
    lira: LiraConfig | None = None,
) -> Generator[MembershipEvent, None, list[tuple[ModelCard, MembershipResult]]]:
    """Run one membership attack on stored models, each on its own dataset, yielding progress.

    Members are the first `n` images of each model's training split, non-members the first `n` of its test split.
    LiRA's shadows are trained like each model (its stored TrainConfig and recipe, DP-SGD included); an uploaded
    model has no recipe on record, so its shadows use standard training and default settings, as its result's
    description says. Everything is checked before the first model is attacked.

    Args:
        store: where the models live.
        model_ids: the models to attack, in order.
        attack: a key of `MEMBERSHIP_ATTACKS` ("loss" or "lira").
        n: members and non-members per model, from 10 to the smaller split's size.
        lira: LiRA's settings (default `LiraConfig()`); ignored by the loss attack.

    Returns:
        (card, result) per model, in the order given.
    """
    if attack not in MEMBERSHIP_ATTACKS:
        raise InvalidInputError(
            f"Unknown membership attack {attack!r}; choose one of {', '.join(MEMBERSHIP_ATTACKS)}."
        )
    ids = list(model_ids)
    if not ids:
        raise InvalidInputError("Choose at least one model to attack.")
    lira = lira or LiraConfig()
    plans = []
    for model_id in ids:
        card = store.get_card(model_id)
        data = resolve_dataset(store, card.dataset)
        _check_candidates(data, n, n)
        plans.append((card, data, _training_of(card) if attack == "lira" else None))

    results: list[tuple[ModelCard, MembershipResult]] = []
    for index, (card, data, training) in enumerate(plans, start=1):
        model, card = store.load_model(card.id)
        base = MembershipEvent(model_id=card.id, model_name=card.name, model_index=index, models=len(plans))
        if training is None:
            result = loss_threshold_attack(
                model, data.x_train[:n], data.y_train[:n], data.x_test[:n], data.y_test[:n]
            )
        else:
            config, recipe, note = training
            events = lira_attack(
                model, card.spec, data, config=config, recipe=recipe, lira=lira, n_members=n, n_nonmembers=n
            )
            # relay drains the shadows' training within this iteration
            result = yield from relay(events, lambda shadow: dataclasses.replace(base, shadow=shadow))  # noqa: B023
            if note:
                result = dataclasses.replace(result, description=result.description + note)
        results.append((card, result))
        yield dataclasses.replace(base, result=result)
    return results


# -- the registered study ------------------------------------------------------------------------------------
MAX_MODELS = 4  # the page's side-by-side


@dataclass(frozen=True, kw_only=True)
class MembershipStudyConfig(StudyConfig):
    """Which models to attack, with which attack, on how many members and non-members; `lira` holds `LiraConfig`
    fields (the ones left out take their defaults; ignored by the loss attack)."""

    title: ClassVar[str] = "Membership study"

    model_ids: list[str]
    attack: str = param("loss", "Attack", options=tuple(MEMBERSHIP_ATTACKS))
    n: int = param(
        500, "Members and non-members per model", min=MIN_CANDIDATES, step=50,
        help="The first n training images (members) and n test images (non-members); at most the smaller split.",
    )  # fmt: skip
    lira: dict[str, Any] = field(default_factory=dict)

    def check_plain(self, problems: list[str]) -> None:
        super().check_plain(problems)
        check_model_ids(self.model_ids, problems, most=MAX_MODELS)
        built(problems, "lira", LiraConfig, self.lira)

    def lira_config(self) -> LiraConfig:
        return LiraConfig(**self.lira)


@dataclass(frozen=True, kw_only=True)
class MembershipModelResult:
    """One attacked model: who it is (as it was when attacked), the attack's description and its ROC."""

    model_id: str
    model_name: str
    privacy: PrivacySpend | None  # what the model spent, None = trained without DP
    uploaded: bool  # an imported model: its ε is what its file recorded
    attack: str
    description: str  # names the attack and its strength
    roc: RocMetrics
    member_accuracy: float
    nonmember_accuracy: float
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def auc(self) -> float:
        return self.roc.auc

    def privacy_label(self, *, short: bool = False) -> str:
        return privacy_label(self.privacy, uploaded=self.uploaded, short=short)

    def to_record(self) -> dict[str, Any]:
        """A flat row without arrays (as `MembershipResult.to_record`)."""
        return {
            "attack": self.attack, "description": self.description, **self.roc.to_record(),
            "member_accuracy": self.member_accuracy, "nonmember_accuracy": self.nonmember_accuracy, **self.details,
        }  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id, "model_name": self.model_name,
            "privacy": None if self.privacy is None else self.privacy.to_record(), "uploaded": self.uploaded,
            "attack": self.attack, "description": self.description, "roc": self.roc.to_json(),
            "member_accuracy": self.member_accuracy, "nonmember_accuracy": self.nonmember_accuracy,
            "details": self.details,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MembershipModelResult:
        return cls(**{
            **data, "privacy": None if data["privacy"] is None else PrivacySpend.from_record(data["privacy"]),
            "roc": RocMetrics.from_json(data["roc"]),
        })  # fmt: skip

    @classmethod
    def of(cls, card: ModelCard, result: MembershipResult) -> MembershipModelResult:
        return cls(
            model_id=card.id, model_name=card.name, privacy=card.privacy, uploaded=card.source == "uploaded",
            attack=result.attack, description=result.description, roc=result.roc,
            member_accuracy=result.member_accuracy, nonmember_accuracy=result.nonmember_accuracy,
            details=dict(result.details),
        )  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class MembershipStudyResult:
    """One result per attacked model, in the order given."""

    models: list[MembershipModelResult]

    def to_json(self) -> dict[str, Any]:
        return {"models": [m.to_json() for m in self.models]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MembershipStudyResult:
        return cls(models=[MembershipModelResult.from_json(m) for m in data["models"]])


def progress_message(event: MembershipEvent) -> str:
    what = f"done, AUC {event.result.auc:.3f}" if event.result is not None else "attacking"
    if event.shadow is not None:
        sh = event.shadow
        what = f"shadow model {sh.index}/{sh.shadows}" + (" trained" if sh.kind == "shadow" else "")
    return f"model {event.model_index}/{event.models} ({event.model_name}): {what}"


class MembershipStudy(Study[MembershipStudyConfig]):
    name = "membership"
    title = "Membership inference"
    atlas_ids = ("AML.T0024.000", "AML.T0040")  # membership from the model's outputs (inference API)
    config_type = MembershipStudyConfig

    def title_for(self, config: MembershipStudyConfig) -> str:
        return f"Membership inference ({config.attack}) on {plural(len(config.model_ids), 'model')}"

    def model_ids(self, config: MembershipStudyConfig) -> list[str]:
        return list(config.model_ids)

    def seed(self, config: MembershipStudyConfig) -> int | None:
        return config.lira_config().seed if config.attack == "lira" else None

    def execute(
        self, store: Store, config: MembershipStudyConfig
    ) -> Generator[StudyEvent, None, StudyOutcome]:
        work = membership_study(
            store, config.model_ids, attack=config.attack, n=config.n, lira=config.lira_config()
        )
        models: list[MembershipModelResult] = []
        artifacts: dict[str, bytes] = {}
        while True:
            try:
                event = next(work)
            except StopIteration:
                break
            payload = None
            if event.result is not None:
                card = store.get_card(event.model_id)
                models.append(MembershipModelResult.of(card, event.result))
                artifacts[f"scores-{event.model_index - 1}.npy"] = npy_bytes(event.result.scores)
                payload = {"type": "model", **models[-1].to_json()}
            elif event.shadow is not None and event.shadow.kind == "shadow":
                payload = {"type": "shadow", "model_id": event.model_id, **event.shadow.to_record()}
            yield StudyEvent(event.progress, progress_message(event), payload)
        return StudyOutcome(result=MembershipStudyResult(models=models).to_json(), artifacts=artifacts)
