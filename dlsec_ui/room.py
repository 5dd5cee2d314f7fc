"""The workshop room in the frame: the login before navigation, who this session is, and what it may change.

Without a room passcode (`[room] passcode` in `.streamlit/secrets.toml`, or `DLSEC_ROOM_PASSCODE`) every function
here answers "no room": `gate` draws nothing, `actor()` is None (the store allows everything, as before rooms),
`current_owner()` is "local". With one, `gate` shows the login until the session enters the room, and `signed_in`
draws a "signed in as" line and a sign-out button in the sidebar. The rules themselves live in `dlsec_core.access`
and `dlsec_core.room`, and the store applies them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import streamlit as st

from dlsec_core.access import Actor
from dlsec_core.errors import DlsecError
from dlsec_core.room import RoomSettings, log_in, record_login
from dlsec_ui import state
from dlsec_ui.resources import get_login_limiter, get_store

LOCAL = "local"
"""`current_owner()` outside a room: the lab's one local user."""


def _secrets() -> Mapping[str, Any] | None:
    """Streamlit's secrets (read at call time: `AppTest.secrets` replaces `st.secrets`), or None without a file."""
    if not st.secrets.load_if_toml_exists():
        return None
    return {key: st.secrets[key] for key in st.secrets}


def settings() -> RoomSettings:
    """The room's settings: `[room]` in Streamlit's secrets, else the `DLSEC_ROOM_*` environment variables.

    Raises:
        InvalidInputError: a room configured wrongly (the lab then refuses to open rather than open unguarded).
    """
    return RoomSettings.from_sources(_secrets(), os.environ)


def enabled() -> bool:
    """Is there a workshop room (a room passcode configured)?"""
    return settings().enabled


def actor() -> Actor | None:
    """Who acts in this session, for the store's checks; None outside a room (everything allowed, as before)."""
    who = st.session_state.get(state.ROOM_ACTOR)
    return who if isinstance(who, Actor) else None


def current_owner() -> str:
    """This session's participant: their display name in a room ("instructor" for the instructor), "local"
    without a room. Key anything kept per participant (lesson progress) on it."""
    who = actor()
    return who.owner if who is not None else LOCAL


def is_instructor() -> bool:
    who = actor()
    return who is not None and who.instructor


def may_change(owner: str | None) -> bool:
    """May this session delete or cancel something owned by `owner`? (Always, outside a room.)"""
    who = actor()
    return who is None or who.may_change(owner)


def not_yours(owner: str | None) -> str:
    """A sentence naming whose something is, for a participant looking at another's work."""
    return f"Owned by {owner}." if owner else "Made before the room opened (the instructor's)."


def run_limit() -> int | None:
    """The cap on this session's unfinished runs: the room's for a participant; none outside a room or for the
    instructor (who prepares models for everyone)."""
    who = actor()
    if who is None or who.instructor:
        return None
    return settings().max_active_runs


def _enter(cfg: RoomSettings, *, instructor: bool) -> None:
    """A login form's callback: check it, remember who this session is, and never keep the passcode."""
    key = state.ROOM_INSTRUCTOR_PASSCODE if instructor else state.ROOM_PASSCODE
    passcode = str(st.session_state.pop(key, "") or "")
    name = "" if instructor else str(st.session_state.get(state.ROOM_NAME, ""))
    try:
        who = log_in(
            cfg,
            get_login_limiter(),
            session=state.owner_id(),  # random per browser session until the login
            passcode=passcode,
            name=name,
            instructor=instructor,
        )
        record_login(get_store(), who)
    except DlsecError as err:
        st.session_state[state.ROOM_FLASH] = str(err)
        return
    st.session_state[state.ROOM_ACTOR] = who
    st.session_state[state.OWNER] = who.owner  # the owner of this session's runs (`state.owner_id`)


def _sign_out() -> None:
    for key in (state.ROOM_ACTOR, state.OWNER, state.ROOM_FLASH):
        st.session_state.pop(key, None)


def _login(cfg: RoomSettings) -> None:
    st.title(":material/school: Workshop room")
    st.write(
        "This lab is a shared workshop room. Enter the room's passcode and a display name: the others see your "
        "name beside your models and runs; you can delete and cancel only your own."
    )
    flash = st.session_state.pop(state.ROOM_FLASH, None)
    if flash:
        st.error(flash)
    with st.form(state.ROOM_LOGIN_FORM, clear_on_submit=True, border=True):
        st.text_input("Display name", key=state.ROOM_NAME, max_chars=40, placeholder="e.g. Ada L.")
        st.text_input("Room passcode", key=state.ROOM_PASSCODE, type="password")
        st.form_submit_button(
            "Enter the room", type="primary", key=state.ROOM_LOGIN, on_click=_enter, args=(cfg,),
            kwargs={"instructor": False},
        )  # fmt: skip
    if cfg.has_instructor:
        with (
            st.expander("I am the instructor"),
            st.form(state.ROOM_INSTRUCTOR_FORM, clear_on_submit=True, border=False),
        ):
            st.text_input("Instructor passcode", key=state.ROOM_INSTRUCTOR_PASSCODE, type="password")
            st.form_submit_button(
                "Enter as instructor", key=state.ROOM_INSTRUCTOR_LOGIN, on_click=_enter, args=(cfg,),
                kwargs={"instructor": True},
            )  # fmt: skip


def gate() -> None:
    """The room's door, called by app.py before the sidebar and navigation. Without a room: nothing. With one: a
    session that has not entered sees only the login and the script stops here. A misconfigured room stops the lab
    with the reason (it never opens unguarded)."""
    try:
        cfg = settings()
    except DlsecError as err:
        st.error(f"The workshop room is configured wrongly, so the lab stays closed: {err}")
        st.stop()
    if not cfg.enabled:
        return
    if actor() is None:
        _login(cfg)
        st.stop()


def signed_in() -> None:
    """In a room, who this session is and a sign-out button (app.py draws it in the sidebar); else nothing."""
    who = actor()
    if who is None:
        return
    role = "instructor" if who.instructor else "participant"
    st.caption(f":material/badge: Signed in as **{who.owner}** ({role})")
    st.button("Sign out", key=state.ROOM_SIGN_OUT, on_click=_sign_out)
