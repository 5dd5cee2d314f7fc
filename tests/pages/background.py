"""Finish the background work a page submitted, for AppTest page tests (imported by module name: pytest puts this
folder on sys.path): stored runs are executed here, as a worker would; in-server jobs are waited for."""

from __future__ import annotations

from dlsec_core.errors import NotFoundError
from dlsec_core.execution.worker import in_process, serve
from dlsec_core.runs import RunStatus, RunStore
from dlsec_core.store import Store
from dlsec_ui.resources import get_runner

TIMEOUT_S = 120.0


def finish_work(work_id: str) -> str | None:
    """Run (or wait for) the run or job `work_id` to its end; returns its error sentence, if any."""
    runs = RunStore(Store())
    try:
        run = runs.get(work_id)
    except NotFoundError:
        snapshot = get_runner().wait(work_id, timeout=TIMEOUT_S)
        assert not snapshot.is_active, f"job still {snapshot.state} after {TIMEOUT_S} s"
        return snapshot.error
    while run.status == RunStatus.QUEUED:
        serve(runs, max_runs=1, idle_exit_s=0, lower_priority=False, engine=in_process)
        run = runs.get(work_id)
    assert not run.is_active, f"run {run.id} still {run.status}"
    return run.error


def finish_all() -> None:
    """Everything still queued or running (a test's leftovers), so the next test starts clean."""
    runs = RunStore(Store())
    serve(runs, idle_exit_s=0, lower_priority=False, engine=in_process)
    for job in get_runner().list():
        get_runner().wait(job.id, timeout=TIMEOUT_S)
