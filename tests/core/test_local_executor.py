"""Worker slots of the local executor (issue 8, two servers on one store): a slot is one flock'ed file; asking
whether it is busy takes the lock for an instant, which must not turn a starting worker away."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from dlsec_core.execution.local import SLOT_WAIT_S, hold_slot, slot_busy
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
