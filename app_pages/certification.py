"""Certified robustness: randomized smoothing (Cohen et al. 2019) beside the empirical attack curve."""

import streamlit as st

from dlsec_core.defenses.smoothing import CertifyEvent
from dlsec_core.errors import DlsecError
from dlsec_core.jobs import JobSnapshot
from dlsec_ui import figures, state
from dlsec_ui.jobs import poll_interval, show_session_job, stop_polling_when_done, submit_certification
from dlsec_ui.widgets import current_model_card, render_checks, show_error

st.title("Certified robustness")
st.caption(
    "Randomized smoothing predicts the class the model gives most often under Gaussian noise of size σ, and proves "
    "that no L2 change smaller than the certified radius can alter that prediction (Cohen, Rosenfeld, Kolter 2019). "
    "It works best on a model trained with the same noise: recipe 'Gaussian-noise training' on the Models page."
)
card = current_model_card()
if card is None:
    st.stop()

with st.container(border=True):
    c1, c2, c3 = st.columns(3)
    sigma = c1.select_slider("Noise σ", [0.12, 0.25, 0.5, 1.0], value=0.25, key=state.CERT_SIGMA)
    n_images = c2.select_slider("Test images", [20, 50, 100], value=50, key=state.CERT_IMAGES)
    n = c3.select_slider("Noise samples per image (n)", [200, 500, 1000], value=500, key=state.CERT_N)
    if st.button("Certify", type="primary", key=state.CERT_BUTTON):
        try:
            seed = int(st.session_state.get(state.SEED, 0))
            st.session_state[state.CERT_JOB] = submit_certification(card.id, sigma, n_images, n, seed)
        except DlsecError as err:
            show_error(err)


POLL = poll_interval(state.CERT_JOB, 1.0)  # redraw while the job runs; a finished one is drawn once


@st.fragment(run_every=POLL)
def certification_progress() -> None:
    job = show_session_job(state.CERT_JOB, cancel_key=state.CANCEL_CERT)
    render_certification(job)
    stop_polling_when_done(job, POLL)


def render_certification(job: JobSnapshot | None) -> None:
    if job is None:
        return
    report = job.result
    if report is None:
        done = [e for e in job.events if isinstance(e, CertifyEvent)]
        if done:
            st.caption(f"{done[-1].done} of {done[-1].total} images certified so far.")
        return
    st.plotly_chart(figures.certified_vs_empirical(report.certified, report.empirical), key=state.CERT_CHART)
    st.caption(
        f"Certified: {report.certify}; abstained on {report.abstain_rate:.0%} of images. Empirical: "
        f"{report.empirical[-1]['attack'].split(' (')[0]} L2 with expectation over the same noise; each accuracy "
        f"averages {report.draws} noise draws per image, on {report.empirical[0]['n']} images (a few images make a "
        "curve that wobbles: more images narrow it). Certified accuracy is a guarantee (a lower bound); the "
        "empirical curve is what one attack achieved (an upper bound). The space between them is what nobody "
        "knows yet."
    )
    render_checks(report.findings, "Empirical curve")


certification_progress()
