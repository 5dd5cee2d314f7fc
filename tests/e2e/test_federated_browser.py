"""End to end in a real browser: the Federated learning page's two tabs.

Train: a Dirichlet split's class histogram per client, then a federation run by the server's workers whose rounds
chart holds every round. Poison: two backdoored federations (FedAvg and the median) started together and drawn on
one chart (clean accuracy and backdoor success per round); a link to one of them opens the page on its Poison tab.

Needs Debian's Chromium at /usr/bin/chromium. Screenshots go to artifacts/screenshots/federated_*.png.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from dlsec_core.runs import RunStatus, RunStore
from dlsec_core.store import Store
from dlsec_ui import state

if TYPE_CHECKING:
    from playwright.sync_api import Page

from streamlit_page import (  # skips the module when Chromium or Playwright is missing
    assert_no_errors,
    key,
    plot_state,
    screenshot,
    select_option,
    settle,
    start_run,
    wait_chart,
    wait_run_done,
)

pytestmark = pytest.mark.e2e

RUN_TIMEOUT_MS = 180_000
ROUNDS = 10  # the page's default


def open_federated(app: Any, page: Page, query: str = "") -> None:
    page.goto(f"{app.url}/federated{query}")
    page.locator(f"{key(state.FED_TRAIN_BUTTON)} button").wait_for(
        state="attached"
    )  # hidden on the Poison tab
    settle(page)


def test_train_tab_previews_the_split_and_draws_every_round(app: Any, page: Page) -> None:
    open_federated(app, page)
    select_option(page, state.FED_DATASET, "digits")
    page.locator(key(state.FED_SPLIT)).get_by_text("DIRICHLET").click()
    settle(page)
    wait_chart(page, state.FED_HISTOGRAM)
    bars = plot_state(page, state.FED_HISTOGRAM)["data"]
    assert len(bars) == 10 and all(len(t["x"]) == 10 for t in bars)  # 10 classes stacked on 10 clients
    assert page.get_by_text("non-IID (Dirichlet α = 0.5)").count() >= 1
    screenshot(page, "federated_01_train_form")

    run_id = start_run(page, state.FED_TRAIN_BUTTON)
    wait_run_done(page, run_id, RUN_TIMEOUT_MS)
    wait_chart(page, state.FED_TRAIN_CHART)
    assert_no_errors(page)
    run = RunStore(Store(app.home)).get(run_id)
    assert run.status == RunStatus.DONE and run.result is not None
    main = plot_state(page, state.FED_TRAIN_CHART)["data"][-1]
    assert main["x"] == list(range(1, ROUNDS + 1))
    assert main["y"] == pytest.approx([r["test_accuracy"] for r in run.result["rounds"]])
    assert page.get_by_text(run.result["description"], exact=False).count() >= 1
    screenshot(page, "federated_02_train_done")


def test_poison_tab_compares_fedavg_and_the_median_under_a_backdoor(app: Any, page: Page) -> None:
    open_federated(app, page)
    select_option(page, state.FED_DATASET, "digits")
    page.get_by_role("tab", name="Poison").click()
    page.locator(key(state.FED_ATTACK)).get_by_text("Backdoor trigger").click()
    settle(page)
    screenshot(page, "federated_03_poison_form")
    first = start_run(page, state.FED_POISON_BUTTON)
    page.wait_for_function(  # both runs drawn in full: 2 aggregators × (clean, backdoor) curves of every round
        """([sel, n]) => {
            const gd = document.querySelector(sel + ' .js-plotly-plot');
            return gd && gd.data && gd.data.length === 4 && gd.data.every(t => t.x.length === n);
        }""",
        arg=[key(state.FED_POISON_CHART), ROUNDS],
        timeout=RUN_TIMEOUT_MS,
    )
    settle(page)
    assert_no_errors(page)
    runs = [r for r in RunStore(Store(app.home)).list_runs(study="federated") if r.config["malicious"]]
    assert sorted(r.config["aggregator"] for r in runs) == ["fedavg", "median"]
    assert all(r.status == RunStatus.DONE for r in runs)
    names = [t["name"] for t in plot_state(page, state.FED_POISON_CHART)["data"]]
    assert names == ["FedAvg (weighted mean): clean accuracy", "FedAvg (weighted mean): backdoor success",
                     "coordinate-wise median: clean accuracy", "coordinate-wise median: backdoor success"]  # fmt: skip
    screenshot(page, "federated_04_poison_done")

    linked = page.context.new_page()  # the link of the first run opens the Poison tab with both runs
    open_federated(app, linked, f"?run={first}")
    assert linked.get_by_role("tab", name="Poison").get_attribute("aria-selected") == "true"
    wait_chart(linked, state.FED_POISON_CHART)
    assert len(plot_state(linked, state.FED_POISON_CHART)["data"]) == 4
