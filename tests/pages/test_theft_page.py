"""The Model theft page through AppTest: the Steal tab queues an extraction run whose curve and caption are the
core's numbers; the tabs not built yet say so; the Home page's theft card is on."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import streamlit as st
from background import finish_all, finish_work
from streamlit.testing.v1 import AppTest

from dlsec_core.runs import RunStatus, RunStore
from dlsec_core.store import ModelCard, Store
from dlsec_ui import state

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app.py"


@pytest.fixture
def app(tmp_home: Path) -> Iterator[Callable[[str], AppTest]]:
    st.cache_resource.clear()
    st.cache_data.clear()

    def open_page(page: str) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.run()
        at.switch_page(page).run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    yield open_page
    finish_all()
    st.cache_resource.clear()
    st.cache_data.clear()


def test_steal_by_equation_solving_draws_the_core_curve(
    app: Callable[[str], AppTest], tmp_home: Path, stored_model: ModelCard
) -> None:
    at = app("app_pages/theft.py")
    at.selectbox(key=state.THEFT_ATTACK).select("equation-solving")
    at.multiselect(key=state.THEFT_BUDGETS).set_value([65, 250])
    at.button(key=state.THEFT_BUTTON).click().run()
    assert not at.exception, [e.value for e in at.exception]
    run_id = at.session_state[state.THEFT_JOB]
    assert finish_work(run_id) is None
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    run = RunStore(Store(tmp_home)).get(run_id)
    assert run.status == RunStatus.DONE and run.result is not None
    assert [p["queries"] for p in run.result["points"]] == [65, 250]
    fidelity = run.result["points"][-1]["fidelity"]
    assert fidelity >= 0.999
    text = " ".join(c.value for c in at.caption)
    assert "Tramèr et al. 2016" in text and f"{fidelity:.1%} of the test images" in text
    assert "250 answers to the attacker" in text
    assert at.get("plotly_chart"), "the curve is drawn"
    infos = " ".join(i.value for i in at.info)
    assert "Coming: PRADA" in infos and "Coming: a watermark" in infos


def test_a_bad_setting_is_a_sentence_not_a_run(
    app: Callable[[str], AppTest], tmp_home: Path, stored_model: ModelCard
) -> None:
    at = app("app_pages/theft.py")
    at.multiselect(key=state.THEFT_BUDGETS).set_value([])
    at.button(key=state.THEFT_BUTTON).click().run()
    assert not at.exception and "Query budgets are positive integers" in at.error[0].value
    assert RunStore(Store(tmp_home)).count_runs() == 0


def test_the_home_page_theft_card_is_on(app: Callable[[str], AppTest]) -> None:
    at = app("app_pages/home.py")
    theft = [m.value for m in at.markdown if "Model theft" in m.value]
    assert theft and ":green-badge[available]" in theft[0]
