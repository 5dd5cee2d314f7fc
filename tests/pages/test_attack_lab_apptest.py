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
