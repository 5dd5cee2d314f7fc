"""The Federated learning page through AppTest: the Train tab previews the split's class histogram and queues a
federation whose caption repeats the core's description; the Poison tab queues one run per aggregator with equal
settings, draws them together, and opens on a `?run=` link of a poisoned run; the Runs page links a federation to
this page."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from background import finish_work
from streamlit.testing.v1 import AppTest

from dlsec_core.runs import RunStatus, RunStore
from dlsec_core.store import Store
from dlsec_core.studies import catalog
from dlsec_core.studies.federated import FederatedStudyConfig
from dlsec_ui import state
from tests.pages import test_pages_apptest as pages

app = pages.app  # the fixture that opens a page over this test's DLSEC_HOME (with the app's frame)
PAGE = "app_pages/federated.py"


def ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def test_train_tab_runs_a_federation_with_client_dp(app: Callable[[str], AppTest], tmp_home: Path) -> None:
    at = app(PAGE)
    at.selectbox(key=state.FED_DATASET).select("digits")
    at.slider(key=state.FED_CLIENTS).set_value(4)
    at.slider(key=state.FED_ROUNDS).set_value(3).run()
    assert "4 clients, IID" in " ".join(c.value for c in at.caption)  # the split preview's sentence
    at.toggle(key=state.FED_CLIENT_DP).set_value(True).run()
    at.button(key=state.FED_TRAIN_BUTTON).click().run()
    ok(at)
    run_id = at.session_state[state.FED_TRAIN_JOB]
    assert at.query_params[state.RUN_PARAM] == run_id  # a link re-attaches
    assert finish_work(run_id) is None
    at.run()
    ok(at)
    run = RunStore(Store(tmp_home)).get(run_id)
    assert run.status == RunStatus.DONE and run.result is not None
    assert (
        run.config["clip"] == 1.0 and run.config["noise_multiplier"] == 1.0 and run.config["malicious"] == 0
    )
    text = " ".join(c.value for c in at.caption)
    assert run.result["description"] in text and "client-level ε" in text
    assert len(at.get("plotly_chart")) >= 2  # the histogram and the rounds


def test_poison_tab_compares_aggregators_and_reopens_from_a_link(
    app: Callable[[str], AppTest], tmp_home: Path
) -> None:
    at = app(PAGE)
    at.selectbox(key=state.FED_DATASET).select("digits")
    at.slider(key=state.FED_ROUNDS).set_value(2).run()
    at.radio(key=state.FED_ATTACK).set_value("backdoor").run()
    at.multiselect(key=state.FED_AGGREGATORS).set_value(["fedavg", "median"]).run()
    at.button(key=state.FED_POISON_BUTTON).click().run()
    ok(at)
    runs = RunStore(Store(tmp_home))
    queued = runs.list_runs(study="federated")
    assert sorted(r.config["aggregator"] for r in queued) == ["fedavg", "median"]
    assert all(r.config["malicious"] == 2 and r.config["attack"] == "backdoor" for r in queued)
    for r in queued:
        assert finish_work(r.id) is None
    at.run()
    ok(at)
    done = sorted((runs.get(r.id) for r in queued), key=lambda r: r.config["aggregator"])  # fedavg, median
    assert all(r.result is not None for r in done)
    expected = {
        "aggregator": ["FedAvg (weighted mean)", "coordinate-wise median"],
        "clean accuracy": [f"{r.result['test_accuracy']:.1%}" for r in done],  # type: ignore[index]
        "backdoor success": [f"{r.result['backdoor_success']:.1%}" for r in done],  # type: ignore[index]
    }

    def shown(at: AppTest) -> dict[str, list[str]]:
        table = at.dataframe[-1].value
        return {column: list(table[column]) for column in expected}

    assert shown(at) == expected
    assert "Backdoor success: the share of test images" in " ".join(c.value for c in at.caption)

    linked = app(PAGE)  # a fresh session opened from a poisoned run's link lands on the comparison
    linked.query_params[state.RUN_PARAM] = done[1].id
    linked.run()
    ok(linked)
    assert shown(linked) == expected


def test_a_bad_setting_is_a_sentence_not_a_run(app: Callable[[str], AppTest], tmp_home: Path) -> None:
    at = app(PAGE)
    at.slider(key=state.FED_CLIENTS).set_value(3).run()
    at.slider(key=state.FED_MALICIOUS).set_value(3)
    at.multiselect(key=state.FED_AGGREGATORS).set_value(["krum"]).run()
    at.button(key=state.FED_POISON_BUTTON).click().run()
    assert not at.exception and "Krum" in at.error[0].value
    assert RunStore(Store(tmp_home)).count_runs() == 0


def test_the_runs_page_links_a_federation_to_its_page(app: Callable[[str], AppTest], tmp_home: Path) -> None:
    config = FederatedStudyConfig(dataset="digits", arch="logreg", clients=3, rounds=1, seed=1)
    run_id = catalog.submit(RunStore(Store(tmp_home)), "federated", config).id
    assert finish_work(run_id) is None
    at = app("app_pages/runs.py")
    ok(at)
    assert any(f"/federated?run={run_id}" in m.value for m in at.markdown)
