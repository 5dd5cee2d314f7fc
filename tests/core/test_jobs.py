"""The background job runner: events, progress, cancellation, the queue cap, failures, memory bound, shutdown.

Synchronisation is by `threading.Event`s that the work sets or waits on, never by sleeping and hoping.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dlsec_core.errors import CancelledError, InvalidInputError, NotFoundError
from dlsec_core.jobs import MAX_JOBS_ENV, JobContext, JobRunner, JobState, default_runner

TIMEOUT = 5.0  # generous upper bound for a wait; tests finish far sooner


@pytest.fixture
def runner() -> Iterator[JobRunner]:
    r = JobRunner(max_running=1)
    yield r
    r.shutdown(timeout=TIMEOUT)


class Gate:
    """A job that yields "a", tells the test it is running, blocks until released, yields "b" and returns 42."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.finally_ran = threading.Event()

    def work(self, ctx: JobContext) -> Iterator[str]:
        try:
            yield "a"
            self.started.set()  # the runner has stored "a" and asked for the next event
            assert self.release.wait(TIMEOUT)
            yield "b"
            return 42
        finally:
            self.finally_ran.set()

    def wait_started(self) -> None:
        assert self.started.wait(TIMEOUT)


def quick(value: Any = "ok") -> Any:
    def work(ctx: JobContext) -> Iterator[Any]:
        yield value
        return value

    return work


def test_events_in_order_and_result() -> None:
    def work(ctx: JobContext) -> Iterator[int]:
        yield from range(5)
        return "finished"

    r = JobRunner(max_running=2)
    job_id = r.submit(work, kind="demo", title="Count", owner="alice")
    snap = r.wait(job_id, timeout=TIMEOUT)
    assert snap.state is JobState.DONE
    assert snap.events == (0, 1, 2, 3, 4)
    assert snap.result == "finished"
    assert snap.error is None and snap.queue_position is None and not snap.is_active
    assert (snap.kind, snap.title, snap.owner) == ("demo", "Count", "alice")
    assert snap.started_at is not None and snap.finished_at is not None and snap.elapsed is not None
    assert snap.created_at <= snap.started_at <= snap.finished_at
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.state = JobState.FAILED  # type: ignore[misc]
    r.shutdown(timeout=TIMEOUT)


def test_progress_is_reported_clipped_and_full_when_done(runner: JobRunner) -> None:
    reported = threading.Event()
    release = threading.Event()

    def work(ctx: JobContext) -> Iterator[None]:
        ctx.progress(0.5, "epoch 1/2")
        ctx.progress(0.6)  # no message: keeps the last one
        reported.set()
        assert release.wait(TIMEOUT)
        ctx.progress(1.0000001)  # float rounding in step / total
        yield None

    job_id = runner.submit(work, kind="train", title="Progress")
    assert reported.wait(TIMEOUT)
    snap = runner.get(job_id)
    assert snap.state is JobState.RUNNING and snap.is_active
    assert snap.progress == pytest.approx(0.6)
    assert snap.message == "epoch 1/2"
    assert snap.elapsed is not None and snap.elapsed >= 0
    release.set()
    done = runner.wait(job_id, timeout=TIMEOUT)
    assert done.state is JobState.DONE and done.progress == 1.0


def test_nan_progress_fails_the_job(runner: JobRunner) -> None:
    def work(ctx: JobContext) -> Iterator[None]:
        ctx.progress(float("nan"))
        yield None

    snap = runner.wait(runner.submit(work, kind="train", title="NaN"), timeout=TIMEOUT)
    assert snap.state is JobState.FAILED
    assert snap.error is not None and "ValueError" in snap.error


def test_cancel_running_job_closes_generator(runner: JobRunner) -> None:
    gate = Gate()
    job_id = runner.submit(gate.work, kind="train", title="Cancel me")
    gate.wait_started()
    runner.cancel(job_id)
    snap = runner.get(job_id)
    assert snap.state is JobState.RUNNING and snap.cancel_requested  # stops at its next event
    gate.release.set()
    snap = runner.wait(job_id, timeout=TIMEOUT)
    assert snap.state is JobState.CANCELLED
    assert gate.finally_ran.is_set()  # closed before CANCELLED was published
    assert snap.result is None and snap.error is None
    assert snap.events == ("a", "b")  # the event that was already computed is kept
    runner.cancel(job_id)  # cancelling a finished job changes nothing
    assert runner.get(job_id).state is JobState.CANCELLED


def test_check_cancelled_inside_a_long_step(runner: JobRunner) -> None:
    started = threading.Event()
    finally_ran = threading.Event()

    def work(ctx: JobContext) -> Iterator[int]:
        try:
            started.set()
            while True:  # one long step that never yields
                ctx.check_cancelled()
                time.sleep(0.001)
            yield 0
        finally:
            finally_ran.set()

    job_id = runner.submit(work, kind="sweep", title="Long step")
    assert started.wait(TIMEOUT)
    runner.cancel(job_id)
    snap = runner.wait(job_id, timeout=TIMEOUT)
    assert snap.state is JobState.CANCELLED and snap.error is None
    assert finally_ran.is_set()


def test_cap_queue_positions_and_cancel_while_queued(runner: JobRunner) -> None:
    first, second = Gate(), Gate()
    id1 = runner.submit(first.work, kind="train", title="1")
    first.wait_started()
    id2 = runner.submit(second.work, kind="train", title="2")
    id3 = runner.submit(quick(), kind="train", title="3")
    id4 = runner.submit(quick(), kind="train", title="4")
    assert runner.get(id1).state is JobState.RUNNING
    assert [runner.get(i).queue_position for i in (id1, id2, id3, id4)] == [None, 1, 2, 3]
    assert runner.get(id2).state is JobState.QUEUED and not second.started.is_set()

    # A queued job is cancelled at once and the ones behind it move up.
    runner.cancel(id3)
    snap3 = runner.get(id3)
    assert snap3.state is JobState.CANCELLED and snap3.started_at is None and snap3.elapsed is None
    assert runner.get(id4).queue_position == 2

    # Cancelling the running job lets the queue advance.
    runner.cancel(id1)
    first.release.set()
    assert runner.wait(id1, timeout=TIMEOUT).state is JobState.CANCELLED
    second.wait_started()
    assert runner.get(id2).state is JobState.RUNNING
    assert runner.get(id4).queue_position == 1
    by_id = {s.id: s.queue_position for s in runner.list()}
    assert by_id[id4] == 1 and by_id[id2] is None

    second.release.set()
    assert runner.wait(id2, timeout=TIMEOUT).result == 42
    assert runner.wait(id4, timeout=TIMEOUT).state is JobState.DONE


def test_two_run_at_once_the_third_waits() -> None:
    r = JobRunner(max_running=2)
    gates = [Gate(), Gate()]
    ids = [r.submit(g.work, kind="train", title=str(i)) for i, g in enumerate(gates)]
    for g in gates:
        g.wait_started()  # both run at the same time
    third = r.submit(quick(), kind="train", title="third")
    assert [r.get(i).state for i in ids] == [JobState.RUNNING, JobState.RUNNING]
    assert r.get(third).queue_position == 1
    for g in gates:
        g.release.set()
    assert r.wait(third, timeout=TIMEOUT).state is JobState.DONE
    r.shutdown(timeout=TIMEOUT)


def test_dlsec_error_fails_with_its_sentence(runner: JobRunner) -> None:
    def work(ctx: JobContext) -> Iterator[int]:
        yield 1
        raise InvalidInputError("The learning rate must be positive.")

    snap = runner.wait(runner.submit(work, kind="train", title="Bad"), timeout=TIMEOUT)
    assert snap.state is JobState.FAILED
    assert snap.error == "The learning rate must be positive."
    assert snap.events == (1,) and snap.result is None


def test_unexpected_error_is_a_sentence_and_the_worker_survives(
    runner: JobRunner, caplog: pytest.LogCaptureFixture
) -> None:
    def work(ctx: JobContext) -> Iterator[int]:
        yield 1
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="dlsec.jobs"):
        snap = runner.wait(runner.submit(work, kind="train", title="Buggy"), timeout=TIMEOUT)
    assert snap.state is JobState.FAILED
    assert snap.error is not None
    assert "RuntimeError: boom" in snap.error and "Traceback" not in snap.error and "\n" not in snap.error
    assert "server is still running" in snap.error
    # The traceback goes to the log, not to the user.
    record = next(r for r in caplog.records if r.name == "dlsec.jobs")
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError

    # Same single worker: it must still be alive, also after a SystemExit from some library.
    def exits(ctx: JobContext) -> Iterator[int]:
        raise SystemExit(3)
        yield 0

    with caplog.at_level(logging.CRITICAL, logger="dlsec.jobs"):
        assert (
            runner.wait(runner.submit(exits, kind="x", title="x"), timeout=TIMEOUT).state is JobState.FAILED
        )
    good = runner.wait(runner.submit(quick(7), kind="train", title="Good"), timeout=TIMEOUT)
    assert good.state is JobState.DONE and good.result == 7


def test_plain_function_returning_an_iterable_works(runner: JobRunner) -> None:
    def work(ctx: JobContext) -> Iterator[int]:
        return iter([1, 2])

    snap = runner.wait(runner.submit(work, kind="x", title="plain"), timeout=TIMEOUT)
    assert snap.state is JobState.DONE and snap.events == (1, 2) and snap.result is None


def test_cancelled_error_raised_by_work_means_cancelled(runner: JobRunner) -> None:
    def work(ctx: JobContext) -> Iterator[int]:
        yield 1
        raise CancelledError("stopped")

    assert runner.wait(runner.submit(work, kind="x", title="x"), timeout=TIMEOUT).state is JobState.CANCELLED


def test_list_by_owner_and_kind_newest_first(runner: JobRunner) -> None:
    a1 = runner.submit(quick(), kind="train", title="a1", owner="alice")
    b1 = runner.submit(quick(), kind="sweep", title="b1", owner="bob")
    a2 = runner.submit(quick(), kind="sweep", title="a2", owner="alice")
    for job_id in (a1, b1, a2):
        runner.wait(job_id, timeout=TIMEOUT)
    assert [s.id for s in runner.list()] == [a2, b1, a1]
    assert [s.id for s in runner.list(owner="alice")] == [a2, a1]
    assert [s.id for s in runner.list(kind="sweep")] == [a2, b1]
    assert [s.id for s in runner.list(owner="alice", kind="train")] == [a1]
    assert runner.list(owner="carol") == []


def test_unknown_id_is_not_found(runner: JobRunner) -> None:
    for call in (runner.get, runner.cancel, runner.wait):
        with pytest.raises(NotFoundError) as info:
            call("nope")
        assert "nope" in str(info.value)


def test_wait_timeout_returns_the_active_snapshot(runner: JobRunner) -> None:
    gate = Gate()
    job_id = runner.submit(gate.work, kind="x", title="x")
    gate.wait_started()
    snap = runner.wait(job_id, timeout=0.01)
    assert snap.is_active and snap.state is JobState.RUNNING
    gate.release.set()
    assert runner.wait(job_id, timeout=TIMEOUT).result == 42


def test_keep_finished_drops_the_oldest_finished() -> None:
    r = JobRunner(max_running=1, keep_finished=2)
    ids = [r.submit(quick(i), kind="x", title=str(i)) for i in range(4)]
    assert r.wait(ids[-1], timeout=TIMEOUT).result == 3  # one worker, FIFO: the others finished before
    assert [s.id for s in r.list()] == [ids[3], ids[2]]
    with pytest.raises(NotFoundError):
        r.get(ids[0])
    r.shutdown(timeout=TIMEOUT)


def test_shutdown_cancels_and_stops_workers() -> None:
    r = JobRunner(max_running=1)
    started = threading.Event()

    def polite(ctx: JobContext) -> Iterator[int]:
        started.set()
        while not ctx.cancelled:
            time.sleep(0.001)
        yield 1

    running = r.submit(polite, kind="x", title="running")
    assert started.wait(TIMEOUT)
    queued = r.submit(quick(), kind="x", title="queued")
    r.shutdown(timeout=TIMEOUT)
    assert r.get(running).state is JobState.CANCELLED
    assert r.get(queued).state is JobState.CANCELLED
    assert not any(w.is_alive() for w in r._workers)
    with pytest.raises(RuntimeError):
        r.submit(quick(), kind="x", title="late")
    r.shutdown(timeout=TIMEOUT)  # idempotent


def test_shutdown_without_cancel_lets_the_running_job_finish() -> None:
    r = JobRunner(max_running=1)
    gate = Gate()
    job_id = r.submit(gate.work, kind="x", title="x")
    gate.wait_started()
    gate.release.set()
    r.shutdown(cancel_running=False, timeout=TIMEOUT)
    assert r.get(job_id).result == 42


def test_max_running_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_JOBS_ENV, raising=False)
    assert JobRunner().max_running == 2
    monkeypatch.setenv(MAX_JOBS_ENV, "3")
    assert JobRunner().max_running == 3
    for bad in ("zero", "0", "-1", "1.5"):
        monkeypatch.setenv(MAX_JOBS_ENV, bad)
        with pytest.raises(InvalidInputError, match=MAX_JOBS_ENV):
            JobRunner()
    with pytest.raises(ValueError, match="0"):
        JobRunner(max_running=0)
    with pytest.raises(ValueError, match="-1"):
        JobRunner(max_running=1, keep_finished=-1)


def test_default_runner_is_one_per_process() -> None:
    seen: list[JobRunner] = []
    threads = [threading.Thread(target=lambda: seen.append(default_runner())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert len(seen) == 8 and all(r is seen[0] for r in seen)
    assert default_runner() is seen[0]
