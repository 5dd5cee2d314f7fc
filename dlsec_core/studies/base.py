"""The study contract: a frozen config that round-trips through JSON, and a generator that reports progress.

A study's `execute(store, config)` yields `StudyEvent`s (progress in [0, 1], a message, and optionally a JSON
payload that is stored as one of the run's events, e.g. one point of a curve) and returns a `StudyOutcome` (the
JSON result and the ids of any models it wrote). It never prints and never touches the runs table: the executor
does that, so the same study runs in a worker process, on Ray, or in a notebook (`run_study`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from dlsec_core.config import Config
from dlsec_core.store import Store
from dlsec_core.training.loop import run_to_end


@dataclass(frozen=True, kw_only=True)
class StudyConfig(Config):
    """Base of every study config: plain JSON fields only (str, int, float, bool, None, lists and dicts).

    `to_json` / `from_json` come from `Config` (unknown and missing fields are one error naming them all). Fields
    declared with `param(...)` are validated from their metadata; plain fields are checked by the subclass's own
    `__post_init__` (which then need not call `super().__post_init__()` unless it has `param` fields).
    """


C = TypeVar("C", bound=StudyConfig)


@dataclass(frozen=True)
class StudyEvent:
    """Progress of a study. `payload` (plain JSON) is stored as one of the run's events; None = progress only."""

    progress: float
    message: str
    payload: dict[str, Any] | None = None


@dataclass(frozen=True)
class StudyOutcome:
    """What a finished study returns: its JSON result, the ids of the models it stored (if any), and artifact
    files (name -> bytes: images, arrays) that the executor writes beside the run, atomically, before it is done."""

    result: dict[str, Any]
    model_ids: list[str] = field(default_factory=list)
    artifacts: dict[str, bytes] = field(default_factory=dict)


class Study(Generic[C]):
    """Base class. Subclasses set the class variables and implement `execute` (and `title_for`)."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    config_type: ClassVar[type[StudyConfig]] = StudyConfig
    #: MITRE ATLAS technique and mitigation ids (or `DLSEC.` local tags) its runs can demonstrate: see
    #: dlsec_core/atlas.py.
    atlas_ids: ClassVar[tuple[str, ...]] = ()

    def title_for(self, config: C) -> str:
        """A one-line label for the run list."""
        return self.title

    def model_ids(self, config: C) -> list[str]:
        """The stored models the study reads (for 'this model's runs')."""
        return []

    def seed(self, config: C) -> int | None:
        return getattr(config, "seed", None)

    def execute(self, store: Store, config: C) -> Generator[StudyEvent, None, StudyOutcome]:
        raise NotImplementedError


def run_study(
    study: Study[C],
    store: Store,
    config: C,
    on_event: Callable[[StudyEvent], None] | None = None,
) -> StudyOutcome:
    """Execute a study in this process, without a run record (notebooks, tests)."""
    return run_to_end(study.execute(store, config), on_event)
