"""Privacy figures that do not overstate: ROC axes from 1/n, shared audit bins, decade labels (issue 13)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlsec_core.privacy.membership import roc_metrics
from dlsec_ui import figures


def _curve(label: str, n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    scores = np.r_[rng.normal(1, 1, n), rng.normal(0, 1, n)]
    m = roc_metrics(scores, np.r_[np.ones(n, bool), np.zeros(n, bool)])
    return {
        "label": label,
        "fpr": m.fpr,
        "tpr": m.tpr,
        "auc": m.auc,
        "tpr_at_0_1pct": m.tpr_at_low_fpr[0.001],
    }


def test_membership_roc_starts_at_one_over_n_and_says_not_measurable() -> None:
    fig = figures.membership_roc([_curve("no DP", 100, 0)], n_members=100, n_nonmembers=100)
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis.range[0] == pytest.approx(math.log10(1 / 100))
    assert fig.layout.yaxis.range[0] == pytest.approx(
        -2
    )  # was -4: an axis down to 1e-4 that 100 cannot reach
    assert "TPR@0.1% FPR not measurable at n = 100" in fig.data[0].name
    assert min(fig.data[0].x) >= 1 / 100 - 1e-12  # zero-FPR points sit on the floor, not below it
    assert list(fig.layout.xaxis.ticktext) == ["1%", "10%", "100%"]


def test_membership_roc_reads_the_rate_when_n_resolves_it() -> None:
    curve = _curve("no DP", 1000, 1)
    fig = figures.membership_roc([curve], n_members=1000, n_nonmembers=1000)
    rate = curve["tpr_at_0_1pct"]
    assert rate.measurable and f"TPR@0.1% FPR {rate.value:.1%}" in fig.data[0].name
    assert fig.layout.xaxis.range[0] == pytest.approx(-3) and fig.layout.xaxis.ticktext[0] == "0.1%"


def test_roc_chart_labels_a_floor_between_decades() -> None:
    fig = figures.roc_chart([{"label": "x", "fpr": [0, 0.5, 1], "tpr": [0, 0.7, 1]}], n_negatives=500)
    assert fig.layout.xaxis.range[0] == pytest.approx(math.log10(1 / 500))
    assert list(fig.layout.xaxis.ticktext) == ["0.2%", "1%", "10%", "100%"]


def test_detection_roc_takes_n_for_the_same_rule() -> None:
    roc = [{"fpr": 0.0, "tpr": 0.0}, {"fpr": 0.02, "tpr": 0.6}, {"fpr": 1.0, "tpr": 1.0}]
    linear = figures.roc_figure(roc, 0.9, "ROC")
    assert linear.layout.xaxis.type in (None, "linear", "-")  # without n: the old chart, unchanged
    log = figures.roc_figure(roc, 0.9, "ROC", n_clean=200)
    assert log.layout.xaxis.type == "log" and log.layout.xaxis.range[0] == pytest.approx(math.log10(1 / 200))
    assert "AUC 0.900" in log.data[0].name


def test_audit_histograms_share_bins_and_range_across_runs() -> None:
    rng = np.random.default_rng(0)
    dp = (rng.normal(-10, 1, 200), rng.random(200) < 0.5)  # a DP run: scores in a narrow band
    control = (rng.normal(-5, 4, 200), rng.random(200) < 0.5)  # the control: spread out, separated
    fig = figures.audit_scores([("DP-SGD", *dp), ("standard", *control)])
    hists = [t for t in fig.data if t.type == "histogram"]
    assert len(hists) == 4
    bins = {(h.xbins.start, h.xbins.end, h.xbins.size) for h in hists}
    assert len(bins) == 1  # one bin width for both colours and both runs (was: Plotly's own per trace)
    start, end, size = bins.pop()
    everything = np.r_[dp[0], control[0]]
    assert (
        start <= everything.min()
        and end >= everything.max()
        and size == pytest.approx((end - start) / 40, 1e-3)
    )
    assert fig.layout.xaxis.range == fig.layout.xaxis2.range


def test_frontier_labels_decades_only() -> None:
    records = [
        {"model": f"dp{e}", "epsilon": e, "test_accuracy": 0.8, "accountant": "rdp", "noise_multiplier": 1.0,
         "delta": 1e-5}
        for e in (0.4, 0.9, 2.1, 4.5, 9.0, 30.0)
    ] + [{"model": "std", "epsilon": None, "test_accuracy": 0.95, "accountant": None}]  # fmt: skip
    fig = figures.privacy_frontier(records)
    assert list(fig.layout.xaxis.ticktext) == ["0.1", "1", "10", "100"]
    assert list(fig.layout.xaxis.tickvals) == pytest.approx([0.1, 1, 10, 100])
    narrow = figures.privacy_frontier(records[2:4])  # inside one decade: still two labelled decades
    assert list(narrow.layout.xaxis.ticktext) == ["1", "10"]
