"""The audit study: a one-run privacy audit (Steinke, Nasr, Jagielski 2023; `dlsec_core.privacy.audit`) of a
training recipe and, optionally, of the positive control (standard training on the same canaries and coin flips).

Nothing is stored in the model store: the audited models exist only to be measured. The run keeps the numbers
(`AuditStudyResult`) and, per audited run i, `run-<i>-scores.npy` (m,) float64 and `run-<i>-included.npy` (m,)
bool as artifacts (the histograms of the page).
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy.typing as npt

from dlsec_core.catalog import RECIPES, get_recipe
from dlsec_core.config import param
from dlsec_core.data.builtin import Dataset
from dlsec_core.models.architectures import ARCHITECTURES
from dlsec_core.models.spec import ModelSpec
from dlsec_core.privacy.audit import AuditBound, AuditConfig, AuditResult, audit_privacy
from dlsec_core.store import Store
from dlsec_core.studies.artifacts import npy_bytes, read_arrays
from dlsec_core.studies.base import Study, StudyConfig, StudyEvent, StudyOutcome, built, check_name
from dlsec_core.training.loop import RunProgress, TrainConfig, in_series
from dlsec_core.training.recipes import Recipe, StandardRecipe
from dlsec_core.workflows import resolve_dataset, spec_for

CONTROL_LABEL = "positive control: standard training (no clipping, no noise)"


def audit_study(
    spec: ModelSpec,
    dataset: Dataset,
    train_config: TrainConfig,
    recipe: Recipe,
    *,
    config: AuditConfig | None = None,
    control: bool = True,
) -> Generator[RunProgress | tuple[str, AuditResult], None, list[tuple[str, AuditResult]]]:
    """Audit `recipe` and, with `control`, the same training without DP (standard recipe: no clipping, no noise),
    on the same canaries and coin flips: the control shows what the audit can detect when nothing protects.

    Yields each run's training progress and, as each audit finishes, its (label, result).
    """
    config = config or AuditConfig()
    runs: list[tuple[str, Recipe]] = [(recipe.title or recipe.name, recipe)]
    if control and recipe.name != StandardRecipe.name:
        runs.append((CONTROL_LABEL, StandardRecipe()))
    results: list[tuple[str, AuditResult]] = []
    for index, (label, rec) in enumerate(runs):
        run = audit_privacy(spec, dataset, train_config, rec, config=config)
        results.append((label, (yield from in_series(run, index=index, total=len(runs), label=label))))
        yield results[-1]
    return results


@dataclass(frozen=True, kw_only=True)
class AuditStudyConfig(StudyConfig):
    """What to audit: a recipe (with `recipe_params`) trained on `dataset` with `arch`; `train` holds `TrainConfig`
    fields (the ones left out take the recipe's suggested values), `audit` holds `AuditConfig` fields."""

    title: ClassVar[str] = "Audit study"

    dataset: str = param(
        "mnist5k", "Dataset", help="A built-in or added dataset (its existence is checked on run)."
    )
    arch: str = param("cnn", "Architecture", options=tuple(ARCHITECTURES))
    recipe: str = param("dp-sgd", "Recipe under audit", options=tuple(RECIPES))
    recipe_params: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)
    control: bool = param(
        True,
        "Positive control",
        help="Also audit standard training (no clipping, no noise) on the same canaries.",
    )

    def check_plain(self, problems: list[str]) -> None:
        super().check_plain(problems)
        check_name(self.dataset, "Dataset", "dataset", problems)
        built(problems, "audit", AuditConfig, self.audit)

    def cross_check(self, problems: list[str]) -> None:
        super().cross_check(problems)
        if self.recipe not in RECIPES:
            return  # named by its field check
        built(problems, "recipe_params", lambda **kw: get_recipe(self.recipe, **kw), self.recipe_params)
        built(problems, "train", lambda **kw: TrainConfig.suggested(RECIPES[self.recipe], **kw), self.train)

    def build(self) -> tuple[Recipe, TrainConfig, AuditConfig]:
        recipe = get_recipe(self.recipe, **self.recipe_params)
        return recipe, TrainConfig.suggested(RECIPES[self.recipe], **self.train), AuditConfig(**self.audit)


@dataclass(frozen=True, kw_only=True)
class AuditedRun:
    label: str  # the recipe's title, or the positive control's
    bound: AuditBound

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "bound": self.bound.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuditedRun:
        return cls(label=data["label"], bound=AuditBound.from_json(data["bound"]))


@dataclass(frozen=True, kw_only=True)
class AuditStudyResult:
    dataset: str
    arch: str
    runs: list[AuditedRun]  # the recipe under audit, then the positive control (if asked for)

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "arch": self.arch, "runs": [r.to_json() for r in self.runs]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuditStudyResult:
        return cls(
            dataset=data["dataset"], arch=data["arch"], runs=[AuditedRun.from_json(r) for r in data["runs"]]
        )

    @staticmethod
    def arrays(paths: Iterable[Path]) -> list[tuple[npt.NDArray[Any], npt.NDArray[Any]]]:
        """(scores, included) per audited run, in order, from the run's artifact files."""
        arrays = read_arrays(paths)
        count = sum(1 for k in arrays if k.endswith("-scores"))
        return [(arrays[f"run-{i}-scores"], arrays[f"run-{i}-included"]) for i in range(count)]


def progress_message(item: RunProgress) -> str:
    e = item.event
    return f"run {item.index + 1}/{item.total} ({item.label}), epoch {e.epoch}/{e.epochs}"


class AuditStudy(Study[AuditStudyConfig]):
    name = "audit"
    title = "Privacy audit"
    #: measures differential privacy's ε by membership inference on canaries
    atlas_ids = ("DLSEC.differential-privacy", "AML.T0024.000")
    config_type = AuditStudyConfig

    def title_for(self, config: AuditStudyConfig) -> str:
        return f"Privacy audit ({config.build()[2].canaries} canaries, {config.recipe}, {config.arch} on {config.dataset})"

    def seed(self, config: AuditStudyConfig) -> int | None:
        return config.build()[1].seed

    def execute(self, store: Store, config: AuditStudyConfig) -> Generator[StudyEvent, None, StudyOutcome]:
        recipe, train, audit = config.build()
        data = resolve_dataset(store, config.dataset)
        work = audit_study(
            spec_for(data, config.arch), data, train, recipe, config=audit, control=config.control
        )
        runs: list[AuditedRun] = []
        artifacts: dict[str, bytes] = {}
        progress = 0.0
        while True:
            try:
                item = next(work)
            except StopIteration:
                break
            if isinstance(item, RunProgress):
                progress = item.progress
                yield StudyEvent(progress, progress_message(item))
                continue
            label, result = item
            i = len(runs)
            runs.append(AuditedRun(label=label, bound=result.bound))
            artifacts[f"run-{i}-scores.npy"] = npy_bytes(result.scores.numpy())
            artifacts[f"run-{i}-included.npy"] = npy_bytes(result.included.numpy())
            yield StudyEvent(progress, f"audited {label}", {"type": "audit", **runs[-1].to_json()})
        result_json = AuditStudyResult(dataset=config.dataset, arch=config.arch, runs=runs).to_json()
        return StudyOutcome(result=result_json, artifacts=artifacts)
