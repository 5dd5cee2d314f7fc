"""Issue 13 "Honest first use", Robustness and Detection pages in a real browser: what a participant sees while a
sweep runs and after a detection study."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest

from dlsec_ui import state

if TYPE_CHECKING:
    from playwright.sync_api import Page

from streamlit_page import (  # skips the module when Chromium or Playwright is missing
    assert_no_errors,
    fill,
    key,
    legend_texts,
    open_page,
    press,
    screenshot,
    select_option,
    settle,
    start_run,
    wait_chart,
    wait_run_done,
)

pytestmark = pytest.mark.e2e

JOB_TIMEOUT_S = 240
DONE = '[data-testid="stAlertContentSuccess"]'

# What the page shows under the chart at one moment: is the run still queued or running, is there an "Honesty checks"
# heading, and how many findings (boxes or "curve: title" captions, or the all-clear) follow it.
_SNAPSHOT = """() => {
    const main = document.querySelector('[data-testid="stMain"]');
    const heading = [...main.querySelectorAll('h3')].some(h => h.innerText.trim() === 'Honesty checks');
    const queued = [...main.querySelectorAll('[data-testid="stAlertContentInfo"]')]
        .some(b => b.innerText.includes('waiting in the queue'));
    const running = queued || !!main.querySelector('[data-testid="stProgress"]');
    const settled = !!document.querySelector('[data-testid="stApp"][data-test-script-state="notRunning"]');
    const boxes = main.querySelectorAll('[data-testid="stAlertContentWarning"], [data-testid="stAlertContentSuccess"]');
    const findings = [...boxes].filter(b => !b.innerText.includes('done in')).length;
    return {heading, running, findings, settled};
}"""


# How many script runs (full or fragment) start within `ms` milliseconds.
_COUNT_RUNS = """(ms) => new Promise(resolve => {
    const app = document.querySelector('[data-testid="stApp"]');
    let runs = 0;
    const seen = new MutationObserver(() => {
        if (app.getAttribute('data-test-script-state') === 'running') runs += 1;
    });
    seen.observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
    setTimeout(() => { seen.disconnect(); resolve(runs); }, ms);
})"""


def test_no_empty_honesty_heading_while_a_sweep_runs(app: Any, page: Page) -> None:
    """Item 17: the heading used to stand alone under the growing chart until the checks came in."""
    open_page(page, f"{app.url}/robustness?model={app.model_id}", key(state.SWEEP_BUTTON))
    select_option(page, state.SWEEP_ATTACK, "PGD")
    select_option(page, "sweep_" + state.DEFENSE, "Bit-depth reduction")  # three curves to watch
    fill(page, "sweep_PGD_steps", "200")  # 200 steps: a run long enough to watch on a quiet machine
    press(page, state.SWEEP_POINTS, "End")  # 21 points
    run_id = start_run(page, state.SWEEP_BUTTON)
    snapshots: list[dict[str, Any]] = []
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        snapshots.append(page.evaluate(_SNAPSHOT))
        if page.locator(DONE, has_text=f"run {run_id[:6]}").count():
            break
        page.wait_for_timeout(50)
    else:
        pytest.fail("the sweep did not finish")
    page.wait_for_timeout(1000)  # the one full rerun that follows the end of the job (it stops the polling)
    settle(page)
    snapshots.append(page.evaluate(_SNAPSHOT))
    running = [s for s in snapshots if s["running"]]
    assert running, "never saw the sweep running"
    # judged once each script run has finished drawing (mid-run, the heading's delta can reach the browser a moment
    # before the boxes under it)
    empty = [s for s in snapshots if s["settled"] and s["heading"] and not s["findings"]]
    assert not empty, f"an 'Honesty checks' heading with nothing under it: {empty[:3]}"
    assert (
        snapshots[-1]["heading"] and snapshots[-1]["findings"] > 0
    )  # at the end: the heading and its checks
    # Item 10: a finished sweep is drawn once; the page used to redraw it every 0.5 s for as long as it stayed open,
    # taking the server's cores from every job still running.
    runs = page.evaluate(_COUNT_RUNS, 3000)
    assert runs == 0, f"the finished sweep's page reran {runs} times in 3 s"
    assert_no_errors(page)
    wait_chart(page, state.SWEEP_CHART)
    # a fragment rerun can leave the previous chart element behind, hidden, for a moment
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length === 1")
    screenshot(page, "robustness-honesty-after-sweep")


def test_detection_evaded_column_is_visible_without_scrolling(app: Any, page: Page) -> None:
    """Item 9: the detector-aware attack's 'evaded' column hid behind a horizontal scroll in a narrow column.
    Issue 8: the study is a stored run: its link re-attaches, and the page opens on the model's latest one."""
    open_page(page, f"{app.url}/detection?model={app.model_id}", key(state.DET_BUTTON))
    select_option(page, "det_" + state.ATTACK, "FGSM")
    press(page, state.DET_EPS_MAX, "Home")  # the smallest budget: a quick study
    run_id = start_run(page, state.DET_BUTTON)
    wait_run_done(page, run_id, JOB_TIMEOUT_S * 1000)
    table = page.locator('[data-testid="stMain"] [data-testid="stDataFrame"]').first  # the page's only table
    table.wait_for()
    wait_chart(page, state.DET_ROC)
    settle(page)

    table.locator("table[role=grid] th").first.wait_for(state="attached")  # the grid's (hidden) header cells
    headers = table.locator("table[role=grid] th").all_text_contents()
    assert [h.strip() for h in headers][:2] == ["attack", "evaded"], headers
    scroller = table.locator(".dvn-scroller").first
    widths = scroller.evaluate("el => ({scroll: el.scrollWidth, client: el.clientWidth})")
    assert widths["scroll"] <= widths["client"] + 1, f"the table scrolls sideways: {widths}"
    captions = " ".join(page.locator('[data-testid="stCaptionContainer"]').all_inner_texts())
    assert "Detector-aware PGD" in captions and "restarts" in captions and "straight-through" in captions
    assert_no_errors(page)
    runs = page.evaluate(_COUNT_RUNS, 2000)
    assert runs == 0, f"the finished study's page reran {runs} times in 2 s"
    screenshot(page, "detection-evaded-visible")
    # a new tab without the link: the model's latest finished study, drawn again from the stored result
    fresh = page.context.new_page()
    open_page(fresh, f"{app.url}/detection?model={app.model_id}", key(state.DET_BUTTON))
    fresh.locator(DONE, has_text=f"run {run_id[:6]}").wait_for()
    wait_chart(fresh, state.DET_ROC)
    assert fresh.locator('[data-testid="stMain"] [data-testid="stDataFrame"]').count() == 1
    assert_no_errors(fresh)
    fresh.close()


def test_certification_runs_live_and_reopens(app: Any, page: Page) -> None:
    """Issue 8: certification is a stored run executed by a worker: the page shows it queued or running, then the
    certified and empirical curves; its link opens it again in another tab."""
    open_page(page, f"{app.url}/certification?model={app.model_id}", key(state.CERT_BUTTON))
    run_id = start_run(page, state.CERT_BUTTON)
    seen_active = False
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline and not page.locator(DONE, has_text=f"run {run_id[:6]}").count():
        seen_active = seen_active or bool(page.evaluate(_SNAPSHOT)["running"])
        page.wait_for_timeout(100)
    wait_run_done(page, run_id, JOB_TIMEOUT_S * 1000)
    assert seen_active, "never saw the certification queued or running"
    wait_chart(page, state.CERT_CHART)
    legend = legend_texts(page, state.CERT_CHART)
    assert legend == ["certified (randomized smoothing)", "empirical (L2 PGD + EOT)"], legend
    captions = " ".join(page.locator('[data-testid="stCaptionContainer"]').all_inner_texts())
    assert "Certified: Randomized smoothing" in captions and "Empirical: PGD L2" in captions
    assert_no_errors(page)
    screenshot(page, "certification-done")
    # the Runs page shows the run with a link to its own page, which opens it again (in a new tab)
    open_page(page, f"{app.url}/runs?run={run_id}", key(state.RUNS_TABLE))
    with page.context.expect_page() as opened:
        page.get_by_role("link", name="Open it on its page").click()
    linked = opened.value
    linked.wait_for_load_state()
    assert f"/certification?run={run_id}" in linked.url
    linked.locator(DONE, has_text=f"run {run_id[:6]}").wait_for()
    wait_chart(linked, state.CERT_CHART)
    assert_no_errors(linked)
    linked.close()
