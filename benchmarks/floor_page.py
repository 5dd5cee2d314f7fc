"""The floor of `bench_load.py --floor`: the app's frame (sidebar, navigation, link box) around a page with only
the Attack Lab's ε slider and four numbers, no attack and no pictures. What a slider move costs the browsers and the
server here is what any page of this app costs at least."""

import streamlit as st

from dlsec_ui.widgets import eps_slider

st.title("Attack Lab")
left, right = st.columns([1, 2], gap="large")
with left:
    eps = eps_slider("linf", "eps")
with right:
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Fooled", "no")
    m2.metric("L∞ size", f"{eps:.3f}")
    m3.metric("L2 size", f"{eps * 28:.3f}")
    m4.metric("L0 (pixels changed)", 784)
