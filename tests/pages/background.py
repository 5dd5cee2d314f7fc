"""Finish the runs a page submitted, for AppTest page tests (imported by module name: pytest puts this folder on
sys.path): stored runs are executed here, in this process, as a worker would."""

from __future__ import annotations

from dlsec_core.execution.worker import in_process, serve
from dlsec_core.runs import RunStatus, RunStore
from dlsec_core.store import Store


def finish_work(work_id: str) -> str | None:
    """Run the run `work_id` to its end; returns its error sentence, if any."""
    runs = RunStore(Store())
    run = runs.get(work_id)
    while run.status == RunStatus.QUEUED:
        serve(runs, max_runs=1, idle_exit_s=0, lower_priority=False, engine=in_process)
        run = runs.get(work_id)
    assert not run.is_active, f"run {run.id} still {run.status}"
    return run.error


def finish_all() -> None:
    """Everything still queued or running (a test's leftovers), so the next test starts clean."""
    runs = RunStore(Store())
    serve(runs, idle_exit_s=0, lower_priority=False, engine=in_process)
