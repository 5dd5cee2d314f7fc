"""Workshop preparation: train (and scan) every model a class needs ahead of time, as runs, idempotently.

A workshop file (TOML, read with `tomllib`) lists the models::

    [workshop]
    title = "Adversarial ML in 90 minutes"
    scan = true                 # scan every model once trained (default true; per model: `scan = false`)
    scan_preset = "quick"       # the scan study's preset (dlsec_core.studies.scan.PRESETS)

    [[models]]
    name = "ws-cnn-standard"    # required, unique in the file
    dataset = "mnist5k"         # default "mnist5k"; arch default "cnn"; recipe default "standard"
    recipe = "fgsm-rs"
    recipe_params = { eps = 0.1 }
    train = { epochs = 3, seed = 0 }   # TrainConfig fields; the rest: the recipe's suggested values

`prepare` is idempotent: a stored model with the same name and the same training (dataset, architecture, recipe
and its settings, training settings, seed) is kept, a finished scan of it with the same preset and seed is kept,
and a run of either still queued or running (a previous `prepare` interrupted) is followed rather than queued
again. A stored model with the same name but other settings stops everything before anything is queued: rename
it in the file or delete the model. Every run is owned by the instructor (`dlsec_core.access.INSTRUCTOR`), so in a
workshop room no participant can delete the prepared models.
"""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlsec_core.access import INSTRUCTOR
from dlsec_core.data.builtin import DATASETS
from dlsec_core.errors import DlsecError, InvalidInputError
from dlsec_core.models.architectures import ARCHITECTURES
from dlsec_core.runs import RunRecord, RunStatus, RunStore
from dlsec_core.store import ModelCard, Store
from dlsec_core.studies.catalog import submit
from dlsec_core.studies.scan import PRESETS, ScanStudyConfig
from dlsec_core.studies.train import TrainStudyConfig

_WORKSHOP_KEYS = {"title", "scan", "scan_preset", "scan_seed"}
_MODEL_KEYS = {"name", "dataset", "arch", "recipe", "recipe_params", "train", "hparams", "scan"}


@dataclass(frozen=True, kw_only=True)
class WorkshopModel:
    """One model of a workshop: how to train it, and whether to scan it."""

    train: TrainStudyConfig  # its `name` is set
    scan: bool

    @property
    def name(self) -> str:
        return str(self.train.name)


@dataclass(frozen=True, kw_only=True)
class Workshop:
    """A parsed workshop file."""

    title: str
    models: tuple[WorkshopModel, ...]
    scan_preset: str = "quick"
    scan_seed: int = 0

    def scan_config(self, model_id: str) -> ScanStudyConfig:
        return ScanStudyConfig(model_id=model_id, preset=self.scan_preset, seed=self.scan_seed)


def _entry(raw: Any, i: int, scan_default: bool, problems: list[str]) -> WorkshopModel | None:
    where = f"[[models]] entry {i}"
    if not isinstance(raw, dict):
        problems.append(f"{where} is a table of settings, got {raw!r}")
        return None
    name = raw.get("name")
    if isinstance(name, str) and name.strip():
        where = f"model {name.strip()!r} ({where})"
    unknown = sorted(set(raw) - _MODEL_KEYS)
    if unknown:
        problems.append(f"{where} has unknown keys {unknown}; use {sorted(_MODEL_KEYS)}")
        return None
    if not isinstance(name, str) or not name.strip():
        problems.append(f"{where} needs a `name` (text)")
        return None
    scan = raw.get("scan", scan_default)
    if not isinstance(scan, bool):
        problems.append(f"{where}: `scan` is true or false, got {scan!r}")
        return None
    settings = {k: v for k, v in raw.items() if k != "scan"} | {"name": name.strip()}
    try:
        config = TrainStudyConfig.from_json({**TrainStudyConfig().to_json(), **settings})
        config.validate()
    except InvalidInputError as err:
        problems.append(f"{where}: {err}")
        return None
    return WorkshopModel(train=config, scan=scan)


def parse_workshop(text: str, source: str = "the workshop file") -> Workshop:
    """Read a workshop from TOML text.

    Raises:
        InvalidInputError: not TOML, or every problem of its entries in one sentence (unknown keys, a missing
            name, duplicate names, training settings out of range, an unknown scan preset).
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise InvalidInputError(f"{source} is not valid TOML: {err}.") from err
    problems: list[str] = []
    unknown = sorted(set(data) - {"workshop", "models"})
    if unknown:
        problems.append(f"unknown top-level keys {unknown}; use [workshop] and [[models]]")
    head = data.get("workshop", {})
    if not isinstance(head, dict):
        problems.append("[workshop] is a table")
        head = {}
    if bad := sorted(set(head) - _WORKSHOP_KEYS):
        problems.append(f"[workshop] has unknown keys {bad}; use {sorted(_WORKSHOP_KEYS)}")
    title = head.get("title", Path(source).stem)
    scan_default = head.get("scan", True)
    preset = head.get("scan_preset", "quick")
    seed = head.get("scan_seed", 0)
    if not isinstance(title, str):
        problems.append(f"[workshop] title is text, got {title!r}")
    if not isinstance(scan_default, bool):
        problems.append(f"[workshop] scan is true or false, got {scan_default!r}")
        scan_default = True
    if preset not in PRESETS:
        problems.append(f"[workshop] scan_preset must be one of {sorted(PRESETS)}, got {preset!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        problems.append(f"[workshop] scan_seed is a whole number >= 0, got {seed!r}")
    raw_models = data.get("models", [])
    if not isinstance(raw_models, list) or not raw_models:
        problems.append("list at least one model, as a [[models]] table with a `name`")
        raw_models = []
    models = [m for i, raw in enumerate(raw_models, 1) if (m := _entry(raw, i, scan_default, problems))]
    names = [m.name for m in models]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"each model name once: {dupes} appear more than once")
    if problems:
        raise InvalidInputError(f"{source} has {len(problems)} problem(s): " + "; ".join(problems) + ".")
    return Workshop(title=str(title), models=tuple(models), scan_preset=str(preset), scan_seed=int(seed))


def load_workshop(path: str | Path) -> Workshop:
    """Read a workshop file.

    Raises:
        InvalidInputError: the file is missing, unreadable, or not a valid workshop (see `parse_workshop`).
    """
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise InvalidInputError(f"There is no workshop file at {path}.") from err
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidInputError(f"The workshop file {path} cannot be read: {err}.") from err
    return parse_workshop(text, str(path))


def _plain(value: Any) -> Any:
    """As the store keeps it: JSON, sorted keys (tuples become lists)."""
    return json.loads(json.dumps(value, sort_keys=True))


def same_training(card: ModelCard, config: TrainStudyConfig) -> bool:
    """Was this stored model trained exactly as `config` asks (the card's dataset, architecture, recipe and its
    settings, training settings and seed, the architecture's settings)? The name is compared by the caller."""
    recipe, train = config.build()
    return (
        card.dataset == config.dataset
        and card.spec.arch == config.arch
        and card.recipe == recipe.name
        and _plain(card.recipe_params) == _plain(recipe.params())
        and _plain(card.train_config) == _plain(train.to_dict())
        # A spec fills in the architecture's defaults (`ModelSpec`): compare with them filled in too.
        and _plain(card.spec.hparams) == _plain({**ARCHITECTURES[config.arch].defaults, **config.hparams})
    )


@dataclass(kw_only=True)
class Prepared:
    """One workshop model's preparation: its stored model, and what happened to its training and its scan."""

    name: str
    model_id: str | None = None
    # "kept" (stored already), "new" (to queue), "queued", "running", "done", or "failed: <why>"
    training: str = "new"
    # "off", "kept", "waiting" (for its training), "new", "queued", "running", "done", or "failed: <why>"
    scan: str = "off"
    train_run: str | None = None
    scan_run: str | None = None
    runs: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.training.startswith("failed") or self.scan.startswith("failed")

    def to_record(self) -> dict[str, Any]:
        return {"model": self.name, "id": self.model_id, "training": self.training, "scan": self.scan,
                "train_run": self.train_run, "scan_run": self.scan_run}  # fmt: skip


def _active_twin(runs: RunStore, study: str, config: dict[str, Any]) -> RunRecord | None:
    """A run of `study` with exactly this config still queued or running (left by an interrupted prepare)."""
    for status in (RunStatus.RUNNING, RunStatus.QUEUED):
        for run in runs.list_runs(study=study, status=status, limit=10_000):
            if run.config == _plain(config):
                return run
    return None


def plan(store: Store, workshop: Workshop) -> list[Prepared]:
    """What `prepare` would do, without queuing anything: which models are kept, which are trained, which scanned.

    Raises:
        InvalidInputError: a dataset that does not exist, or a stored model with a workshop model's name but other
            training settings (all of them named at once).
    """
    runs = RunStore(store)
    datasets = set(DATASETS) | set(store.list_datasets())
    cards = store.list_models()
    problems: list[str] = []
    out: list[Prepared] = []
    for m in workshop.models:
        if m.train.dataset not in datasets:
            problems.append(
                f"model {m.name!r}: there is no dataset {m.train.dataset!r} (built-in: {sorted(DATASETS)})"
            )
            continue
        named = [c for c in cards if c.name == m.name]
        same = [c for c in named if same_training(c, m.train)]
        if named and not same:
            problems.append(
                f"a stored model is named {m.name!r} ({named[0].id}) but was trained otherwise; rename the model in "
                f"the workshop file or delete the stored one (python -m dlsec_core delete {named[0].id})"
            )
            continue
        p = Prepared(name=m.name)
        if same:
            p.model_id, p.training = same[0].id, "kept"  # newest first
        elif (twin := _active_twin(runs, "train", m.train.to_json())) is not None:
            p.train_run, p.training = twin.id, str(twin.status)
        if m.scan:
            p.scan = "waiting" if p.model_id is None else _scan_state(runs, workshop, p, p.model_id)
        out.append(p)
    if problems:
        raise InvalidInputError("The workshop cannot be prepared: " + "; ".join(problems) + ".")
    return out


def _scan_state(runs: RunStore, workshop: Workshop, p: Prepared, model_id: str) -> str:
    """A stored model's scan: "kept" (a finished one with this preset and seed), a run to follow, or "queued"."""
    config = workshop.scan_config(model_id).to_json()
    done = runs.list_runs(study="scan", status=RunStatus.DONE, model_id=model_id, limit=10_000)
    if any(r.config == _plain(config) for r in done):
        return "kept"
    if (twin := _active_twin(runs, "scan", config)) is not None:
        p.scan_run = twin.id
        return str(twin.status)
    return "new"


def prepare(
    store: Store,
    workshop: Workshop,
    *,
    owner: str = INSTRUCTOR,
    drive: Callable[[RunStore], object] | None = None,
    on_progress: Callable[[str], None] | None = None,
    poll_s: float = 0.5,
    timeout_s: float | None = None,
) -> list[Prepared]:
    """Train and scan what the workshop needs (see `plan`), as runs owned by `owner`, and wait for them.

    Args:
        drive: called while runs wait in the queue, with the runs; default: start local worker processes
            (`ensure_workers`). Tests pass one that executes a queued run in-process.
        on_progress: receives one line whenever a model's state changes (the CLI prints it).
        poll_s: seconds between two looks at the runs.
        timeout_s: give up (the runs stay queued, a later `prepare` follows them) after this long.

    Returns:
        One `Prepared` per workshop model, in the file's order. A failed run is reported there, not raised.

    Raises:
        InvalidInputError: see `plan`; nothing is queued then.
        DlsecError: the runs did not all end within `timeout_s`.
    """
    runs = RunStore(store)
    items = plan(store, workshop)
    by_name = {m.name: m for m in workshop.models}
    if drive is None:
        from dlsec_core.execution.local import ensure_workers

        def drive(_: RunStore) -> object:
            return ensure_workers(store)

    say = on_progress or (lambda _line: None)
    for p in items:
        if p.training == "new":
            p.train_run = submit(runs, "train", by_name[p.name].train, owner=owner).id
            p.training = "queued"
        if p.scan == "new" and p.model_id is not None:
            p.scan_run = submit(runs, "scan", workshop.scan_config(p.model_id), owner=owner).id
            p.scan = "queued"
        p.runs = [r for r in (p.train_run, p.scan_run) if r]
        say(_line(p, None))
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    shown: dict[str, str] = {}
    while True:
        active = False
        for p in items:
            for run_id, kind in ((p.train_run, "training"), (p.scan_run, "scan")):
                if (
                    run_id is None
                    or getattr(p, kind) in ("done", "kept")
                    or getattr(p, kind).startswith("failed")
                ):
                    continue
                run = runs.get(run_id)
                state = str(run.status) if run.is_active else _ended(run)
                setattr(p, kind, state)
                if run.is_active:
                    active = True
                if kind == "training" and state.startswith("failed") and p.scan == "waiting":
                    p.scan = "not run (its training failed)"
                if kind == "training" and state == "done" and run.result:
                    p.model_id = str(run.result["model_id"])
                    if by_name[p.name].scan:
                        p.scan_run = submit(runs, "scan", workshop.scan_config(p.model_id), owner=owner).id
                        p.scan, active = "queued", True
                        p.runs.append(p.scan_run)
                line = _line(p, run)
                if shown.get(p.name) != line:
                    shown[p.name] = line
                    say(line)
        if not active:
            return items
        if deadline is not None and time.monotonic() > deadline:
            raise DlsecError(
                f"The workshop's runs did not all end within {timeout_s:g} s; they go on in the background, and "
                "running prepare again follows them."
            )
        if runs.count_runs(status=RunStatus.QUEUED):
            drive(runs)
        runs.reap()
        time.sleep(poll_s)


def _ended(run: RunRecord) -> str:
    return "done" if run.status == RunStatus.DONE else f"failed: {run.status}, {run.error or run.message}"


def _line(p: Prepared, run: RunRecord | None) -> str:
    running = run is not None and run.status == RunStatus.RUNNING
    progress = f" ({run.progress:.0%}, {run.message})" if running and run is not None else ""
    return f"{p.name}: training {p.training}, scan {p.scan}{progress}"
