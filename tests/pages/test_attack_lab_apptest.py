"""The Attack Lab through AppTest: every input defense in both views and both attack modes runs (it crashed with
an AttributeError before), and the honest words for a target that is the true class.

The real-browser versions (with drawing, screenshots) are in tests/e2e/test_attack_lab_browser.py.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from dlsec_core.defenses.transforms import TRANSFORMS
from dlsec_core.store import ModelCard
from dlsec_ui import state
from tests.pages import test_pages_apptest as pages
from tests.pages.test_pages_apptest import ATTACK_LAB, assert_ok, metric

app = pages.app  # the fixture that opens a page over this test's DLSEC_HOME

LAB_DEFENSE = "lab_" + state.DEFENSE


@pytest.mark.parametrize("view", ["Single image", "Batch"])
def test_every_input_defense_runs_in_both_modes(
    view: str, app: Callable[[str], AppTest], stored_model: ModelCard
) -> None:
    at = app(ATTACK_LAB)
    at.selectbox(key=state.ATTACK).select("pgd").run()
    next(s for s in at.segmented_control if s.label == "View").set_value(view).run()
    assert_ok(at)
    for name, cls in TRANSFORMS.items():
        at.selectbox(key=LAB_DEFENSE).select(name).run()
        for mode in ("adaptive", "naive"):
            at.radio(key=state.ATTACK_MODE).set_value(mode).run()
            assert_ok(at)
            assert not at.error, [e.value for e in at.error]
            if view == "Batch":
                assert metric(at, "Fooled").endswith("%")
                assert any(f"({mode} attack)" in c.value for c in at.caption)
            else:
                assert metric(at, "Fooled") in ("yes", "no")
                other = "naive" if mode == "adaptive" else "adaptive"
                assert any(f"With the {other} attack instead" in i.value for i in at.info), cls.title


def test_a_target_equal_to_the_true_class_is_said_so(
    app: Callable[[str], AppTest], stored_model: ModelCard
) -> None:
    at = app(ATTACK_LAB)
    at.selectbox(key=state.ATTACK).select("pgd").run()
    at.selectbox(key=state.GALLERY_CLASS).select(7).run()
    at.toggle(key=state.TARGETED).set_value(True).run()
    at.selectbox(key=state.TARGET_CLASS).select(7).run()
    assert_ok(at)
    assert metric(at, "Reached target") == "no"
    assert metric(at, "L0 (pixels changed)") == "0"
    assert any("is the image's true class" in w.value for w in at.warning)


def test_an_eps_step_reads_nothing_from_the_store(
    stored_model: ModelCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lab's ε steps are fragment runs that have the page's card: FGSM, PGD, the batch view and the detector
    open no SQLite connection once the model is loaded (a worker descheduled at SCHED_IDLE while it holds one of
    SQLite's locks made a new reader wait 0.4-0.8 s; benchmarks/README.md run 13)."""
    import streamlit as st

    from dlsec_core.attacks.base import get_attack
    from dlsec_core.data.builtin import load_dataset
    from dlsec_core.store import Store
    from dlsec_ui import resources

    st.cache_resource.clear()  # the store and models of other tests' homes
    data = load_dataset("digits")
    x, y = data.x_test[:1], int(data.y_test[0])

    def step(eps: float) -> list[float]:
        shown = []  # each attack's L∞ size (one image, then the batch's largest), then the detector's score
        for name in ("fgsm", "pgd"):
            attack = get_attack(name, eps=eps)
            shown.append(float(resources.attack_one(stored_model, attack, x, y, None, 0).linf[0]))
            shown.append(float(resources.attack_batch(stored_model, attack, 8, 0).linf.max()))
        detector = resources.get_detector(stored_model)
        shown.append(float(detector.scores(resources.model_of(stored_model), x)[0]))
        return shown

    step(0.05)  # loads and caches the model, its dataset and the detector (these read the store once)
    opened: list[str] = []

    def connect(self: Store) -> None:
        opened.append(str(self.db_path))
        raise AssertionError("an ε step opened the store's database")

    monkeypatch.setattr(Store, "_connect", connect)
    sizes = step(0.2)
    assert opened == []
    assert 0 < sizes[0] <= 0.2 + 1e-6 and 0 < sizes[2] <= 0.2 + 1e-6, sizes  # FGSM and PGD moved within ε
