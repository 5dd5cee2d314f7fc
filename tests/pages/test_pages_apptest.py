"""Every page through Streamlit's AppTest: registration, smoke runs, and the main interaction of each page.

AppTest cannot see Plotly charts (tests/ui/test_figures.py tests the figure builders), and `run_every`
fragments never fire here: a test executes the run itself (tests/pages/background.py), then runs the script again.
"""

from __future__ import annotations

import ast
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import streamlit as st
from background import finish_all, finish_work
from streamlit.testing.v1 import AppTest

from dlsec_core.attacks.base import ATTACKS
from dlsec_core.store import ModelCard, Store
from dlsec_ui import state
from dlsec_ui.widgets import EPS_RANGE

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app.py"
TIMEOUT = 60.0  # seconds per script run: torch's first import alone can take several on a busy machine
EPS_KEY = f"{state.EPS}_linf"  # widgets.eps_slider keys the slider by norm; the default norm is L∞


def _st_pages() -> list[tuple[str, bool]]:
    """(path, default) of every `st.Page("<file>.py", ...)` in app.py, read from its syntax tree (nothing runs)."""
    found = []
    for node in ast.walk(ast.parse(APP.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "Page"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and str(node.args[0].value).endswith(".py")
        ):
            default = any(
                k.arg == "default" and isinstance(k.value, ast.Constant) and k.value.value is True
                for k in node.keywords
            )
            found.append((str(node.args[0].value), default))
    return found


def registered_pages() -> list[str]:
    return sorted(path for path, _ in _st_pages())


PAGES = registered_pages()
DEFAULT_PAGE = next((path for path, default in _st_pages() if default), PAGES[0] if PAGES else "")


def page_file(stem: str) -> str:
    return next((p for p in PAGES if Path(p).stem == stem), f"<{stem} is not registered>")


MODELS, ATTACK_LAB, ROBUSTNESS = page_file("models"), page_file("attack_lab"), page_file("robustness")


class _Marker:
    """Unpickling this would create a file: the proof that an upload was (wrongly) unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.path), "w"))


@pytest.fixture
def app(tmp_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], AppTest]]:
    """Open a page of the app, as a fresh browser session would, over this test's DLSEC_HOME.

    (The page scripts live in `app_pages/`, not `pages/`: with a `pages/` folder Streamlit runs a deep-linked
    page on its own, without app.py's frame, until some session has opened the root URL.)
    """
    st.cache_resource.clear()
    st.cache_data.clear()

    def open_page(page: str = DEFAULT_PAGE) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
        at.run()
        if page != DEFAULT_PAGE:
            at.switch_page(page).run()
        assert_ok(at)
        assert at.sidebar.number_input(key=state.SEED), "the frame (app.py's sidebar) did not run"
        return at

    yield open_page
    finish_all()
    st.cache_resource.clear()
    st.cache_data.clear()


def assert_ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def metric(at: AppTest, label: str) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert values, f"no metric {label!r}; metrics: {[m.label for m in at.metric]}"
    return values[0]


def norm_radio(at: AppTest) -> Any:
    """The attack form's norm radio (generated from the attack's `norm` field; its key ends in "_norm")."""
    radios = [r for r in at.radio if r.key and r.key.endswith("_norm")]
    assert len(radios) == 1, [r.key for r in at.radio]
    return radios[0]


def wait_for(at: AppTest, job_key: str) -> None:
    """Let the run or job this session submitted finish, then rerun the script (what the polling fragment does)."""
    assert finish_work(at.session_state[job_key]) is None
    at.run()
    assert_ok(at)


# -- registration and smoke runs ---------------------------------------------------------------------------


def test_every_page_file_is_registered() -> None:
    assert PAGES, "app.py registers no st.Page files"
    folders = {str(Path(p).parent) for p in PAGES}
    assert len(folders) == 1, f"pages live in one folder, found {folders}"
    folder = folders.pop()
    on_disk = sorted(f"{folder}/{f.name}" for f in (ROOT / folder).glob("*.py") if f.name != "__init__.py")
    assert on_disk == PAGES  # a page file missing from st.navigation would be unreachable
    assert len({path for path, default in _st_pages() if default}) == 1, "exactly one default page"


@pytest.mark.parametrize("with_model", [False, True], ids=["empty-store", "one-model"])
@pytest.mark.parametrize("page", PAGES)
def test_page_runs(
    page: str, with_model: bool, app: Callable[[str], AppTest], request: pytest.FixtureRequest
) -> None:
    if with_model:
        card: ModelCard = request.getfixturevalue("stored_model")
    at = app(page)
    assert at.title, "every page has a title"
    picker = [s for s in at.sidebar.selectbox if s.key == state.MODEL]
    if with_model:
        assert picker and picker[0].value == card.id
    else:
        assert not picker
        assert any("No stored model" in c.value for c in at.sidebar.caption)


# -- models page -------------------------------------------------------------------------------------------


def test_train_lists_the_new_model(app: Callable[[str], AppTest], tmp_home: Path) -> None:
    at = app(MODELS)
    at.selectbox(key=state.TRAIN_DATASET).select("digits")
    at.selectbox(key=state.TRAIN_ARCH).select("logreg")
    at.slider(key=state.TRAIN_EPOCHS).set_value(1)
    at.text_input(key=state.TRAIN_NAME).input("apptest-trained")
    at.button(key=state.TRAIN_BUTTON).click().run()
    assert_ok(at)
    assert not at.error
    wait_for(at, state.TRAIN_JOB)

    assert any("done" in s.value for s in at.success)
    table = at.dataframe[0].value
    assert list(table["name"]) == ["apptest-trained"]
    assert list(table["dataset"]) == ["digits"] and list(table["arch"]) == ["logreg"]
    cards = Store(tmp_home).list_models()
    assert [c.name for c in cards] == ["apptest-trained"]
    assert cards[0].train_config["epochs"] == 1
    assert at.sidebar.selectbox(key=state.MODEL).value == cards[0].id


def test_delete_removes_the_model(
    app: Callable[[str], AppTest], stored_model: ModelCard, tmp_home: Path
) -> None:
    at = app(MODELS)
    assert len(at.dataframe[0].value) == 1
    at.button(key=state.DELETE_BUTTON).click().run()
    assert_ok(at)
    assert Store(tmp_home).list_models() == []
    assert not (tmp_home / "models" / f"{stored_model.id}.safetensors").exists()
    assert not at.dataframe
    assert any("No model yet" in c.value for c in at.caption)


@pytest.mark.parametrize("filename", ["model.pt", "model.safetensors"], ids=["pt-name", "disguised"])
def test_pickle_upload_is_refused(
    filename: str, app: Callable[[str], AppTest], stored_model: ModelCard, tmp_home: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "unpickled.marker"
    at = app(MODELS)
    at.file_uploader(key=state.UPLOAD_WEIGHTS).upload(filename, pickle.dumps(_Marker(marker)))
    at.run()
    at.button(key=state.UPLOAD_BUTTON).click().run()
    assert_ok(at)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "pickl" in errors[0], errors
    assert not at.success
    assert not marker.exists()
    assert [c.id for c in Store(tmp_home).list_models()] == [stored_model.id]


def test_safetensors_upload_is_imported(
    app: Callable[[str], AppTest], stored_model: ModelCard, tmp_home: Path
) -> None:
    weights = Store(tmp_home).weights_bytes(stored_model.id)  # carries its spec in the metadata
    at = app(MODELS)
    at.file_uploader(key=state.UPLOAD_WEIGHTS).upload("exported.safetensors", weights)
    at.text_input(key=state.UPLOAD_NAME).input("re-imported")
    at.selectbox(key=state.UPLOAD_DATASET).select("digits")
    at.run()
    at.button(key=state.UPLOAD_BUTTON).click().run()
    assert_ok(at)
    assert not at.error, [e.value for e in at.error]
    assert any("Imported re-imported" in s.value for s in at.success)
    cards = Store(tmp_home).list_models()
    assert sorted(c.name for c in cards) == ["digits-logreg", "re-imported"]
    imported = next(c for c in cards if c.name == "re-imported")
    assert imported.source == "uploaded"
    assert imported.clean_accuracy == pytest.approx(stored_model.clean_accuracy, abs=1e-6)


# -- attack lab --------------------------------------------------------------------------------------------


def open_fgsm_lab(app: Callable[[str], AppTest]) -> AppTest:
    """The Attack Lab on FGSM, L∞ (its perturbation is exactly ε wherever the box [0, 1] does not clip)."""
    at = app(ATTACK_LAB)
    at.selectbox(key=state.ATTACK).select("fgsm").run()
    assert norm_radio(at).value == "linf"  # FGSM's own default norm
    assert_ok(at)
    return at


def test_eps_slider_changes_the_attack(app: Callable[[str], AppTest], stored_model: ModelCard) -> None:
    at = open_fgsm_lab(app)
    lo, hi, _, default = EPS_RANGE["linf"]
    assert at.slider(key=EPS_KEY).value == pytest.approx(default)
    assert float(metric(at, "L∞ size")) == pytest.approx(default, abs=1e-3)
    sizes = []
    for eps in (lo, 0.05, 0.25):
        at.slider(key=EPS_KEY).set_value(eps).run()
        assert_ok(at)
        sizes.append(float(metric(at, "L∞ size")))
        assert sizes[-1] == pytest.approx(eps, abs=1e-3)
        assert int(metric(at, "L0 (pixels changed)")) >= 0
    assert sizes[0] == 0.0 and int(metric(at, "L0 (pixels changed)")) > 0
    assert sizes == sorted(sizes) and len(set(sizes)) == 3
    assert hi >= 0.25


def test_targeted_toggle(app: Callable[[str], AppTest], stored_model: ModelCard) -> None:
    at = open_fgsm_lab(app)
    assert "Fooled" in [m.label for m in at.metric]
    assert not [s for s in at.selectbox if s.key == state.TARGET_CLASS]
    at.toggle(key=state.TARGETED).set_value(True).run()
    assert_ok(at)
    at.selectbox(key=state.TARGET_CLASS).select(3)
    at.slider(key=EPS_KEY).set_value(0.4).run()
    assert_ok(at)
    labels = [m.label for m in at.metric]
    assert "Reached target" in labels and "Fooled" not in labels
    assert metric(at, "Reached target") in ("yes", "no")


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_every_attack_runs_on_one_image(
    attack: str, app: Callable[[str], AppTest], stored_model: ModelCard
) -> None:
    at = app(ATTACK_LAB)
    at.selectbox(key=state.ATTACK).select(attack).run()
    assert_ok(at)
    assert not at.error, [e.value for e in at.error]
    norm = norm_radio(at).value
    size = float(metric(at, "L∞ size" if norm == "linf" else "L2 size"))
    if ATTACKS[
        attack
    ].minimal:  # no budget: the attack finds its own size (tests/pages/test_attack_lab_apptest.py)
        assert not [s for s in at.slider if s.key == f"{state.EPS}_{norm}"]
        assert size > 0.0
        return
    default = EPS_RANGE[norm][3]
    assert at.slider(key=f"{state.EPS}_{norm}").value == pytest.approx(default)
    assert 0.0 <= size <= default + 1e-3  # the base class keeps every attack inside the ε-ball


def test_batch_view(app: Callable[[str], AppTest], stored_model: ModelCard) -> None:
    at = open_fgsm_lab(app)
    view = next(s for s in at.segmented_control if s.label == "View")
    view.set_value("Batch").run()
    assert_ok(at)
    at.select_slider(key=state.BATCH_N).set_value(8).run()
    assert_ok(at)
    fooled = metric(at, "Fooled")
    assert fooled.endswith("%") and 0 <= int(fooled[:-1]) <= 100
    assert "L∞ size" not in [m.label for m in at.metric]  # the single-image metrics are gone
    at.toggle(key=state.TARGETED).set_value(True).run()
    assert_ok(at)
    assert any("untargeted" in c.value for c in at.caption)


# -- robustness page ---------------------------------------------------------------------------------------


def test_sweep_gives_one_row_per_eps(app: Callable[[str], AppTest], stored_model: ModelCard) -> None:
    at = app(ROBUSTNESS)
    assert at.multiselect(key=state.SWEEP_MODELS).value == [stored_model.id]
    at.selectbox(key=state.SWEEP_ATTACK).select("fgsm").run()
    assert norm_radio(at).value == "linf"
    at.slider(key=state.SWEEP_POINTS).set_value(4)
    at.select_slider(key=state.SWEEP_IMAGES).set_value(100)
    eps_max = at.slider(key=state.SWEEP_EPS_MAX).value
    at.button(key=state.SWEEP_BUTTON).click().run()
    assert_ok(at)
    wait_for(at, state.SWEEP_JOB)

    table = at.dataframe[0].value
    assert len(table) == 4
    assert list(table["eps"]) == pytest.approx(list(np.linspace(0.0, eps_max, 4)))
    assert set(table["model"]) == {stored_model.name}
    assert (table["n"] == 100).all()
    assert table["accuracy"].iloc[0] > 0.5  # a trained model, unattacked
    assert table["accuracy"].iloc[-1] <= table["accuracy"].iloc[0]


def test_defended_sweep_shows_naive_and_adaptive_with_checks(
    app: Callable[[str], AppTest], stored_model: ModelCard
) -> None:
    at = app(ROBUSTNESS)
    at.selectbox(key=state.SWEEP_ATTACK).select("pgd").run()
    at.selectbox(key="sweep_" + state.DEFENSE).select("bit-depth").run()
    at.slider(key=state.SWEEP_POINTS).set_value(3)
    at.select_slider(key=state.SWEEP_IMAGES).set_value(100)
    at.button(key=state.SWEEP_BUTTON).click().run()
    assert_ok(at)
    wait_for(at, state.SWEEP_JOB)
    table = at.dataframe[0].value
    assert len(table) == 9  # 3 ε x (undefended, adaptive, naive)
    assert {m.rsplit("(", 1)[-1] for m in table["model"] if "+" in m} == {"adaptive)", "naive)"}
    warnings = " ".join(w.value for w in at.warning)
    assert "naive attack overestimated robustness" in warnings.lower()


DETECTION = page_file("detection")
CERTIFIED = page_file("certification")


def test_detection_study_runs(app: Callable[[str], AppTest], stored_model: ModelCard) -> None:
    at = app(DETECTION)
    at.selectbox(key="det_" + state.ATTACK).select("fgsm").run()
    at.select_slider(key=state.DET_IMAGES).set_value(100)
    at.button(key=state.DET_BUTTON).click().run()
    assert_ok(at)
    # a stored run for the workers (none here: DLSEC_WORKERS=0): the page says it waits, draws nothing yet
    run_id = at.session_state[state.DET_JOB]
    assert at.query_params[state.RUN_PARAM] == run_id  # a link to this view re-attaches
    assert any("waiting in the queue" in i.value for i in at.info) and not at.dataframe
    wait_for(at, state.DET_JOB)
    rows = at.dataframe[0].value
    assert len(rows) == 2  # plain PGD and the detector-aware attack, same budget
    assert rows["attack"].tolist() == ["plain PGD", "detector-aware"]
    assert list(rows.columns)[:2] == ["attack", "evaded"]  # the number that matters comes first
    assert any("Detector-aware PGD" in c.value and "restarts" in c.value for c in at.caption)
    assert any("Detector:" in c.value for c in at.caption)
    assert any(f"run {run_id[:6]}" in m.value for m in at.success)


def _done_run_shown(at: AppTest) -> str:
    """The run id a page's 'done' line links to."""
    (line,) = [m.value for m in at.success if "done in" in m.value]
    return line.split("?run=")[1].rstrip(").")


def test_detection_page_opens_on_the_models_latest_study_or_the_linked_one(
    app: Callable[[str], AppTest], stored_model: ModelCard
) -> None:
    """A new tab opens on this model's latest finished detection study, or on the one its ?run= link names."""
    at = app(DETECTION)
    at.selectbox(key="det_" + state.ATTACK).select("fgsm").run()
    at.select_slider(key=state.DET_IMAGES).set_value(100)
    ids = []
    for bits in (1, 3):
        at.slider(key=state.DET_BITS).set_value(bits).run()
        at.button(key=state.DET_BUTTON).click().run()
        ids.append(at.session_state[state.DET_JOB])
        wait_for(at, state.DET_JOB)
    first, latest = ids
    fresh = app(DETECTION)
    assert _done_run_shown(fresh) == latest
    assert any("bit depth 3" in c.value for c in fresh.caption)
    linked = app(DETECTION)
    linked.query_params[state.RUN_PARAM] = first
    linked.run()
    assert_ok(linked)
    assert _done_run_shown(linked) == first
    assert any("bit depth 1" in c.value for c in linked.caption)


def test_certification_runs(app: Callable[[str], AppTest], stored_model: ModelCard) -> None:
    at = app(CERTIFIED)
    at.select_slider(key=state.CERT_IMAGES).set_value(20)
    at.select_slider(key=state.CERT_N).set_value(200)
    at.button(key=state.CERT_BUTTON).click().run()
    assert_ok(at)
    assert any("waiting in the queue" in i.value for i in at.info)
    wait_for(at, state.CERT_JOB)
    captions = " ".join(c.value for c in at.caption)
    assert "Certified: Randomized smoothing" in captions
    assert "Empirical: PGD L2 (20 steps)" in captions and "on 20 images" in captions
    run_id = at.session_state[state.CERT_JOB]
    fresh = app(CERTIFIED)  # a new tab: the model's latest certification, drawn again from the stored result
    assert _done_run_shown(fresh) == run_id
    assert "Certified: Randomized smoothing" in " ".join(c.value for c in fresh.caption)
    runs = app(page_file("runs"))  # the Runs page opens the newest run: its curve and a link to its own page
    assert f"(/certification?run={run_id})" in " ".join(m.value for m in runs.markdown)


def test_train_with_a_defense_recipe(app: Callable[[str], AppTest], tmp_home: Path) -> None:
    at = app(MODELS)
    at.selectbox(key=state.TRAIN_DATASET).select("digits").run()
    at.selectbox(key=state.TRAIN_ARCH).select("logreg").run()
    at.selectbox(key=state.TRAIN_RECIPE).select("fgsm-rs").run()
    at.slider(key=state.TRAIN_EPOCHS).set_value(1)
    at.button(key=state.TRAIN_BUTTON).click().run()
    assert_ok(at)
    wait_for(at, state.TRAIN_JOB)
    (card,) = Store(tmp_home).list_models()
    assert card.recipe == "fgsm-rs" and card.recipe_params["eps"] > 0
    assert "robust_accuracy" in card.history[-1] and card.history[-1]["robust_attack"].startswith("PGD")


def test_models_page_shows_the_server_load(app: Callable[[str], AppTest]) -> None:
    """A training is a stored run: the page says it waits for a worker, and whose it is, then that it is done."""
    at = app(MODELS)
    load = [c.value for c in at.caption if c.value.startswith("Server: ")]
    assert load == ["Server: 0 runs executing, 0 waiting, on workers started by hand."]
    at.selectbox(key=state.TRAIN_DATASET).select("digits").run()
    at.selectbox(key=state.TRAIN_ARCH).select("logreg").run()
    at.button(key=state.TRAIN_BUTTON).click().run()
    load = [c.value for c in at.caption if c.value.startswith("Server: ")]
    assert load and "1 waiting" in load[0] and "Yours: Train logreg" in load[0], load
    assert any("waiting in the queue (position 1)" in i.value for i in at.info), [i.value for i in at.info]
    wait_for(at, state.TRAIN_JOB)
    assert any("done in" in m.value for m in at.success), [m.value for m in at.success]
    assert [c.value for c in at.caption if c.value.startswith("Server: ")][0].startswith(
        "Server: 0 runs executing"
    )
