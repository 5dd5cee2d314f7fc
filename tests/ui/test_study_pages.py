"""Every registered study has a page that opens its runs: a run's link lands on that page, which re-attaches to the
run named in `?run=` (`dlsec_ui.runs.attach(..., study=<name>)`)."""

from __future__ import annotations

from pathlib import Path

from dlsec_core.studies.catalog import STUDIES
from dlsec_ui.runs import RUNS_PAGE, STUDY_PAGES

ROOT = Path(__file__).resolve().parents[2]


def test_every_study_has_a_page_that_attaches_to_its_runs() -> None:
    assert set(STUDY_PAGES) == set(STUDIES)
    for name, page in STUDY_PAGES.items():
        source = (ROOT / page).read_text()
        if (
            page == RUNS_PAGE
        ):  # no page of its own yet: the Runs page attaches to any run and draws this study
            assert f'run.study == "{name}"' in source, f"the Runs page does not draw {name} runs"
        else:
            assert f'study="{name}"' in source, f"{page} does not attach to {name} runs"
        assert page in (ROOT / "app.py").read_text(), f"{page} is not in the navigation"


def test_the_sidebar_shows_every_visible_page_without_folding() -> None:
    """Streamlit 1.67 folds a sidebar navigation of more than 12 pages behind "View N more" (its SidebarNav: 10
    shown, 2 of slack) unless `expanded=True`; the lab's pages are grouped in sections and all show."""
    source = (ROOT / "app.py").read_text()
    assert "st.navigation(SECTIONS, expanded=True)" in source
    assert source.count('visibility="hidden"') == 0, "every page is reachable from the sidebar"
