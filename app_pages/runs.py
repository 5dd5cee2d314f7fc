"""Runs: every stored run of every study; filter, open one (live while it executes), overlay several sweeps,
cancel, retry, export, delete. A link `?run=<id>` opens that run in any tab."""

from pathlib import Path

import streamlit as st

from dlsec_core.errors import DlsecError
from dlsec_core.runs import RunRecord, RunStatus
from dlsec_core.studies.catalog import STUDIES
from dlsec_ui import figures, state
from dlsec_ui.runs import (
    STUDY_PAGES,
    attach,
    delete_button,
    event_records,
    export_buttons,
    get_runs,
    overlay_sweeps,
    redraw_if_ended,
    render_run,
    render_server_runs,
    run_table,
    sweep_findings,
    train_records,
)
from dlsec_ui.sharing import stop
from dlsec_ui.widgets import IN_URL, render_findings, show_error

st.title("Runs")
st.caption(
    "Every training and sweep is a stored run: it executes in a worker process, survives closed tabs and server "
    "restarts, and keeps its result. Open one to see it (live while it executes); pick several sweeps to overlay them."
)
render_server_runs()
f1, f2, f3 = st.columns(3)
study = f1.selectbox("Study", ["all", *STUDIES], key=state.RUNS_STUDY, **IN_URL)
status = f2.selectbox("Status", ["all", *[s.value for s in RunStatus]], key=state.RUNS_STATUS, **IN_URL)
only_model = f3.toggle(  # bound to the URL: a model card's "all runs" link opens the Runs page filtered on it
    "Only the current model's runs", key=state.RUNS_ONLY_MODEL, **IN_URL,
    help="The model chosen in the sidebar (a link's ?model=<id> chooses it).",
)  # fmt: skip
if only_model:
    st.caption(f"Runs that read or made **{st.session_state.get(state.MODEL_LABEL, 'no model')}**.")
runs = get_runs().list_runs(
    study=None if study == "all" else study,
    status=None if status == "all" else status,
    model_id=st.session_state.get(state.MODEL) if only_model else None,
)
if not runs:
    st.info("No run matches. Train a model on the Models page or run a sweep on the Robustness page.")
    stop()
picked = run_table(runs, key=state.RUNS_TABLE, in_url=True)
linked = attach(state.RUNS_OPEN)
opened = picked or ([linked] if linked is not None else runs[:1])


OWN_PAGE = (
    "detection",
    "certification",
    "federated",
    "gradleak",
)  # studies whose own page (STUDY_PAGES) draws a run in full


def defense_chart(run: RunRecord, key: str) -> None:
    """A detection or certification run's curve, and a link to its page (table, ROC, findings)."""
    if run.study == "detection" and (points := event_records(run, "point")):
        st.plotly_chart(figures.detection_curves(points), key=key)
    if run.study == "certification" and (certified := event_records(run, "certified")):
        st.plotly_chart(
            figures.certified_vs_empirical(certified[-1]["certified"], event_records(run, "point")), key=key
        )
    if run.study in OWN_PAGE:
        st.markdown(
            f"[Open it on its page](/{Path(STUDY_PAGES[run.study]).stem}?run={run.id}) for the whole result."
        )


def scan_findings(run: RunRecord) -> None:
    """A scan's findings as they arrive; its tiles, evidence, comparison and report are on the Scorecard page."""
    if not (run.study == "scan" and (found := event_records(run, "finding"))):
        return
    st.dataframe(
        [{"severity": f["finding"]["grade"]["severity"], "finding": f["finding"]["title"],
          "summary": f["finding"]["summary"], "MITRE ATLAS": " ".join(f["finding"]["atlas_ids"]),
          "what would reduce it": f["finding"]["reduce"]} for f in found],
        hide_index=True,
    )  # fmt: skip
    st.caption("Each severity comes from a documented threshold with its citation (`dlsec_core/assessment`).")
    st.markdown(f"[Open it on the Scorecard](/scorecard?run={run.id}) for its tiles, evidence and report.")


@st.fragment(run_every=1.0)
def live(run_id: str) -> None:
    run = get_runs().get(run_id)
    redraw_if_ended(run, 1.0)  # it ended: the page draws the finished run once, without polling
    render_run(run, key=state.RUNS_OPEN)
    if run.study == "train" and (records := train_records(run)):
        st.plotly_chart(figures.training_curves(records), key=f"runs_train_{run.id}")
    if run.study == "sweep" and (points := event_records(run, "point")):
        st.plotly_chart(figures.robustness_curves(points), key=f"runs_sweep_{run.id}")
    defense_chart(run, f"runs_defense_{run.id}")
    scan_findings(run)


try:
    if len(opened) == 1:
        run = opened[0]
        st.subheader(run.title)
        if run.is_active:
            live(run.id)
        else:
            render_run(run, key=state.RUNS_OPEN)
            if run.study == "train" and (records := train_records(run)):
                st.plotly_chart(figures.training_curves(records), key="runs_train")
                if run.result:
                    st.caption(f"Stored as model {run.result['model_id']} ({run.result['name']}).")
            if run.study == "sweep" and (points := event_records(run, "point")):
                st.plotly_chart(figures.robustness_curves(points), key="runs_sweep")
                st.caption(f"Attack: {points[-1]['attack']} (ε varies), on {points[0]['n']} test images.")
                render_findings(sweep_findings(run))
            defense_chart(run, "runs_defense")
            scan_findings(run)
        with st.expander("Config, versions and timings"):
            st.json({"config": run.config, "versions": run.versions, "seed": run.seed, "worker": run.worker,
                     "created": run.created_at, "started": run.started_at, "finished": run.finished_at})  # fmt: skip
        export_buttons(run)
        delete_button(run)
    else:
        sweeps = [r for r in opened if r.study == "sweep" and r.status == RunStatus.DONE]
        if len(sweeps) < 2:
            st.info("Pick two or more finished sweeps to overlay them on one chart.")
        else:
            st.subheader(f"{len(sweeps)} sweeps overlaid")
            st.plotly_chart(figures.robustness_curves(overlay_sweeps(sweeps)), key="runs_overlay")
            st.caption(" · ".join(f"run {r.id[:6]}: {r.title}" for r in sweeps))
except DlsecError as err:
    show_error(err)
