"""Severity scales applied as documented (at each threshold exactly, the milder level), and findings round-tripping
through JSON. Oracle: the thresholds as the module documents them, read from the scale's own levels."""

from __future__ import annotations

import doctest

import pytest

from dlsec_core.assessment import severity
from dlsec_core.assessment.findings import Finding, Grade
from dlsec_core.assessment.severity import (
    DP_EPSILON,
    MEMBERSHIP_TPR_AT_1PCT_FPR,
    ROBUST_ACCURACY,
    SCALES,
    Level,
    Scale,
    Severity,
)
from dlsec_core.errors import InvalidInputError

EPS = 1e-9


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, Severity.HIGH),
        (0.10 - EPS, Severity.HIGH),
        (0.10, Severity.MEDIUM),
        (0.50 - EPS, Severity.MEDIUM),
        (0.50, Severity.LOW),
        (0.80 - EPS, Severity.LOW),
        (0.80, Severity.INFO),
        (1.0, Severity.INFO),
    ],
)
def test_robust_accuracy_boundaries(value: float, expected: Severity) -> None:
    assert ROBUST_ACCURACY.grade(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, Severity.INFO),
        (0.01, Severity.INFO),  # chance
        (0.02, Severity.INFO),
        (0.02 + EPS, Severity.LOW),
        (0.05, Severity.LOW),
        (0.05 + EPS, Severity.MEDIUM),
        (0.20, Severity.MEDIUM),
        (0.20 + EPS, Severity.HIGH),
        (1.0, Severity.HIGH),
    ],
)
def test_membership_boundaries(value: float, expected: Severity) -> None:
    assert MEMBERSHIP_TPR_AT_1PCT_FPR.grade(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.5, Severity.INFO), (1.0, Severity.INFO), (1.0 + EPS, Severity.LOW), (10.0, Severity.LOW),
     (10.0 + EPS, Severity.MEDIUM), (1e6, Severity.MEDIUM)],
)  # fmt: skip
def test_dp_epsilon_boundaries(value: float, expected: Severity) -> None:
    assert DP_EPSILON.grade(value) is expected


def test_every_threshold_has_a_reason_and_a_citation() -> None:
    for scale in SCALES.values():
        assert scale.levels and scale.otherwise
        for level in scale.levels:
            assert level.reason and level.citation
            assert any(str(year) in level.citation for year in range(2010, 2030)), level.citation
    for level in (severity.NO_DP_CLAIM, severity.DELTA_TOO_LARGE):
        assert level.reason and level.citation


def test_a_scale_out_of_order_or_a_non_number_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="most severe"):
        Scale(
            name="bad", measure="m", worse="lower", otherwise="",
            levels=(Level(Severity.LOW, 0.8, "r", "c"), Level(Severity.HIGH, 0.1, "r", "c")),
        )  # fmt: skip
    with pytest.raises(InvalidInputError, match="grades a number"):
        ROBUST_ACCURACY.grade(float("nan"))


def test_grade_names_the_threshold_crossed() -> None:
    grade = Grade.on(ROBUST_ACCURACY, 0.05)
    assert grade.severity is Severity.HIGH and grade.scale == "robust-accuracy"
    assert grade.rule == ROBUST_ACCURACY.levels[0].reason and "Madry" in grade.citation
    info = Grade.on(ROBUST_ACCURACY, 0.9)
    assert info.severity is Severity.INFO and info.rule == ROBUST_ACCURACY.otherwise


def test_finding_round_trips_through_json() -> None:
    import json

    finding = Finding(
        id="evasion-pgd-linf-0.3", title="t", grade=Grade.on(ROBUST_ACCURACY, 0.3), summary="s",
        evidence={"accuracy": 0.3, "n": 10}, atlas_ids=("AML.T0015",), reduce="r",
        checks=[{"code": "c", "severity": "info", "title": "t", "sentence": "s"}],
    )  # fmt: skip
    data = json.loads(json.dumps(finding.to_json()))
    assert Finding.from_json(data) == finding
    assert data["grade"]["severity"] == "medium"
    with pytest.raises(InvalidInputError):
        Finding.from_json({**data, "grade": {**data["grade"], "severity": "critical"}})


def test_severity_doctests() -> None:
    assert doctest.testmod(severity).failed == 0
