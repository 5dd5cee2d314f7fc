"""Robustness: accuracy vs. ε for several models under one attack, drawn live, point by point."""

import csv
import io

import numpy as np
import streamlit as st

from dlsec_core.attacks.base import ATTACKS
from dlsec_core.errors import DlsecError
from dlsec_core.runs import RunRecord
from dlsec_core.studies.sweep import SweepStudyConfig
from dlsec_ui import figures, state
from dlsec_ui.resources import get_store
from dlsec_ui.runs import (
    attach,
    event_records,
    get_runs,
    show_run,
    submit_sweep,
    sweep_findings,
)
from dlsec_ui.sharing import stop
from dlsec_ui.widgets import (
    EPS_RANGE,
    IN_URL,
    attack_form,
    defense_form,
    model_label,
    render_findings,
    setting_select_slider,
    show_error,
    surrogate_id,
)

st.title("Robustness")
st.caption("How accuracy falls as the attacker's budget ε grows. One line per model, one point per ε.")
cards = {c.id: c for c in get_store().list_models()}
if not cards:
    st.info("No model yet. Train one on the Models page first.")
    st.page_link("app_pages/models.py", label="Go to Models", icon=":material/model_training:")
    stop()

with st.container(border=True):
    current = st.session_state.get(state.MODEL)
    chosen = st.multiselect(
        "Models", list(cards), default=[current] if current in cards else list(cards)[:1],
        format_func=lambda i: model_label(cards[i]), key=state.SWEEP_MODELS,
    )  # fmt: skip
    c1, c2, c3 = st.columns(3)
    with c1:
        attack = attack_form(prefix="sweep_")
    with c3:
        defense = defense_form(prefix="sweep_")
    _, hi, step, _ = EPS_RANGE[attack.norm]
    eps_max = c2.slider(
        "Largest ε", step, hi, min(hi, 0.3 if attack.norm == "linf" else 3.0), step, key=state.SWEEP_EPS_MAX,
        **IN_URL,
    )  # fmt: skip
    points = c2.slider("Points", 3, 21, 11, key=state.SWEEP_POINTS, **IN_URL)
    n_images = setting_select_slider(
        c3, SweepStudyConfig, "n_images", [100, 200, 500, 1000], value=500, key=state.SWEEP_IMAGES
    )
    eps_values = [round(float(e), 6) for e in np.linspace(0.0, eps_max, points)]
    if st.button("Run sweep", type="primary", key=state.SWEEP_BUTTON, disabled=not chosen):
        try:
            st.session_state[state.SWEEP_JOB] = submit_sweep(
                chosen,
                attack,
                eps_values,
                n_images,
                defense=defense,
                seed=int(st.session_state.get(state.SEED, 0)),
                surrogate_id=surrogate_id("sweep_"),
            )
        except DlsecError as err:
            show_error(err)

# The run this session follows (or a ?run= link names); else the page opens on the current model's latest sweep.
shown = attach(state.SWEEP_JOB, study="sweep") or get_runs().latest("sweep", model_id=current)


def render_sweep(run: RunRecord) -> None:
    records = event_records(run, "point")
    if not records:
        return
    st.plotly_chart(
        figures.robustness_curves(records, title=ATTACKS[run.config["attack"]].title), key=state.SWEEP_CHART
    )
    st.caption(
        f"Attack: {records[-1]['attack']} (ε varies along the x axis), on {records[0]['n']} test images. "
        "In the CSV, point_s is each point's own time and curve_elapsed_s the time since its curve started."
    )
    if any(r["defense"] for r in records):
        st.caption(
            "With a defense, each model has three curves in its own colour: undefended (dotted); the defense under the "
            "adaptive attack (solid: "
            "straight-through gradients through non-differentiable transforms, averages over random ones), the "
            "number to report; and under the naive attack (dashed), which follows the transform's own gradients. "
            "The gap between the last two is robustness that only looks real."
        )
    st.dataframe(records, hide_index=True)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(records[0]))
    writer.writeheader()
    writer.writerows(records)
    st.download_button("Download CSV", out.getvalue(), "robustness.csv", "text/csv", key=state.SWEEP_CSV)
    checks = sweep_findings(run)
    if checks:  # they come once every curve is drawn: no empty heading while the sweep runs
        st.subheader("Honesty checks")
        render_findings(checks)
    elif run.is_active:
        st.caption("Honesty checks follow once every curve is drawn.")


show_run(shown, key=state.SWEEP_JOB, draw=render_sweep, every=0.5)
