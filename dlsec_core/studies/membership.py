"""The membership study: a membership attack (loss threshold or LiRA) on stored models, each on its own data,
LiRA's shadows trained like each model (its stored settings and recipe, DP-SGD included)."""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Sequence
from dataclasses import dataclass

from dlsec_core.catalog import get_recipe
from dlsec_core.errors import InvalidInputError
from dlsec_core.privacy.membership import (
    MEMBERSHIP_ATTACKS,
    LiraConfig,
    MembershipResult,
    ShadowEvent,
    _check_candidates,
    lira_attack,
    loss_threshold_attack,
)
from dlsec_core.store import ModelCard, Store
from dlsec_core.training.loop import TrainConfig
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
            try:
                while True:
                    try:
                        shadow = next(events)
                    except StopIteration as stop:
                        result = stop.value
                        break
                    yield dataclasses.replace(base, shadow=shadow)
            finally:
                events.close()
            if note:
                result = dataclasses.replace(result, description=result.description + note)
        results.append((card, result))
        yield dataclasses.replace(base, result=result)
    return results
