"""Sharing a view: the link that reproduces it, and presenter mode for projecting it.

Pages keep their state in the URL through widgets bound with `bind="query-params"` (the key is the parameter
name) plus the sidebar's `?model=` and a run's `?run=`; `copy_link` shows the whole URL with a copy button.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, ParamSpec
from urllib.parse import urlencode

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from dlsec_ui import state, timing

_CSS = Path(__file__).resolve().parents[1] / "assets" / "presenter.css"
#: The sidebar's link slot of the script run in this thread, until it is filled (`fill_link`). A fragment's run,
#: which does not run app.py, finds none, except a `page_fragment`'s, which keeps the slot of the run that made it.
_RUN = threading.local()
P = ParamSpec("P")


def view_link() -> str | None:
    """The URL of this view: the page's address and every query parameter (bound widgets, model, run)."""
    base = st.context.url
    if not base:
        return None
    query = urlencode([(k, v) for k in st.query_params for v in st.query_params.get_all(k)])
    return base + ("?" + query if query else "")


def link_slot() -> DeltaGenerator:
    """The sidebar's place for 'Link to this view': filled after the page by `fill_link`, or by `stop` when the
    page stops early (app.py's code after the page never runs then)."""
    _RUN.slot = st.empty()
    return _RUN.slot


def stop() -> NoReturn:
    """`st.stop()` for pages: fills the sidebar's link first. Nothing drawn after `st.stop()` reaches the browser
    (every later Streamlit call raises the stop again), so app.py's `fill_link` after the page cannot do it."""
    fill_link()
    st.stop()


def fill_link() -> None:
    """Draw 'Link to this view' into this run's sidebar slot, once: after the page (app.py), at a page's early
    `stop`, or at the end of each run of a `page_fragment`."""
    slot = getattr(_RUN, "slot", None)
    _RUN.slot = None
    if slot is not None:
        copy_link(slot)


def page_fragment(body: Callable[P, None], *args: P.args, **kwargs: P.kwargs) -> None:
    """Run a page's body as a fragment: a widget inside it reruns the body alone, not app.py's frame (sidebar,
    navigation) around it. For the Attack Lab's ε slider that is a fifth less CPU per step in the browser and a
    quarter less on the server (benchmarks/README.md, bench_load run 8), which a room of 30 on one server feels.

    The sidebar's link is drawn by the fragment at the end of each of its runs (a fragment may write into a
    container made outside it; its writes there are redrawn at each of its runs), so it follows every change; a
    widget outside the body (the sidebar's model, seed) still reruns the whole page."""
    slot = getattr(_RUN, "slot", None)

    @st.fragment
    def run() -> None:
        # inside app.py's run its slot is still unfilled; a fragment's own run is timed here, not by app.py
        started = None if getattr(_RUN, "slot", None) is not None else timing.start()
        _RUN.slot = slot  # for `stop` inside the body, and for this run's link below
        body(*args, **kwargs)
        fill_link()
        timing.finish(started)

    run()


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
