"""Scorecard: a scan's findings as traffic-light tiles, several scanned models side by side, and robust accuracy
against membership leakage for all of them.

Pure functions of stored scan runs (no Streamlit), shared by the Scorecard page and the report
(`dlsec_ui.report`), so both show the same numbers and are tested directly. Findings are read generically: any
finding a scan holds gets a tile, a headline number and an evidence chart, whichever preset produced it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go

from dlsec_core.assessment.findings import Finding
from dlsec_core.assessment.severity import (
    MEMBERSHIP_TPR_AT_1PCT_FPR,
    ROBUST_ACCURACY,
    SCALES,
    Scale,
    Severity,
)
from dlsec_core.errors import InvalidInputError
from dlsec_core.runs import RunRecord, RunStatus, RunStore
from dlsec_core.studies.scan import ScanResult
from dlsec_ui.figures import TEMPLATE

#: Traffic lights, mildest first: green (context, nothing graded as a weakness), yellow, orange, red.
SEVERITY_COLOURS: dict[Severity, str] = {
    Severity.INFO: "#2e7d32",
    Severity.LOW: "#f9a825",
    Severity.MEDIUM: "#ef6c00",
    Severity.HIGH: "#c62828",
}
#: The colour names of `st.badge` for the same lights.
SEVERITY_BADGES: dict[Severity, str] = {
    Severity.INFO: "green",
    Severity.LOW: "yellow",
    Severity.MEDIUM: "orange",
    Severity.HIGH: "red",
}
SEVERITY_WORDS: dict[Severity, str] = {
    Severity.INFO: "no weakness flagged",
    Severity.LOW: "minor weakness",
    Severity.MEDIUM: "weakness",
    Severity.HIGH: "serious weakness",
}
#: The evidence entry that is a finding's headline number, by the scale that grades it.
SCALE_VALUES: dict[str, str] = {
    "robust-accuracy": "accuracy",
    "membership-tpr-at-1pct-fpr": "tpr_raw",
    "dp-epsilon": "epsilon",
}
#: Otherwise the first of these the evidence holds (findings of other presets name their number so).
VALUE_KEYS = (
    "accuracy",
    "tpr_raw",
    "tpr_at_1pct_fpr",
    "tpr",
    "fidelity",
    "gap",
    "epsilon",
    "epsilon_lower_bound",
)
#: Entries that are not fractions even when they lie in [0, 1].
NOT_FRACTIONS = ("epsilon", "epsilon_lower_bound", "eps", "delta", "p_value", "seed", "auc", "advantage")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def headline_value(finding: Finding) -> tuple[str, float] | None:
    """The finding's headline number and the evidence entry it comes from, None when it has none (no DP claim)."""
    keys = [SCALE_VALUES[finding.grade.scale]] if finding.grade.scale in SCALE_VALUES else []
    for key in (*keys, *VALUE_KEYS):
        value = _number(finding.evidence.get(key))
        if value is not None:
            return key, value
    return None


def is_fraction(key: str, value: float) -> bool:
    return key not in NOT_FRACTIONS and 0.0 <= value <= 1.0


def headline(finding: Finding) -> str:
    """The number on a tile: "53.0 %", "ε = 3.2", or what its absence means."""
    found = headline_value(finding)
    if found is None:
        return "none" if finding.id == "dp-claim" else SEVERITY_WORDS[finding.severity]
    key, value = found
    if key.startswith("epsilon"):
        return f"ε = {value:.3g}"
    return f"{100 * value:.1f} %" if is_fraction(key, value) else f"{value:.3g}"


def headline_label(finding: Finding) -> str:
    """What the headline number is, in words."""
    found = headline_value(finding)
    if found is None:
        return "no differential-privacy claim" if finding.id == "dp-claim" else "no number"
    labels = {"accuracy": "accuracy kept", "tpr_raw": "members found at 1 % FPR",
              "tpr_at_1pct_fpr": "members found at 1 % FPR", "epsilon": "privacy budget claimed"}  # fmt: skip
    if finding.grade.scale == ROBUST_ACCURACY.name:
        return "test images that keep their label"
    return labels.get(found[0], found[0].replace("_", " "))


# -- stored scans ----------------------------------------------------------------------------------------------


def scan_of(run: RunRecord) -> ScanResult:
    """The typed result of a finished scan run."""
    if run.study != "scan" or run.status != RunStatus.DONE or not run.result:
        raise InvalidInputError(f"Run {run.id} is not a finished scan ({run.study}, {run.status}).")
    return ScanResult.from_json(run.result)


def live_findings(run: RunRecord, records: Sequence[dict[str, Any]]) -> list[Finding]:
    """A scan's findings: the result's once it is done, else those its "finding" events reported so far."""
    if run.status == RunStatus.DONE and run.result:
        return scan_of(run).findings
    return [Finding.from_json(r["finding"]) for r in records]


@dataclass(frozen=True)
class ScannedModel:
    """A model's latest finished scan."""

    run: RunRecord
    result: ScanResult

    @property
    def label(self) -> str:
        return f"{self.result.model_name} · {self.result.preset} · run {self.run.id[:6]}"


def scanned_models(runs: RunStore, *, limit: int = 500) -> list[ScannedModel]:
    """The latest finished scan of every scanned model, newest first."""
    seen: dict[str, ScannedModel] = {}
    for run in runs.list_runs(study="scan", status=RunStatus.DONE, limit=limit):
        model_id = run.config.get("model_id", "")
        if model_id not in seen and run.result:
            seen[model_id] = ScannedModel(run, scan_of(run))
    return list(seen.values())


# -- one finding's evidence ----------------------------------------------------------------------------------


def _bands(scale: Scale, top: float) -> list[tuple[float, float, Severity]]:
    """The x ranges of a scale's severities, from 0 to `top`."""
    edges = [lv.bound for lv in scale.levels]
    out: list[tuple[float, float, Severity]] = []
    if scale.worse == "lower":  # bounds ascend: [0, b0] is the most severe
        lo = 0.0
        for level in scale.levels:
            out.append((lo, level.bound, level.severity))
            lo = level.bound
        out.append((edges[-1], top, Severity.INFO))
    else:  # bounds descend: above b0 is the most severe
        hi = top
        for level in scale.levels:
            out.append((level.bound, hi, level.severity))
            hi = level.bound
        out.append((0.0, edges[-1], Severity.INFO))
    return out


def finding_figure(finding: Finding) -> go.Figure | None:
    """The evidence chart of one finding: its number on the scale that graded it (the severity bands coloured),
    with the reference it is judged against (clean accuracy, chance); for a finding graded by no scale, its
    fractions as bars; None when it holds no number to draw."""
    found = headline_value(finding)
    scale = SCALES.get(finding.grade.scale)
    fig = go.Figure()
    if found is not None and scale is not None:
        key, value = found
        fractions = is_fraction(key, value) and scale.worse == "lower"
        top = 1.0 if fractions else max(value, scale.levels[0].bound) * 1.5
        for lo, hi, severity in _bands(scale, top):
            fig.add_vrect(x0=lo, x1=hi, fillcolor=SEVERITY_COLOURS[severity], opacity=0.25, line_width=0)
        references = {"clean accuracy": finding.evidence.get("clean_accuracy"),
                      "chance (= the FPR)": finding.evidence.get("fpr")}  # fmt: skip
        for name, ref in references.items():
            if (at := _number(ref)) is not None:
                fig.add_vline(x=at, line_dash="dot", line_color="#555",
                              annotation_text=name, annotation_position="top")  # fmt: skip
        fig.add_trace(go.Scatter(
            x=[value], y=[0], mode="markers+text", text=[headline(finding)], textposition="bottom center",
            marker={"size": 16, "color": SEVERITY_COLOURS[finding.severity], "line": {"color": "#222", "width": 1}},
            name=headline_label(finding), hovertemplate=f"{headline_label(finding)}: %{{x:.4g}}<extra></extra>",
        ))  # fmt: skip
        fig.update_xaxes(
            range=[-0.03 * top, 1.03 * top],
            title=scale.measure,
            tickformat=".0%" if is_fraction(key, value) else "",
        )
        fig.update_yaxes(visible=False, range=[-1, 1])
        height = 230
    else:
        bars = {
            k: v for k, v in finding.evidence.items() if (n := _number(v)) is not None and is_fraction(k, n)
        }
        if not bars:
            return None
        fig.add_trace(go.Bar(x=list(bars), y=list(bars.values()), marker_color=SEVERITY_COLOURS[finding.severity],
                             text=[f"{100 * v:.1f} %" for v in bars.values()], textposition="outside"))  # fmt: skip
        fig.update_yaxes(range=[0, 1.15], tickformat=".0%")
        height = 300
    fig.update_layout(template=TEMPLATE, title=finding.title, height=height, showlegend=False,
                      margin={"l": 20, "r": 20, "t": 50, "b": 50})  # fmt: skip
    return fig


# -- several models ------------------------------------------------------------------------------------------


def comparison_rows(models: Sequence[ScannedModel]) -> list[dict[str, str]]:
    """Rows = findings (every id any scan holds, in first-seen order), columns = models: "SEVERITY · number"."""
    titles: dict[str, str] = {}
    for m in models:
        for f in m.result.findings:
            titles.setdefault(f.id, f.title)
    rows = []
    for fid, title in titles.items():
        row = {"finding": title}
        for m in models:
            found = next((f for f in m.result.findings if f.id == fid), None)
            row[m.label] = "—" if found is None else f"{str(found.severity).upper()} · {headline(found)}"
        rows.append(row)
    return rows


def comparison_figure(models: Sequence[ScannedModel]) -> go.Figure:
    """The comparison as a traffic-light grid: one row per finding, one column per model, the number in each cell."""
    rows = comparison_rows(models)
    labels = [m.label for m in models]
    ranks: list[list[float | None]] = []
    for row in rows:
        ranks.append(
            [None if row[c] == "—" else Severity(row[c].split(" · ")[0].lower()).rank for c in labels]
        )
    fig = go.Figure(go.Heatmap(
        z=ranks, x=labels, y=[r["finding"] for r in rows], zmin=0, zmax=3, showscale=False, xgap=3, ygap=3,
        colorscale=[[s.rank / 3, c] for s, c in SEVERITY_COLOURS.items()], text=[[r[c] for c in labels] for r in rows],
        texttemplate="%{text}", hovertemplate="%{y}<br>%{x}: %{text}<extra></extra>",
    ))  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(template=TEMPLATE, height=80 + 40 * len(rows), title="Findings side by side",
                      margin={"l": 20, "r": 20, "t": 50, "b": 20})  # fmt: skip
    return fig


@dataclass(frozen=True)
class TradeoffPoint:
    """Where one scanned model sits at one ε: its lowest robust accuracy there (the strongest attack the scan ran
    at that ε), its highest membership TPR at 1 % FPR, and which findings they come from."""

    label: str
    eps: float
    robust_accuracy: float
    robust_from: str
    membership_tpr: float
    membership_from: str
    measurable: bool


def _value(f: Finding) -> float:
    found = headline_value(f)
    return found[1] if found else float("nan")


def tradeoff_points(model: ScannedModel) -> list[TradeoffPoint]:
    """The model's points on the robust-accuracy vs. membership chart, one per scanned ε (smallest first); none
    when its scan lacks either number."""
    robust = [f for f in model.result.findings if f.grade.scale == ROBUST_ACCURACY.name and headline_value(f)]
    leaks = [f for f in model.result.findings if f.id.startswith("membership") and headline_value(f)]
    if not robust or not leaks:
        return []
    leak = max(leaks, key=_value)
    points = []
    for eps in sorted({_number(f.evidence.get("eps")) or 0.0 for f in robust}):
        strongest = min((f for f in robust if (_number(f.evidence.get("eps")) or 0.0) == eps), key=_value)
        points.append(TradeoffPoint(
            label=model.label, eps=eps, robust_accuracy=_value(strongest), robust_from=strongest.title,
            membership_tpr=_value(leak), membership_from=leak.title,
            measurable=leak.grade.scale == MEMBERSHIP_TPR_AT_1PCT_FPR.name,
        ))  # fmt: skip
    return points


def tradeoff_figure(models: Sequence[ScannedModel]) -> go.Figure:
    """Robust accuracy (y) against membership TPR at 1 % FPR (x), one line per scanned model with a marker at each
    scanned ε: up and left is better on both. A hollow marker: the TPR could not be measured at that many
    non-members."""
    fig = go.Figure()
    fig.add_vline(x=0.01, line_dash="dot", line_color="#555", annotation_text="chance (1 %)")
    tops = [0.05]
    for model in models:
        points = tradeoff_points(model)
        if not points:
            continue
        tops.append(points[0].membership_tpr * 1.2)
        fig.add_trace(go.Scatter(
            x=[p.membership_tpr for p in points], y=[p.robust_accuracy for p in points], mode="lines+markers+text",
            name=model.label, text=[f"ε = {p.eps:g}" for p in points], textposition="middle right",
            marker={"size": 12, "symbol": "circle" if points[0].measurable else "circle-open", "line": {"width": 2}},
            line={"dash": "dot", "width": 1},
            customdata=[[p.robust_from, p.membership_from] for p in points],
            hovertemplate=f"{model.label}<br>%{{customdata[0]}}: %{{y:.1%}}<br>%{{customdata[1]}}: %{{x:.1%}}"
                          "<extra></extra>",
        ))  # fmt: skip
    fig.update_xaxes(title="membership TPR at 1 % FPR (strongest membership attack in the scan)",
                     range=[-0.002, max(tops)], tickformat=".0%")  # fmt: skip
    fig.update_yaxes(
        title="robust accuracy (strongest attack at each ε)", range=[-0.03, 1.05], tickformat=".0%"
    )
    fig.update_layout(template=TEMPLATE, height=460, title="Robustness against privacy, every scanned model",
                      legend={"orientation": "h", "y": -0.25}, margin={"l": 20, "r": 20, "t": 50, "b": 50})  # fmt: skip
    return fig


# -- words for people outside the room -----------------------------------------------------------------------

PLAIN: dict[str, str] = {
    "clean": "How often the model is right on ordinary test images, before anyone attacks it.",
    "evasion-pgd": (
        "An attacker who knows the model can add tiny, deliberate changes to an image, too small for a person to "
        "notice at these budgets, to make it answer wrongly. The number is the share of images it still gets right."
    ),
    "evasion-square": (
        "The same kind of attack by someone who can only send images and read the answers (no access to the model "
        "itself)."
    ),
    "membership": (
        "Someone holding the model can try to tell whether a given record was used to train it, which for "
        "medical or personal data is itself a leak. The number is the share of training records found while "
        "wrongly accusing 1 % of other records."
    ),
    "dp-claim": (
        "Differential privacy is a mathematical promise that the model reveals little about any single training "
        "record; the smaller ε, the stronger the promise."
    ),
}


def plain_explanation(finding: Finding) -> str:
    """What a finding is about, for a non-specialist (falls back to the finding's own sentence)."""
    return next((text for prefix, text in PLAIN.items() if finding.id.startswith(prefix)), "")


def plain_summary(result: ScanResult) -> list[str]:
    """A short summary in plain words: the verdict, then one sentence per finding, the most severe first."""
    counts = {s: sum(1 for f in result.findings if f.severity == s) for s in Severity}
    worst = result.worst
    verdict = (
        f"The scan ran {len(result.findings)} checks on the model “{result.model_name}” ({result.dataset}). "
        + (
            "None flagged a weakness."
            if worst == Severity.INFO
            else f"{counts[Severity.HIGH]} serious, {counts[Severity.MEDIUM]} moderate and {counts[Severity.LOW]} "
            "minor weaknesses were flagged."
        )
    )
    lines = [verdict]
    for f in sorted(result.findings, key=lambda f: -f.severity.rank):
        lines.append(f"{str(f.severity).upper()} — {f.title}: {f.summary} {plain_explanation(f)}".strip())
    return lines
