"""Runs that last, in a real browser: a sweep started in one tab keeps running when the tab closes and when the
web server is killed (-9); a new server on the same store and a new tab on the run's link see it finish; the
Robustness page then opens on it without pressing Run again, and the Runs page shows it.

Its own servers over its own store (it kills one), seeded with one digits model.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from dlsec_core.runs import RunStatus, RunStore
from dlsec_core.store import Store
from dlsec_ui import state

if TYPE_CHECKING:
    from playwright.sync_api import Browser

    from dlsec_core.training.loop import TrainResult

from streamlit_page import (  # skips the module when Chromium or Playwright is missing
    DONE,
    assert_no_errors,
    fill,
    key,
    open_page,
    plot_state,
    press,
    screenshot,
    select_option,
    start_run,
    wait_chart,
    wait_run_done,
)

pytestmark = pytest.mark.e2e

RUN_TIMEOUT_MS = 240_000


def test_a_sweep_outlives_its_tab_and_its_server(
    server: Callable[..., Any],
    browser: Browser,
    tmp_path: Path,
    trained_digits: TrainResult,
    save_trained: Callable[..., Any],
) -> None:
    home = tmp_path / "dlsec_home"
    card = save_trained(home, trained_digits, name="runs-e2e")
    runs = RunStore(Store(home))

    def new_page() -> Any:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(60_000)
        return context.new_page()

    with server(home, name="runs-server-a", stop_workers=False) as url:
        page = new_page()
        open_page(page, f"{url}/robustness?model={card.id}", key(state.SWEEP_BUTTON))
        select_option(page, state.SWEEP_ATTACK, "PGD")
        select_option(page, "sweep_" + state.DEFENSE, "Bit-depth reduction")  # three curves
        fill(page, "sweep_PGD_steps", "200")  # 200 steps, 21 points, 1,000 images: a run that lasts
        press(page, state.SWEEP_POINTS, "End")
        press(page, state.SWEEP_IMAGES, "End")
        run_id = start_run(page, state.SWEEP_BUTTON)
        assert runs.get(run_id).is_active
        page.context.close()  # the participant closes the tab
        port = url.rsplit(":", 1)[1]
        subprocess.run(["pkill", "-9", "-f", f"server.port={port}"], check=True)  # and the server dies
        time.sleep(1)
        assert runs.get(run_id).is_active, "the run lives in a worker process, not in the web server"

    with server(home, name="runs-server-b") as url:
        page = new_page()  # a new tab on the run's link, on a new server
        open_page(page, f"{url}/robustness?model={card.id}&run={run_id}", key(state.SWEEP_BUTTON))
        wait_run_done(page, run_id, RUN_TIMEOUT_MS)
        wait_chart(page, state.SWEEP_CHART)
        chart = plot_state(page, state.SWEEP_CHART)
        assert len(chart["data"]) == 3 and all(len(t["x"]) == 21 for t in chart["data"])
        assert runs.get(run_id).status == RunStatus.DONE
        screenshot(page, "runs-reattached-sweep")
        page.context.close()

        page = new_page()  # no link: the page opens on the model's latest finished sweep
        open_page(page, f"{url}/robustness?model={card.id}", key(state.SWEEP_BUTTON))
        page.locator(DONE, has_text=f"run {run_id[:6]}").wait_for()
        wait_chart(page, state.SWEEP_CHART)
        assert_no_errors(page)

        open_page(page, f"{url}/runs?run={run_id}", key(state.RUNS_TABLE))
        page.get_by_text(runs.get(run_id).title).first.wait_for()
        page.locator(DONE, has_text=f"run {run_id[:6]}").wait_for()
        wait_chart(page, "runs_sweep")
        assert_no_errors(page)
        screenshot(page, "runs-page")
