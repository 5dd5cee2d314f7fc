"""Models: train in the background with live curves, browse model cards, upload models and datasets."""

import streamlit as st

from dlsec_ui import figures, state
from dlsec_ui.model_forms import (
    card_picker,
    model_card,
    model_rows,
    show_flash,
    train_form,
    upload_dataset_form,
    upload_model_form,
)
from dlsec_ui.resources import get_store
from dlsec_ui.runs import (
    attach,
    poll_while_active,
    redraw_if_ended,
    refresh,
    render_run,
    render_server_runs,
    train_records,
)

st.title("Models")

with st.container(border=True):
    st.subheader("Train a model")
    train_form()


TRAINING = attach(state.TRAIN_JOB, study="train")  # this session's run, or the one a ?run= link names
POLL = poll_while_active(TRAINING, 1.0)  # live while it trains; a finished run is drawn once


@st.fragment(run_every=POLL)
def training_progress() -> None:
    run = refresh(TRAINING)
    if run is not None:
        redraw_if_ended(run, POLL)  # it ended: the model list and sidebar show it
    render_server_runs()
    if run is None:
        return
    render_run(run, key=state.TRAIN_JOB)
    records = train_records(run)
    if records:
        st.plotly_chart(figures.training_curves(records), key=state.TRAIN_CURVES)


training_progress()

st.subheader("Stored models")
show_flash(state.CARD_FLASH)
cards = get_store().list_models()
if not cards:
    st.caption("No model yet: train one above or upload one below.")
else:
    st.dataframe(model_rows(cards), hide_index=True)
    model_card(card_picker(cards))

with st.expander("Upload a model (.safetensors)"):
    upload_model_form()

with st.expander("Upload a dataset (.npz or .zip of class folders)"):
    upload_dataset_form()
