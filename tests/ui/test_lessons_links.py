"""The lessons' links carry values the pages' bound widgets accept (a bound select box takes its displayed label
from the URL; an unknown one is silently dropped), and the "train it" link presets the Models page's form."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlsec_core.attacks.base import ATTACKS
from dlsec_core.catalog import RECIPES
from dlsec_core.data.builtin import DATASETS
from dlsec_core.defenses.transforms import TRANSFORMS
from dlsec_core.lessons.schema import load_lessons
from dlsec_core.models.architectures import ARCHITECTURES
from dlsec_core.theft.api import OUTPUT_POLICIES
from dlsec_ui import state
from dlsec_ui.lessons import LESSONS_DIR, train_link_params

LABELS = {  # URL parameter -> the labels its bound widget shows
    state.ATTACK: {c.title for c in ATTACKS.values()},
    "sweep_" + state.ATTACK: {c.title for c in ATTACKS.values()},
    "sweep_" + state.DEFENSE: {"none"} | {c.title for c in TRANSFORMS.values()},
    "lab_" + state.DEFENSE: {"none"} | {c.title for c in TRANSFORMS.values()},
    state.THEFT_POLICY: {c.title for c in OUTPUT_POLICIES.values()},
    state.TRAIN_RECIPE: {c.title for c in RECIPES.values()},
    state.IMAGE_SOURCE: {"Gallery", "Upload", "Draw"},
    state.GALLERY_CLASS: {str(i) for i in range(10)},
}
NUMBERS = {state.GALLERY_INDEX, f"{state.EPS}_linf", state.SWEEP_EPS_MAX, state.SWEEP_POINTS}

LESSONS = load_lessons(LESSONS_DIR)


def test_the_lessons_folder_is_the_shipped_one() -> None:
    assert Path(__file__).resolve().parents[2] / "lessons" == LESSONS_DIR and len(LESSONS) >= 4


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda lesson: lesson.id)
def test_link_values_are_labels_the_widgets_show(lesson: object) -> None:
    for step in lesson.steps:  # type: ignore[attr-defined]
        for name, value in step.params.items():
            assert name in LABELS or name in NUMBERS, f"{step.id}: unknown URL parameter {name!r}"
            if name in LABELS:
                assert value in LABELS[name], (
                    f"{step.id}: {name}={value!r} is not one of {sorted(LABELS[name])}"
                )
            else:
                float(value)


def test_train_it_links_preset_the_models_form() -> None:
    for lesson in LESSONS:
        for ref in lesson.models.values():
            params = train_link_params(ref)
            assert params[state.TRAIN_DATASET] in DATASETS
            assert params[state.TRAIN_RECIPE] == RECIPES[ref.recipe].title
            # dlsec_ui/model_forms.py train_form's format_func for the architecture box
            assert params[state.TRAIN_ARCH] == f"{ref.arch}: {ARCHITECTURES[ref.arch].description}"
