"""The Scorecard page through AppTest: scan a model as a run, its findings as tiles with the finding's own
numbers, a tile opens its evidence, a ?run= link re-attaches, the comparison has a row per finding and a column per
model, and a PDF without Chromium is a sentence, not a crash."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from background import finish_work
from streamlit.testing.v1 import AppTest

from dlsec_core.runs import RunStatus, RunStore
from dlsec_core.store import ModelCard, Store
from dlsec_ui import state
from dlsec_ui.scorecard import headline, scan_of
from tests.pages import test_pages_apptest as pages
from tests.scan_runs import finished_scan, train_digits

PAGE = "app_pages/scorecard.py"
app = pages.app  # opens a page over this test's DLSEC_HOME, with the app's frame
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def tiles(at: AppTest) -> list[tuple[str, str]]:
    """(title, number) of every tile, in order."""
    titles = [m.value.strip("*") for m in at.markdown if m.value.startswith("**") and m.value.endswith("**")]
    return list(
        zip(titles[1:], [m.value for m in at.metric], strict=True)
    )  # the first bold line: the verdict


def test_scan_a_model_and_open_a_tiles_evidence(
    app: Callable[[str], AppTest], tmp_home: Path, stored_model: ModelCard
) -> None:
    at = app(PAGE)
    assert any("no scan yet" in i.value for i in at.info)
    at.button(key=state.SCAN_BUTTON).click().run()
    run_id = at.session_state[state.SCAN_JOB]
    assert at.query_params[state.RUN_PARAM] == run_id  # a link to this view re-attaches to the run
    assert finish_work(run_id) is None
    at.run()
    pages.assert_ok(at)
    run = RunStore(Store(tmp_home)).get(run_id)
    assert run.status == RunStatus.DONE and run.config["model_id"] == stored_model.id
    result = scan_of(run)
    assert tiles(at) == [(f.title, headline(f)) for f in result.findings]  # one tile per finding, its number
    worst = max(result.findings, key=lambda f: f.severity.rank)
    i = result.findings.index(worst)
    at.button(key=f"{state.SCORECARD_TILE}{i}_open").click().run()
    pages.assert_ok(at)
    assert [h.value for h in at.subheader] == [f"{worst.title}: {str(worst.severity).upper()}"]
    assert any(worst.grade.rule in m.value for m in at.markdown)  # why this severity, with its threshold
    assert any(worst.reduce in m.value for m in at.markdown)


def test_a_run_link_reattaches_and_a_pdf_without_chromium_says_so(
    app: Callable[[str], AppTest], tmp_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = train_digits(tmp_home, "first")
    second = train_digits(tmp_home, "second", arch="mlp")
    run_id = finished_scan(tmp_home, second.id)
    finished_scan(tmp_home, first.id)
    at = app(PAGE)
    at.query_params[state.RUN_PARAM] = run_id
    at.run()
    pages.assert_ok(at)
    assert at.selectbox(key=state.SCORECARD_MODEL).value == second.id  # the linked scan's model
    assert [t for t, _ in tiles(at)] == [
        f.title for f in scan_of(RunStore(Store(tmp_home)).get(run_id)).findings
    ]
    monkeypatch.setenv("DLSEC_CHROMIUM", str(tmp_home / "no-chromium"))
    at.button(key=state.SCORECARD_PDF_BUTTON).click().run()
    pages.assert_ok(at)
    assert any("no Chromium was found" in e.value for e in at.error)
    assert (
        tmp_home / "runs" / run_id / "report.html"
    ).exists()  # the HTML is written and stored all the same
    # the comparison: one row per finding, a column per scanned model
    table = at.dataframe[-1].value
    assert len(table.columns) == 3 and len(table) == len(
        scan_of(RunStore(Store(tmp_home)).get(run_id)).findings
    )


def test_the_thorough_preset_and_how_the_model_is_served_reach_the_scan(
    app: Callable[[str], AppTest], tmp_home: Path, stored_model: ModelCard
) -> None:
    at = app(PAGE)
    at.segmented_control(key=state.SCAN_PRESET).set_value("thorough").run()
    at.selectbox(key=state.SCAN_TRANSFORM).set_value("bit-depth").run()
    at.selectbox(key=state.SCAN_POLICY).set_value("label").run()
    pages.assert_ok(at)
    assert at.button(key=state.SCAN_BUTTON).label.startswith("Scan this model (thorough")
    at.button(key=state.SCAN_BUTTON).click().run()
    pages.assert_ok(at)
    config = RunStore(Store(tmp_home)).get(at.session_state[state.SCAN_JOB]).config
    assert (config["preset"], config["input_transform"], config["output_policy"]) == (
        "thorough",
        "bit-depth",
        "label",
    )
    assert "bits" in config["transform_params"]  # the transform's own settings, from its generated form
