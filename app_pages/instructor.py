"""Instructor: the room's participants, their lesson progress and their work, cancel any run, clear the room after
class.

Only the instructor of a workshop room has this page in the sidebar (app.py); opened any other way it shows
nothing but a sentence, and the store refuses what it does to anyone else (`dlsec_core.access`).
"""

import streamlit as st

from dlsec_core.access import Actor
from dlsec_core.errors import DlsecError
from dlsec_core.room import clear_room, participants
from dlsec_ui import room, state
from dlsec_ui.lessons import progress_by_participant
from dlsec_ui.model_forms import model_rows, show_flash
from dlsec_ui.resources import get_store
from dlsec_ui.runs import get_runs, render_server_runs, run_table
from dlsec_ui.sharing import stop
from dlsec_ui.widgets import show_error


def _clear(teacher: Actor) -> None:
    """Before the next script run, so every table on the page is drawn without the deleted work."""
    try:
        report = clear_room(get_store(), teacher)
    except DlsecError as err:
        st.session_state[state.INSTR_FLASH] = err
        return
    st.session_state[state.INSTR_FLASH] = report.sentence()
    st.session_state[state.INSTR_CLEAR_CONFIRM] = False


st.title("Instructor")
teacher = room.actor()
if teacher is None or not teacher.instructor:
    st.info("This page is for the instructor of a workshop room.")
    stop()

show_flash(state.INSTR_FLASH)
render_server_runs()

st.subheader("Participants")
people = participants(get_store())
if people:
    progress = progress_by_participant()
    st.dataframe(
        [{**p.to_record(), "lessons (steps passed)": progress.get(p.name, "none yet")} for p in people],
        hide_index=True,
    )
else:
    st.caption("Nobody has entered the room yet.")

st.subheader("Runs of the room")
runs = get_runs().list_runs(limit=500)
if not runs:
    st.caption("No run yet.")
else:
    picked = run_table(runs, key=state.INSTR_RUNS, in_url=True)  # a link opens the same rows selected
    active = [r for r in picked if r.is_active]
    if st.button(
        f"Cancel {len(active)} selected unfinished run(s)", key=state.INSTR_CANCEL, disabled=not active
    ):
        try:
            for run in active:
                get_runs().cancel(run.id, actor=teacher)
        except DlsecError as err:
            show_error(err)
        else:
            st.session_state[state.INSTR_FLASH] = f"Asked {len(active)} run(s) to stop."
            st.rerun()

st.subheader("Models of the room")
st.dataframe(model_rows(get_store().list_models()), hide_index=True)

st.subheader("Clear the room")
with st.popover("Clear the room…", icon=":material/delete_sweep:"):
    st.markdown(
        "Delete **every participant's models and runs** and forget the participants, e.g. before the next class. "
        "Your own models and runs, and models made before the room opened, stay. This cannot be undone."
    )
    sure = st.checkbox("Yes, delete all participants' work", key=state.INSTR_CLEAR_CONFIRM)
    st.button(
        "Clear the room",
        type="primary",
        key=state.INSTR_CLEAR,
        disabled=not sure,
        on_click=_clear,
        args=(teacher,),
    )
