"""Background jobs: training runs and sweeps that run off the Streamlit script thread.

A job's work is a generator function `work(ctx) -> Iterator[event]`: every yielded value is an event (a
`TrainEvent`, a `SweepPoint`, ...) appended to the job's event list, and the generator's return value is the
job's result. The runner executes at most `max_running` jobs at once on daemon worker threads (a shared workshop
server has few cores); the rest wait in a FIFO queue and know their place in it. Jobs live in the process, not in
a browser session, so they survive reruns, page switches and closed tabs; a page polls `JobRunner.get`.

Cancellation is cooperative: between two events the runner checks the cancel flag and closes the generator (its
`finally` blocks run); a long step inside the work can call `ctx.check_cancelled()`. A failure never kills a
worker and never reaches the user as a traceback: a `DlsecError` shows its own sentence, anything else a generic
one, with the traceback sent to the `dlsec.jobs` logger.

Example:
    >>> def count(ctx: JobContext) -> Iterator[int]:
    ...     for i in range(3):
    ...         ctx.progress((i + 1) / 3)
    ...         yield i
    ...     return "done"
    >>> runner = JobRunner(max_running=1)
    >>> job_id = runner.submit(count, kind="demo", title="Count to three")
    >>> snap = runner.wait(job_id, timeout=5)
    >>> snap.state, snap.events, snap.result
    (<JobState.DONE: 'done'>, (0, 1, 2), 'done')
    >>> runner.shutdown()
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from dlsec_core.errors import CancelledError, DlsecError, InvalidInputError, NotFoundError

__all__ = [
    "MAX_JOBS_ENV",
    "JobContext",
    "JobRunner",
    "JobSnapshot",
    "JobState",
    "Work",
    "default_runner",
]

MAX_JOBS_ENV = "DLSEC_MAX_JOBS"
DEFAULT_MAX_RUNNING = 2  # a 2-core workshop server: more parallel training runs only slow every one of them

logger = logging.getLogger("dlsec.jobs")


class JobState(StrEnum):
    """Where a job is in its life: QUEUED -> RUNNING -> one of DONE, FAILED, CANCELLED."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


_ACTIVE_STATES = frozenset({JobState.QUEUED, JobState.RUNNING})


@dataclass(frozen=True)
class JobSnapshot:
    """An immutable view of one job at one moment, safe to read from any thread.

    Attributes:
        id: The job id returned by `JobRunner.submit`.
        kind: What sort of job it is (e.g. "train", "sweep"), for filtering.
        title: A short human label shown in the UI.
        owner: Who submitted it (e.g. a session id), or None.
        state: The job's state.
        progress: Fraction done in [0, 1] as last reported by the work (1.0 once DONE).
        message: The last progress message reported by the work.
        events: Every event the work yielded so far, in order.
        result: The generator's return value once DONE, else None.
        error: A sentence for the user once FAILED, else None.
        queue_position: 1-based place in the queue while QUEUED, else None.
        cancel_requested: True once someone asked to cancel (a running job stops at its next event).
        created_at: Submission time (seconds since the epoch).
        started_at: When a worker picked it up, or None.
        finished_at: When it reached a final state, or None.
    """

    id: str
    kind: str
    title: str
    owner: str | None
    state: JobState
    progress: float
    message: str
    events: tuple[Any, ...]
    result: Any
    error: str | None
    queue_position: int | None
    cancel_requested: bool
    created_at: float
    started_at: float | None
    finished_at: float | None

    @property
    def is_active(self) -> bool:
        """True while the job is queued or running."""
        return self.state in _ACTIVE_STATES

    @property
    def elapsed(self) -> float | None:
        """Seconds spent running so far (or in total once finished); None if it never started."""
        if self.started_at is None:
            return None
        end = self.finished_at if self.finished_at is not None else time.time()
        return max(0.0, end - self.started_at)


Work = Callable[["JobContext"], Iterator[Any]]
"""A job's work: a generator function taking the job's context, yielding events and returning the result."""


@dataclass(eq=False)
class _Job:
    """The runner's mutable record of one job; every field after `work` is guarded by the runner's lock."""

    id: str
    kind: str
    title: str
    owner: str | None
    work: Work
    created_at: float
    state: JobState = JobState.QUEUED
    progress: float = 0.0
    message: str = ""
    events: list[Any] = field(default_factory=list)
    events_view: tuple[Any, ...] = ()  # cached tuple(events): finished jobs are snapshotted many times
    result: Any = None
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    # An Event rather than a locked bool so that `ctx.cancelled` costs nothing inside tight loops.
    cancel_flag: threading.Event = field(default_factory=threading.Event)


class JobContext:
    """What a running job's work sees: progress reporting and the cancel flag."""

    def __init__(self, job: _Job, lock: threading.Condition) -> None:
        self._job = job
        self._lock = lock

    @property
    def job_id(self) -> str:
        """The id of the job this work runs in."""
        return self._job.id

    @property
    def cancelled(self) -> bool:
        """True once the job's user asked to cancel it."""
        return self._job.cancel_flag.is_set()

    def check_cancelled(self) -> None:
        """Stop the work here if the job was cancelled.

        Raises:
            CancelledError: The job's user asked to cancel it.
        """
        if self._job.cancel_flag.is_set():
            raise CancelledError("The job was cancelled.")

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far the work is.

        Args:
            fraction: Fraction done; values outside [0, 1] (e.g. rounding in `step / total`) are clipped.
            message: A short status line such as "epoch 2/5"; None keeps the previous message.

        Raises:
            ValueError: `fraction` is NaN.
        """
        if math.isnan(fraction):
            raise ValueError(f"progress fraction must be a number in [0, 1], got {fraction!r}")
        with self._lock:
            self._job.progress = min(1.0, max(0.0, float(fraction)))
            if message is not None:
                self._job.message = message


def _max_running_from_env() -> int:
    raw = os.environ.get(MAX_JOBS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_RUNNING
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise InvalidInputError(f"{MAX_JOBS_ENV} must be a whole number of at least 1, got {raw!r}.")
    return value


def _internal_error_sentence(err: BaseException) -> str:
    detail = str(err).strip().replace("\n", " ")
    if len(detail) > 200:
        detail = detail[:197] + "..."
    name = type(err).__name__
    what = f"{name}: {detail}" if detail else name
    return (
        f"The job stopped because of an internal error ({what}). "
        "The server is still running; try again or change the settings."
    )


class JobRunner:
    """Runs jobs on a few daemon worker threads, queueing the rest.

    All methods are thread-safe. Worker threads start on the first `submit`.

    Args:
        max_running: How many jobs run at once; defaults to the `DLSEC_MAX_JOBS` environment variable, else 2.
        keep_finished: How many finished jobs are remembered (the oldest finished are forgotten first).

    Raises:
        ValueError: `max_running` < 1 or `keep_finished` < 0.
        InvalidInputError: `DLSEC_MAX_JOBS` is set but not a whole number >= 1.
    """

    def __init__(self, max_running: int | None = None, keep_finished: int = 200) -> None:
        if max_running is None:
            max_running = _max_running_from_env()
        if max_running < 1:
            raise ValueError(f"max_running must be at least 1, got {max_running!r}")
        if keep_finished < 0:
            raise ValueError(f"keep_finished must be at least 0, got {keep_finished!r}")
        self._max_running = max_running
        self._keep_finished = keep_finished
        # One condition for everything: workers wait for queued jobs, `wait` waits for finished ones.
        self._cond = threading.Condition()
        self._jobs: dict[str, _Job] = {}  # insertion (= submission) order
        self._queue: deque[_Job] = deque()
        self._finished: deque[_Job] = deque()  # finish order, for dropping the oldest
        self._workers: list[threading.Thread] = []
        self._closed = False

    @property
    def max_running(self) -> int:
        """How many jobs may run at once."""
        return self._max_running

    def submit(self, work: Work, *, kind: str, title: str, owner: str | None = None) -> str:
        """Queue a job; it starts as soon as a worker is free.

        Args:
            work: A generator function taking a `JobContext`; yields events and returns the result.
            kind: What sort of job this is (e.g. "train", "sweep").
            title: A short human label.
            owner: Who submitted it (e.g. a browser session id), for `list(owner=...)`.

        Returns:
            The new job's id.

        Raises:
            RuntimeError: The runner was shut down.
        """
        job = _Job(
            id=uuid.uuid4().hex, kind=kind, title=title, owner=owner, work=work, created_at=time.time()
        )
        with self._cond:
            if self._closed:
                raise RuntimeError("this JobRunner has been shut down")
            self._jobs[job.id] = job
            self._queue.append(job)
            self._start_workers()
            self._cond.notify_all()
        return job.id

    def get(self, job_id: str) -> JobSnapshot:
        """The current snapshot of one job.

        Raises:
            NotFoundError: No such job (never submitted, or finished long ago and forgotten).
        """
        with self._cond:
            return self._snapshot(self._lookup(job_id))

    def list(self, *, owner: str | None = None, kind: str | None = None) -> list[JobSnapshot]:
        """Snapshots of the known jobs, newest first.

        Args:
            owner: Only jobs of this owner (None: everyone's).
            kind: Only jobs of this kind (None: every kind).
        """
        with self._cond:
            positions = {job.id: i for i, job in enumerate(self._queue, start=1)}
            return [
                self._snapshot(job, positions.get(job.id))
                for job in reversed(self._jobs.values())
                if (owner is None or job.owner == owner) and (kind is None or job.kind == kind)
            ]

    def cancel(self, job_id: str) -> None:
        """Ask a job to stop.

        A queued job is cancelled at once; a running one stops at its next event (or at `ctx.check_cancelled()`);
        a finished one is left as it is.

        Raises:
            NotFoundError: No such job.
        """
        with self._cond:
            job = self._lookup(job_id)
            if job.state is JobState.QUEUED:
                self._queue.remove(job)
                job.cancel_flag.set()
                self._finish(job, JobState.CANCELLED)
            elif job.state is JobState.RUNNING:
                job.cancel_flag.set()

    def wait(self, job_id: str, timeout: float | None = None) -> JobSnapshot:
        """Block until a job is finished, or until `timeout` seconds have passed.

        Returns:
            The job's snapshot; check `is_active` to tell a timeout from a finished job.

        Raises:
            NotFoundError: No such job.
        """
        with self._cond:
            job = self._lookup(job_id)  # hold the record: it may be forgotten before we wake up
            self._cond.wait_for(lambda: job.state not in _ACTIVE_STATES, timeout=timeout)
            return self._snapshot(job)

    def shutdown(self, cancel_running: bool = True, timeout: float = 10) -> None:
        """Stop the runner: cancel queued jobs, stop the workers and refuse new jobs.

        Args:
            cancel_running: Also cancel running jobs (they stop at their next event); otherwise they finish.
            timeout: Seconds to wait for the workers in total; a worker stuck in a long step is left behind
                (it is a daemon thread and does not keep the process alive).
        """
        with self._cond:
            self._closed = True
            while self._queue:
                job = self._queue.popleft()
                job.cancel_flag.set()
                self._finish(job, JobState.CANCELLED)
            if cancel_running:
                for job in self._jobs.values():
                    if job.state is JobState.RUNNING:
                        job.cancel_flag.set()
            self._cond.notify_all()
            workers = list(self._workers)
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        stuck = [w.name for w in workers if w.is_alive()]
        if stuck:
            logger.warning(
                "JobRunner.shutdown: workers still busy after %.1f s: %s", timeout, ", ".join(stuck)
            )

    # -- internals (callers of the _locked helpers hold self._cond) ------------------------------------------

    def _lookup(self, job_id: str) -> _Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"There is no job with id {job_id!r} (it may have finished long ago).")
        return job

    def _snapshot(self, job: _Job, queue_position: int | None = None) -> JobSnapshot:
        if job.state is JobState.QUEUED and queue_position is None:
            queue_position = self._queue.index(job) + 1
        if len(job.events_view) != len(job.events):
            job.events_view = tuple(job.events)
        return JobSnapshot(
            id=job.id,
            kind=job.kind,
            title=job.title,
            owner=job.owner,
            state=job.state,
            progress=job.progress,
            message=job.message,
            events=job.events_view,
            result=job.result,
            error=job.error,
            queue_position=queue_position if job.state is JobState.QUEUED else None,
            cancel_requested=job.cancel_flag.is_set(),
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )

    def _start_workers(self) -> None:
        while len(self._workers) < self._max_running:
            worker = threading.Thread(
                target=self._worker_loop, name=f"dlsec-job-worker-{len(self._workers) + 1}", daemon=True
            )
            self._workers.append(worker)
            worker.start()

    def _finish(self, job: _Job, state: JobState, result: Any = None, error: str | None = None) -> None:
        job.state = state
        job.result = result
        job.error = error
        job.finished_at = time.time()
        if state is JobState.DONE:
            job.progress = 1.0
        self._finished.append(job)
        while len(self._finished) > self._keep_finished:
            self._jobs.pop(self._finished.popleft().id, None)
        self._cond.notify_all()

    def _worker_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue) or self._closed)
                if self._closed:
                    return
                job = self._queue.popleft()
                job.state = JobState.RUNNING
                job.started_at = time.time()
            # Whatever happens in the work, this worker must live on to run the next job.
            try:
                self._run(job)
            except BaseException as err:  # pragma: no cover - _run already catches everything the work raises
                logger.exception("job runner bug while running job %s", job.id)
                with self._cond:
                    if job.state is JobState.RUNNING:
                        self._finish(job, JobState.FAILED, error=_internal_error_sentence(err))

    def _run(self, job: _Job) -> None:
        ctx = JobContext(job, self._cond)
        gen: Iterator[Any] | None = None
        state, result, error = JobState.CANCELLED, None, None
        try:
            gen = iter(job.work(ctx))
            while not job.cancel_flag.is_set():
                try:
                    event = next(gen)
                except StopIteration as stop:
                    state, result = JobState.DONE, stop.value
                    break
                with self._cond:
                    job.events.append(event)
        except CancelledError:
            state = JobState.CANCELLED
        except DlsecError as err:
            state, error = JobState.FAILED, str(err)
        # BaseException too: a SystemExit from some library must fail the job, not silently end this worker.
        except BaseException as err:
            logger.exception("job %s (%s, %r) failed", job.id, job.kind, job.title)
            state, error = JobState.FAILED, _internal_error_sentence(err)
        if state is JobState.CANCELLED and gen is not None:
            # Close before publishing CANCELLED, so the work's `finally` blocks have run when waiters wake up.
            close = getattr(gen, "close", None)
            if close is not None:
                try:
                    close()
                except BaseException:
                    logger.exception("job %s raised while being cancelled", job.id)
        with self._cond:
            self._finish(job, state, result=result, error=error)


_default_runner: JobRunner | None = None
_default_runner_lock = threading.Lock()


def default_runner() -> JobRunner:
    """The process-wide runner shared by every page, session and the CLI (created on first use)."""
    global _default_runner
    with _default_runner_lock:
        if _default_runner is None:
            _default_runner = JobRunner()
        return _default_runner
