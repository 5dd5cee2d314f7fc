"""Scorecard: one model's security scan at a glance (traffic-light tiles that open their evidence), several
scanned models side by side, and the scan's report (HTML that works offline, PDF)."""

import streamlit as st

from dlsec_core.errors import DlsecError
from dlsec_core.runs import RunRecord, RunStatus
from dlsec_core.studies.scan import ScanStudyConfig
from dlsec_ui import state
from dlsec_ui.resources import get_store
from dlsec_ui.runs import attach, event_records, follow, get_runs, show_run, submit_run
from dlsec_ui.scorecard import (
    comparison_figure,
    comparison_rows,
    live_findings,
    plain_summary,
    scan_of,
    scanned_models,
    tradeoff_figure,
)
from dlsec_ui.scorecard_view import report_downloads, scan_settings, tiles
from dlsec_ui.sharing import stop
from dlsec_ui.widgets import TAB_IN_URL, follow_model, ids_multiselect, model_label, show_error

st.title("Scorecard")
st.caption(
    "A security scan runs a standard battery on one model (robust accuracy under PGD with restarts and a black-box "
    "check at two standard ε, membership leakage, the DP claim; thorough adds LiRA, the DP audit, theft exposure "
    "and the watermark) and grades each result on documented, cited "
    "thresholds: green = context, yellow = minor, orange = a weakness, red = serious. Each tile opens its evidence."
)
cards = {c.id: c for c in get_store().list_models()}
if not cards:
    st.info("No model yet. Train one on the Models page first.")
    st.page_link("app_pages/models.py", label="Go to Models", icon=":material/model_training:")
    stop()

one, compare = st.tabs(["One model", "Compare models"], key=state.SCORECARD_TAB, **TAB_IN_URL)
with one:
    linked = attach(state.SCAN_JOB, study="scan")  # a ?run= link (or this session's scan)
    default = linked.config["model_id"] if linked else st.session_state.get(state.MODEL)
    ids = list(cards)
    model_id = st.selectbox(
        "Model", ids, index=ids.index(default) if default in cards else 0, format_func=lambda i: model_label(cards[i]),
        key=state.SCORECARD_MODEL, on_change=follow_model, args=(state.SCORECARD_MODEL,),
    )  # fmt: skip
    settings = scan_settings()
    took = "about a minute" if settings["preset"] == "quick" else "a few minutes"
    if st.button(f"Scan this model ({settings['preset']}, {took})", type="primary", key=state.SCAN_BUTTON):
        try:
            config = ScanStudyConfig(
                model_id=model_id,
                seed=int(st.session_state.get(state.SEED, 0)),
                **settings,  # type: ignore[arg-type]
            )
            linked = submit_run("scan", config)
            follow(state.SCAN_JOB, linked)
        except DlsecError as err:
            show_error(err)
    shown = (
        linked
        if linked and linked.config["model_id"] == model_id
        else get_runs().latest("scan", model_id=model_id)
    )

    def draw(run: RunRecord) -> None:
        findings = live_findings(run, event_records(run, "finding"))
        if run.status == RunStatus.DONE:
            st.markdown(f"**{plain_summary(scan_of(run))[0]}**")
        tiles(findings)
        if run.status == RunStatus.DONE:
            report_downloads(run)

    if shown is None:
        st.info("This model has no scan yet: press the button to run one (it runs in the background).")
    else:
        show_run(shown, key=state.SCAN_JOB, draw=draw, every=1.0)

with compare:
    models = scanned_models(get_runs())
    if not models:
        st.info("No finished scan yet: scan a model in the first tab.")
    else:
        labels = {m.run.id: m.label for m in models}
        picked = ids_multiselect(
            "Scanned models (each model's latest scan)", list(labels), default=list(labels)[:6],
            format_func=labels.__getitem__, key=state.SCORECARD_COMPARE,
        )  # fmt: skip
        chosen = [m for m in models if m.run.id in picked]
        if chosen:
            st.plotly_chart(comparison_figure(chosen), key=state.SCORECARD_GRID)
            st.dataframe(comparison_rows(chosen), hide_index=True)
            st.plotly_chart(tradeoff_figure(chosen), key=state.SCORECARD_TRADEOFF)
            st.caption(
                "Up and to the left is better on both. Trade-offs show here: adversarial training can raise "
                "membership leakage (Song, Shokri, Mittal 2019), and DP training can cost robustness. A hollow "
                "marker: too few non-members to measure a TPR at 1 % FPR. Hover a point for the findings it uses."
            )
