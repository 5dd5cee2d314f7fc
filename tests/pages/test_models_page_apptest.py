"""Home's promises and the Models page's lists through AppTest (issue 13): what Home says the defaults do, the card
following the model a link names, and an import listed in the same run that made it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from dlsec_core.runs import RunStore
from dlsec_core.store import ModelCard, Store
from dlsec_core.studies import catalog
from dlsec_core.studies.sweep import SweepStudyConfig
from dlsec_ui import state
from dlsec_ui.widgets import DEFAULT_TRAINING_TIME

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app.py"
RESULTS = ROOT / "benchmarks" / "results"
TIMEOUT = 60.0


@pytest.fixture(autouse=True)
def _fresh_caches(tmp_home: Path) -> Iterator[None]:
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()
    st.cache_data.clear()


def open_app(page: str | None = None, **query: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(query)
    at.run()
    if page is not None:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_home_says_what_the_defaults_do() -> None:
    """Home's numbers are the measured ones (benchmarks/results), not hopes: 4,000 training digits, the default
    run's time, and a loss attack that does not separate the default cnn's members (LiRA is the one to pick)."""
    at = open_app()
    text = " ".join(m.value for m in at.markdown)
    assert "4,000 MNIST digits" in text and "5,000 MNIST digits" not in text
    assert "15 s" not in text and DEFAULT_TRAINING_TIME in text
    seconds = [
        json.loads((RESULTS / "default_training_run1.json").read_text())["wall_seconds"],
        json.loads((RESULTS / "membership_default_cnn_run1.json").read_text())["target_training"]["seconds"],
    ]
    assert f"{min(seconds):.0f} to {max(seconds):.0f} s" in DEFAULT_TRAINING_TIME
    runs = json.loads((RESULTS / "membership_default_cnn_run1.json").read_text())["runs"]
    assert "bows above the diagonal" not in text
    assert (
        f"AUC {runs['loss']['auc']:.3f}" in text
        and f"{100 * runs['loss']['tpr_at_1pct']:.1f} % true-positive" in text
    )
    assert "LiRA" in text and f"{100 * runs['lira']['tpr_at_0_1pct']:.1f} % of the members at 0.1 %" in text
    assert (
        f"with {runs['lira']['shadows']} shadows" in text and f"AUC stayed {runs['lira']['auc']:.2f}" in text
    )


def test_the_card_is_the_linked_models(
    stored_model: ModelCard, tmp_home: Path, trained_digits: object, save_trained: Callable[..., ModelCard]
) -> None:
    newer = save_trained(tmp_home, trained_digits, name="newer")
    assert Store(tmp_home).list_models()[0].id == newer.id
    at = open_app("app_pages/models.py", model=stored_model.id)
    assert at.sidebar.selectbox(key=state.MODEL).value == stored_model.id
    assert at.selectbox(key=state.CARD_MODEL).value == stored_model.id
    # Picking a card makes it the current model.
    at.selectbox(key=state.CARD_MODEL).select(newer.id).run()
    assert at.sidebar.selectbox(key=state.MODEL).value == newer.id
    assert at.query_params["model"] == newer.id


def test_an_import_is_listed_in_the_same_run(stored_model: ModelCard, tmp_home: Path) -> None:
    at = open_app("app_pages/models.py")
    at.file_uploader(key=state.UPLOAD_WEIGHTS).upload(
        "exported.safetensors", Store(tmp_home).weights_bytes(stored_model.id)
    )
    at.text_input(key=state.UPLOAD_NAME).input("re-imported")
    at.selectbox(key=state.UPLOAD_DATASET).select("digits")
    at.run()
    at.button(key=state.UPLOAD_BUTTON).click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    imported = next(c for c in Store(tmp_home).list_models() if c.name == "re-imported")
    assert "re-imported" in list(at.dataframe[0].value["name"])
    assert at.sidebar.selectbox(key=state.MODEL).value == imported.id


def _sweep(model_id: str, eps: float) -> SweepStudyConfig:
    return SweepStudyConfig(
        model_ids=[model_id], attack="fgsm", eps=[0.0, eps], n_images=32, sanity_checks=False
    )


def test_a_model_card_lists_the_runs_that_read_or_made_it(
    stored_model: ModelCard, tmp_home: Path, trained_digits: object, save_trained: Callable[..., ModelCard]
) -> None:
    """Issue 8: the card lists its model's newest runs (study, status, when), each a link that opens the run on its
    study's page, and links to the Runs page filtered on the model, which lists exactly those runs."""
    from background import finish_work

    runs = RunStore(Store(tmp_home))
    other = save_trained(tmp_home, trained_digits, name="other")
    done = catalog.submit(runs, "sweep", _sweep(stored_model.id, 0.1))
    assert finish_work(done.id) is None
    queued = [catalog.submit(runs, "sweep", _sweep(stored_model.id, 0.1 + i / 100)) for i in range(1, 6)]
    elsewhere = catalog.submit(runs, "sweep", _sweep(other.id, 0.1))
    newest_first = [r.id for r in reversed([done, *queued])]

    at = open_app("app_pages/models.py", model=stored_model.id)
    links = [link.proto for link in at.get("page_link")]
    run_links = [p for p in links if p.query_string.startswith("run=")]
    assert [p.query_string for p in run_links] == [f"run={i}" for i in newest_first[:5]]  # the newest five
    assert {p.page for p in run_links} == {"robustness"}  # a sweep opens on the Robustness page
    assert run_links[-1].label == runs.get(queued[0].id).title
    assert f"run={elsewhere.id}" not in [p.query_string for p in links]
    captions = [c.value for c in at.caption]
    assert sum(c.startswith("sweep · queued · ") for c in captions) == 5
    assert not any(c.startswith("sweep · done") for c in captions)  # the sixth run is behind the "all" link
    (all_runs,) = [p for p in links if p.page == "runs"]
    assert all_runs.label == "All 6 runs of this model on the Runs page"
    assert all_runs.query_string == f"model={stored_model.id}&runs_only_model=true"

    # The "all" link's page: the Runs page filtered on the model (the sidebar's current model is the link's).
    at = open_app("app_pages/runs.py", model=stored_model.id, runs_only_model="true")
    assert at.toggle(key=state.RUNS_ONLY_MODEL).value is True
    assert sorted(at.dataframe[0].value["run"]) == sorted(newest_first)
    at.toggle(key=state.RUNS_ONLY_MODEL).set_value(False).run()
    assert len(at.dataframe[0].value["run"]) == 7

    # A run's link opens that run on its study's page, even when this session followed another run there.
    at = open_app("app_pages/robustness.py", model=stored_model.id)
    at.session_state[state.SWEEP_JOB] = queued[-1].id
    at.query_params[state.RUN_PARAM] = done.id
    at.run()
    assert any(f"run {done.id[:6]}" in s.value for s in at.success), [s.value for s in at.success]


def test_a_card_without_runs_says_so(stored_model: ModelCard) -> None:
    at = open_app("app_pages/models.py", model=stored_model.id)
    assert not [p for p in at.get("page_link") if p.proto.page == "runs"]
    assert any(c.value.startswith("No run has read or made this model yet") for c in at.caption)
