"""The Federated learning page's Leak tab through AppTest: the attack and the defense (with its setting) chosen on
the tab reach the queued run's config; the drawn run says which attack against which defense, how many images the
attack recovered, and what PSNR and SSIM mean; a `?run=` link of a gradient inversion opens the page on the Leak
tab, and a link of a federation on the Train tab."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from background import finish_work
from streamlit.testing.v1 import AppTest

from dlsec_core.runs import RunStatus, RunStore
from dlsec_core.store import Store
from dlsec_core.studies import catalog
from dlsec_core.studies.federated import FederatedStudyConfig
from dlsec_core.studies.gradleak import GradLeakStudyConfig
from dlsec_ui import state
from dlsec_ui.federated import SCORES_MEANING
from tests.pages import test_pages_apptest as pages

app = pages.app  # the fixture that opens a page over this test's DLSEC_HOME (with the app's frame)
PAGE = "app_pages/federated.py"


def ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _blocks(node: Any) -> Iterator[Any]:
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _blocks(child)


def open_tab(at: AppTest) -> str:
    """The label of the tab the page opens on (st.tabs' `default=`, as the browser receives it: its index)."""
    for node in _blocks(at.main):
        proto = getattr(node, "proto", None)
        fields = getattr(getattr(proto, "DESCRIPTOR", None), "fields_by_name", {})
        if "tab_container" in fields and proto.HasField("tab_container"):
            labels = [tab.label for tab in node.children.values()]
            return str(labels[proto.tab_container.default_tab_index])
    raise AssertionError("no tabs on the page")


def test_the_leak_tab_sends_its_attack_and_defense_and_draws_what_they_mean(
    app: Callable[[str], AppTest], tmp_home: Path
) -> None:
    at = app(PAGE)
    at.selectbox(key=state.FED_LEAK_DATASET).select("digits")
    at.radio(key=state.FED_LEAK_ATTACK).set_value("dlg")
    at.radio(key=state.FED_LEAK_DEFENSE).set_value("topk").run()
    at.select_slider(key=state.FED_LEAK_KEEP).set_value(0.1).run()
    at.button(key=state.FED_LEAK_BUTTON).click().run()
    ok(at)
    run_id = at.session_state[state.FED_LEAK_JOB]
    assert at.query_params[state.RUN_PARAM] == run_id  # a link re-attaches
    runs = RunStore(Store(tmp_home))
    queued = runs.get(run_id)
    assert queued.study == "gradleak"
    assert (queued.config["attack"], queued.config["defense"], queued.config["keep"]) == ("dlg", "topk", 0.1)
    assert queued.config["dataset"] == "digits"
    assert queued.title.startswith("Gradient inversion: DLG on 1 digits image") and "top-k" in queued.title
    assert finish_work(run_id) is None
    at.run()
    ok(at)
    run = runs.get(run_id)
    assert run.status == RunStatus.DONE and run.result is not None
    heading = " ".join(m.value for m in at.markdown)
    assert "**DLG** against **top-k sparsification**" in heading
    text = " ".join(c.value for c in at.caption)
    recovered = sum(float(p) >= 25 for p in run.result["psnr"])
    assert f"{recovered} of 1 image recovered (PSNR ≥ 25 dB) after the whole attack" in text
    assert SCORES_MEANING in text and run.result["description"] in text
    assert "top-k sparsification: 10% of the update's entries sent" in text


def test_a_run_link_opens_the_tab_it_belongs_on(app: Callable[[str], AppTest], tmp_home: Path) -> None:
    runs = RunStore(Store(tmp_home))
    leak = catalog.submit(
        runs, "gradleak", GradLeakStudyConfig(attack="idlg", defense="dp", steps=2, events=1, seed=2)
    ).id
    federation = catalog.submit(
        runs, "federated", FederatedStudyConfig(dataset="digits", arch="logreg", clients=3, rounds=1, seed=1)
    ).id
    assert finish_work(leak) is None and finish_work(federation) is None

    plain = app(PAGE)
    ok(plain)
    assert open_tab(plain) == "Train"

    linked = app(PAGE)
    linked.query_params[state.RUN_PARAM] = leak
    linked.run()
    ok(linked)
    assert open_tab(linked) == "Leak"
    assert "**iDLG** against **client DP**" in " ".join(m.value for m in linked.markdown)

    other = app(PAGE)
    other.query_params[state.RUN_PARAM] = federation
    other.run()
    ok(other)
    assert open_tab(other) == "Train"
