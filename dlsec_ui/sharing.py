"""Sharing a view: the link that reproduces it, and presenter mode for projecting it.

Pages keep their state in the URL through widgets bound with `bind="query-params"` (the key is the parameter
name) plus the sidebar's `?model=` and a run's `?run=`; `copy_link` shows the whole URL with a copy button.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from dlsec_ui import state

_CSS = Path(__file__).resolve().parents[1] / "assets" / "presenter.css"


def view_link() -> str | None:
    """The URL of this view: the page's address and every query parameter (bound widgets, model, run)."""
    base = st.context.url
    if not base:
        return None
    query = urlencode([(k, v) for k in st.query_params for v in st.query_params.get_all(k)])
    return base + ("?" + query if query else "")


def copy_link(where: DeltaGenerator) -> None:
    """'Link to this view' with a copy button (st.code's), in `where` (the sidebar's slot, filled after the page)."""
    link = view_link()
    if link is None:  # no browser (AppTest)
        return
    with where.container(key=state.COPY_LINK):
        st.caption("Link to this view (opens the same model, image, attack, ε and defense):")
        st.code(link, language=None, wrap_lines=True)


def presenter_toggle() -> bool:
    """The sidebar's presenter mode: larger type and chart labels, controls hidden (see assets/presenter.css)."""
    on = st.toggle(
        "Presenter mode", key=state.PRESENTER, bind="query-params", persist_state="session",
        help="For projecting: larger text, full-width content, larger chart labels; hides the navigation, the "
        "sidebar's settings and link, and the page's select boxes, radio buttons, check boxes, buttons, number and "
        "text boxes, uploads, expanders and links (sliders, toggles and segmented controls stay, to move ε in "
        "front of the room).",
    )  # fmt: skip
    if on:
        st.html(f"<style>{_CSS.read_text(encoding='utf-8')}</style>")
    return bool(on)
