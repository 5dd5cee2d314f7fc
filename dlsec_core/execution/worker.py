"""A worker: claims queued runs from the store and executes their studies, one at a time.

Between two events of a study the worker writes progress (at most every `REPORT_EVERY_S` seconds, and always
when the study emits a payload) and reads the cancel flag; a heartbeat thread keeps `heartbeat_at` fresh even
while one long step runs, so `RunStore.reap` can tell a slow run from a dead worker. A `DlsecError` fails the run
with its own sentence; anything else fails it with a generic sentence and the traceback in the worker's log.
Workers run at a lower OS priority than the web server (`nice`) with one torch thread each, so a slider in the
browser stays instant while models train.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from dlsec_core.device import configure_threads
from dlsec_core.errors import DlsecError
from dlsec_core.runs import RunRecord, RunStatus, RunStore, worker_name
from dlsec_core.store import Store
from dlsec_core.studies.base import Study, StudyConfig, StudyEvent, StudyOutcome
from dlsec_core.studies.catalog import get_study

logger = logging.getLogger("dlsec.worker")

EXECUTOR_ENV = "DLSEC_EXECUTOR"
REPORT_EVERY_S = 0.5
BEAT_EVERY_S = 2.0
WORKER_NICE = 19
AUTOGROUP = Path("/proc/self/autogroup")


Engine = Callable[[Study[Any], Store, StudyConfig], Generator[StudyEvent, None, StudyOutcome]]
"""Where a claimed study executes: here (`in_process`) or elsewhere (`ray_executor.on_ray`), same events."""


def in_process(
    study: Study[Any], store: Store, config: StudyConfig
) -> Generator[StudyEvent, None, StudyOutcome]:
    """Execute the study in this worker process, on this store."""
    return study.execute(store, config)


def engine_from_env() -> Engine:
    """`DLSEC_EXECUTOR=ray` sends studies to a Ray cluster (`RAY_ADDRESS`); anything else runs them here."""
    kind = os.environ.get(EXECUTOR_ENV, "local").strip().lower() or "local"
    if kind == "ray":
        from dlsec_core.execution.ray_executor import on_ray

        return on_ray
    if kind != "local":
        raise ValueError(f"{EXECUTOR_ENV} must be 'local' or 'ray', got {kind!r}")
    return in_process


class _Heartbeat(threading.Thread):
    """Beats for one run until stopped; remembers whether a cancel was requested."""

    def __init__(self, runs: RunStore, run_id: str, every_s: float) -> None:
        super().__init__(daemon=True, name=f"beat-{run_id}")
        self.runs, self.run_id, self.every_s = runs, run_id, every_s
        self.cancel = threading.Event()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.every_s):
            try:
                if self.runs.beat(self.run_id):
                    self.cancel.set()
            except Exception:  # a busy database: try again at the next beat
                logger.exception("heartbeat of run %s failed", self.run_id)

    def stop(self) -> None:
        self._stop_event.set()


def execute(
    runs: RunStore, run: RunRecord, *, beat_every_s: float = BEAT_EVERY_S, engine: Engine = in_process
) -> RunRecord:
    """Execute one claimed run to its end (with `engine`) and record how it ended."""
    beat = _Heartbeat(runs, run.id, beat_every_s)
    beat.start()
    last_report = 0.0
    try:
        study = get_study(run.study)
        config = study.config_type.from_json(run.config)
        work = engine(study, runs.store, config)
        try:
            while True:
                try:
                    event = next(work)
                except StopIteration as stop:
                    outcome: StudyOutcome = stop.value
                    break
                now = time.monotonic()
                if (
                    event.payload is not None or now - last_report >= REPORT_EVERY_S
                ):  # payloads are never dropped
                    events = [] if event.payload is None else [event.payload]
                    if runs.report(run.id, progress=event.progress, message=event.message, events=events):
                        beat.cancel.set()
                    last_report = now
                if beat.cancel.is_set():
                    return runs.finish(run.id, RunStatus.CANCELLED, error="Cancelled by its user.")
        finally:
            work.close()  # runs the study's finally blocks; nothing is stored unless it finished
        for name, data in outcome.artifacts.items():
            runs.write_artifact(run.id, name, data)
        return runs.finish(run.id, RunStatus.DONE, result=outcome.result, model_ids=outcome.model_ids)
    except DlsecError as err:
        return runs.finish(run.id, RunStatus.FAILED, error=str(err))
    except Exception as err:
        logger.exception("run %s (%s) failed", run.id, run.study)
        return runs.finish(
            run.id, RunStatus.FAILED,
            error=f"An internal error stopped this run ({type(err).__name__}); the worker's log has the details.",
        )  # fmt: skip
    finally:
        beat.stop()


def yield_cpu() -> None:
    """Run below the web server: `nice`, and on Linux with autogroup scheduling (`kernel.sched_autogroup_enabled`,
    on by default in desktop and many server distributions) the session's group too. There the scheduler first
    shares the CPU fairly between sessions' groups and applies nice only inside a group, and `ensure_workers`
    starts every worker in a session of its own: with nice alone a training worker still took a third of 2 cores
    from the web server and the browsers (bench_load run 5: a room of 30 answered at p50 1.5 s idle, 2.9 s with
    two trainings and a sweep queued). A worker started by hand shares its terminal's session: its group is left
    alone.

    On Linux the worker's thread is also put in the SCHED_IDLE class (any user may lower its own class): it runs when
    nothing else wants the CPU, and a waking browser or web-server thread preempts it at once instead of after its
    time slice (with nice alone, the kernel's EEVDF scheduler lets the running worker finish its slice first)."""
    with contextlib.suppress(OSError):  # not permitted here: run at the normal priority
        os.nice(WORKER_NICE)
    if hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    if os.getsid(0) == os.getpid():
        with contextlib.suppress(OSError):  # no autogroup scheduling (other kernels, other systems)
            AUTOGROUP.write_text(str(WORKER_NICE))


def serve(
    runs: RunStore,
    *,
    idle_exit_s: float | None = None,
    poll_s: float = 0.5,
    max_runs: int | None = None,
    lower_priority: bool = True,
    engine: Engine | None = None,
) -> int:
    """Claim and execute runs until idle for `idle_exit_s` seconds (None: forever) or `max_runs` are done.

    Returns the number of runs executed.
    """
    if lower_priority:
        yield_cpu()
    configure_threads(default=1)
    engine = engine or engine_from_env()
    me = worker_name()
    executed, idle_since = 0, time.monotonic()
    while max_runs is None or executed < max_runs:
        runs.reap()
        run = runs.claim(me)
        if run is None:
            if idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                break
            time.sleep(poll_s)
            continue
        logger.info("run %s (%s) claimed by %s", run.id, run.study, me)
        done = execute(runs, run, engine=engine)
        logger.info("run %s ended %s", run.id, done.status)
        executed += 1
        idle_since = time.monotonic()
    return executed
