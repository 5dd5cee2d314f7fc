"""The MITRE ATLAS page in a real browser: the tactic matrix draws (lit links, grey entries that are no links), and
a lit technique opens the page that demonstrates it, inside the app's frame.

Needs Debian's Chromium at /usr/bin/chromium. Screenshots: artifacts/screenshots/atlas_*.png.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlparse

import pytest

from dlsec_core.atlas_coverage import atlas_matrix

if TYPE_CHECKING:
    from playwright.sync_api import Page

from streamlit_page import (  # skips the module when Chromium or Playwright is missing
    assert_no_errors,
    open_page,
    screenshot,
    settle,
)

pytestmark = pytest.mark.e2e
LINKS = '[data-testid="stPageLink"] a'


def test_atlas_matrix_links_a_technique_to_its_page(app: object, page: Page) -> None:
    url = app.url  # type: ignore[attr-defined]
    open_page(page, f"{url}/atlas", "h1:has-text('MITRE ATLAS')")
    assert_no_errors(page)
    matrix = atlas_matrix()
    lit = {c.entry.id for col in matrix.columns for c in col.cells if c.demonstrated}
    grey = {c.entry.id for col in matrix.columns for c in col.cells if not c.demonstrated}
    main = page.locator('[data-testid="stMain"]')
    # waited for, not counted at once: the idle state can be read before the first script run has drawn it all
    for column in matrix.columns:  # one column per tactic, headed by its name
        main.locator("strong", has_text=column.tactic.name).first.wait_for()
    for atlas_id in lit:
        main.locator(LINKS, has_text=atlas_id).first.wait_for()
    # every label is readable in full: none is cut to "AML.T00..." by Streamlit's one-line ellipsis
    cut = page.evaluate(
        """() => Array.from(document.querySelectorAll('[data-testid="stMain"] [data-testid="stPageLink-NavLink"]'))
            .map(a => a.querySelector('[data-testid="stMarkdownContainer"]').parentElement)
            .filter(label => label.offsetParent !== null && label.scrollWidth > label.clientWidth + 1)
            .map(label => label.innerText)"""
    )
    assert cut == []
    for atlas_id in grey:  # shown, but not a link
        assert main.get_by_text(atlas_id).count() >= 1, atlas_id
        assert main.locator(LINKS, has_text=atlas_id).count() == 0, atlas_id
    screenshot(page, "atlas_matrix")

    main.locator(LINKS, has_text="AML.T0024.000 Infer Training Data Membership").first.click()
    page.locator("h1", has_text="Membership inference").wait_for()
    settle(page)
    assert urlparse(page.url).path.rstrip("/").endswith("/membership")
    assert page.locator(".st-key-seed input").count() == 1  # inside the app's frame (sidebar, seed)
    assert_no_errors(page)
    screenshot(page, "atlas_followed_to_membership")
