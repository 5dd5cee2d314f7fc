"""Model theft: steal the current model through a prediction API, detect it, prove ownership, reuse the copy."""

import streamlit as st

from dlsec_ui import theft_tabs
from dlsec_ui.widgets import current_model_card

st.title("Model theft")
st.caption(
    "The model you picked in the sidebar is served behind a prediction API: the attacker is a client with an "
    "identity, a query budget and optionally a rate limit, and reaches the model only through its answers. Every "
    "query is logged."
)
card = current_model_card()
if card is None:
    st.stop()

steal, defend, own, transfer = st.tabs(["Steal", "Defend", "Own", "Transfer"])
with steal:
    shown = theft_tabs.steal_tab(card)
with defend:
    theft_tabs.defend_tab(shown)
with own:
    theft_tabs.own_tab(card)
with transfer:
    theft_tabs.transfer_tab(card)
