"""Playwright idioms for driving the Streamlit app in Debian's Chromium, shared by the e2e test files.

(Imported by module name: pytest puts this folder on sys.path for the tests in it. A conftest cannot be imported.)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():  # a test module importing this is skipped, with the reason
    pytest.skip(
        f"end-to-end tests need Debian's Chromium at {CHROMIUM} (apt-get install -y chromium)",
        allow_module_level=True,
    )
pytest.importorskip("playwright.sync_api", reason="end-to-end tests need playwright (requirements-dev.txt)")
from playwright.sync_api import TimeoutError as PlaywrightTimeout  # noqa: E402  (after the skips)

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
CHART = ".js-plotly-plot .main-svg"


def key(widget_key: str) -> str:
    """CSS selector of a keyed element (Streamlit gives it the class st-key-<key>)."""
    return f".st-key-{widget_key}"


def settle(page: Page) -> None:
    """Wait until the script run triggered by the last interaction has finished."""
    page.wait_for_timeout(150)  # let the rerun request reach the server and flip the state to "running"
    page.wait_for_selector(IDLE)


def open_page(page: Page, url: str, ready: str) -> None:
    """Go to `url` and wait until `ready` is visible and the script is idle."""
    page.goto(url)
    page.locator(ready).first.wait_for()
    settle(page)


def screenshot(page: Page, name: str) -> Path:
    """A screenshot of the whole page once every Plotly chart has drawn (else they are grey boxes).

    Streamlit scrolls inside its main container, so a full-page screenshot stops at the window: the window is made
    as tall as the content for the shot, then restored.
    """
    viewport = page.viewport_size or {"width": 1400, "height": 1000}
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size(
        {"width": viewport["width"], "height": max(viewport["height"], min(int(height), 6000))}
    )
    try:
        for plot in page.locator(".js-plotly-plot").all():
            if plot.evaluate("el => el.getClientRects().length === 0"):
                continue  # in a tab that is not shown: nothing to draw in the picture
            plot.locator(".main-svg").first.wait_for()
        page.wait_for_timeout(300)  # let Plotly redraw at the new size
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(viewport)
    return path


def wait_chart(page: Page, chart_key: str) -> None:
    """Wait until the Plotly chart with this key has drawn (Plotly loads lazily)."""
    page.locator(f"{key(chart_key)} {CHART}").first.wait_for()


#: The Attack Lab's light view (dlsec_ui/lab_view.py): three images under their titles, and a table of bars.
TRIPTYCH = '.st-key-triptych [data-testid="stImage"] img'


def wait_triptych(page: Page) -> None:
    page.locator(TRIPTYCH).first.wait_for()


def triptych_titles(page: Page) -> list[str]:
    """The Attack Lab's three panel titles as the browser shows them, their lines joined by '<br>' (as in the
    Plotly view's subplot titles)."""
    wait_triptych(page)
    return list(
        page.evaluate(
            """() => [...document.querySelectorAll('.st-key-triptych [data-testid=stMarkdownContainer]')]
                .map(m => m.innerText.trim().split('\\n').map(s => s.trim()).filter(s => s).join('<br>'))"""
        )
    )


def probabilities(page: Page) -> list[dict[str, Any]]:
    """The Attack Lab's probability table: [{"name": "original", "y": [...]}, {"name": "adversarial", "y": [...]}],
    one value per class, read from the bars the browser shows."""
    page.locator(".st-key-prob_bars table").first.wait_for()
    return list(
        page.evaluate(
            """() => ['original', 'adversarial'].map(which => ({
                name: which,
                y: [...document.querySelectorAll(`.st-key-prob_bars td[data-which=${which}]`)]
                    .map(td => parseFloat(td.dataset.p)),
            }))"""
        )
    )


def metric(page: Page, label: str) -> str:
    box = page.locator('[data-testid="stMetric"]').filter(
        has=page.locator('[data-testid="stMetricLabel"]', has_text=label)
    )
    return box.locator('[data-testid="stMetricValue"]').inner_text().strip()


def plot_state(page: Page, chart_key: str) -> dict[str, Any]:
    """The data and annotation texts (subplot titles) of the Plotly chart with this key, as the browser holds them."""
    return page.evaluate(
        """(sel) => {
            const gd = document.querySelector(sel + ' .js-plotly-plot');
            return {
                data: gd.data.map(t => ({x: Array.from(t.x || []), y: Array.from(t.y || []), name: t.name})),
                titles: (gd.layout.annotations || []).map(a => a.text),
            };
        }""",
        key(chart_key),
    )


def legend_texts(page: Page, chart_key: str) -> list[str]:
    """The legend entries as drawn in the chart's SVG."""
    return [t.strip() for t in page.locator(f"{key(chart_key)} .legend .legendtext").all_text_contents()]


def select_option(page: Page, widget_key: str, option: str, *, exact: bool = True) -> None:
    """Pick an option of a select box (a combobox in Streamlit 1.67) by its label, or by part of it.

    A rerun that redraws the select box closes its open list (seen once, when a click landed in the full rerun that
    follows a finished training job), so the click is repeated until the list stays open.
    """
    box = page.locator(f"{key(widget_key)} input[role=combobox]")
    for _ in range(5):
        box.click()
        try:
            page.wait_for_selector(f'{key(widget_key)} input[aria-expanded="true"]', timeout=3_000)
            break
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    if exact:
        page.get_by_role("option", name=option, exact=True).click()
    else:
        page.get_by_role("option").filter(has_text=option).first.click()
    settle(page)


def slider(page: Page, widget_key: str) -> Locator:
    return page.locator(f"{key(widget_key)} input[type=range]")


def press(page: Page, widget_key: str, *keys: str) -> None:
    """Move a slider with the keyboard."""
    slider(page, widget_key).focus()
    for k in keys:
        page.keyboard.press(k)
    settle(page)


def fill(page: Page, widget_key: str, text: str) -> None:
    """Type into a text or number input and commit it with Enter."""
    box = page.locator(f"{key(widget_key)} input")
    box.fill(text)
    box.press("Enter")
    settle(page)


def table_column(page: Page, column: int) -> list[str]:
    """One column (1-based) of the first st.dataframe, read from the grid's accessible table (the visible cells are
    drawn on a canvas)."""
    grid = page.locator('[data-testid="stDataFrame"] table[role=grid]').first
    grid.wait_for(state="attached")
    return [c.strip() for c in grid.locator(f'td[aria-colindex="{column}"]').all_text_contents()]


def navigate(page: Page, title: str, ready: str) -> None:
    """Open a page from the sidebar navigation, as a user would."""
    page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
    page.locator("h1", has_text=title).wait_for()
    page.locator(ready).first.wait_for()
    settle(page)


def alerts(page: Page, kind: str) -> list[str]:
    return page.locator(f'[data-testid="stAlertContent{kind}"]').all_inner_texts()


def assert_no_errors(page: Page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0
    assert not alerts(page, "Error"), alerts(page, "Error")


DONE = '[data-testid="stAlertContentSuccess"]'


def run_in_url(page: Page) -> str | None:
    """The stored run the page follows (`?run=<id>` in its URL), if any."""
    from urllib.parse import parse_qs, urlparse

    return (parse_qs(urlparse(page.url).query).get("run") or [None])[0]


def start_run(page: Page, button_key: str) -> str:
    """Click a button that submits a stored run; returns the new run's id (the page puts it in its URL)."""
    before = run_in_url(page)
    page.locator(f"{key(button_key)} button").click()
    page.wait_for_function(
        "(b) => { const r = new URL(location.href).searchParams.get('run'); return r && r !== b; }",
        arg=before,
    )
    run_id = run_in_url(page)
    assert run_id is not None
    return run_id


def wait_run_done(page: Page, run_id: str, timeout_ms: float) -> None:
    """Wait until the page says this run is done (its message names the run), and the page is idle again."""
    page.locator(DONE, has_text=f"run {run_id[:6]}").wait_for(timeout=timeout_ms)
    settle(page)
