"""The study contract: a frozen config that round-trips through JSON, and a generator that reports progress.

A study's `execute(store, config)` yields `StudyEvent`s (progress in [0, 1], a message, and optionally a JSON
payload that is stored as one of the run's events, e.g. one point of a curve) and returns a `StudyOutcome` (the
JSON result and the ids of any models it wrote). It never prints and never touches the runs table: the executor
does that, so the same study runs in a worker process, on Ray, or in a notebook (`run_study`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from dlsec_core.config import Config, param
from dlsec_core.errors import DlsecError
from dlsec_core.store import Store
from dlsec_core.training.loop import run_to_end

MAX_SEED = 2**63 - 1  # torch.manual_seed's largest non-negative seed


def seed_param(label: str = "Seed", help: str = "") -> Any:
    """The `seed` field every study has: an integer from 0 to 2^63 - 1."""
    return param(0, label, min=0, max=MAX_SEED, step=1, help=help)


def param_like(cls: type, name: str, default: Any = dataclasses.MISSING) -> Any:
    """A `param` field with the label, help, range and options of field `name` of config `cls` (and its default
    unless given): a study setting that is passed on to that config is declared once, where the config is."""
    source = next(f for f in dataclasses.fields(cls) if f.name == name)
    meta = {k: v for k, v in source.metadata.items() if k != "label"}
    return param(
        source.default if default is dataclasses.MISSING else default, source.metadata["label"], **meta
    )


@dataclass(frozen=True, kw_only=True)
class StudyConfig(Config):
    """Base of every study config: plain JSON fields only (str, int, float, bool, None, lists and dicts).

    `to_json` / `from_json` come from `Config` (unknown and missing fields are one error naming them all). Scalar
    settings are declared with `param(...)` and validated from their metadata, as every other config; lists and
    dicts (model ids, a nested algorithm's settings) are checked in `check_plain` with the helpers below, and
    rules between fields (an attack built from its name and params, ε values against its norm) in `cross_check`,
    so one error names every problem. `cross_check` runs even when a field is bad (`cross_check_always`): each
    rule first checks the fields it reads (an attack's params only when the attack's name is valid). Nothing here
    looks anything up in the store: `execute` does.
    """

    cross_check_always: ClassVar[bool] = True


def check_model_ids(model_ids: Any, problems: list[str], *, most: int = 16) -> None:
    """A config's list of stored model ids: 1 to `most` non-empty ids, each once."""
    if not isinstance(model_ids, list) or not all(isinstance(i, str) and i for i in model_ids):
        problems.append(f"the models (`model_ids`) are a list of stored model ids, got {model_ids!r}")
    elif not 1 <= len(model_ids) <= most:
        problems.append(f"pick 1 to {most} models (`model_ids`), got {len(model_ids)}")
    elif len(set(model_ids)) < len(model_ids):
        problems.append("pick each model (`model_ids`) once")


def check_name(value: Any, what: str, field_name: str, problems: list[str]) -> None:
    """A required name (a stored model id, a dataset name) is non-empty text; whether it exists is `execute`'s
    business (a store lookup, not a field rule)."""
    if isinstance(value, str) and not value:  # not text at all: the field's own check names it
        problems.append(f"{what} (`{field_name}`) must be given, got {value!r}")


def built(problems: list[str], field_name: str, factory: Callable[..., Any], params: Any) -> Any:
    """`factory(**params)` for a dict of nested settings (an attack's, LiRA's, ...), or None with its problems
    appended (also when `params` is not a JSON object); a nested error keeps its own list of every bad setting.
    When `factory` is a dataclass, settings it does not have are named beside the bad values of those it has."""
    if not isinstance(params, dict):
        problems.append(f"`{field_name}` is a JSON object of settings, got {params!r}")
        return None
    unknown: list[str] = []
    if dataclasses.is_dataclass(factory):
        known = {f.name for f in dataclasses.fields(factory) if f.init}
        unknown = sorted(set(params) - known)
        if unknown:
            problems.append(f"{field_name}: no setting(s) {', '.join(map(repr, unknown))}")
            params = {k: v for k, v in params.items() if k in known}
    try:
        built_value = factory(**params)
    except DlsecError as err:
        problems.append(f"{field_name}: {str(err).rstrip('.')}")
        return None
    except TypeError as err:  # get_attack(name, **{"bogus": 1}) and the like
        name = re.search(r"argument '(\w+)'", str(err))
        problems.append(f"{field_name}: no setting {name[1]!r}" if name else f"{field_name}: {err}")
        return None
    return None if unknown else built_value


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
