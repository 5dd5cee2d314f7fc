"""Privacy budget: the ε a DP-SGD run spends, before training (calculator) and across trained runs (frontier)."""

import streamlit as st

from dlsec_ui import privacy_tabs, state
from dlsec_ui.runs import attach, get_runs
from dlsec_ui.widgets import TAB_IN_URL

st.title("Privacy budget")
st.caption(
    "DP-SGD (Abadi et al. 2016) clips each example's gradient and adds Gaussian noise; an accountant turns the "
    "noise σ, the sampling rate q = batch / N and the number of steps into a guarantee (ε, δ): no single training "
    "example changes what the model reveals by more than a factor e^ε, except with probability δ. Smaller ε: "
    "stronger privacy. Accountants differ in how tightly they bound the same run, so every ε here names its own."
)
calculator, frontier = st.tabs(["Calculator", "Privacy-utility frontier"], key=state.PB_TAB, **TAB_IN_URL)

with calculator:
    privacy_tabs.calculator_tab()
with frontier:
    fr_dataset, fr_arch = privacy_tabs.frontier_form()
    # The sweep this session follows (or a ?run= link names); else the latest one, for its status line.
    fr_shown = attach(state.FR_JOB, study="frontier") or get_runs().latest("frontier")
    privacy_tabs.show_frontier(fr_shown, fr_dataset, fr_arch)
