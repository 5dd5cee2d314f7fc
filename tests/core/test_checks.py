"""Sanity checks: a deliberately masked model is caught, an honest one is not, and each check fires on its sign."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import torch
from torch import nn

from dlsec_core.attacks import FGSM, PGD
from dlsec_core.data.builtin import load_dataset
from dlsec_core.defenses.transforms import BitDepth, Mode, defend
from dlsec_core.errors import InvalidInputError
from dlsec_core.evaluation import sweep
from dlsec_core.evaluation.checks import (
    Finding,
    check_black_box_vs_white_box,
    check_curve,
    check_detector_attack,
    check_large_eps,
    check_naive_vs_adaptive,
    check_probability_outputs,
    check_randomized,
    check_sweep,
    check_zero_gradients,
    run_checks,
    zero_gradient_fraction,
)

if TYPE_CHECKING:
    from dlsec_core.training.loop import TrainResult

Digits = tuple[nn.Module, torch.Tensor, torch.Tensor]  # a trained model, test images, test labels
EPS = [0.0, 0.05, 0.1, 0.2, 0.3, 0.5]
MASKING = {"accuracy-rises-with-eps", "large-eps-not-defeated"}


@pytest.fixture(scope="module")
def digits_test(trained_digits: TrainResult) -> Digits:
    """The session's trained logreg (never modified) and 200 test digits."""
    ds = load_dataset("digits")
    return trained_digits.model, ds.x_test[:200], ds.y_test[:200]


def codes(findings: list[Finding]) -> set[str]:
    return {f.code for f in findings}


# -- the story: masked vs honest ----------------------------------------------------------------------------


def test_a_masked_model_is_caught(digits_test: Digits) -> None:
    model, x, y = digits_test
    masked = nn.Sequential(BitDepth(bits=3).layer(bpda=False), model).eval()
    assert zero_gradient_fraction(masked, x, y) == 1.0
    zero = check_zero_gradients(masked, x, y)
    assert [(f.code, f.severity) for f in zero] == [("zero-gradients", "warning")]
    for attack in (PGD(steps=10), FGSM()):
        points = list(sweep(masked, x, y, attack, EPS))
        assert codes(check_sweep(points, dims=64)) & MASKING, [p.accuracy for p in points]
    findings = run_checks(masked, x, y, curve=points)
    assert {"zero-gradients", "large-eps-not-defeated"} <= codes(findings)
    assert all(f.severity == "warning" for f in findings)


def test_an_honest_model_passes_every_check(digits_test: Digits) -> None:
    model, x, y = digits_test
    points = list(sweep(model, x, y, PGD(steps=10), EPS))
    assert points[-1].accuracy < 0.05
    assert run_checks(model, x, y, curve=points) == []
    # the same model behind bit-depth reduction, attacked with BPDA, is honest too
    defended = defend(model, "bit-depth")
    points = list(sweep(defended.attack_view(), x, y, PGD(steps=10), EPS))
    assert run_checks(defended.attack_view(), x, y, curve=points) == []


def test_naive_and_adaptive_evaluations_of_a_defense_are_told_apart(digits_test: Digits) -> None:
    model, x, y = digits_test
    attack = PGD(eps=0.15, steps=10)
    acc = {
        mode: 1 - attack(defend(model, "bit-depth", mode=mode).attack_view(), x, y).success_rate
        for mode in Mode
    }
    assert codes(check_naive_vs_adaptive(acc[Mode.NAIVE], acc[Mode.ADAPTIVE], n=len(y))) == {
        "naive-overestimates"
    }


# -- each check on its own ----------------------------------------------------------------------------------


def test_a_rising_curve_is_flagged() -> None:
    (finding,) = check_curve([0.0, 0.1, 0.2, 0.3], [0.9, 0.4, 0.1, 0.6])
    assert finding.code == "accuracy-rises-with-eps" and finding.severity == "warning"
    assert "10.0 %" in finding.sentence and "60.0 %" in finding.sentence and "0.3" in finding.sentence
    # order of the points does not matter
    assert check_curve([0.3, 0.0, 0.2, 0.1], [0.6, 0.9, 0.1, 0.4]) == [finding]


def test_a_falling_or_noisy_curve_is_not_flagged() -> None:
    assert check_curve([0.0, 0.1, 0.2, 0.3], [0.9, 0.5, 0.2, 0.0]) == []
    assert check_curve([0.0, 0.1, 0.2], [0.9, 0.50, 0.515]) == []  # 1.5 points: noise
    # 3 points is noise on 100 inputs (2 standard errors are about 6 points) but not on 10,000
    assert check_curve([0.0, 0.1, 0.2], [0.9, 0.5, 0.53], n=100) == []
    assert codes(check_curve([0.0, 0.1, 0.2], [0.9, 0.5, 0.53], n=10_000)) == {"accuracy-rises-with-eps"}
    # repeated measurements at the same eps are not a rise
    assert check_curve([0.1, 0.1], [0.5, 0.6]) == []
    with pytest.raises(InvalidInputError):
        check_curve([0.0, 0.1], [0.9])


def test_large_budgets_must_defeat_the_model() -> None:
    assert codes(check_large_eps(0.5, 0.5, "linf")) == {"large-eps-not-defeated"}
    assert check_large_eps(0.5, 0.05, "linf") == []
    assert check_large_eps(0.3, 0.9, "linf") == []
    # L2: 0.5 * sqrt(64) = 4 reaches the grey image from any 8x8 image
    assert codes(check_large_eps(4.0, 0.5, "l2", dims=64)) == {"large-eps-not-defeated"}
    assert check_large_eps(3.9, 0.5, "l2", dims=64) == []
    assert check_large_eps(100.0, 0.5, "l2") == []  # unknown image size: skipped
    with pytest.raises(InvalidInputError):
        check_large_eps(0.5, 0.5, "l1")


def test_a_black_box_attack_beating_the_white_box_one_is_flagged() -> None:
    assert codes(check_black_box_vs_white_box(0.6, 0.3)) == {"black-box-beats-white-box"}
    assert check_black_box_vs_white_box(0.3, 0.6) == []
    assert check_black_box_vs_white_box(0.31, 0.3) == []


def test_a_one_step_attack_losing_to_a_black_box_one_is_weak_unless_a_strong_attack_loses_too() -> None:
    """Issue 13 item 8: FGSM 4 %, Square 0 % on a plain cnn is a weak FGSM, not gradient masking; masking is
    called only when a strong iterative attack (PGD) also stays above the black-box attack."""
    (weak,) = check_black_box_vs_white_box(0.4, 0.18, n=100, strong_accuracy=0.18, white_box="FGSM")
    assert weak.code == "weak-white-box-attack" and weak.severity == "info"
    assert "FGSM is a weak attack" in weak.title and "PGD" in weak.sentence and "18.0 %" in weak.sentence
    # within sampling noise of the black-box number still counts as "the strong attack did as well"
    assert codes(check_black_box_vs_white_box(0.4, 0.0, n=100, strong_accuracy=0.01)) == {
        "weak-white-box-attack"
    }
    (masked,) = check_black_box_vs_white_box(0.9, 0.1, n=100, strong_accuracy=0.9, white_box="FGSM")
    assert masked.code == "black-box-beats-white-box" and masked.severity == "warning"
    assert "90.0 %" in masked.sentence and "gradient masking" in masked.sentence
    assert check_black_box_vs_white_box(0.2, 0.19, n=100, strong_accuracy=0.0) == []  # nothing to explain


def test_a_detector_aware_attack_must_beat_the_plain_one_clearly() -> None:
    (weak,) = check_detector_attack(0.05, 0.07, n=200)
    assert weak.code == "adaptive-attack-not-stronger" and weak.severity == "warning"
    assert "He, Wei, Chen, Carlini, Song 2017" in weak.sentence
    assert codes(check_detector_attack(0.1, 0.05, n=200)) == {"adaptive-attack-not-stronger"}
    assert check_detector_attack(0.05, 0.6, n=200) == []


def test_naive_vs_adaptive_explains_all_three_outcomes() -> None:
    assert codes(check_naive_vs_adaptive(0.9, 0.3)) == {"naive-overestimates"}
    assert codes(check_naive_vs_adaptive(0.3, 0.9)) == {"adaptive-weaker"}
    (same,) = check_naive_vs_adaptive(0.5, 0.49)
    assert same.code == "naive-matches-adaptive" and same.severity == "info"


def test_probability_outputs_are_flagged_but_log_probabilities_are_not(digits_test: Digits) -> None:
    model, x, _ = digits_test
    assert codes(check_probability_outputs(nn.Sequential(model, nn.Softmax(dim=1)), x)) == {
        "probability-outputs"
    }
    assert check_probability_outputs(nn.Sequential(model, nn.LogSoftmax(dim=1)), x) == []
    assert check_probability_outputs(model, x) == []
    # the EOT wrapper returns log mean probabilities: fine for cross-entropy, not flagged
    assert check_probability_outputs(defend(model, "gaussian").attack_view(), x) == []


def test_a_random_model_is_noted(digits_test: Digits) -> None:
    model, x, _ = digits_test
    (finding,) = check_randomized(defend(model, "gaussian"), x)
    assert finding.code == "randomized-model" and finding.severity == "info"
    assert check_randomized(defend(model, "jpeg"), x[:20]) == []


def test_run_checks_puts_warnings_first_and_findings_serialize(digits_test: Digits) -> None:
    model, x, y = digits_test
    findings = run_checks(
        defend(model, "gaussian", mode="naive"),
        x,
        y,
        white_box_accuracy=0.7,
        black_box_accuracy=0.4,
        naive_accuracy=0.5,
        adaptive_accuracy=0.5,
        max_samples=50,
    )
    assert [f.code for f in findings] == [
        "black-box-beats-white-box",
        "randomized-model",
        "naive-matches-adaptive",
    ]
    assert findings[0].to_record() == {
        "code": findings[0].code,
        "severity": "warning",
        "title": findings[0].title,
        "sentence": findings[0].sentence,
    }
    with pytest.raises(InvalidInputError):
        run_checks(model, x, y, max_samples=0)


def test_checks_leave_the_model_mode_alone(digits_test: Digits) -> None:
    _, x, y = digits_test
    torch.manual_seed(0)
    fresh = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).train()
    run_checks(fresh, x[:20], y[:20])
    assert fresh.training and torch.is_grad_enabled()
    assert all(p.grad is None for p in fresh.parameters())
