"""The sweep study: accuracy vs. ε for stored models under one attack (optionally behind an input defense),
with the honesty checks of every curve (see `workflows.sweep_models`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from dlsec_core.attacks.base import ATTACKS, Attack, get_attack
from dlsec_core.config import param
from dlsec_core.defenses.transforms import TRANSFORMS, InputTransform, get_transform
from dlsec_core.errors import DlsecError
from dlsec_core.evaluation.sweep import check_eps_values
from dlsec_core.store import Store
from dlsec_core.studies.base import (
    Study,
    StudyConfig,
    StudyEvent,
    StudyOutcome,
    built,
    check_model_ids,
    seed_param,
)
from dlsec_core.workflows import CurveFindings, ModelSweepPoint, sweep_models

MAX_IMAGES = 100_000
MAX_MODELS = 16


@dataclass(frozen=True, kw_only=True)
class SweepStudyConfig(StudyConfig):
    """Accuracy vs. ε of `model_ids` under `attack` (built from `attack_params`; ε comes from `eps`), optionally
    behind the input transform `defense` (built from `defense_params`)."""

    title: ClassVar[str] = "Robustness sweep"

    model_ids: list[str]
    attack: str = param("fgsm", "Attack", options=tuple(ATTACKS))
    attack_params: dict[str, Any] = field(default_factory=dict)
    eps: list[float] = field(default_factory=lambda: [0.0, 0.05, 0.1, 0.2, 0.3])
    n_images: int = param(
        500, "Test images", min=1, max=MAX_IMAGES, help="The first n images of the test split."
    )
    seed: int = seed_param()
    defense: str | None = param(None, "Input defense", options=tuple(TRANSFORMS))
    defense_params: dict[str, Any] = field(default_factory=dict)
    sanity_checks: bool = param(
        True, "Sanity checks", help="The extra attacks that check each curve's honesty (slower)."
    )
    #: a transfer attack's surrogate: a stored model (the attack's `surrogate` field holds a module, not JSON)
    surrogate_id: str | None = param(None, "Surrogate model (a transfer attack's; a stored model id)")

    def check_plain(self, problems: list[str]) -> None:
        super().check_plain(problems)
        check_model_ids(self.model_ids, problems, most=MAX_MODELS)

    def cross_check(self, problems: list[str]) -> None:
        super().cross_check(problems)
        defense = self.defense
        if defense is not None and defense in TRANSFORMS:
            built(problems, "defense_params", lambda **kw: get_transform(defense, **kw), self.defense_params)
        if self.attack not in ATTACKS:
            return  # named by its field check
        attack = built(
            problems, "attack_params", lambda **kw: get_attack(self.attack, **kw), self.attack_params
        )
        if attack is not None:
            try:
                object.__setattr__(self, "eps", check_eps_values(self.eps, attack.norm))
            except (DlsecError, TypeError, ValueError) as err:
                problems.append(f"eps: {str(err).rstrip('.')}")

    def build(self) -> tuple[Attack, InputTransform | None]:
        attack = get_attack(self.attack, **self.attack_params)
        defense = get_transform(self.defense, **self.defense_params) if self.defense else None
        return attack, defense


def attack_params(attack: Attack) -> dict[str, Any]:
    """An attack's hyperparameters as JSON for a `SweepStudyConfig` (ε comes from the sweep; models by id)."""
    return {
        f.name: getattr(attack, f.name)
        for f in dataclasses.fields(attack)
        if f.init and f.name != "eps" and f.metadata.get("kind") != "model"
    }


class SweepStudy(Study[SweepStudyConfig]):
    name = "sweep"
    title = "Robustness sweep"
    #: evasion by every registered attack (white-box, Square, transfer), behind an optional input restoration
    atlas_ids = ("AML.T0015", "AML.T0043.000", "AML.T0043.001", "AML.T0043.002", "AML.M0010")
    config_type = SweepStudyConfig

    def title_for(self, config: SweepStudyConfig) -> str:
        attack, defense = config.build()
        models = f"{len(config.model_ids)} models" if len(config.model_ids) > 1 else config.model_ids[0]
        return f"Sweep {models}: {attack.title}" + (f" vs {defense.describe()}" if defense else "")

    def model_ids(self, config: SweepStudyConfig) -> list[str]:
        return list(config.model_ids) + ([config.surrogate_id] if config.surrogate_id else [])

    def execute(self, store: Store, config: SweepStudyConfig) -> Generator[StudyEvent, None, StudyOutcome]:
        attack, defense = config.build()
        if config.surrogate_id:
            attack = attack.with_params(surrogate=store.load_model(config.surrogate_id)[0])
        curves = len(config.model_ids) * (1 if defense is None else 3)  # undefended, adaptive, naive
        total, points, checked = curves * len(config.eps), 0, 0
        share = 0.8  # of the progress for the curves; the honesty checks of every curve come after them
        work = sweep_models(
            store, config.model_ids, attack, config.eps, n_images=config.n_images, seed=config.seed,
            defense=defense, sanity_checks=config.sanity_checks,
        )  # fmt: skip
        while True:
            try:
                item = next(work)
            except StopIteration as stop:
                report = stop.value
                return StudyOutcome(result={"records": report.records, "findings": report.findings})
            if isinstance(item, ModelSweepPoint):
                points += 1
                rec = item.to_record()
                message = (
                    f"curves done; honesty checks of curve 1/{curves}"
                    if points == total
                    else f"{rec['model']}: ε {rec['eps']:g}"
                )
                yield StudyEvent(share * points / total, message, {"type": "point", **rec})
            elif isinstance(item, CurveFindings):
                checked += 1
                yield StudyEvent(
                    min(share + (1 - share) * checked / curves, 0.99),
                    f"honesty checks of curve {min(checked + 1, curves)}/{curves}",
                    {"type": "findings", "curve": item.model_name, "findings": item.to_records()},
                )  # fmt: skip
