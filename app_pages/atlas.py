"""MITRE ATLAS: the tactics and techniques the lab demonstrates, each linked to the page that shows it."""

import streamlit as st

from dlsec_core.atlas import ATLAS_SOURCE, NO_ENTRY
from dlsec_core.atlas_coverage import atlas_matrix
from dlsec_core.errors import DlsecError
from dlsec_ui.atlas import entry_list, tactic_matrix
from dlsec_ui.sharing import stop
from dlsec_ui.widgets import show_error

st.title("MITRE ATLAS")
st.caption(
    "MITRE ATLAS is the ATT&CK of AI systems: tactics (the adversary's goal, the columns), techniques (how), and "
    "mitigations. Every attack, defense, recipe and study of the lab names the ATLAS ids it demonstrates. Lit "
    "entries open the page that demonstrates them; grey ones are in ATLAS but not in the lab. Only the tactics and "
    f"techniques the lab touches are listed. Ids and names: {ATLAS_SOURCE}."
)
try:
    matrix = atlas_matrix()
except DlsecError as err:
    show_error(err)
    stop()

tactic_matrix(matrix)

st.subheader("Mitigations")
st.caption(
    "The defenses of the lab, by the ATLAS mitigation they are an instance of, with the pages that show them."
)
entry_list(matrix.mitigations)

st.subheader("Local tags")
st.caption(NO_ENTRY)
entry_list(matrix.local)
