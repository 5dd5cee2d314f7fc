"""The MITRE ATLAS page and the ATLAS tags under the attack, defense and recipe pickers, through AppTest.

What the page should show comes from the core (`atlas_matrix()` walks the registries), so a part registered
later is checked here too; the fixed oracles are the pages a few well-known techniques must open.
The real-browser version (follow a link, screenshot) is in tests/e2e/test_atlas_browser.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from streamlit.testing.v1 import AppTest

from dlsec_core.atlas import NO_ENTRY, describe
from dlsec_core.atlas_coverage import atlas_matrix
from dlsec_core.attacks import ATTACKS
from dlsec_core.catalog import RECIPES
from dlsec_core.defenses.transforms import TRANSFORMS
from dlsec_core.store import ModelCard
from dlsec_ui import state
from dlsec_ui.atlas import ATLAS_PAGE, pages_of
from tests.pages import test_pages_apptest as pages
from tests.pages.test_pages_apptest import ATTACK_LAB, MODELS, assert_ok

app = pages.app  # the fixture that opens a page over this test's DLSEC_HOME


def links(at: AppTest) -> dict[str, set[str]]:
    """Link label -> the url paths of the pages it opens."""
    found: dict[str, set[str]] = {}
    for link in at.get("page_link"):
        found.setdefault(link.proto.label, set()).add(link.proto.page)
    return found


def atlas_captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption if c.value.startswith("MITRE ATLAS: ")]


def test_page_lights_and_links_what_the_lab_demonstrates(app: Callable[[str], AppTest]) -> None:
    assert ATLAS_PAGE in pages.PAGES
    at = app(ATLAS_PAGE)
    assert at.title[0].value == "MITRE ATLAS"
    shown = links(at)
    text = "\n".join([*(m.value for m in at.markdown), *(c.value for c in at.caption)])
    matrix = atlas_matrix()
    for column in matrix.columns:
        assert f"**{column.tactic.name}**" in text
        for cell in column.cells:
            label = ("↳ " if cell.depth else "") + cell.entry.label
            if cell.demonstrated:  # lit: a link to the first page that demonstrates it
                assert shown.get(label) == {Path(pages_of(cell)[0]).stem}, label
            else:  # grey text, no link
                assert label not in shown and f"{cell.entry.id} {cell.entry.name}" in text, label
    # fixed oracles: where a reader must land
    assert shown["AML.T0015 Evade AI Model"] == {"attack_lab"}
    assert shown["↳ AML.T0024.000 Infer Training Data Membership"] == {"membership"}
    assert shown["↳ AML.T0024.001 Invert AI Model"] == {"inversion"}
    assert shown["↳ AML.T0043.001 Black-Box Optimization"] == {"attack_lab"}
    # the mitigations list every page that shows them: the detector's own page for detection
    detection = next(c for c in matrix.mitigations if c.entry.id == "AML.M0015")
    assert {Path(p).stem for p in pages_of(detection)} == {"detection"}
    assert "Detection" in shown and "detection" in shown["Detection"]
    assert "AML.M0003" in text and "AML.M0010" in text
    # local tags, apart, with the sentence that ATLAS has no entry for them
    assert any(NO_ENTRY in c.value for c in at.caption)
    assert "DLSEC.differential-privacy" in text and "DLSEC.watermarking" in text


def test_attack_and_defense_pickers_name_their_atlas_tags(
    app: Callable[[str], AppTest], stored_model: ModelCard
) -> None:
    at = app(ATTACK_LAB)
    first = next(iter(ATTACKS))
    assert atlas_captions(at) == [f"MITRE ATLAS: {describe(ATTACKS[first].atlas_ids)}"]
    assert "AML.T0043.000 White-Box Optimization" in atlas_captions(at)[0]
    at.selectbox(key=state.ATTACK).select("square").run()
    assert_ok(at)
    assert atlas_captions(at) == [f"MITRE ATLAS: {describe(ATTACKS['square'].atlas_ids)}"]
    assert "AML.T0043.001 Black-Box Optimization" in atlas_captions(at)[0]
    at.selectbox(key="lab_" + state.DEFENSE).select("jpeg").run()
    assert_ok(at)
    assert f"MITRE ATLAS: {describe(TRANSFORMS['jpeg'].atlas_ids)}" in atlas_captions(at)
    assert any("AML.M0010 Input Restoration" in c for c in atlas_captions(at))


def test_recipe_picker_names_its_atlas_tags(app: Callable[[str], AppTest]) -> None:
    at = app(MODELS)
    assert atlas_captions(at) == [f"MITRE ATLAS: {describe(RECIPES['standard'].atlas_ids)}"]
    at.selectbox(key=state.TRAIN_RECIPE).select("dp-sgd").run()
    assert_ok(at)
    assert atlas_captions(at) == ["MITRE ATLAS: DLSEC.differential-privacy Differential privacy (local tag)"]
    at.selectbox(key=state.TRAIN_RECIPE).select("pgd").run()
    assert atlas_captions(at) == ["MITRE ATLAS: AML.M0003 Model Hardening"]
