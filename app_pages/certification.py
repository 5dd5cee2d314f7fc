"""Certified robustness: randomized smoothing (Cohen et al. 2019) beside the empirical attack curve."""

import streamlit as st

from dlsec_core.errors import DlsecError
from dlsec_core.runs import RunRecord
from dlsec_core.studies.certification import CertificationStudyConfig, CertificationStudyResult
from dlsec_ui import figures, state
from dlsec_ui.runs import (
    attach,
    event_records,
    get_runs,
    show_run,
    submit_run,
)
from dlsec_ui.sharing import stop
from dlsec_ui.widgets import current_model_card, render_checks, setting_select_slider, show_error

st.title("Certified robustness")
st.caption(
    "Randomized smoothing predicts the class the model gives most often under Gaussian noise of size σ, and proves "
    "that no L2 change smaller than the certified radius can alter that prediction (Cohen, Rosenfeld, Kolter 2019). "
    "It works best on a model trained with the same noise: recipe 'Gaussian-noise training' on the Models page."
)
card = current_model_card()
if card is None:
    stop()

with st.container(border=True):
    c1, c2, c3 = st.columns(3)
    # teaching values, each checked against the config's own range (setting_select_slider)
    sigma = setting_select_slider(
        c1, CertificationStudyConfig, "sigma", [0.12, 0.25, 0.5, 1.0], key=state.CERT_SIGMA
    )
    n_images = setting_select_slider(
        c2, CertificationStudyConfig, "n_images", [20, 50, 100], key=state.CERT_IMAGES
    )
    n = setting_select_slider(c3, CertificationStudyConfig, "n", [200, 500, 1000], key=state.CERT_N)
    if st.button("Certify", type="primary", key=state.CERT_BUTTON):
        try:
            config = CertificationStudyConfig(
                model_id=card.id,
                sigma=sigma,
                n_images=n_images,
                n=n,
                seed=int(st.session_state.get(state.SEED, 0)),
            )
            st.session_state[state.CERT_JOB] = submit_run("certification", config).id
        except DlsecError as err:
            show_error(err)

# The run this session follows (or a ?run= link names); else the page opens on this model's latest certification.
shown = attach(state.CERT_JOB, study="certification") or get_runs().latest("certification", model_id=card.id)


def render_certification(run: RunRecord) -> None:
    if run.result is None:  # live: images certified so far, then the certified curve and the attack's points
        certified = event_records(run, "certified")
        points = event_records(run, "point")
        if certified:
            st.plotly_chart(
                figures.certified_vs_empirical(certified[-1]["certified"], points), key=state.CERT_CHART
            )
            st.caption("Certified curve done; the empirical attack adds one point per radius.")
        elif done := event_records(run, "certify"):
            st.caption(f"{done[-1]['done']} of {done[-1]['total']} images certified so far.")
        return
    report = CertificationStudyResult.from_json(run.result)
    st.plotly_chart(figures.certified_vs_empirical(report.certified, report.empirical), key=state.CERT_CHART)
    st.caption(
        f"Certified: {report.certify}; abstained on {report.abstain_rate:.0%} of images. Empirical: "
        f"{report.empirical_attack_title} L2 ({report.pgd_steps} steps) with expectation over the same noise "
        f"({report.eot_samples} draws per step); each accuracy averages {report.draws} noise draws per image, on "
        f"{report.n_images} images (a few images make a curve that wobbles: more images narrow it). Certified "
        "accuracy is a guarantee (a lower bound); the empirical curve is what one attack achieved (an upper bound). "
        "The space between them is what nobody knows yet."
    )
    render_checks(report.findings, "Empirical curve")


show_run(shown, key=state.CERT_JOB, draw=render_certification, every=1.0)
