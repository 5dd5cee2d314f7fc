"""Scorecard figures and tables read a scan's own numbers: the headline of every tile, the evidence chart's marker
and severity band, the comparison grid, and the robust-accuracy vs membership-TPR point of each scanned model.

Oracles: the findings' evidence and the severity scales' own `grade` (dlsec_core.assessment.severity)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlsec_core.assessment.findings import Finding, Grade
from dlsec_core.assessment.severity import SCALES, Severity
from dlsec_core.runs import RunStore
from dlsec_core.store import Store
from dlsec_ui.scorecard import (
    SEVERITY_COLOURS,
    comparison_figure,
    comparison_rows,
    finding_figure,
    headline,
    plain_summary,
    scan_of,
    scanned_models,
    tradeoff_figure,
    tradeoff_points,
)
from tests.scan_runs import finished_scan, train_digits


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two scanned digits models (a logreg scanned twice, an mlp once) in one store."""
    home = tmp_path_factory.mktemp("scorecard") / "home"
    logreg = train_digits(home, "plain-logreg")
    mlp = train_digits(home, "plain-mlp", arch="mlp")
    finished_scan(home, logreg.id, seed=0)
    finished_scan(home, mlp.id, seed=0)
    finished_scan(home, logreg.id, seed=1)  # the newest scan of the logreg
    return home


def test_scanned_models_keep_each_models_latest_scan(home: Path) -> None:
    models = scanned_models(RunStore(Store(home)))
    assert [m.result.model_name for m in models] == ["plain-logreg", "plain-mlp"]
    assert models[0].result.seed == 1  # the newer of the logreg's two scans


def test_tiles_and_evidence_charts_show_the_findings_numbers(home: Path) -> None:
    result = scanned_models(RunStore(Store(home)))[0].result
    for f in result.findings:
        fig = finding_figure(f)
        if f.id.startswith("evasion"):
            assert headline(f) == f"{100 * f.evidence['accuracy']:.1f} %"
            assert fig is not None and fig.data[0].x[0] == f.evidence["accuracy"]
        if f.id == "membership-loss":
            assert headline(f) == f"{100 * f.evidence['tpr_raw']:.1f} %"
        if f.id == "dp-claim":
            assert headline(f) == "none" and f.evidence["epsilon"] is None
        if f.grade.scale in SCALES and fig is not None:
            value = fig.data[0].x[0]
            assert (
                SCALES[f.grade.scale].grade(value) == f.severity
            )  # the marker sits in its own severity's band
            assert fig.data[0].marker.color == SEVERITY_COLOURS[f.severity]
            bands = [s for s in fig.layout.shapes if s.type == "rect" and s.x0 <= value <= s.x1]
            assert SEVERITY_COLOURS[f.severity] in {b.fillcolor for b in bands}


def test_a_finding_of_another_preset_gets_a_tile_and_a_chart() -> None:
    """Findings are read generically: a finding graded by no scale shows its fractions."""
    f = Finding(
        id="theft-exposure", title="Theft exposure", grade=Grade.context("test"), summary="s",
        evidence={"fidelity": 0.9, "queries": 1000, "seed": 0},
    )  # fmt: skip
    assert headline(f) == "90.0 %"
    fig = finding_figure(f)
    assert fig is not None and list(fig.data[0].x) == ["fidelity"] and list(fig.data[0].y) == [0.9]


def test_comparison_has_one_row_per_finding_and_one_column_per_model(home: Path) -> None:
    models = scanned_models(RunStore(Store(home)))
    rows = comparison_rows(models)
    ids = [f.id for f in models[0].result.findings]
    assert [r["finding"] for r in rows] == [f.title for f in models[0].result.findings]
    for m in models:
        for row, fid in zip(rows, ids, strict=True):
            f = m.result.finding(fid)
            assert row[m.label] == f"{str(f.severity).upper()} · {headline(f)}"
    grid = comparison_figure(models).data[0]
    assert [list(r) for r in grid.z] == [[m.result.finding(i).severity.rank for m in models] for i in ids]


def test_tradeoff_has_the_strongest_attack_at_each_eps_and_the_membership_tpr(home: Path) -> None:
    models = scanned_models(RunStore(Store(home)))
    fig = tradeoff_figure(models)
    assert len(fig.data) == len(models)
    for m, trace in zip(models, fig.data, strict=True):
        evasion = [f for f in m.result.findings if f.id.startswith("evasion")]
        eps = sorted({f.evidence["eps"] for f in evasion})
        assert eps == [0.1, 0.3]  # the two standard budgets of one-channel images
        worst = [min(f.evidence["accuracy"] for f in evasion if f.evidence["eps"] == e) for e in eps]
        tpr = m.result.finding("membership-loss").evidence["tpr_raw"]
        assert list(trace.y) == worst and list(trace.x) == [tpr, tpr]
        assert [p.eps for p in tradeoff_points(m)] == eps


def test_plain_summary_counts_the_severities(home: Path) -> None:
    run = scanned_models(RunStore(Store(home)))[0].run
    result = scan_of(run)
    lines = plain_summary(result)
    high = sum(f.severity == Severity.HIGH for f in result.findings)
    assert f"{high} serious" in lines[0] and len(lines) == 1 + len(result.findings)
    assert lines[1].startswith(str(result.worst).upper())
