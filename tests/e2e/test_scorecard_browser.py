"""The Scorecard page and its report in a real browser: scan the seeded model as a run, the tiles show, a tile opens
its evidence (chart drawn), the report downloads; the downloaded report, opened from disk with every network
request recorded and blocked, draws every chart and asks for nothing outside the file.

Needs Debian's Chromium at /usr/bin/chromium. Screenshots: artifacts/screenshots/scorecard_*.png.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from dlsec_ui import state

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route

from streamlit_page import (  # skips the module when Chromium or Playwright is missing
    CHART,
    SCREENSHOTS,
    assert_no_errors,
    key,
    open_page,
    screenshot,
    start_run,
    wait_run_done,
)

pytestmark = pytest.mark.e2e
SCAN_TIMEOUT_MS = 180_000  # queue + a quick scan of the seeded digits logreg on a busy two-core machine


def test_scorecard_tiles_evidence_and_offline_report(app: object, page: Page, browser: Browser) -> None:
    url, model_id = app.url, app.model_id  # type: ignore[attr-defined]
    open_page(page, f"{url}/scorecard?model={model_id}", key(state.SCAN_BUTTON))
    assert_no_errors(page)
    run_id = start_run(page, state.SCAN_BUTTON)
    wait_run_done(page, run_id, SCAN_TIMEOUT_MS)
    tiles = page.locator(f'[class*="st-key-{state.SCORECARD_TILE}"]:not([class*="_open"])')
    assert tiles.count() >= 5  # clean, two PGD, Square, membership, DP claim
    assert "HIGH" in page.locator(key(f"{state.SCORECARD_TILE}2")).inner_text()  # PGD at ε = 0.3 on a logreg
    page.locator(f"{key(f'{state.SCORECARD_TILE}2_open')} button").click()
    evidence = page.locator(key(state.SCORECARD_EVIDENCE))
    evidence.wait_for()
    page.locator(f"{key(state.SCORECARD_EVIDENCE_CHART)} {CHART}").first.wait_for()
    assert "Why this severity" in evidence.inner_text() and "What would reduce it" in evidence.inner_text()
    assert_no_errors(page)
    screenshot(page, "scorecard_tiles_evidence")

    with page.expect_download() as download:
        page.locator(key(state.SCORECARD_REPORT)).get_by_role(
            "button", name="Download the report (HTML)"
        ).click()
    saved = SCREENSHOTS.parent / "scorecard_report.html"
    download.value.save_as(saved)
    text = saved.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "Security scan report" in text and run_id in text
    charts = text.count('class="chart"')
    assert charts >= 5

    # the report, offline: every request is recorded, and any that is not the file itself is blocked
    requests: list[str] = []
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    try:

        def record(route: Route) -> None:
            requests.append(route.request.url)
            if route.request.url == saved.as_uri():
                route.continue_()
            else:
                route.abort()

        context.route("**/*", record)
        offline = context.new_page()
        errors: list[str] = []
        offline.on("pageerror", lambda err: errors.append(str(err)))
        offline.goto(saved.as_uri())
        offline.wait_for_function(
            "(n) => document.querySelectorAll('.chart .js-plotly-plot .main-svg').length >= n", arg=charts
        )
        drawn = offline.evaluate(
            "() => Array.from(document.querySelectorAll('.chart .js-plotly-plot')).map(g => g.data.length)"
        )
        assert len(drawn) == charts and all(n >= 1 for n in drawn)  # every chart drew, each with its traces
        assert requests == [saved.as_uri()], requests  # nothing left the file
        assert not errors, errors
        offline.screenshot(path=str(SCREENSHOTS / "scorecard_report.png"), full_page=True)
    finally:
        context.close()
    assert Path(saved).stat().st_size < 6_000_000
