"""The privacy pages through AppTest: DP training from the Models page, the budget calculator, the frontier and
membership inference, each checked against the core's own numbers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from background import finish_work
from streamlit.testing.v1 import AppTest

from dlsec_core.data.builtin import load_dataset
from dlsec_core.privacy.accounting import epsilon_after
from dlsec_core.privacy.dp_sgd import DPSGDRecipe
from dlsec_core.runs import RunStore
from dlsec_core.store import ModelCard, Store
from dlsec_core.training import TrainConfig, get_recipe, train
from dlsec_core.training.loop import run_to_end
from dlsec_core.workflows import spec_for
from dlsec_ui import state
from tests.pages import test_pages_apptest as pages

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app.py"
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


app = pages.app  # the fixture that opens a page over this test's DLSEC_HOME (with the app's frame)


def wait_for(at: AppTest, job_key: str) -> None:
    assert finish_work(at.session_state[job_key]) is None
    at.run()
    assert not at.exception, [e.value for e in at.exception]


@pytest.fixture
def twins(tmp_home: Path) -> tuple[ModelCard, ModelCard]:
    """A non-private and a DP-SGD logreg on digits, trained the same way, in this test's store."""
    data = load_dataset("digits")
    spec = spec_for(data, "logreg")
    config = TrainConfig(epochs=3, batch_size=128, lr=0.05, shift=0)
    store = Store(tmp_home)
    cards = []
    for recipe in (get_recipe("standard"), get_recipe("dp-sgd", noise_multiplier=1.0)):
        result = run_to_end(train(spec, data, config, recipe))
        cards.append(
            store.save_model(
                result.model, spec, name=f"digits-{recipe.name}", dataset="digits", recipe=recipe.name,
                recipe_params=recipe.params(), train_config=config.to_dict(), seed=0,
                clean_accuracy=result.test_accuracy, history=result.history,
            )
        )  # fmt: skip
    return cards[0], cards[1]


def test_dp_training_from_the_models_page(app: Callable[[str], AppTest], tmp_home: Path) -> None:
    at = app("app_pages/models.py")
    at.selectbox(key=state.TRAIN_DATASET).select("digits")
    at.selectbox(key=state.TRAIN_ARCH).select("logreg")
    at.selectbox(key=state.TRAIN_RECIPE).select("dp-sgd").run()
    suggested, sigma = DPSGDRecipe.suggested, DPSGDRecipe().noise_multiplier
    batch = suggested["batch_size"]
    assert at.slider(key=state.TRAIN_EPOCHS).value == suggested["epochs"]  # the recipe's suggested settings
    assert at.select_slider(key=state.TRAIN_BATCH).value == batch
    n = len(load_dataset("digits").y_train)
    plan = " ".join(i.value for i in at.info)
    assert "Planned" in plan and "RDP" in plan and f"q = {batch}/{n}" in plan
    expected = epsilon_after(sigma, batch / n, int(n / batch) * suggested["epochs"], 1e-5).epsilon
    assert f"ε = {expected:.3g}" in plan
    at.slider(key=state.TRAIN_EPOCHS).set_value(2)
    at.button(key=state.TRAIN_BUTTON).click().run()
    wait_for(at, state.TRAIN_JOB)
    (card,) = Store(tmp_home).list_models()
    assert card.recipe == "dp-sgd" and card.train_config["batch_size"] == batch
    assert card.train_config["lr"] == suggested["lr"]
    assert [h["accountant"] for h in card.history] == ["rdp", "rdp"]
    assert card.history[-1]["epsilon"] == pytest.approx(
        epsilon_after(sigma, batch / n, 2 * int(n / batch), 1e-5).epsilon
    )


def test_batchnorm_model_is_blocked_with_a_one_click_fix(app: Callable[[str], AppTest]) -> None:
    at = app("app_pages/models.py")
    at.selectbox(key=state.TRAIN_DATASET).select("digits")
    at.selectbox(key=state.TRAIN_RECIPE).select("dp-sgd").run()
    at.selectbox(key=state.TRAIN_ARCH).select("cnn-bn").run()
    assert any("BatchNorm" in w.value for w in at.warning)
    assert at.button(key=state.TRAIN_BUTTON).disabled
    at.button(key=state.TRAIN_DP_FIX).click().run()
    assert at.selectbox(key=state.TRAIN_ARCH).value == "cnn-gn"
    assert not at.warning and not at.button(key=state.TRAIN_BUTTON).disabled


def test_calculator_matches_the_accountants(app: Callable[[str], AppTest]) -> None:
    at = app("app_pages/privacy_budget.py")
    at.selectbox(key=state.PB_DATASET).select("mnist5k").run()
    at.select_slider(key=state.PB_BATCH).set_value(256)
    at.slider(key=state.PB_EPOCHS).set_value(10)
    at.number_input(key=state.PB_SIGMA).set_value(1.5).run()
    assert not at.error
    table = at.dataframe[0].value
    q, steps = 256 / 4000, int(4000 / 256) * 10
    got = dict(zip(table["accountant"], table["ε after all epochs"], strict=True))
    for acc in ("rdp", "prv"):
        label = next(k for k in got if k.lower().startswith(acc))
        assert got[label] == pytest.approx(
            epsilon_after(1.5, q, steps, 1e-5, accountant=acc).epsilon, abs=2e-3
        )
    assert any("σ ≥" in m.value and "ε ≤ 2" in m.value for m in at.markdown)
    at.number_input(key=state.PB_DELTA).set_value(0.001).run()  # ≥ 1/N for N = 4000
    assert any("1/N" in e.value for e in at.error)


def test_frontier_lists_stored_runs_and_the_sweep_adds_one(
    app: Callable[[str], AppTest], twins: tuple[ModelCard, ModelCard], tmp_home: Path
) -> None:
    at = app("app_pages/privacy_budget.py")
    at.selectbox(key=state.FR_DATASET).select("digits")
    at.selectbox(key=state.FR_ARCH).select("logreg").run()
    rows = at.dataframe[-1].value
    assert set(rows["model"]) == {"digits-standard", "digits-dp-sgd"}
    at.text_input(key=state.FR_TARGETS).input("3")
    at.slider(key=state.FR_EPOCHS).set_value(1)
    at.button(key=state.FR_BUTTON).click().run()
    wait_for(at, state.FR_JOB)
    rows = at.dataframe[-1].value
    assert len(rows) == 3  # the baseline existed: one new DP run
    new = [r for r in rows.to_dict("records") if r["model"].startswith("logreg-digits-dp-eps3")]
    assert new and new[0]["epsilon"] <= 3.0 and new[0]["accountant"] == "rdp"


def test_membership_inference_side_by_side(
    app: Callable[[str], AppTest], twins: tuple[ModelCard, ModelCard]
) -> None:
    standard, private = twins
    at = app("app_pages/membership.py")
    assert set(at.multiselect(key=state.MI_MODELS).value) == {
        standard.id,
        private.id,
    }  # the twin is the default
    at.button(key=state.MI_BUTTON).click().run()
    wait_for(at, state.MI_JOB)
    rows = at.dataframe[0].value.to_dict("records")
    assert {r["model"] for r in rows} == {"digits-standard", "digits-dp-sgd"}
    by_name = {r["model"]: r for r in rows}
    assert by_name["digits-standard"]["privacy"] == "no DP"
    assert (
        by_name["digits-dp-sgd"]["privacy"].startswith("ε = ")
        and "RDP" in by_name["digits-dp-sgd"]["privacy"]
    )
    assert all(0 <= r["AUC"] <= 1 for r in rows)

    # a new session on the page opens on the current model's latest attack, drawn from the run's typed result
    fresh = app("app_pages/membership.py")
    assert fresh.dataframe[0].value.to_dict("records") == rows


def test_inversion_reconstructs_for_both_twins(
    app: Callable[[str], AppTest], twins: tuple[ModelCard, ModelCard]
) -> None:
    at = app("app_pages/inversion.py")
    assert set(at.multiselect(key=state.INV_MODELS).value) == {twins[0].id, twins[1].id}
    assert at.multiselect(key=state.INV_CLASSES).value == list(range(10))
    assert not at.error
    at.button(key=state.INV_BUTTON).click().run()
    wait_for(at, state.INV_JOB)
    caption = next(c.value for c in at.caption if c.value.startswith("MI-Face model inversion"))
    assert "up to 100 steps" in caption  # the settings the run used, from its typed result
    assert any("done in" in s.value for s in at.success)
    run = RunStore(Store()).get(at.session_state[state.INV_JOB])
    assert run.study == "inversion" and set(run.model_ids) == {twins[0].id, twins[1].id}
    assert sorted(p.name for p in RunStore(Store()).artifacts(run.id)) == [
        "class-means.npy",
        "images-0.npy",
        "images-1.npy",
    ]
    at.multiselect(key=state.INV_CLASSES).set_value([3]).run()
    assert not at.exception and not at.error

    # another participant opening the page lands on the current model's latest inversion
    fresh = app("app_pages/inversion.py")
    assert any(c.value.startswith("MI-Face model inversion") for c in fresh.caption)
    assert any(run.id[:6] in s.value for s in fresh.success)


def test_audit_with_a_positive_control(app: Callable[[str], AppTest]) -> None:
    at = app("app_pages/audit.py")
    at.selectbox(key=state.AU_DATASET).select("digits")
    at.selectbox(key=state.AU_ARCH).select("logreg")
    at.slider(key=state.AU_EPOCHS).set_value(2)
    at.number_input(key="audit_AuditConfig_canaries").set_value(100)
    at.number_input(key="audit_DPSGDRecipe_target_epsilon").set_value(1.0)
    at.button(key=state.AU_BUTTON).click().run()
    wait_for(at, state.AU_JOB)
    claimed = [m.value for m in at.metric if m.label == "Claimed ε"]
    measured = [m.value for m in at.metric if m.label.startswith("Measured ε")]
    assert len(claimed) == 2 and claimed[0].startswith("≤ ") and "RDP" in claimed[0]
    assert claimed[1] == "none (no DP)"
    assert len(measured) == 2 and all(v.startswith("≥ ") for v in measured)
    dp_bound = float(measured[0].removeprefix("≥ "))
    assert dp_bound <= float(claimed[0].split()[1])  # a correct DP implementation is never refuted
    assert not at.error

    # a link to the run (?run=<id>) re-attaches to it in another session, whatever audit ran after it
    run_id = at.session_state[state.AU_JOB]
    later = RunStore(Store()).submit("audit", RunStore(Store()).get(run_id).config, title="a later audit")
    finish_work(later.id)
    linked = AppTest.from_file(str(APP), default_timeout=60)
    linked.query_params["run"] = run_id
    linked.run()
    linked.switch_page("app_pages/audit.py").run()
    assert linked.session_state[state.AU_JOB] == run_id
    assert [m.value for m in linked.metric if m.label == "Claimed ε"] == claimed
    assert [m.value for m in linked.metric if m.label.startswith("Measured ε")] == measured


def test_one_click_twin_for_membership_inference(app: Callable[[str], AppTest], tmp_home: Path) -> None:
    data = load_dataset("digits")
    config = TrainConfig(epochs=2, batch_size=128, lr=0.05, shift=0)
    result = run_to_end(train(spec_for(data, "logreg"), data, config))
    alone = Store(tmp_home).save_model(
        result.model, result.spec, name="alone", dataset="digits", train_config=config.to_dict(), seed=0,
        clean_accuracy=result.test_accuracy, history=result.history,
    )  # fmt: skip
    at = app("app_pages/membership.py")
    assert at.multiselect(key=state.MI_MODELS).value == [alone.id]
    at.button(key=state.TWIN_BUTTON).click().run()
    wait_for(at, state.TWIN_JOB)
    at.run()  # what the polling fragment does when the twin lands
    cards = {c.id: c for c in Store(tmp_home).list_models()}
    (twin_id,) = set(cards) - {alone.id}
    twin = cards[twin_id]
    assert twin.recipe == "dp-sgd" and twin.name == "alone-dp-twin"
    assert twin.train_config == alone.train_config  # trained the same way, except for DP
    assert twin.history[-1]["epsilon"] <= 4.0
    assert at.multiselect(key=state.MI_MODELS).value == [alone.id, twin_id]
    assert not at.exception
