"""Model theft: steal the current model through a prediction API, detect it, prove ownership, reuse the copy."""

import streamlit as st

from dlsec_ui import state, theft_tabs
from dlsec_ui.runs import attach, get_runs
from dlsec_ui.sharing import stop
from dlsec_ui.widgets import TAB_IN_URL, current_model_card

st.title("Model theft")
st.caption(
    "The model you picked in the sidebar is served behind a prediction API: the attacker is a client with an "
    "identity, a query budget and optionally a rate limit, and reaches the model only through its answers. Every "
    "query is logged."
)
card = current_model_card()
if card is None:
    stop()

steal, defend, own, transfer = st.tabs(
    ["Steal", "Defend", "Own", "Transfer"], key=state.THEFT_TAB, **TAB_IN_URL
)
with steal:
    theft_tabs.steal_form(card)
with own:
    theft_tabs.own_form(card)

# the runs this session queued (or ?run=), else the newest on the current model; after the forms, which queue them
shown = attach(state.THEFT_JOB, study="extraction") or get_runs().latest("extraction", model_id=card.id)
owned = attach(state.OWN_JOB, study="ownership") or get_runs().latest("ownership", model_id=card.id)
with steal:
    theft_tabs.show_theft(shown)
with defend:
    theft_tabs.defend_tab(shown)
with own:
    theft_tabs.show_ownership(owned)
with transfer:
    theft_tabs.transfer_tab(card)
