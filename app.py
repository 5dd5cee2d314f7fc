"""dlsec, the Deep Learning Security Lab: the frame (page config, workshop room login, global sidebar, navigation)."""

import streamlit as st

from dlsec_core.device import describe_device
from dlsec_core.errors import DlsecError
from dlsec_ui import room, state, timing
from dlsec_ui.resources import configure_server, freeze_startup_heap, get_store
from dlsec_ui.sharing import fill_link, link_slot, presenter_toggle
from dlsec_ui.widgets import IN_URL, model_picker, show_error

STARTED = timing.start()  # the load benchmark's per-run timing (DLSEC_RERUN_LOG), else None
st.set_page_config(page_title="dlsec: Deep Learning Security Lab", page_icon="assets/icon.png", layout="wide")

configure_server()
room.gate()  # a workshop room's login; without a room passcode configured it does nothing

# Sections, fully expanded: without `expanded=True` Streamlit 1.67 folds a sidebar of more than 12 pages behind
# "View N more". The first section has no header.
SECTIONS = {
    "": [
        st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("app_pages/models.py", title="Models", icon=":material/model_training:"),
        st.Page("app_pages/runs.py", title="Runs", icon=":material/history:"),
    ],
    "Workshop": [
        st.Page("app_pages/lessons.py", title="Lessons", icon=":material/school:"),
    ],
    "Evasion and defenses": [
        st.Page("app_pages/attack_lab.py", title="Attack Lab", icon=":material/bolt:"),
        st.Page("app_pages/robustness.py", title="Robustness", icon=":material/show_chart:"),
        st.Page("app_pages/detection.py", title="Detection", icon=":material/policy:"),
        st.Page("app_pages/certification.py", title="Certified", icon=":material/verified:"),
    ],
    "Privacy": [
        st.Page("app_pages/privacy_budget.py", title="Privacy budget", icon=":material/lock:"),
        st.Page("app_pages/membership.py", title="Membership inference", icon=":material/person_search:"),
        st.Page("app_pages/inversion.py", title="Model inversion", icon=":material/face:"),
        st.Page("app_pages/audit.py", title="Privacy audit", icon=":material/fact_check:"),
    ],
    "Model theft": [
        st.Page("app_pages/theft.py", title="Model theft", icon=":material/key_off:"),
    ],
    "Federated learning": [
        st.Page("app_pages/federated.py", title="Federated learning", icon=":material/hub:"),
    ],
    "Assessment": [
        st.Page("app_pages/scorecard.py", title="Scorecard", icon=":material/traffic:"),
        st.Page("app_pages/atlas.py", title="MITRE ATLAS", icon=":material/grid_view:"),
    ],
}
# Only the instructor of a workshop room sees the Instructor page in the Workshop section. For everyone else the page
# stays registered but hidden (a typed URL shows one sentence, and the store refuses what it does to anyone but the
# instructor).
INSTRUCTOR = room.is_instructor()
INSTRUCTOR_PAGE = st.Page(
    "app_pages/instructor.py", title="Instructor", icon=":material/supervisor_account:",
    visibility="visible" if INSTRUCTOR else "hidden",
)  # fmt: skip
if INSTRUCTOR:
    SECTIONS["Workshop"].append(INSTRUCTOR_PAGE)
else:
    SECTIONS[""].append(INSTRUCTOR_PAGE)
PAGES = [p for pages in SECTIONS.values() for p in pages]

with st.sidebar:
    st.markdown("### :material/shield: dlsec")
    try:
        cards = {c.id: c for c in get_store().list_models()}
    except DlsecError as err:
        show_error(err)
        cards = {}
    model_picker(cards)
    st.number_input(
        "Seed", 0, 2**31 - 1, 0, key=state.SEED, help="Seeds training and random attack starts.", **IN_URL
    )
    st.caption(f"Device: {describe_device()}")
    presenter_toggle()
    link_slot()
    room.signed_in()  # in a workshop room: who this session is, and a sign-out button

st.navigation(SECTIONS, expanded=True).run()
# After the page: its widgets have written their state into the URL. A page that stops early has filled it in
# sharing.stop (nothing drawn after st.stop() reaches the browser), a page_fragment at the end of its body.
fill_link()
timing.finish(STARTED)
freeze_startup_heap()  # after the first full page: every later rerun's garbage collection skips it
