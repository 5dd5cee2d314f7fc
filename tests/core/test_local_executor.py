"""Worker slots of the local executor (issue 8, two servers on one store): a slot is one flock'ed file; asking
whether it is busy takes the lock for an instant, which must not turn a starting worker away."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from dlsec_core.execution.local import (
    SLOT_WAIT_S,
    ensure_workers,
    hold_slot,
    live_workers,
    slot_busy,
    slot_pid,
)
from dlsec_core.store import Store


def _hold_in_thread(store: Store, seconds: float) -> tuple[threading.Thread, threading.Event]:
    """Hold slot 0 from another open file (as another process would) for `seconds`; the event is set once held."""
    held = threading.Event()

    def hold() -> None:
        with hold_slot(store, 0) as mine:
            assert mine
            held.set()
            time.sleep(seconds)

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(5)
    return thread, held


def test_a_worker_waits_out_a_momentary_probe(tmp_home: Path) -> None:
    store = Store(tmp_home)
    thread, _ = _hold_in_thread(store, 0.3)  # a page asking `slot_busy`, slowed down
    try:
        with hold_slot(store, 0) as mine:
            assert (
                not mine
            )  # without waiting, the probe would have turned the worker away (the old behaviour)
        start = time.monotonic()
        with hold_slot(store, 0, wait_s=SLOT_WAIT_S) as mine:
            assert mine and time.monotonic() - start < SLOT_WAIT_S
            assert slot_busy(store, 0)
    finally:
        thread.join()
    assert not slot_busy(store, 0)


def test_a_duplicate_worker_still_leaves(tmp_home: Path) -> None:
    """Two starters for one free slot: the second gives up after waiting, so the slot never has two workers."""
    store = Store(tmp_home)
    thread, _ = _hold_in_thread(store, 1.5)
    try:
        start = time.monotonic()
        with hold_slot(store, 0, wait_s=0.4) as mine:
            assert not mine
        assert 0.35 <= time.monotonic() - start < 1.4
    finally:
        thread.join()


def test_waiting_on_a_run_queued_without_a_worker_starts_one(
    tmp_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`runs wait` on a run that nobody started a worker for (queued by a script, or just as an idle worker exited)
    asks for workers instead of waiting forever. The worker is served here, in-process, as the page tests do (a
    worker process takes a minute to start on a busy two-core machine)."""
    from dlsec_core import cli_runs
    from dlsec_core.cli import main
    from dlsec_core.execution.worker import in_process, serve
    from dlsec_core.runs import RunStatus, RunStore
    from dlsec_core.studies import catalog
    from dlsec_core.studies.train import TrainStudyConfig

    store = Store(tmp_home)
    config = TrainStudyConfig(dataset="digits", arch="logreg", train={"epochs": 1, "shift": 0})
    run = catalog.submit(RunStore(store), "train", config)
    started: list[Path] = []

    def worker_here(asked: Store) -> list[int]:
        started.append(asked.home)
        serve(RunStore(asked), max_runs=1, idle_exit_s=0, lower_priority=False, engine=in_process)
        return [0]

    monkeypatch.setattr(cli_runs, "ensure_workers", worker_here)
    assert main(["--home", str(tmp_home), "runs", "wait", run.id, "--timeout", "20", "--quiet"]) == 0
    assert started == [tmp_home] and RunStore(store).get(run.id).status == RunStatus.DONE


def test_a_starting_worker_holds_its_slot_from_the_start(
    tmp_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ensure_workers` hands the slot's lock to the worker it starts: asked again at once (the worker is still
    importing torch), it starts no second worker, and the slot is busy, held by that process, until it exits."""
    monkeypatch.setenv("DLSEC_WORKERS", "1")
    store = Store(tmp_home)
    assert ensure_workers(store, idle_exit_s=0.1) == [0]
    pid = slot_pid(store, 0)
    try:
        assert pid is not None and slot_busy(store, 0)
        assert ensure_workers(store, idle_exit_s=0.1) == [], "the starting worker already holds the slot"
        assert live_workers(store) == 1
    finally:
        assert pid is not None
        os.kill(pid, signal.SIGTERM)  # the process this test started, by its id
    deadline = time.monotonic() + 30
    while slot_busy(store, 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not slot_busy(store, 0), "the lock goes with the worker"


def test_a_leaving_worker_hands_a_run_queued_meanwhile_to_a_new_worker(
    tmp_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race of an idle worker exiting while a run is submitted: the submitter saw the slot taken and started
    nobody; the worker, once its slot is free, sees the queued run and starts workers. Without a queued run it
    starts none."""
    from dlsec_core import cli_runs
    from dlsec_core.cli import main
    from dlsec_core.runs import RunStore
    from dlsec_core.studies import catalog
    from dlsec_core.studies.train import TrainStudyConfig

    store = Store(tmp_home)
    asked: list[bool] = []

    def went_idle(runs: RunStore, **_: object) -> int:  # the worker's last look at the queue found nothing...
        return 0

    def spawn(s: Store) -> list[int]:
        asked.append(slot_busy(s, 0))  # ...and it asks only once its slot is free
        return [0]

    monkeypatch.setattr(cli_runs, "serve", went_idle)
    monkeypatch.setattr(cli_runs, "ensure_workers", spawn)
    assert main(["--home", str(tmp_home), "worker", "--slot", "0", "--idle-exit", "0", "--quiet"]) == 0
    assert asked == []  # nothing queued: nobody started
    config = TrainStudyConfig(dataset="digits", arch="logreg", train={"epochs": 1, "shift": 0})
    catalog.submit(RunStore(store), "train", config)  # ...but a run arrived meanwhile
    assert main(["--home", str(tmp_home), "worker", "--slot", "0", "--idle-exit", "0", "--quiet"]) == 0
    assert asked == [False]


def _autogroup_on() -> bool:
    switch = Path("/proc/sys/kernel/sched_autogroup_enabled")
    return Path("/proc/self/autogroup").exists() and switch.exists() and switch.read_text().strip() == "1"


@pytest.mark.skipif(not _autogroup_on(), reason="no autogroup scheduling on this system")
def test_a_started_worker_yields_the_cpu_in_its_own_scheduling_group(
    tmp_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With autogroup scheduling the kernel shares the CPU between sessions' groups first and applies nice only
    inside a group; a worker is a session of its own, so its group's nice is lowered too, and nobody else's. Its
    thread is in the SCHED_IDLE class."""
    from dlsec_core.execution.worker import WORKER_NICE

    monkeypatch.setenv("DLSEC_WORKERS", "1")
    store = Store(tmp_home)
    mine = Path("/proc/self/autogroup").read_text()
    assert ensure_workers(store, idle_exit_s=30) == [0]
    pid = slot_pid(store, 0)
    assert pid is not None
    try:
        deadline = time.monotonic() + 60
        group = ""
        while time.monotonic() < deadline:  # the worker lowers itself once it has imported torch
            nice = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
            group = Path(f"/proc/{pid}/autogroup").read_text()
            policy = os.sched_getscheduler(pid)
            if nice == WORKER_NICE and group.endswith(f"nice {WORKER_NICE}\n") and policy == os.SCHED_IDLE:
                break
            time.sleep(0.1)
        assert nice == WORKER_NICE, nice
        # SCHED_IDLE: preempted at once by any waking thread of the server or a browser
        assert policy == os.SCHED_IDLE, policy
        assert group.endswith(f"nice {WORKER_NICE}\n"), group
        # its own group (the caller's file is empty when it is in no autogroup, e.g. a CI job's default group)
        assert group.split()[0] != (mine.split() or [""])[0]
        assert Path("/proc/self/autogroup").read_text() == mine  # the caller's group is untouched
    finally:
        os.kill(pid, signal.SIGTERM)
