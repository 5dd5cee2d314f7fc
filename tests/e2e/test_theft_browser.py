"""End to end in a real browser: steal the seeded digits model on the Model theft page's Steal tab.

The run executes on the server's worker processes; the fidelity/accuracy curve gains one point per budget while
the run goes on (watched in the browser), the finished chart holds the stored result's numbers, and the caption
reports the attacker's answers from the API's log, never more than the largest budget.

Needs Debian's Chromium at /usr/bin/chromium. Screenshots go to artifacts/screenshots/theft_*.png.
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
    settle,
    start_run,
    wait_run_done,
)

pytestmark = pytest.mark.e2e

RUN_TIMEOUT_MS = 180_000


def test_steal_tab_draws_the_curve_live_and_respects_the_budget(app: Any, page: Page) -> None:
    page.goto(f"{app.url}/theft")
    page.locator(f"{key(state.THEFT_BUTTON)} button").wait_for()
    settle(page)
    assert (
        page.get_by_text("Orekondy et al. 2019").count() >= 1
    )  # Knockoff, the default attack, names its paper
    screenshot(page, "theft_01_steal_form")

    # record the number of points the live chart holds, each time it changes
    page.evaluate(
        """(sel) => {
            window.__points = [];
            window.__watch = setInterval(() => {
                const gd = document.querySelector(sel + ' .js-plotly-plot');
                if (!gd || !gd.data || !gd.data.length) return;
                const n = gd.data[0].x.length;
                if (window.__points[window.__points.length - 1] !== n) window.__points.push(n);
            }, 50);
        }""",
        key(state.THEFT_CHART),
    )
    run_id = start_run(page, state.THEFT_BUTTON)
    wait_run_done(page, run_id, RUN_TIMEOUT_MS)
    seen = page.evaluate("() => { clearInterval(window.__watch); return window.__points; }")
    assert seen[-1] == 3 and len(seen) >= 2, f"the curve grew point by point: {seen}"

    run = RunStore(Store(app.home)).get(run_id)
    assert run.status == RunStatus.DONE and run.result is not None
    points = run.result["points"]
    chart = plot_state(page, state.THEFT_CHART)
    fidelity, accuracy = chart["data"][:2]
    assert fidelity["x"] == [250, 500, 1000] == [p["queries"] for p in points]
    assert fidelity["y"] == pytest.approx([p["fidelity"] for p in points])
    assert accuracy["y"] == pytest.approx([p["accuracy"] for p in points])
    assert fidelity["y"][-1] > fidelity["y"][0]
    assert run.result["answered"] == 1000
    caption = page.locator(
        '[data-testid="stCaptionContainer"]', has_text="answers to the attacker"
    ).inner_text()
    assert "1,000 answers to the attacker, never more than its budget" in caption
    assert f"{points[-1]['fidelity']:.1%} of the test" in caption
    assert_no_errors(page)
    screenshot(page, "theft_02_curve")

    page.get_by_role("tab", name="Defend").click()  # PRADA on the attacker's stream and on a benign client
    page.get_by_text("Juuti et al. 2019").first.wait_for()
    assert page.get_by_text("Coming:").count() == 0
    screenshot(page, "theft_03_defend")
