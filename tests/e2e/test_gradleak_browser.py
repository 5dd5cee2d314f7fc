"""Gradient inversion in a real browser, on the Federated learning page's Leak tab: a gradleak run's link opens the
tab and shows the client's images over the reconstructions while the attack runs; once it is done the subplot
titles carry the stored PSNR and SSIM of each image. Then the tab's own button inverts a client under client DP.

Its own server over its own store; the runs execute in a real worker process.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from dlsec_core.execution.local import ensure_workers
from dlsec_core.runs import RunStatus, RunStore
from dlsec_core.store import Store
from dlsec_core.studies import catalog
from dlsec_core.studies.gradleak import GradLeakStudyConfig
from dlsec_ui import state

if TYPE_CHECKING:
    from playwright.sync_api import Browser

from streamlit_page import (  # skips the module when Chromium or Playwright is missing
    assert_no_errors,
    key,
    open_page,
    plot_state,
    screenshot,
    select_option,
    settle,
    start_run,
    wait_chart,
    wait_run_done,
)

pytestmark = pytest.mark.e2e

RUN_TIMEOUT_MS = 300_000


def test_a_gradient_inversion_draws_live_and_then_its_scores(
    server: Callable[..., Any], browser: Browser, tmp_path: Path
) -> None:
    home = tmp_path / "dlsec_home"
    store = Store(home)
    runs = RunStore(store)
    # Inverting Gradients on 4 MNIST digits, 6,000 steps: long enough to be seen while it runs (600 steps took
    # 3 s on an idle machine: the run had ended before the page drew it); the page is open before a worker starts
    config = GradLeakStudyConfig(dataset="mnist5k", attack="ig", batch_size=4, steps=6000, events=30, seed=1)
    with server(home, name="gradleak-server") as url:
        run_id = catalog.submit(runs, "gradleak", config).id
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(60_000)
        page = context.new_page()
        open_page(page, f"{url}/federated?run={run_id}", key(state.FED_LEAK_BUTTON))
        assert page.get_by_role("tab", name="Leak").get_attribute("aria-selected") == "true"
        ensure_workers(store, 1, idle_exit_s=30)
        live = state.FED_LEAK_CHART
        page.locator(f"{key(live)}").first.wait_for(timeout=RUN_TIMEOUT_MS)
        assert runs.get(run_id).is_active, "the reconstructions are drawn while the attack runs"
        wait_chart(page, live)
        titles = plot_state(page, live)["titles"]
        assert titles[:4] == [f"label {k}" for k in runs.events(run_id)[0]["labels"]]
        screenshot(page, "gradleak-live")

        wait_run_done(page, run_id, RUN_TIMEOUT_MS)
        done = runs.get(run_id)
        assert done.status == RunStatus.DONE and done.result is not None
        wait_chart(page, live)
        titles = plot_state(page, live)["titles"]
        expected = [
            f"{float(p):.1f} dB · SSIM {s:.2f}"
            for p, s in zip(done.result["psnr"], done.result["ssim"], strict=True)
        ]
        assert titles[4:] == expected
        page.get_by_text("Labels the attack used").first.wait_for()
        # the drawn run names its attack and defense, and says what the scores mean (the form may differ)
        page.get_by_text("Inverting Gradients against no defense", exact=False).first.wait_for()
        recovered = sum(float(p) >= 25 for p in done.result["psnr"])
        page.get_by_text(f"{recovered} of 4 images recovered (PSNR ≥ 25 dB)", exact=False).first.wait_for()
        page.get_by_text("SSIM: structural similarity", exact=False).first.wait_for()
        assert_no_errors(page)
        screenshot(page, "gradleak-done")

        # the tab's own form: iDLG against client DP at the lab's default noise, started by its button
        select_option(page, state.FED_LEAK_DATASET, "digits")
        page.locator(key(state.FED_LEAK_DEFENSE)).get_by_text("Client DP").click()
        settle(page)
        mine = start_run(page, state.FED_LEAK_BUTTON)
        wait_run_done(page, mine, RUN_TIMEOUT_MS)
        dp = runs.get(mine)
        assert dp.status == RunStatus.DONE and dp.result is not None
        assert dp.config["defense"] == "dp" and dp.config["attack"] == "idlg"
        assert max(dp.result["psnr"]) <= 15, "client DP at the default noise defeats the inversion"
        wait_chart(page, live)
        titles = plot_state(page, live)["titles"]
        assert titles[-1] == f"{float(dp.result['psnr'][-1]):.1f} dB · SSIM {dp.result['ssim'][-1]:.2f}"
        page.get_by_text("iDLG against client DP", exact=False).first.wait_for()
        assert_no_errors(page)
        screenshot(page, "gradleak-dp")
        context.close()
