"""Forms generated from Config metadata offer exactly what the validator accepts, for every registered config."""

from __future__ import annotations

import math

import pytest
from streamlit.testing.v1 import AppTest

from dlsec_core.attacks import ATTACKS, PGD
from dlsec_core.catalog import RECIPES
from dlsec_core.config import specs
from dlsec_core.defenses.transforms import TRANSFORMS
from dlsec_core.errors import InvalidInputError
from dlsec_core.privacy.audit import AuditConfig
from dlsec_core.privacy.inversion import InversionConfig
from dlsec_core.privacy.membership import LiraConfig
from dlsec_core.training.loop import TrainConfig
from dlsec_ui.widgets import JS_MAX_INT, SLIDER_SPAN, FormField, form_fields

REGISTERED: dict[str, type] = {
    **{f"attack:{n}": c for n, c in ATTACKS.items()},
    **{f"transform:{n}": c for n, c in TRANSFORMS.items()},
    **{f"recipe:{n}": c for n, c in RECIPES.items()},
    "TrainConfig": TrainConfig,
    # the algorithm settings the privacy pages draw with config_form (membership, inversion, audit)
    "LiraConfig": LiraConfig,
    "InversionConfig": InversionConfig,
    "AuditConfig": AuditConfig,
}


def just_past(item: FormField) -> list[float]:
    """The nearest values outside what the form offers."""
    out: list[float] = []
    for end, direction in ((item.lo, -1), (item.hi, +1)):
        if end is not None:
            out.append(
                end + direction if item.spec.type is int else math.nextafter(end, direction * math.inf)
            )
    return out


@pytest.mark.parametrize("key", list(REGISTERED))
def test_form_bounds_are_the_validators(key: str) -> None:
    cls = REGISTERED[key]
    for item in form_fields(cls, skip=("eps",) if key.startswith("attack:") else ()):
        spec = item.spec
        if item.widget in ("slider", "number"):
            assert (item.lo, item.hi) == (spec.bounds.extremes() if spec.bounds else (None, None))
            for value in (item.lo, item.hi):
                if value is not None:
                    assert (
                        getattr(cls(**{spec.name: value}), spec.name) == value
                    )  # the form's extremes are valid
            for value in just_past(item):
                with pytest.raises(InvalidInputError, match=f"`{spec.name}`"):
                    cls(**{spec.name: value})
        if item.widget == "slider":
            assert item.hi is not None and item.lo is not None and item.hi - item.lo <= SLIDER_SPAN
        if item.widget == "radio":
            for option in item.options:
                assert getattr(cls(**{spec.name: option}), spec.name) == option


def test_every_declared_number_gets_a_widget() -> None:
    for key, cls in REGISTERED.items():
        shown = {item.spec.name for item in form_fields(cls)}
        for spec in specs(cls):
            if spec.type in (int, float, bool) and not spec.optional:
                assert spec.name in shown, f"{key}.{spec.name}"


def _form_app() -> None:
    from dlsec_core.attacks import PGD, Square
    from dlsec_core.privacy.audit import AuditConfig
    from dlsec_core.privacy.dp_sgd import DPSGDRecipe
    from dlsec_ui.widgets import config_form

    config_form(PGD, prefix="t_", skip=("eps",))
    config_form(Square, prefix="t_", skip=("eps",))
    config_form(DPSGDRecipe, prefix="t_")
    config_form(AuditConfig, prefix="t_")


def test_the_rendered_form_has_the_validators_ranges() -> None:
    """The widgets Streamlit draws (not just the plan): PGD's steps reach 10,000 as the validator's do (the form
    stopped at 500 before), Square's queries 1,000,000, DP-SGD's σ everything in (0, 100]."""
    at = AppTest.from_function(_form_app).run()
    assert not at.exception
    boxes = {n.label: n for n in at.number_input}
    steps = boxes["Steps"].proto
    assert (steps.min, steps.max) == (1, 10_000)
    PGD(steps=int(steps.max))
    queries = boxes["Queries per image (model outputs only)"].proto
    assert (queries.min, queries.max) == (2, 1_000_000)
    sigma = boxes["Noise multiplier σ (ignored when a target ε is set)"].proto
    assert sigma.max == 100.0 and 0.0 < sigma.min < 1e-300
    assert not [
        s for s in at.slider if s.label == "Steps"
    ]  # a wide range is a number box, not a capped slider
    # a seed's range (to 2^63 - 1) is cut to what a browser's number box holds exactly (it raised before)
    seed = boxes["Seed (canary choice, wrong labels, coin flips)"].proto
    assert (seed.min, seed.max) == (0, JS_MAX_INT) and AuditConfig(seed=JS_MAX_INT).seed == JS_MAX_INT
    confidence = boxes[
        "Confidence of the bound"
    ].proto  # the validator's open (0, 1), the nearest values inside
    assert 0.0 < confidence.min < 1e-300 and confidence.max == math.nextafter(1.0, 0.0)
    AuditConfig(confidence=confidence.max)


def test_cw_offers_l2_only_on_the_page_and_keeps_the_box_in_code() -> None:
    from dlsec_core.attacks import CW

    (norm,) = [item for item in form_fields(CW) if item.spec.name == "norm"]
    assert norm.options == ("l2",)
    assert CW(norm="linf", eps=0.2).norm == "linf"  # type: ignore[arg-type]
