"""One rule for which rates a sample can measure, used by membership inference, the audit and detection."""

from __future__ import annotations

import numpy as np
import pytest

from dlsec_core.errors import InvalidInputError
from dlsec_core.evaluation.rates import measured_rate, smallest_measurable_rate
from dlsec_core.privacy.membership import roc_metrics


def test_a_rate_below_one_over_n_is_not_measurable() -> None:
    assert smallest_measurable_rate(100) == 0.01
    assert not measured_rate(0.3, level=0.001, n=999).measurable
    assert measured_rate(0.3, level=0.001, n=1000).measurable  # exactly one false positive is allowed
    low = measured_rate(0.01, level=0.001, n=100)
    assert low.reading is None and low.n_needed == 1000 and low.resolution == 0.01
    assert low.describe() == "not measurable at n = 100 (needs n ≥ 1,000)"
    assert measured_rate(0.125, level=0.01, n=100).describe() == "12.5%"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n": 0},
        {"n": 2.5},
        {"n": True},
        {"level": 0.0},
        {"level": 1.5},
        {"value": -0.1},
        {"value": float("nan")},
    ],
)
def test_bad_rates_are_refused(kwargs: dict) -> None:
    args = {"value": 0.5, "level": 0.01, "n": 100, **kwargs}
    with pytest.raises(InvalidInputError):
        measured_rate(args.pop("value"), **args)


def test_membership_on_100_non_members_reports_tpr_at_0_1pct_as_not_measurable() -> None:
    # 100 + 100 candidates: the "TPR @ 0.1 % FPR 0.01" is the TPR at zero false positives, not a rate.
    rng = np.random.default_rng(0)
    m = roc_metrics(np.r_[rng.normal(2, 1, 100), rng.normal(0, 1, 100)], np.r_[np.ones(100), np.zeros(100)])
    low = m.tpr_at_low_fpr
    assert (
        not low[0.001].measurable and low[0.001].value == m.tpr_at_0_1pct
    )  # the raw reading stays available
    assert low[0.01].measurable and low[0.01].reading == m.tpr_at_1pct
    record = m.to_record()
    assert record["tpr_at_0_1pct"] is None and record["tpr_at_0_1pct_needs"] == 1000
    assert record["tpr_at_1pct"] == m.tpr_at_1pct and "tpr_at_1pct_needs" not in record
