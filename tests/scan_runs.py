"""Finished scan runs for the scorecard and report tests (ui, pages, e2e): tiny digits models, the quick preset,
executed in this process as a worker would (a quick scan of a digits logreg takes well under a second)."""

from __future__ import annotations

from pathlib import Path

from dlsec_core.execution.worker import in_process, serve
from dlsec_core.runs import RunStatus, RunStore
from dlsec_core.store import ModelCard, Store
from dlsec_core.studies.catalog import submit
from dlsec_core.studies.scan import ScanStudyConfig
from dlsec_core.training import get_recipe
from dlsec_core.training.loop import TrainConfig, run_to_end
from dlsec_core.workflows import train_and_store


def train_digits(
    home: Path, name: str, *, arch: str = "logreg", recipe: str = "standard", **params: object
) -> ModelCard:
    """A small digits model trained and stored in `home` (about a second)."""
    config = TrainConfig(epochs=3, lr=0.05, shift=0)
    return run_to_end(
        train_and_store(Store(home), dataset="digits", arch=arch, name=name, config=config,
                        recipe=get_recipe(recipe, **params))
    )  # fmt: skip


def finished_scan(home: Path, model_id: str, *, seed: int = 0) -> str:
    """Queue a quick scan of the model and execute it here; returns the finished run's id."""
    runs = RunStore(Store(home))
    run = submit(runs, "scan", ScanStudyConfig(model_id=model_id, seed=seed))
    serve(runs, max_runs=1, idle_exit_s=0, lower_priority=False, engine=in_process)
    done = runs.get(run.id)
    assert done.status == RunStatus.DONE, (done.status, done.error)
    return run.id
