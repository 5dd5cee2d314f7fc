"""Every study setting a page offers is one the study's validator accepts: each page is run (AppTest) and the
values its sliders and select sliders offer (the ends of a slider, every option of a select slider) are given
to the config the page submits. The bounds come from the configs' `param` metadata (dlsec_ui/widgets.py
`setting_slider`, `setting_select_slider`), so a page can no longer offer a value the validator refuses."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from background import finish_all
from streamlit.testing.v1 import AppTest

from dlsec_core.defenses.detection import Squeezer
from dlsec_core.errors import InvalidInputError
from dlsec_core.store import ModelCard
from dlsec_core.studies.certification import CertificationStudyConfig
from dlsec_core.studies.detection import DetectionStudyConfig
from dlsec_core.studies.membership import MembershipStudyConfig
from dlsec_core.studies.sweep import SweepStudyConfig
from dlsec_core.training.loop import TrainConfig
from dlsec_ui import state
from dlsec_ui.widgets import setting_range, setting_values

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app.py"
TIMEOUT = 60.0


@pytest.fixture
def page(tmp_home: Path, stored_model: ModelCard) -> Iterator[Callable[[str], AppTest]]:
    st.cache_resource.clear()
    st.cache_data.clear()

    def open_page(name: str) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
        at.run()
        at.switch_page(f"app_pages/{name}.py").run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    yield open_page
    finish_all()
    st.cache_resource.clear()
    st.cache_data.clear()


def accepted(build: Callable[[Any], Any], values: list[Any]) -> None:
    """Each value builds the config (the validator's own verdict), naming the value that does not."""
    assert values, "the widget offers nothing"
    for value in values:
        try:
            build(value)
        except InvalidInputError as err:  # pragma: no cover - the failure message is the point
            pytest.fail(f"the page offers {value!r}, which the validator refuses: {err}")


def slider_ends(at: AppTest, key: str) -> list[Any]:
    slider = at.slider(key=key)
    return [slider.min, slider.max, slider.value]


def select_options(at: AppTest, key: str) -> list[float]:
    return [float(o) for o in at.select_slider(key=key).options]


def test_certification_page_offers_only_valid_settings(page: Callable[[str], AppTest]) -> None:
    at = page("certification")
    for key, name in ((state.CERT_SIGMA, "sigma"), (state.CERT_IMAGES, "n_images"), (state.CERT_N, "n")):
        values = select_options(at, key)
        kind = float if name == "sigma" else int
        accepted(lambda v, n=name, k=kind: CertificationStudyConfig(model_id="m", **{n: k(v)}), values)


def test_detection_page_offers_only_valid_settings(page: Callable[[str], AppTest]) -> None:
    at = page("detection")
    accepted(lambda v: DetectionStudyConfig(model_id="m", fpr=v), slider_ends(at, state.DET_FPR))
    accepted(lambda v: Squeezer("bit_depth", int(v)), slider_ends(at, state.DET_BITS))
    medians = [o for o in at.select_slider(key=state.DET_MEDIAN).options if o != "off"]
    assert medians, "no median window offered"
    accepted(lambda v: Squeezer("median", int(v.split("×")[0])), medians)
    accepted(
        lambda v: DetectionStudyConfig(model_id="m", n_images=int(v)), select_options(at, state.DET_IMAGES)
    )


def test_membership_robustness_audit_and_frontier_offer_only_valid_settings(
    page: Callable[[str], AppTest], stored_model: ModelCard
) -> None:
    at = page("membership")
    key = f"{state.MI_N}_{stored_model.dataset}"
    accepted(lambda v: MembershipStudyConfig(model_ids=["m"], n=int(v)), slider_ends(at, key))
    at = page("robustness")
    accepted(
        lambda v: SweepStudyConfig(model_ids=["m"], n_images=int(v)), select_options(at, state.SWEEP_IMAGES)
    )
    at = page("audit")
    accepted(lambda v: TrainConfig(epochs=int(v)), slider_ends(at, state.AU_EPOCHS))
    accepted(lambda v: TrainConfig(batch_size=int(v)), select_options(at, state.AU_BATCH))
    at = page("privacy_budget")
    accepted(lambda v: TrainConfig(epochs=int(v)), slider_ends(at, state.FR_EPOCHS))


def test_a_teaching_value_outside_the_metadata_is_a_page_bug() -> None:
    assert setting_values(CertificationStudyConfig, "sigma", [0.12, 10.0]) == [0.12, 10.0]
    with pytest.raises(ValueError, match=r"sigma refuses \[0.0, 10.5\]"):
        setting_values(CertificationStudyConfig, "sigma", [0.0, 0.25, 10.5])
    assert setting_range(DetectionStudyConfig, "fpr", lo=0.01, hi=0.2) == (0.01, 0.2)
    low, high = setting_range(DetectionStudyConfig, "fpr")
    assert 0.0 < low < 1e-300 and 0.999 < high < 1.0  # the open ends, nearest values inside
    with pytest.raises(ValueError, match="fpr"):
        setting_range(DetectionStudyConfig, "fpr", hi=1.0)
    with pytest.raises(ValueError, match="upper or lower bound"):
        setting_range(MembershipStudyConfig, "n")  # no upper bound: the page gives the data's own
