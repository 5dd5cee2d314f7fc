"""A run's link opens where it is drawn: a scan's findings on the Runs page, a gradient inversion on the Federated
learning page's Leak tab. (A federation: tests/pages/test_federated_page.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from background import finish_all, finish_work
from streamlit.testing.v1 import AppTest

from dlsec_core.runs import RunStatus, RunStore
from dlsec_core.store import ModelCard, Store
from dlsec_core.studies import catalog
from dlsec_ui import state

APP = Path(__file__).resolve().parents[2] / "app.py"


@pytest.fixture(autouse=True)
def clean_caches(tmp_home: Path) -> Iterator[None]:
    st.cache_resource.clear()
    yield
    finish_all()
    st.cache_resource.clear()


def test_a_scan_opens_on_the_runs_page_with_its_findings(tmp_home: Path, stored_model: ModelCard) -> None:
    from dlsec_core.studies.scan import ScanStudyConfig

    runs = RunStore(Store(tmp_home))
    run_id = catalog.submit(
        runs, "scan", ScanStudyConfig(model_id=stored_model.id, preset="quick", seed=1)
    ).id
    assert finish_work(run_id) is None
    found = [e["finding"] for e in runs.events(run_id) if e["type"] == "finding"]
    assert found

    at = AppTest.from_file(str(APP), default_timeout=120)
    at.query_params[state.RUN_PARAM] = run_id
    at.run()
    at.switch_page("app_pages/runs.py").run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[-1].value
    assert list(table["finding"]) == [f["title"] for f in found]
    assert list(table["severity"]) == [f["grade"]["severity"] for f in found]


def test_a_gradient_inversion_opens_on_the_leak_tab(tmp_home: Path) -> None:
    """The client's images over the reconstructions, with the stored PSNR and the labels the attack used."""
    from dlsec_core.studies.gradleak import GradLeakStudyConfig

    runs = RunStore(Store(tmp_home))
    config = GradLeakStudyConfig(dataset="digits", attack="idlg", batch_size=2, steps=4, events=2, seed=3)
    run_id = catalog.submit(runs, "gradleak", config).id
    assert finish_work(run_id) is None
    run = runs.get(run_id)
    assert run.status == RunStatus.DONE and run.result is not None
    last = [e for e in runs.events(run_id) if e["type"] == "step"][-1]
    assert last["step"] == 4 and last["psnr"] == run.result["psnr"]

    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params[state.RUN_PARAM] = run_id
    at.run()
    at.switch_page("app_pages/federated.py").run()
    assert not at.exception, [e.value for e in at.exception]
    text = " ".join(c.value for c in at.caption)
    assert "after the whole attack" in text and run.result["description"] in text
    labels = ", ".join(map(str, sorted(run.result["recovered_labels"])))
    assert f"Labels the attack used: {labels}; the client's: " in text
    chart = at.get("plotly_chart")[-1].proto.spec
    assert f"{float(run.result['psnr'][0]):.1f} dB" in chart and "label " in chart
