"""The local executor: worker processes on this machine, started on demand, one per slot.

Slot `i` of a store is the lock file `<home>/workers/slot-<i>.lock`: a worker holds an exclusive `flock` on it
for its whole life, so whoever wants workers (a web server at each submission, the CLI's `--detach`) starts one
only for a free slot, and two servers on the same home never double them: `ensure_workers` takes a free slot's
lock itself and hands the locked file to the worker process it starts (`--slot-fd`), so the slot is taken from the
moment of the start, through the seconds the worker spends importing torch. A worker started by hand with
`--slot` asks for the lock, and waits a moment for it (`SLOT_WAIT_S`): asking whether a slot is busy takes its lock
for an instant, and such a probe must not turn a worker away. Workers are detached from the
process that started them (their own session): killing the web server does not kill a run. An idle worker exits
after `IDLE_EXIT_S`; the next submission starts it again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from dlsec_core.store import Store

WORKERS_ENV = "DLSEC_WORKERS"
IDLE_ENV = "DLSEC_WORKER_IDLE_S"
IDLE_EXIT_S = 600.0
SLOT_WAIT_S = 2.0


def default_worker_count() -> int:
    """`DLSEC_WORKERS`, else one fewer than the cores (at least 1): a core stays free for the web server.

    `DLSEC_WORKERS=0`: nobody here starts workers; they are started by hand (`python -m dlsec_core worker`), on
    this machine or, with the Ray executor, as dispatchers elsewhere.
    """
    raw = os.environ.get(WORKERS_ENV, "").strip()
    if raw:
        if not raw.isdigit():
            raise ValueError(f"{WORKERS_ENV} must be a whole number >= 0, got {raw!r}")
        return int(raw)
    return max(1, (os.cpu_count() or 2) - 1)


def slot_path(store: Store, slot: int) -> Path:
    path = store.home / "workers"
    path.mkdir(parents=True, exist_ok=True)
    return path / f"slot-{slot}.lock"


@contextlib.contextmanager
def hold_slot(store: Store, slot: int, *, wait_s: float = 0.0) -> Iterator[bool]:
    """Try to take slot `slot` for this process, for up to `wait_s` seconds: yields True while held, False when
    another process has it (for longer than that)."""
    fd = os.open(slot_path(store, slot), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.02)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def slot_busy(store: Store, slot: int) -> bool:
    with hold_slot(store, slot) as free:
        return not free


def live_workers(store: Store, count: int | None = None) -> int:
    """How many of the first `count` slots have a live worker."""
    return sum(slot_busy(store, i) for i in range(default_worker_count() if count is None else count))


def ensure_workers(store: Store, count: int | None = None, *, idle_exit_s: float | None = None) -> list[int]:
    """Start a worker process for every free slot among the first `count`; returns the slots started.

    Idle workers exit after `idle_exit_s` (default `$DLSEC_WORKER_IDLE_S`, else 600 s).
    """
    if idle_exit_s is None:
        idle_exit_s = float(os.environ.get(IDLE_ENV, "").strip() or IDLE_EXIT_S)
    started = []
    for slot in range(default_worker_count() if count is None else count):
        fd = os.open(slot_path(store, slot), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a worker has this slot, or is starting in it
            # The worker inherits the locked file (`--slot-fd`), so the slot is taken from this moment on, not only
            # once the worker has imported torch: a submission or a page asking meanwhile starts no second one.
            log = open(store.home / "workers" / f"slot-{slot}.log", "ab")  # noqa: SIM115 (the child keeps it)
            env = {**os.environ, "DLSEC_HOME": str(store.home), "OMP_NUM_THREADS": "1"}
            proc = subprocess.Popen(
                [sys.executable, "-m", "dlsec_core", "--home", str(store.home), "worker", "--slot", str(slot),
                 "--slot-fd", str(fd), "--idle-exit", str(idle_exit_s), "--quiet"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True, pass_fds=(fd,),
                cwd=Path(__file__).resolve().parents[2],
            )  # fmt: skip
            log.close()
            os.ftruncate(fd, 0)
            os.write(fd, str(proc.pid).encode())
            started.append(slot)
        finally:  # never LOCK_UN here: the worker's copy of this open file keeps the lock until it exits
            os.close(fd)
    return started


def slot_pid(store: Store, slot: int) -> int | None:
    """The process id written into a slot's lock file by the worker holding it (or its starter), if any."""
    text = slot_path(store, slot).read_text().strip() if slot_path(store, slot).exists() else ""
    return int(text) if text.isdigit() else None
