"""Checkpoints: the lab verifies a lesson step from what the learner actually did.

- `min_flip_eps`: the learner's ε must flip the image (the attack at ε fools the model) while one slider step
  below does not: the lab runs the attack at both budgets on the same gallery image the Attack Lab shows.
- `run_done`: a finished run of the study by this participant on the lesson's models, config matching `where`.
- `model_stored`: a stored model matches the alias (the learner trained it).
- `choice`: the learner picked the right option of a question about what they saw.

Models are found by alias (`schema.ModelRef`): the newest stored model with the alias's recipe, architecture and
dataset (`find_model`), so a workshop's prepared models and a learner's own training both count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from dlsec_core.attacks.base import ATTACKS
from dlsec_core.attacks.norms import Norm
from dlsec_core.errors import DlsecError, InvalidInputError
from dlsec_core.lessons.schema import Check, Lesson, ModelRef, Step
from dlsec_core.runs import RunRecord, RunStatus, RunStore
from dlsec_core.store import ModelCard, Store
from dlsec_core.workflows import resolve_dataset

LOCAL_OWNER = "local"
"""The participant of a lab without a room: every run in the store is theirs."""

ANY = "*"
"""A `where` value meaning: the config field is set (not null, not empty)."""


@dataclass(frozen=True)
class CheckResult:
    """Whether a checkpoint passed, the sentence that says why, and what was checked (stored with the progress)."""

    passed: bool
    sentence: str
    evidence: dict[str, Any] = field(default_factory=dict)


def find_model(cards: Sequence[ModelCard], ref: ModelRef) -> ModelCard | None:
    """The newest stored model matching `ref` (recipe, architecture, dataset, and name when given), or None."""
    matching = [
        c for c in cards
        if c.recipe == ref.recipe and c.spec.arch == ref.arch and c.dataset == ref.dataset
        and (ref.name is None or c.name == ref.name)
    ]  # fmt: skip
    return max(matching, key=lambda c: c.created_at, default=None)


def resolve_models(store: Store, lesson: Lesson) -> dict[str, ModelCard | None]:
    """Every alias of a lesson -> its stored model, or None when none matches yet."""
    cards = store.list_models()
    return {alias: find_model(cards, ref) for alias, ref in lesson.models.items()}


def evaluate(
    store: Store,
    lesson: Lesson,
    step: Step,
    *,
    owner: str,
    answer: Any = None,
    models: dict[str, ModelCard | None] | None = None,
) -> CheckResult:
    """Verify one step for participant `owner` (their typed or picked `answer` where the check asks for one)."""
    models = resolve_models(store, lesson) if models is None else models
    check = step.check
    missing = [a for a in check.models if models.get(a) is None]
    if missing:
        ref = lesson.models[missing[0]]
        return CheckResult(
            False, f"There is no stored model for {missing[0]!r} yet ({ref.describe()}): train it first."
        )
    if check.kind == "choice":
        return _choice(check, answer)
    if check.kind == "model_stored":
        card = models[check.models[0]]
        assert card is not None
        return CheckResult(True, f"Model {card.name} ({card.id}) is stored.", {"model_id": card.id})
    if check.kind == "run_done":
        return _run_done(
            RunStore(store), check, owner, [m for a in check.models if (m := models[a]) is not None]
        )
    if check.kind == "min_flip_eps":
        card = models[check.models[0]]
        assert card is not None
        return _min_flip_eps(store, check, card, answer)
    raise InvalidInputError(f"Unknown check kind {check.kind!r}.")


def _choice(check: Check, answer: Any) -> CheckResult:
    options: list[str] = check.get("options")
    if answer is None:
        return CheckResult(False, "Pick an answer first.")
    right = int(check.get("answer"))
    if int(answer) == right:
        return CheckResult(True, "Right. " + str(check.get("explain", "")).strip(), {"answer": int(answer)})
    return CheckResult(
        False, f"Not quite: “{options[int(answer)]}” is not it. Look again at what the page shows."
    )


def _matches(config: dict[str, Any], where: dict[str, Any]) -> bool:
    for key, wanted in where.items():
        value = config.get(key)
        if wanted == ANY:
            if value in (None, "", [], {}):
                return False
        elif value != wanted:
            return False
    return True


def _owned(run: RunRecord, owner: str) -> bool:
    return owner == LOCAL_OWNER or run.owner == owner


def _run_done(runs: RunStore, check: Check, owner: str, cards: list[ModelCard]) -> CheckResult:
    study, where = str(check.get("study")), dict(check.get("where", {}))
    candidates = runs.list_runs(study=study, status=RunStatus.DONE, model_id=cards[0].id if cards else None)
    wanted = {c.id for c in cards}
    for run in candidates:
        if _owned(run, owner) and wanted <= set(run.model_ids) and _matches(run.config, where):
            return CheckResult(True, f"Found your finished run {run.id}: {run.title}.", {"run_id": run.id})
    on = f" on {', '.join(c.name + ' (' + c.id + ')' for c in cards)}" if cards else ""
    settings = f" with {', '.join(f'{k} = {v}' for k, v in where.items())}" if where else ""
    active = [
        r for r in runs.list_runs(study=study, model_id=cards[0].id if cards else None, limit=50)
        if r.is_active and _owned(r, owner)
    ]  # fmt: skip
    waiting = " One is still running: check again when it is done." if active else ""
    return CheckResult(False, f"No finished {study} run of yours{on}{settings} yet.{waiting}")


def flips(model: torch.nn.Module, attack_name: str, x: torch.Tensor, y: torch.Tensor, eps: float) -> bool:
    """Whether the untargeted L∞ attack with budget `eps` changes the model's answer on a correctly classified x."""
    attack = ATTACKS[attack_name](eps=eps, norm=Norm.LINF)
    result = attack(model, x, y, generator=torch.Generator().manual_seed(0))
    return bool(result.fooled[0])


def _min_flip_eps(store: Store, check: Check, card: ModelCard, answer: Any) -> CheckResult:
    if answer is None:
        return CheckResult(False, "Type the ε you found first.")
    try:
        eps = float(answer)
    except (TypeError, ValueError):
        return CheckResult(False, f"{answer!r} is not a number.")
    step = float(check.get("step", 0.005))
    attack = str(check.get("attack", "fgsm"))
    if not 0 < eps <= Norm.LINF.max_eps:
        return CheckResult(False, f"ε must be between 0 and {Norm.LINF.max_eps:g}, got {eps:g}.")
    try:
        model, _ = store.load_model(card.id, device=torch.device("cpu"))
        data = resolve_dataset(store, card.dataset)
        k, j = int(check.get("gallery_class")), int(check.get("gallery_index"))
        idx = data.test_indices_by_class()[k][j]
    except (DlsecError, KeyError, IndexError) as err:
        return CheckResult(False, f"The lesson's image cannot be loaded: {err}")
    x, y = data.x_test[idx : idx + 1], data.y_test[idx : idx + 1]
    with torch.no_grad():
        if int(model(x).argmax(1)[0]) != int(y[0]):
            return CheckResult(
                False,
                "The model already gets the lesson's image wrong: there is nothing to flip (ask the teacher for another image).",
            )
    at = flips(model, attack, x, y, eps)
    below = flips(model, attack, x, y, max(eps - step, 0.0))
    title = ATTACKS[attack].title
    evidence = {"eps": eps, "step": step, "fooled_at_eps": at, "fooled_below": below, "model_id": card.id}
    if at and not below:
        return CheckResult(
            True,
            f"Yes: {title} at ε = {eps:g} flips the digit, at ε = {max(eps - step, 0):g} it does not.",
            evidence,
        )
    if not at:
        return CheckResult(
            False, f"{title} at ε = {eps:g} does not flip this digit yet: try a larger ε.", evidence
        )
    return CheckResult(
        False,
        f"{title} already flips the digit at ε = {max(eps - step, 0):g}, one step below: look for a smaller ε.",
        evidence,
    )
