"""The Model theft page through AppTest: the Steal tab queues an extraction run whose curve and caption are the
core's numbers; the Defend tab draws PRADA's traces from that run's result; the Own tab verifies a watermark; the
Transfer tab sweeps the victim from its stolen copy beside white-box PGD; the Home page's theft card is on."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from background import finish_work
from streamlit.testing.v1 import AppTest

from dlsec_core.runs import RunStatus, RunStore
from dlsec_core.store import ModelCard, Store
from dlsec_ui import state
from tests.pages import test_pages_apptest as pages

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app.py"


app = pages.app  # the fixture that opens a page over this test's DLSEC_HOME (with the app's frame)


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
    assert "Coming" not in infos  # every tab is built


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


def test_own_tab_verifies_the_current_model_against_a_watermarked_owner(
    app: Callable[[str], AppTest], tmp_home: Path, stored_model: ModelCard
) -> None:
    """No watermarked model: the tab says how to make one. With one: a run of the ownership study whose verdict,
    key count and p-value the caption repeats from the stored result (the suspect is the current model)."""
    from dlsec_core.studies.ownership import OwnershipStudyResult
    from dlsec_core.theft.watermark import WatermarkRecipe
    from dlsec_core.training.loop import TrainConfig, run_to_end
    from dlsec_core.workflows import train_and_store

    at = app("app_pages/theft.py")
    assert any("No watermarked model yet" in i.value for i in at.info)
    owner = run_to_end(
        train_and_store(
            Store(tmp_home), dataset="digits", arch="mlp", name="owner", recipe=WatermarkRecipe(keys=20),
            config=TrainConfig(epochs=3, lr=0.01, shift=0, seed=1),
        )
    )  # fmt: skip
    at = app("app_pages/theft.py")
    at.selectbox(key=state.OWN_OWNER).select(owner.id)
    at.slider(key=f"{state.OWN_FORM}OwnershipStudyConfig_null_models").set_value(2)
    at.button(key=state.OWN_BUTTON).click().run()
    assert not at.exception, [e.value for e in at.exception]
    run_id = at.session_state[state.OWN_JOB]
    assert finish_work(run_id) is None
    at.run()
    run = RunStore(Store(tmp_home)).get(run_id)
    assert run.status == RunStatus.DONE and run.result is not None
    assert run.config["suspect_id"] == at.session_state[state.MODEL] and run.config["owner_id"] == owner.id
    report = OwnershipStudyResult.from_json(run.result)
    assert len(report.null_models) == 2
    text = " ".join(c.value for c in at.caption)
    found = "carries" if report.suspect.verified else "does not carry"
    assert f"{found} the watermark of owner" in text
    if run.config["suspect_id"] == owner.id:  # the newest model is the current one: the owner against itself
        assert report.suspect.verified == report.owner.verified
    assert (
        f"{report.suspect.hits} of {report.keys} keys" in text and f"p = {report.suspect.p_value:.2g}" in text
    )


def _spec(chart: object) -> dict:
    return json.loads(chart.proto.spec)  # type: ignore[attr-defined]


def _w_trace(chart: object) -> list[float]:
    return next(t["y"] for t in _spec(chart)["data"] if t.get("name") == "W")


def test_defend_tab_draws_prada_on_the_attacker_and_a_benign_client(
    app: Callable[[str], AppTest], tmp_home: Path
) -> None:
    """Before any theft the tab says what to do. A Jacobian theft (20 seed images, as in tests/core/test_prada.py)
    of an mnist5k victim: PRADA's W for the attacker and for the benign client are drawn as the run stored them;
    the attacker is caught, the benign client is not, and the caption repeats where the alarm fired."""
    from dlsec_core.studies.theft import ExtractionStudyResult
    from dlsec_core.training.loop import TrainConfig, run_to_end
    from dlsec_core.workflows import train_and_store

    victim = run_to_end(
        train_and_store(
            Store(tmp_home), dataset="mnist5k", arch="logreg", name="mnist-logreg",
            config=TrainConfig(epochs=3, lr=0.05, shift=0, seed=3),
        )
    )  # fmt: skip
    at = app("app_pages/theft.py")
    assert at.session_state[state.MODEL] == victim.id
    assert any("Steal the current model first" in i.value for i in at.info)
    at.selectbox(key=state.THEFT_ATTACK).select("jacobian").run()
    form = f"{state.THEFT_FORM}JacobianAugmentation_"
    at.radio(key=f"{form}arch").set_value("logreg")
    at.number_input(key=f"{form}epochs").set_value(1)
    at.number_input(key=f"{form}seed_size").set_value(20)
    at.multiselect(key=state.THEFT_BUDGETS).set_value([250])
    at.button(key=state.THEFT_BUTTON).click().run()
    assert not at.exception, [e.value for e in at.exception]
    run_id = at.session_state[state.THEFT_JOB]
    assert finish_work(run_id) is None
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    run = RunStore(Store(tmp_home)).get(run_id)
    assert run.result is not None and run.config["attack_params"]["seed_size"] == 20
    traces = ExtractionStudyResult.from_json(run.result).prada_results()
    assert traces is not None
    attacker, benign = traces
    assert len(attacker.steps) == len(benign.steps) == 250
    assert attacker.first_alarm is not None and not benign.alarmed  # measured: alarm at query 130, W 0.79
    drawn = [
        _w_trace(c) for c in at.get("plotly_chart") if any(t.get("name") == "W" for t in _spec(c)["data"])
    ]
    assert drawn == [[w for _, w in attacker.tests], [w for _, w in benign.tests]]
    alarm_lines = [
        s for s in _spec(at.get("plotly_chart")[-2])["layout"]["shapes"] if s.get("type") == "line"
    ]
    assert {s["x0"] for s in alarm_lines if s["x0"] == s["x1"]} == {attacker.first_alarm + 1}
    text = " ".join(c.value for c in at.caption)
    assert "Juuti et al. 2019" in text and "Papernot et al. 2017" in text and "slip past" in text
    w = dict(attacker.tests)[attacker.first_alarm]
    assert f"alarm at query {attacker.first_alarm + 1:,} of 250 (W = {w:.3f} < δ)" in text
    assert "jacobian attacker was caught; the benign client raised no false alarm" in text
    lowest = min(w for _, w in benign.tests)
    assert f"no alarm in {len(benign.tests)} tests over 250 queries (lowest W = {lowest:.3f} ≥ δ)" in text


def test_transfer_tab_attacks_the_victim_from_its_stolen_copy_beside_white_box_pgd(
    app: Callable[[str], AppTest], tmp_home: Path, stored_model: ModelCard
) -> None:
    """No stolen copy: the tab says how to make one. With one (a stored Knockoff surrogate of the current model):
    two sweep runs on the same images and ε, the transfer attack from the copy and white-box PGD, drawn as
    success = 1 − accuracy from their stored records, the caption repeating the accuracies at the largest ε."""
    from dlsec_core.studies.base import run_study
    from dlsec_core.studies.catalog import get_study
    from dlsec_core.studies.theft import ExtractionStudyConfig

    at = app("app_pages/theft.py")
    assert any("No stolen copy of this model yet" in i.value for i in at.info)
    steal = ExtractionStudyConfig(
        model_id=stored_model.id, attack="knockoff", attack_params={"arch": "mlp", "epochs": 3}, budgets=[160],
        store_surrogate=True, seed=1,
    )  # fmt: skip
    (copy_id,) = run_study(get_study("extraction"), Store(tmp_home), steal).model_ids
    at = app("app_pages/theft.py")
    at.session_state[state.MODEL] = (
        stored_model.id
    )  # the stolen copy is the newest model: keep the victim current
    at.run()
    at.selectbox(key=state.TRANSFER_SURROGATE).select(copy_id)
    at.multiselect(key=state.TRANSFER_EPS).set_value([0.0, 0.1, 0.2])
    at.slider(key=state.TRANSFER_IMAGES).set_value(50)
    at.button(key=state.TRANSFER_BUTTON).click().run()
    assert not at.exception, [e.value for e in at.exception]
    moved_id, white_id = at.session_state[state.TRANSFER_JOB], at.session_state[state.TRANSFER_WHITEBOX_JOB]
    assert finish_work(moved_id) is None and finish_work(white_id) is None
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    runs = RunStore(Store(tmp_home))
    moved, white = runs.get(moved_id), runs.get(white_id)
    assert moved.status == white.status == RunStatus.DONE
    assert moved.config["attack"] == "transfer" and moved.config["surrogate_id"] == copy_id
    assert white.config["attack"] == "pgd" and white.config["surrogate_id"] is None
    assert moved.config["model_ids"] == white.config["model_ids"] == [stored_model.id]
    assert moved.config["eps"] == white.config["eps"] == [0.0, 0.1, 0.2]
    (chart,) = [c for c in at.get("plotly_chart") if c.proto.id and "attack success" in c.proto.spec]
    drawn = {t["name"]: t["y"] for t in _spec(chart)["data"]}
    assert drawn == {
        "white-box PGD on the victim": [1 - r["accuracy"] for r in white.result["records"]],
        "transfer from stolen-digits-logreg-knockoff-160q": [
            1 - r["accuracy"] for r in moved.result["records"]
        ],
    }
    w, m = white.result["records"][-1], moved.result["records"][-1]
    assert w["accuracy"] <= m["accuracy"]  # the attacker with the weights does at least as well
    text = " ".join(c.value for c in at.caption)
    assert f"white-box PGD leaves the victim right on {w['accuracy']:.1%}" in text
    assert f"transferred, on {m['accuracy']:.1%}" in text and "Papernot et al. 2017" in text
    # a new session (no run ids in its state) opens on the same two finished sweeps
    at = app("app_pages/theft.py")
    at.session_state[state.MODEL] = stored_model.id
    at.run()
    (again,) = [c for c in at.get("plotly_chart") if c.proto.id and "attack success" in c.proto.spec]
    assert {t["name"]: t["y"] for t in _spec(again)["data"]} == drawn


def test_steal_behind_a_rate_limit_from_an_uploaded_dataset(
    app: Callable[[str], AppTest], tmp_home: Path, stored_model: ModelCard
) -> None:
    """The uploaded pool lists the user's datasets; the rate limit reaches the run, whose caption repeats what the
    limit cost from the stored result (250 queries at 100 per 60 s: two 60 s waits, 150 throttled answers)."""
    import dataclasses

    from dlsec_core.data.builtin import load_dataset

    at = app("app_pages/theft.py")
    at.radio(key=state.THEFT_POOL).set_value("uploaded").run()
    assert any("No uploaded dataset yet" in i.value for i in at.info)
    Store(tmp_home).save_dataset(dataclasses.replace(load_dataset("digits"), name="my-digits"))
    at = app("app_pages/theft.py")
    at.selectbox(key=state.THEFT_ATTACK).select("copycat")
    at.radio(key=state.THEFT_POOL).set_value("uploaded").run()
    assert at.selectbox(key=state.THEFT_POOL_DATASET).value == "my-digits"
    at.radio(key=f"{state.THEFT_FORM}Copycat_arch").set_value("logreg")
    at.number_input(key=f"{state.THEFT_FORM}Copycat_epochs").set_value(1)
    at.multiselect(key=state.THEFT_BUDGETS).set_value([100, 250])
    at.number_input(key=state.THEFT_RATE_LIMIT).set_value(100)
    at.button(key=state.THEFT_BUTTON).click().run()
    assert not at.exception, [e.value for e in at.exception]
    run_id = at.session_state[state.THEFT_JOB]
    assert finish_work(run_id) is None
    at.run()
    run = RunStore(Store(tmp_home)).get(run_id)
    assert run.config["pool"] == "uploaded" and run.config["pool_dataset"] == "my-digits"
    assert run.result is not None and run.result["throttled_s"] == 120.0
    text = " ".join(c.value for c in at.caption)
    assert "your uploaded dataset 'my-digits'" in text
    assert "Rate limit 100 queries per 60 s: the attacker waited 2.0 minutes on the API's clock" in text
    assert "150 of its 250 answers came only after a wait, 2 batches were refused first" in text


def test_own_tab_tables_the_p_value_of_every_copy(
    app: Callable[[str], AppTest], tmp_home: Path, stored_model: ModelCard
) -> None:
    """Steal the watermarked owner with Copycat from the Own tab: the table has one row per verified model, each
    p-value the stored result's."""
    from dlsec_core.studies.ownership import OwnershipStudyResult
    from dlsec_core.theft.watermark import WatermarkRecipe
    from dlsec_core.training.loop import TrainConfig, run_to_end
    from dlsec_core.workflows import train_and_store

    owner = run_to_end(
        train_and_store(
            Store(tmp_home), dataset="digits", arch="logreg", name="owner", recipe=WatermarkRecipe(keys=20),
            config=TrainConfig(epochs=2, lr=0.05, shift=0, seed=1),
        )
    )  # fmt: skip
    at = app("app_pages/theft.py")
    at.selectbox(key=state.OWN_OWNER).select(owner.id)
    form = f"{state.OWN_FORM}OwnershipStudyConfig_"
    at.slider(key=f"{form}null_models").set_value(1)
    at.number_input(key=f"{form}steal_queries").set_value(200)
    at.number_input(key=f"{form}steal_epochs").set_value(1)
    at.multiselect(key=state.OWN_PRUNE).set_value([0.5])
    at.multiselect(key=state.OWN_STEAL).set_value(["copycat"])
    at.button(key=state.OWN_BUTTON).click().run()
    assert not at.exception, [e.value for e in at.exception]
    run_id = at.session_state[state.OWN_JOB]
    assert finish_work(run_id) is None
    at.run()
    report = OwnershipStudyResult.from_json(RunStore(Store(tmp_home)).get(run_id).result or {})
    assert not at.exception, [e.value for e in at.exception]
    (table,) = (d.value for d in at.dataframe if "keys answered" in d.value.columns)
    assert list(table["model"]) == [
        "owner (positive control)",
        f"suspect: {report.suspect_name}",
        "pruned 50%",
        "stolen: copycat, 200 queries",
    ]
    expected = [report.owner.p_value, report.suspect.p_value, *(s.verdict.p_value for s in report.survival)]
    assert list(table["p-value"]) == expected
    assert list(table["fidelity to owner"])[-1] == round(report.survival[-1].fidelity or 0, 4)
    text = " ".join(c.value for c in at.caption)
    lost = sum(not s.verdict.verified for s in report.survival if s.kind == "extraction")
    assert f"{lost} of 1 stolen copies lost the watermark" in text
