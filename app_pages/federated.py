"""Federated learning: train across simulated clients (FedAvg, client-level DP, local DP-SGD, secure aggregation),
invert one client's update back into its images (DLG, iDLG, Inverting Gradients) against the defenses, then poison
the federation with malicious clients and compare robust aggregators. Every federation and inversion is a run."""

import streamlit as st

from dlsec_ui import federated as fed
from dlsec_ui import federated_tabs, state
from dlsec_ui.runs import attach
from dlsec_ui.widgets import TAB_IN_URL

st.title("Federated learning")
st.caption(
    "K clients keep their data and send only model updates; the server averages them (FedAvg, McMahan et al. 2017). "
    "Each federation runs in a worker; the charts fill in round by round."
)
train, leak, poison = st.tabs(
    ["Train", "Leak", "Poison"], default=fed.url_tab(), key=state.FED_TAB, **TAB_IN_URL
)

# each tab's form, then the run it follows (or ?run=), after the form that queues it
with train:
    settings = federated_tabs.train_form()
    federated_tabs.show_train(fed.followed(state.FED_TRAIN_JOB, study="federated", poisoned=False))
with leak:
    federated_tabs.leak_form()
    federated_tabs.show_leak(attach(state.FED_LEAK_JOB, study="gradleak"))
with poison:
    federated_tabs.poison_form(settings)
    federated_tabs.show_poison(fed.followed(state.FED_POISON_JOB, study="federated", poisoned=True))
