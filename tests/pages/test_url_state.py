"""Every registered page keeps what a user sets in the URL: a link opened in a fresh session shows the same view.

For each page of app.py, the test gives every keyed input widget (and the page's tabs) a value other than the one
it shows, reads the link of the resulting view, opens a fresh session on exactly that link, and asserts the same
widget values, metrics and chart specs. A widget added later without URL state fails it, unless it is in
NOT_IN_URL below with the reason.

The link: AppTest has no browser, so nothing writes a bound widget's value into `at.query_params` (the browser does
that). The test writes it as Streamlit's server does when it corrects a bound parameter (`session_state`'s
`set_corrected_value`: the widget's serializer, then `_coerce_value_for_query_url`), a value equal to the widget's
default left out (as the browser leaves it out), next to what the script itself wrote (`?model=`, `?runs=`, the id
multiselects). Reading the link back is Streamlit's own path (`_seed_widget_from_url`). The browser's side of the
same round trip: tests/e2e/test_workshop_browser.py (Attack Lab).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from background import finish_all, finish_work
from streamlit.runtime.state.query_params import _coerce_value_for_query_url
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import (
    ButtonGroup,
    Checkbox,
    Multiselect,
    NumberInput,
    Radio,
    Selectbox,
    SelectSlider,
    Slider,
    TextInput,
    Toggle,
    Widget,
)
from test_pages_apptest import APP, PAGES, TIMEOUT

from dlsec_core.store import ModelCard
from dlsec_ui import state

#: Keyed input widgets that stay out of the URL on purpose. Everything else with a key must round-trip.
NOT_IN_URL = {
    state.TRAIN_NAME: "the name of a model about to be trained: naming, not a view (two links would train twins)",
    state.UPLOAD_NAME: "the name given to an uploaded model: goes with the upload, which a link cannot carry",
    state.UPLOAD_DATASET: "the dataset an uploaded model was trained for: goes with the upload",
    state.DATA_NAME: "the name of a dataset about to be uploaded: goes with the upload, which a link cannot carry",
    state.INSTR_CLEAR_CONFIRM: "the confirmation of 'clear the room': an action's safety catch, never linked",
}
#: Values to set instead of "another option" where that would empty the page (a filter that matches no run).
VALUES = {state.RUNS_STUDY: "sweep", state.RUNS_STATUS: "done"}
#: Key prefixes of the same kind.
NOT_IN_URL_PREFIXES = {
    state.LESSON_ANSWER: "a learner's answer to a checkpoint: their own work (saved as progress), not a view; a link "
    "that carried it would hand the answer to the next learner",
}

VALUE_WIDGETS = (
    Selectbox, Radio, Multiselect, SelectSlider, Slider, NumberInput, TextInput, Checkbox, Toggle, ButtonGroup,
)  # fmt: skip
PASSES = 3  # a changed value can reveal more widgets (client DP's clip and σ, a defense's settings): change those too


def excused(key: str) -> bool:
    return key in NOT_IN_URL or any(key.startswith(p) for p in NOT_IN_URL_PREFIXES)


def keyed_widgets(at: AppTest) -> dict[str, Widget]:
    """The page's and the sidebar's keyed input widgets, by key."""
    found: dict[str, Widget] = {}
    for kind in ("selectbox", "radio", "multiselect", "select_slider", "slider", "number_input", "text_input",
                 "checkbox", "toggle", "button_group"):  # fmt: skip
        for w in at.get(kind):
            if isinstance(w, VALUE_WIDGETS) and w.key:
                found[w.key] = w
    return found


def _session(at: AppTest) -> Any:
    return at._session_state._state  # the SessionState behind AppTest's proxy


def metadata(at: AppTest, widget_id: str) -> Any:
    return _session(at)._new_widget_state.widget_metadata[widget_id]


def bound_tabs(at: AppTest) -> dict[str, list[str]]:
    """The page's tabs bound to the URL: key -> tab labels (a bound widget whose options are tab labels)."""
    ss = _session(at)
    keys = ss._key_id_mapper.id_key_mapping
    labels = {t.label for t in at.tabs}
    widgets = keyed_widgets(at)
    return {
        keys[wid]: list(meta.formatted_options)
        for wid, meta in ss._new_widget_state.widget_metadata.items()
        if wid in keys and keys[wid] not in widgets and meta.bind == "query-params" and meta.formatted_options
        and set(meta.formatted_options) <= labels
    }  # fmt: skip


def link_params(at: AppTest) -> dict[str, str | list[str]]:
    """The query parameters of the view's link: the script's own (model, runs, id lists) and every bound widget
    whose value is not its default, serialized as Streamlit's server writes a corrected URL value."""
    params = {k: at.query_params[k] for k in at.query_params}
    ss = _session(at)
    keys = ss._key_id_mapper.id_key_mapping
    for wid, meta in ss._new_widget_state.widget_metadata.items():
        if meta.bind != "query-params" or wid not in keys or keys[wid] not in ss:
            continue
        value = ss[keys[wid]]
        if value == meta.deserializer(None):
            params.pop(keys[wid], None)
            continue
        params[keys[wid]] = _coerce_value_for_query_url(meta.serializer(value), meta.value_type)
    return params


def other_value(at: AppTest, w: Widget) -> Any:
    """A valid value for `w` other than the one it has (None: it has no other)."""
    meta = metadata(at, w.id)
    if isinstance(w, (Checkbox, Toggle)):
        return not w.value
    if isinstance(w, TextInput):
        return (w.value or "") + "1"
    if isinstance(w, (Slider, NumberInput)):
        if w.value is None or isinstance(w.value, (tuple, list)):
            return None
        bounded = isinstance(w, Slider)
        lo = w.min if bounded or w.proto.has_min else -math.inf
        hi = w.max if bounded or w.proto.has_max else math.inf
        step = w.step or 1
        value = w.value + step if w.value + step <= hi else w.value - step
        return value if lo <= value <= hi and value != w.value else None
    labels = list(w.options)
    if isinstance(w, (Selectbox, Radio)):
        j = next((j for j in range(len(labels)) if j != w.index), None)
        return None if j is None else meta.deserializer(labels[j])
    if isinstance(
        w, (SelectSlider, Multiselect, ButtonGroup)
    ):  # their wire value: a list of labels (or indices)
        current = w.value
        for j in range(len(labels)):
            value = meta.deserializer([labels[j]] if meta.value_type == "string_array_value" else [j])
            if value != current and list(value if isinstance(value, list) else [value]) != list(
                current if isinstance(current, list) else [current]
            ):
                return value
    return None


def view(at: AppTest) -> dict[str, Any]:
    """What the page shows: its keyed widgets' values, its tabs, metrics and the charts' specs."""
    return {
        "widgets": {k: w.value for k, w in keyed_widgets(at).items() if not excused(k)},
        "tabs": {k: _session(at)[k] for k in bound_tabs(at)},
        "metrics": [(m.label, m.value) for m in at.metric],
        "charts": [e.proto.spec for e in at.get("plotly_chart")],
        "selected": {
            _key(at, t): _session(at)[_key(at, t)]["selection"]["rows"] for t in selection_tables(at)
        },
    }


@pytest.fixture
def two_models(
    tmp_home: Path, trained_digits: Any, save_trained: Callable[..., ModelCard]
) -> list[ModelCard]:
    """Two stored models, so that the model pickers have another model to pick."""
    return [save_trained(tmp_home, trained_digits, name) for name in ("digits-a", "digits-b")]


@pytest.fixture
def two_sweeps(two_models: list[ModelCard]) -> list[str]:
    """Two finished sweeps (one per model), for the Runs page's filters, selection and overlay."""
    from dlsec_core.runs import RunStore
    from dlsec_core.store import Store
    from dlsec_core.studies.sweep import SweepStudyConfig

    runs = RunStore(Store())
    ids = []
    models = [card.id for card in two_models]
    for top in (0.1, 0.2):  # both read both models: the "only the current model's runs" filter keeps both
        config = SweepStudyConfig(model_ids=models, attack="fgsm", eps=[0.0, top], n_images=32, seed=1)
        ids.append(runs.submit("sweep", config.to_json(), title=f"sweep to {top}", model_ids=models).id)
    for run_id in ids:
        assert finish_work(run_id) is None
    return ids


def selection_tables(at: AppTest) -> list[Any]:
    """Keyed tables whose rows a user selects (a run table): the selection is part of the view."""
    return [e for e in at.dataframe if e.key and list(e.proto.selection_mode)]


def _key(at: AppTest, element: Any) -> str:
    return str(element.key)


@pytest.fixture
def session(tmp_home: Path) -> Iterator[Callable[..., AppTest]]:
    st.cache_resource.clear()
    st.cache_data.clear()

    def open_page(page: str, query: dict[str, Any] | None = None) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
        at.query_params.update(query or {})
        at.switch_page(page).run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    yield open_page
    finish_all()
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.mark.parametrize("page", PAGES)
def test_a_link_reproduces_the_view(
    page: str, session: Callable[..., AppTest], two_models: list[ModelCard], two_sweeps: list[str]
) -> None:
    at = session(page)
    in_url = {t for labels in bound_tabs(at).values() for t in labels}
    assert {t.label for t in at.tabs} <= in_url, (
        f"{page}: tabs without key and bind: the open tab is not in the URL"
    )
    changed: dict[str, Any] = {}
    for _ in range(PASSES):
        todo = {k: w for k, w in keyed_widgets(at).items() if k not in changed and not excused(k)}
        tabs = {k: labels for k, labels in bound_tabs(at).items() if k not in changed}
        if not todo and not tabs:
            break
        for k, w in todo.items():
            value = VALUES.get(k, other_value(at, w))
            changed[k] = value
            if value is not None:
                w.set_value(value)
        for k, labels in tabs.items():
            changed[k] = next(t for t in labels if t != _session(at)[k])
            at.session_state[k] = changed[k]
        at.run()
        assert not at.exception, [e.value for e in at.exception]
    for table in selection_tables(at):  # after the filters: select the rows the table now shows, up to two
        rows = list(range(min(2, len(table.value))))
        changed[f"{_key(at, table)} rows"] = rows or None
        at.session_state[_key(at, table)] = {"selection": {"rows": rows, "columns": [], "cells": []}}
    if selection_tables(at):
        at.run()
        assert not at.exception, [e.value for e in at.exception]
    before = view(at)
    moved = {k for k, v in changed.items() if v is not None}
    assert moved, f"{page}: no widget to set"
    params = link_params(at)
    print(
        "DEBUG",
        page,
        sorted(moved),
        sorted(k for k, v in changed.items() if v is None),
        len(before["charts"]),
        before["tabs"],
    )
    fresh = session(page, params)
    after = view(fresh)
    for k in moved & set(before["widgets"]):
        assert after["widgets"].get(k) == before["widgets"][k], (page, k, params)
    assert after == before, (page, params)


@pytest.mark.parametrize("with_model", [False, True], ids=["empty-store", "one-model"])
@pytest.mark.parametrize("page", PAGES)
def test_the_link_box_is_drawn_once_also_when_the_page_stops_early(
    page: str, with_model: bool, tmp_home: Path, request: pytest.FixtureRequest
) -> None:
    """Several pages end in st.stop() (no model yet, no run): app.py draws the sidebar's link after the page runs,
    in a `finally`, so those pages have it too, once."""
    if with_model:
        request.getfixturevalue("stored_model")
    st.cache_resource.clear()
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.context = {"url": f"http://localhost:8501/{Path(page).stem}"}
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    links = [c.value for c in at.sidebar.code if c.value.startswith("http://localhost:8501/")]
    assert len(links) == 1, (page, links)
    assert links[0].startswith(f"http://localhost:8501/{Path(page).stem}"), links
    if with_model:
        assert "model=" in links[0], links


def test_pages_stop_through_sharing_stop() -> None:
    """A page's bare st.stop() would leave the sidebar without its link (see sharing.stop)."""
    root = APP.parent
    bare = [
        f"{path}:{node.lineno}"
        for path in [*PAGES, *(str(p.relative_to(root)) for p in (root / "dlsec_ui").glob("*.py"))]
        if not path.endswith("sharing.py")
        for node in ast.walk(ast.parse((root / path).read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "stop"
        and isinstance(node.func.value, ast.Name) and node.func.value.id == "st"
    ]  # fmt: skip
    # room.py: the login gate stops before the sidebar exists (no link to a page nobody has entered yet)
    assert all(p.startswith("dlsec_ui/room.py") for p in bare), bare
