"""Models: train in the background with live curves, browse model cards, upload models and datasets."""

import streamlit as st

from dlsec_ui import figures, state
from dlsec_ui.jobs import render_server_load, show_session_job, train_records
from dlsec_ui.model_forms import (
    card_picker,
    model_card,
    show_flash,
    train_form,
    upload_dataset_form,
    upload_model_form,
)
from dlsec_ui.resources import get_store

st.title("Models")

with st.container(border=True):
    st.subheader("Train a model")
    train_form()


@st.fragment(run_every=1.0)
def training_progress() -> None:
    render_server_load()
    job = show_session_job(state.TRAIN_JOB, cancel_key=state.CANCEL_TRAIN)
    if job is None:
        return
    records = train_records(job.events)
    if records:
        st.plotly_chart(figures.training_curves(records), key=state.TRAIN_CURVES)
    if not job.is_active and st.session_state.get(state.TRAIN_SHOWN) != job.id:
        st.session_state[state.TRAIN_SHOWN] = job.id
        st.rerun()  # refresh the model list and the sidebar once the job has finished


training_progress()

st.subheader("Stored models")
show_flash(state.CARD_FLASH)
cards = get_store().list_models()
if not cards:
    st.caption("No model yet: train one above or upload one below.")
else:
    st.dataframe([c.to_display_record() for c in cards], hide_index=True)
    model_card(card_picker(cards))

with st.expander("Upload a model (.safetensors)"):
    upload_model_form()

with st.expander("Upload a dataset (.npz or .zip of class folders)"):
    upload_dataset_form()
