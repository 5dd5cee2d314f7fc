"""Detection: a feature-squeezing detector (Xu et al. 2018) against an attack, and against one that knows it."""

import numpy as np
import streamlit as st

from dlsec_core.defenses.detection import SQUEEZER_SIZES
from dlsec_core.errors import DlsecError
from dlsec_core.evaluation.rates import smallest_measurable_rate
from dlsec_core.runs import RunRecord
from dlsec_core.studies.detection import DetectionStudyConfig, DetectionStudyResult
from dlsec_core.studies.sweep import attack_params
from dlsec_ui import figures, state
from dlsec_ui.runs import (
    attach,
    event_records,
    get_runs,
    show_run,
    submit_run,
)
from dlsec_ui.sharing import stop
from dlsec_ui.widgets import (
    EPS_RANGE,
    IN_URL,
    attack_form,
    current_model_card,
    render_checks,
    setting_select_slider,
    setting_slider,
    show_error,
    surrogate_id,
)

st.title("Detection")
st.caption(
    "Feature squeezing (Xu, Evans, Qi 2018): an input whose prediction changes a lot when its pixels are "
    "squeezed (fewer bits, median smoothing) is flagged. The threshold is set on clean test images for the "
    "false-positive rate you choose; the evaluation uses the other half of the test split."
)
card = current_model_card()
if card is None:
    stop()

with st.container(border=True):
    c1, c2, c3 = st.columns(3)
    # ranges from the configs' metadata (the validator's): a narrower teaching range inside it, never outside
    fpr = setting_slider(c1, DetectionStudyConfig, "fpr", lo=0.01, hi=0.2, key=state.DET_FPR)
    bits = int(
        c1.slider("Squeezer: bits per pixel", *SQUEEZER_SIZES["bit_depth"], 1, key=state.DET_BITS, **IN_URL)
    )
    low, high = SQUEEZER_SIZES["median"]
    median = int(
        c1.select_slider(
            "Squeezer: median window", [0, *range(low, high + 1)], value=2, key=state.DET_MEDIAN, **IN_URL,
            format_func=lambda k: "off" if k == 0 else f"{k}×{k}",
        )
    )  # fmt: skip
    with c2:
        attack = attack_form(prefix="det_")
    _, hi, step, _ = EPS_RANGE[attack.norm]
    eps_max = c3.slider(
        "Largest ε",
        step,
        hi,
        min(hi, 0.3 if attack.norm == "linf" else 3.0),
        step,
        key=state.DET_EPS_MAX,
        **IN_URL,
    )
    n_images = setting_select_slider(
        c3, DetectionStudyConfig, "n_images", [100, 200, 500], value=200, key=state.DET_IMAGES
    )
    if st.button("Run detection study", type="primary", key=state.DET_BUTTON):
        try:
            config = DetectionStudyConfig(
                model_id=card.id,
                squeezers=[{"kind": "bit_depth", "size": bits}]
                + ([{"kind": "median", "size": median}] if median else []),
                fpr=fpr, attack=attack.name, attack_params=attack_params(attack),
                eps=[round(float(e), 6) for e in np.linspace(0.0, eps_max, 6)], n_images=n_images,
                seed=int(st.session_state.get(state.SEED, 0)),
                surrogate_id=surrogate_id("det_") if getattr(attack, "surrogate", None) is not None else None,
            )  # fmt: skip
            st.session_state[state.DET_JOB] = submit_run("detection", config).id
        except DlsecError as err:
            show_error(err)

# The run this session follows (or a ?run= link names); else the page opens on this model's latest detection study.
shown = attach(state.DET_JOB, study="detection") or get_runs().latest("detection", model_id=card.id)


def render_detection(run: RunRecord) -> None:
    report = None if run.result is None else DetectionStudyResult.from_json(run.result)
    records = report.points if report is not None else event_records(run, "point")
    if records:
        st.plotly_chart(figures.detection_curves(records), key=state.DET_CHART)
        st.caption(
            f"Attack: {records[-1]['attack']} (ε varies along the x axis), {records[0]['n']} held-out images."
        )
    if report is None:
        return
    st.caption(
        f"Detector: {report.detector}; realised false-positive rate on its calibration images {report.calibration_fpr:.1%}."
    )
    st.markdown("**Against an attack that knows about the detector** (same budget, same images)")
    rows = [
        {"attack": who, "evaded": f"{r.evaded_rate:.0%}", "fooled": f"{r.success_rate:.0%}",
         "flagged": f"{r.flag_rate:.0%}"}
        for who, r in (("plain PGD", report.plain), ("detector-aware", report.adaptive))
    ]  # fmt: skip
    st.dataframe(rows, hide_index=True, key=state.DET_TABLE)
    st.caption(
        f"'Evaded' = fooled and not flagged: the number that matters. Plain: {report.plain.attack}. "
        f"Detector-aware: {report.adaptive.attack}, after Carlini & Wagner 2017 and He et al. 2017: it makes the "
        "squeezed and unsqueezed predictions agree while fooling the model. A detector is only as good as its "
        "number against this attack."
    )
    render_checks(report.findings, "Detector-aware attack")
    if not report.roc or report.roc_auc is None:
        st.info(f"No adversarial image succeeded at {report.roc_attack}: there is no ROC to draw.")
        return
    roc = figures.roc_figure(
        report.roc, report.roc_auc, f"ROC at {report.roc_attack}",
        n_clean=report.roc_clean, n_adversarial=report.roc_adversarial,
    )  # fmt: skip
    st.plotly_chart(roc, key=state.DET_ROC)
    st.caption(
        f"The ROC rests on {report.roc_clean} clean and {report.roc_adversarial} successful adversarial images: "
        f"rates below {smallest_measurable_rate(report.roc_clean):.1%} (false positives) and "
        f"{smallest_measurable_rate(report.roc_adversarial):.1%} (detections) cannot be measured, so the axes start there."
    )


show_run(shown, key=state.DET_JOB, draw=render_detection, every=1.0)
