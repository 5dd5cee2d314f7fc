"""The Scorecard page's Streamlit pieces: traffic-light tiles that open their evidence, and the report downloads.

The numbers, figures and words come from `dlsec_ui.scorecard` (pure, shared with the report)."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from dlsec_core.assessment.findings import Finding
from dlsec_core.atlas import describe
from dlsec_core.defenses.transforms import TRANSFORMS
from dlsec_core.errors import DlsecError
from dlsec_core.runs import RunRecord
from dlsec_core.studies.scan import NO_TRANSFORM, PRESETS
from dlsec_core.theft.api import OUTPUT_POLICIES
from dlsec_ui import state
from dlsec_ui.report import HTML_NAME, PDF_NAME, stored_report, write_pdf, write_report
from dlsec_ui.runs import get_runs
from dlsec_ui.scorecard import SEVERITY_BADGES, finding_figure, headline, headline_label, plain_explanation
from dlsec_ui.widgets import IN_URL, config_form, show_error

TILES_PER_ROW = 4


def _open(finding_id: str) -> None:
    st.session_state[state.SCORECARD_OPEN] = finding_id


def tiles(findings: Sequence[Finding]) -> None:
    """One tile per finding (severity light, headline number, ATLAS tags); its button opens the evidence below."""
    for start in range(0, len(findings), TILES_PER_ROW):
        cols = st.columns(TILES_PER_ROW)
        for i, f in enumerate(findings[start : start + TILES_PER_ROW], start=start):
            with cols[i - start].container(border=True, key=f"{state.SCORECARD_TILE}{i}"):
                st.badge(str(f.severity).upper(), color=SEVERITY_BADGES[f.severity], icon=":material/circle:")  # type: ignore[arg-type]
                st.markdown(f"**{f.title}**")
                st.metric(headline_label(f), headline(f))
                st.caption(" ".join(f.atlas_ids) or "context (no ATLAS technique)")
                st.button("Evidence", key=f"{state.SCORECARD_TILE}{i}_open", on_click=_open, args=(f.id,))
    opened = next((f for f in findings if f.id == st.session_state.get(state.SCORECARD_OPEN)), None)
    if opened is not None:
        evidence(opened)


def evidence(f: Finding) -> None:
    """A finding's evidence: the sentence, why this severity (threshold and citation), the chart, the numbers,
    the honesty checks, and what would reduce it."""
    with st.container(border=True, key=state.SCORECARD_EVIDENCE):
        st.subheader(f"{f.title}: {str(f.severity).upper()}")
        st.write(f.summary)
        if explanation := plain_explanation(f):
            st.caption(explanation)
        cited = f" ({f.grade.citation})" if f.grade.citation else ""
        st.markdown(f"**Why this severity:** {f.grade.rule}{cited}")
        if (fig := finding_figure(f)) is not None:
            st.plotly_chart(fig, key=state.SCORECARD_EVIDENCE_CHART)
        if f.reduce:
            st.markdown(f"**What would reduce it:** {f.reduce}")
        if f.atlas_ids:
            st.caption(f"MITRE ATLAS: {describe(f.atlas_ids)}")
        for check in f.checks:
            st.caption(f"Honesty check: {check.get('title', '')}: {check.get('sentence', '')}")
        st.dataframe([{"evidence": k, "value": str(v)} for k, v in f.evidence.items()], hide_index=True)


def report_downloads(run: RunRecord) -> None:
    """The report of a finished scan, written and stored with the run on the click that downloads it; a PDF too."""
    runs = get_runs()
    c1, c2, c3 = st.columns(3)
    c1.download_button(
        "Download the report (HTML)", data=lambda: write_report(runs, run.id, compare=True).read_bytes(),
        file_name=f"scan-report-{run.id[:8]}.html", mime="text/html", key=state.SCORECARD_REPORT,
        on_click="ignore", icon=":material/download:", type="primary",
        help="One self-contained file that works offline: summary, scorecard, charts, ATLAS mapping, settings.",
    )  # fmt: skip
    if c2.button("Make a PDF", key=state.SCORECARD_PDF_BUTTON, icon=":material/picture_as_pdf:"):
        try:
            write_report(runs, run.id, compare=True)
            write_pdf(runs, run.id)
        except DlsecError as err:
            show_error(err)
    pdf = stored_report(runs, run.id, PDF_NAME)
    if pdf is not None:
        c3.download_button(
            "Download the PDF", data=pdf.read_bytes, file_name=f"scan-report-{run.id[:8]}.pdf",
            mime="application/pdf", key=state.SCORECARD_PDF, on_click="ignore", icon=":material/download:",
        )  # fmt: skip
    st.caption(
        f"Stored with the run: `runs/{run.id}/{HTML_NAME}` (and `{PDF_NAME}`) under the lab's home; "
        f"command line: `python -m dlsec_ui.report {run.id} --pdf`."
    )


def scan_settings() -> dict[str, object]:
    """The scan's preset and how the model is served (an input transform, the API's output policy): the settings
    of a `ScanStudyConfig` besides the model and the seed."""
    preset = st.segmented_control(
        "Preset", list(PRESETS), default="quick", key=state.SCAN_PRESET, **IN_URL,
        help="quick: about a minute on 2 CPU cores; thorough: a stronger battery plus LiRA, the one-run DP audit "
        "(DP models), theft exposure at 1,000 queries and the watermark check (a few minutes).",
    ) or "quick"  # fmt: skip
    with st.expander("How the model is served"):
        transform = st.selectbox(
            "Behind an input transform", [NO_TRANSFORM, *TRANSFORMS], key=state.SCAN_TRANSFORM, **IN_URL,
            format_func=lambda n: "none" if n == NO_TRANSFORM else TRANSFORMS[n].title,
            help="Any preset: the input-defense gap of the served pipeline (naive vs adaptive attack).",
        )  # fmt: skip
        transform_params = (
            config_form(TRANSFORMS[transform], prefix=state.SCAN_FORM) if transform != NO_TRANSFORM else {}
        )
        policy = st.selectbox(
            "What its prediction API answers", list(OUTPUT_POLICIES), key=state.SCAN_POLICY, **IN_URL,
            format_func=lambda n: OUTPUT_POLICIES[n].title,
            help="Thorough: the theft-exposure finding steals the model through this API.",
        )  # fmt: skip
        policy_params = config_form(OUTPUT_POLICIES[policy], prefix=state.SCAN_FORM)
    return {"preset": preset, "input_transform": transform, "transform_params": transform_params,
            "output_policy": policy, "policy_params": policy_params}  # fmt: skip
