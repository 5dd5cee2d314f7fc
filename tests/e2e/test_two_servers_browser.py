"""Two app servers on one DLSEC_HOME (issue 8, "Runs that last"): a training submitted in a browser on server A
is seen queued or running, then done, on server B's Runs page, and its model is in B's lists; a training started
on B is cancelled from A's Runs page and B's page says so; the two servers together start no more worker
processes than DLSEC_WORKERS (worker slots are flock'ed in the store's home); a run queued without a worker is
picked up once a page shows it; the database passes `PRAGMA integrity_check` afterwards.

Its own two servers over its own store, seeded with one digits model.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from dlsec_core.execution.local import live_workers
from dlsec_core.runs import RunStatus, RunStore
from dlsec_core.store import Store
from dlsec_core.studies import catalog
from dlsec_core.studies.sweep import SweepStudyConfig
from dlsec_ui import state

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

    from dlsec_core.training.loop import TrainResult

from streamlit_page import (  # skips the module when Chromium or Playwright is missing
    DONE,
    assert_no_errors,
    fill,
    key,
    open_page,
    press,
    screenshot,
    select_option,
    settle,
    start_run,
    table_column,
    wait_chart,
    wait_run_done,
)

pytestmark = pytest.mark.e2e

RUN_TIMEOUT_MS = 240_000
PROGRESS = '[data-testid="stProgress"]'
QUEUED = '[data-testid="stAlertContentInfo"]'


def worker_processes(home: Path) -> list[str]:
    """The pids of the worker processes serving this store (their command line names its home)."""
    out = subprocess.run(
        ["pgrep", "-f", f"dlsec_core --home {home} worker"], capture_output=True, text=True, check=False
    )
    return out.stdout.split()


def active_states_seen(page: Page, run_id: str, timeout_s: float) -> list[str]:
    """Watch a page that follows `run_id` until it says the run is done; returns what it showed before ("queued",
    "running"), in order, without repeats."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if page.locator(DONE, has_text=f"run {run_id[:6]}").count():
            return seen
        now = (
            "running"
            if page.locator(PROGRESS).count()
            else "queued"
            if page.locator(QUEUED, has_text="waiting in the queue").count()
            else None
        )
        if now and (not seen or seen[-1] != now):
            seen.append(now)
        page.wait_for_timeout(100)
    pytest.fail(f"run {run_id} not done within {timeout_s} s; seen {seen}")


def test_two_servers_share_runs_models_workers_and_cancels(
    server: Callable[..., Any],
    browser: Browser,
    tmp_path: Path,
    trained_digits: TrainResult,
    save_trained: Callable[..., Any],
) -> None:
    home = tmp_path / "dlsec_home"
    seed = save_trained(home, trained_digits, name="two-servers-seed")
    store = Store(home)
    runs = RunStore(store)

    def new_page() -> Page:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(60_000)
        return context.new_page()

    # Both servers run with DLSEC_WORKERS=1 (the e2e server's setting): one worker for the store, not one each.
    with (
        server(home, name="two-servers-a") as url_a,
        server(home, name="two-servers-b", stop_workers=False) as url_b,
    ):
        a, b = new_page(), new_page()
        # A run queued by a process that starts no worker (a script; or a server whose idle worker was exiting as
        # it submitted) is picked up once a page shows the queue, not at the next submission.
        orphan = catalog.submit(
            runs,
            "sweep",
            SweepStudyConfig(model_ids=[seed.id], eps=[0.0, 0.1], n_images=64, sanity_checks=False),
        )
        assert worker_processes(home) == []
        open_page(b, f"{url_b}/runs?run={orphan.id}", "h1")  # and B is warm before A submits below
        wait_run_done(b, orphan.id, RUN_TIMEOUT_MS)

        # A submits a training in the browser...
        open_page(a, f"{url_a}/models", key(state.TRAIN_BUTTON))
        select_option(a, state.TRAIN_DATASET, "digits")
        select_option(a, state.TRAIN_ARCH, "logreg:", exact=False)
        press(a, state.TRAIN_EPOCHS, "End")  # 30 epochs: a few seconds of work, long enough to watch
        fill(a, state.TRAIN_NAME, "from-server-a")
        trained = start_run(a, state.TRAIN_BUTTON)

        # ... and B's Runs page follows it, from the queue (the worker is still starting) to done.
        open_page(b, f"{url_b}/runs?run={trained}", key(state.RUNS_TABLE))
        seen = active_states_seen(b, trained, RUN_TIMEOUT_MS / 1000)
        assert seen and set(seen) <= {"queued", "running"}, seen
        settle(b)
        wait_chart(b, "runs_train")  # the finished run, drawn once
        model_id = runs.get(trained).result["model_id"]  # type: ignore[index]
        b.get_by_text(f"Stored as model {model_id} (from-server-a)").wait_for()
        screenshot(b, "two-servers-b-sees-a-training")
        assert_no_errors(b)
        wait_run_done(a, trained, RUN_TIMEOUT_MS)  # A's own page says so too

        # The new model is in B's lists: its Models table and its sidebar.
        open_page(b, f"{url_b}/models", key(state.CARD_VIEW))
        b.locator('[data-testid="stDataFrame"] td', has_text="from-server-a").wait_for(state="attached")
        assert "from-server-a" in table_column(b, 2)
        assert len(worker_processes(home)) == 1 and live_workers(store, count=4) == 1

        # B starts a long training; A cancels it from its Runs page while it runs; B's page says so.
        select_option(b, state.TRAIN_DATASET, "mnist5k")
        press(b, state.TRAIN_EPOCHS, "End")  # 30 epochs of the cnn on 4,000 digits: minutes, unless cancelled
        fill(b, state.TRAIN_NAME, "cancelled-from-a")
        doomed = start_run(b, state.TRAIN_BUTTON)
        open_page(a, f"{url_a}/runs?run={doomed}", key(state.RUNS_TABLE))
        a.locator(PROGRESS).wait_for(timeout=RUN_TIMEOUT_MS)  # running, in the worker B's submission woke
        a.locator(f"{key(state.RUNS_OPEN)}_cancel button").click()
        a.locator('[data-testid="stAlertContentWarning"]', has_text="was cancelled").wait_for()
        settle(a)
        assert runs.get(doomed).status == RunStatus.CANCELLED
        b.locator(
            '[data-testid="stAlertContentWarning"]', has_text="was cancelled; nothing was saved"
        ).wait_for()
        settle(b)
        assert "cancelled-from-a" not in [c.name for c in store.list_models()]
        assert_no_errors(a)
        assert_no_errors(b)
        screenshot(b, "two-servers-b-sees-the-cancel")
        assert len(worker_processes(home)) == 1 and live_workers(store, count=4) == 1

    with sqlite3.connect(store.db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
