"""The words the Attack Lab says about one attacked image (`widgets.attack_outcome`), on hand-made results."""

from __future__ import annotations

import dataclasses
import math

import torch

from dlsec_core.attacks import FGSM, DeepFool
from dlsec_core.attacks.base import Reference
from dlsec_ui.widgets import attack_outcome
from tests.ui.test_figures import NAMES, make_result


def test_without_a_class_fooled_means_the_prediction_changed() -> None:
    for changed in (True, False):
        result = dataclasses.replace(make_result(fooled=[changed]), reference=Reference.PREDICTION)
        said = attack_outcome(result, NAMES, FGSM())
        assert (said.label, said.value, said.detail, said.warning) == (
            "Fooled",
            "yes" if changed else "no",
            "",
            "",
        )
        assert "No class was given" in said.note and "prediction (0)" in said.note


def test_a_given_class_the_model_already_gets_wrong_is_said_so() -> None:
    result = dataclasses.replace(make_result(fooled=[True]), y=torch.tensor([7]))  # model says 0, class 7
    said = attack_outcome(result, NAMES, FGSM())
    assert (said.value, said.detail) == ("no", "already wrong")
    assert "it says 0, the true class is 7" in said.warning


def test_a_target_equal_to_the_reference_reaches_nothing() -> None:
    result = make_result(fooled=[False], target=[0])  # label 0, target 0, prediction stays 0
    said = attack_outcome(result, NAMES, FGSM())
    assert (said.label, said.value, said.detail) == ("Reached target", "no", "target = true class")
    assert "nothing was fooled" in said.warning
    unlabeled = attack_outcome(dataclasses.replace(result, reference=Reference.PREDICTION), NAMES, FGSM())
    assert unlabeled.detail == "target = its prediction"


def test_a_minimal_attack_says_what_size_it_found_or_that_the_cap_cut_it() -> None:
    found = make_result(norm="l2", eps=math.inf, fooled=[True])
    said = attack_outcome(found, NAMES, DeepFool())
    assert (
        f"DeepFool found a change of L2 size {float(found.l2[0]):.3f} that fools the model (0 → 1)"
        in said.note
    )
    capped = make_result(norm="l2", eps=0.5, fooled=[False])
    said = attack_outcome(capped, NAMES, DeepFool(eps=0.5))
    assert "capped at L2 ε = 0.5" in said.note and said.value == "no"
