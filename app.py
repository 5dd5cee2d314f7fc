"""dlsec, the Deep Learning Security Lab: the frame (page config, global sidebar, navigation)."""

import streamlit as st

from dlsec_core.device import describe_device
from dlsec_core.errors import DlsecError
from dlsec_ui import state
from dlsec_ui.resources import get_store
from dlsec_ui.widgets import model_label

st.set_page_config(
    page_title="dlsec: Deep Learning Security Lab", page_icon=":material/shield:", layout="wide"
)

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/models.py", title="Models", icon=":material/model_training:"),
    st.Page("pages/attack_lab.py", title="Attack Lab", icon=":material/bolt:"),
    st.Page("pages/robustness.py", title="Robustness", icon=":material/show_chart:"),
]

with st.sidebar:
    st.markdown("### :material/shield: dlsec")
    try:
        cards = {c.id: c for c in get_store().list_models()}
    except DlsecError as err:
        st.error(str(err))
        cards = {}
    if cards:
        if st.session_state.get(state.MODEL) not in cards:
            st.session_state.pop(state.MODEL, None)
        st.selectbox(
            "Current model", list(cards), format_func=lambda i: model_label(cards[i]), key=state.MODEL,
            bind="query-params",
        )  # fmt: skip
    else:
        st.session_state.pop(state.MODEL, None)
        st.caption("No stored model yet.")
    st.number_input("Seed", 0, 2**31 - 1, 0, key=state.SEED, help="Seeds training and random attack starts.")
    st.caption(f"Device: {describe_device()}")

st.navigation(PAGES).run()
