"""Shared widgets: model picker, image picker, attack form generated from the attack's dataclass fields."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import streamlit as st
import torch
from torch import nn

from dlsec_core.attacks.base import ATTACKS, Attack, AttackResult, Reference
from dlsec_core.attacks.norms import NORMS, Norm
from dlsec_core.catalog import get_recipe
from dlsec_core.config import ParamSpec, spec_of, specs
from dlsec_core.data.builtin import Dataset
from dlsec_core.data.images import drawing_to_input, image_to_input, open_image
from dlsec_core.defenses.transforms import TRANSFORMS, InputTransform
from dlsec_core.errors import DlsecError
from dlsec_core.evaluation.checks import Finding
from dlsec_core.privacy_spend import privacy_label as spend_label
from dlsec_core.store import ModelCard
from dlsec_core.training.loop import TrainConfig
from dlsec_core.workflows import CurveFindings
from dlsec_ui import state
from dlsec_ui.atlas import atlas_caption
from dlsec_ui.resources import get_dataset, get_model, get_store
from dlsec_ui.runs import show_session_run, submit_training
from dlsec_ui.sharing import stop

DEFAULT_TRAINING_TIME = "the default run took 42 to 55 s on a busy 2-core server, one thread per job"
"""How long the Models page's default run takes, as measured: 55 s (benchmarks/bench_default_training.py,
results/default_training_run1.json, load average 2.6 to 4.9 on 2 cores) and 42.5 s (the same run through the CLI,
results/membership_default_cnn_run1.json, load 4.2 to 5.9). Re-measure when the defaults change."""

#: Widget options that keep a widget's value in the URL (the key is the parameter's name: a link reproduces the
#: view) and in the session while it is not rendered (another page, a hidden branch). A bound select box writes its
#: displayed label into the URL, so only boxes with short, stable labels are bound (not model pickers).
IN_URL: dict[str, Any] = {"bind": "query-params", "persist_state": "session"}
#: The same for `st.tabs` (with a `key`): the open tab's label goes into the URL (tabs take no `persist_state`).
TAB_IN_URL: dict[str, Any] = {"bind": "query-params"}

#: The pages' ε slider per norm (min, max, step, default): a teaching range inside the validator's (Norm.max_eps).
EPS_RANGE = {Norm.LINF: (0.0, 0.5, 0.005, 0.1), Norm.L2: (0.0, 5.0, 0.05, 1.0)}


def current_model_card() -> ModelCard | None:
    """The model chosen in the sidebar, or None (with a hint to train one) when the store is empty."""
    model_id = st.session_state.get(state.MODEL)
    if not model_id:
        st.info(f"No model yet. Train one on the **Models** page ({DEFAULT_TRAINING_TIME}), then come back.")
        st.page_link("app_pages/models.py", label="Go to Models", icon=":material/model_training:")
        return None
    try:
        return get_store().get_card(model_id)
    except DlsecError as err:
        show_error(err)
        return None


def model_label(card: ModelCard) -> str:
    """A model's label in select boxes. It ends with the id because select boxes map labels back to options:
    two models with the same name and accuracy (the same default run trained twice) would otherwise collapse."""
    acc = "" if card.clean_accuracy is None else f", {card.clean_accuracy:.1%}"
    return f"{card.name} ({card.spec.arch}, {card.dataset}{acc}) · {card.id}"


def ids_multiselect(
    label: str, options: Sequence[str], *, default: Sequence[str], key: str, **kwargs: Any
) -> list[str]:
    """A multiselect over ids (models, runs) shown with long labels, kept in the URL as the ids (`?key=a&key=b`).

    Not `bind="query-params"`, which writes the labels (long, and not unique once two models share a name). A fresh
    session opening a link starts from the URL's ids that are still options; the URL follows every change, and a
    choice equal to the default leaves the URL.
    """
    if key not in st.session_state and key in st.query_params:
        st.session_state[key] = [i for i in st.query_params.get_all(key) if i in options]
    chosen = st.multiselect(
        label, options, default=None if key in st.session_state else list(default), key=key, **kwargs
    )
    if list(chosen) == list(default):
        st.query_params.pop(key, None)
    else:
        st.query_params[key] = list(chosen)
    return list(chosen)


def id_selectbox(label: str, options: Sequence[str], *, key: str, **kwargs: Any) -> str:
    """A select box over ids shown with long labels (a stored model), kept in the URL as the id (`?key=<id>`), as
    `ids_multiselect` keeps several; the first option, its default, leaves the URL."""
    wanted = st.query_params.get(key)
    if key not in st.session_state and wanted in options:
        st.session_state[key] = wanted
    chosen = st.selectbox(label, options, key=key, **kwargs)
    if options and chosen != options[0]:
        st.query_params[key] = chosen
    else:
        st.query_params.pop(key, None)
    return chosen


def follow_model(key: str) -> None:
    """on_change of a page's own model box: that model becomes the current one (the sidebar's, `?model=`), so a
    link to the page opens it."""
    st.session_state[state.MODEL] = st.session_state[key]


def model_picker(cards: dict[str, ModelCard]) -> None:
    """The sidebar's current-model select box, mirrored in the URL as `?model=<id>`: a link opens that model.

    When the model asked for is not stored (a link to a deleted model, or the current model deleted here or in
    another session), another one is shown and a warning says so, for as long as that substitute stays current.
    Not `bind="query-params"`: a bound select box writes its label into the URL, not the id.
    """
    current = st.session_state.get(state.MODEL)
    wanted = st.query_params.get(state.MODEL)
    if current not in cards:
        chosen = wanted if wanted in cards else (next(iter(cards)) if cards else None)
        instead = (
            f"the current model is now **{model_label(cards[chosen])}**" if chosen else "no model is left"
        )
        if current:
            was = st.session_state.get(state.MODEL_LABEL) or f"model {current}"
            notice = (
                f"**{was}**, the model you had selected, was deleted (here or in another session); {instead}."
            )
            st.session_state[state.MODEL_NOTICE] = (chosen, notice)
        elif wanted and wanted != chosen:
            notice = f"The link asks for model `{wanted}`, which is not stored (deleted, or a mistyped id); {instead}."
            st.session_state[state.MODEL_NOTICE] = (chosen, notice)
        st.session_state[state.MODEL] = chosen
    if cards:
        st.selectbox(
            "Current model", list(cards), format_func=lambda i: model_label(cards[i]), key=state.MODEL
        )
        st.query_params[state.MODEL] = st.session_state[state.MODEL]
        st.session_state[state.MODEL_LABEL] = model_label(cards[st.session_state[state.MODEL]])
    else:
        st.session_state.pop(state.MODEL, None)
        st.query_params.pop(state.MODEL, None)
        st.caption("No stored model yet.")
    shown = st.session_state.get(state.MODEL_NOTICE)
    if shown and shown[0] == st.session_state.get(state.MODEL):
        st.warning(shown[1], icon=":material/info:")
    else:  # the user has moved on to another model
        st.session_state.pop(state.MODEL_NOTICE, None)


def dataset_for(card: ModelCard) -> Dataset | None:
    """The dataset a model was trained on (built-in or uploaded), or None when it is gone."""
    try:
        return get_dataset(card.dataset)
    except DlsecError:
        return None


def pick_image(card: ModelCard, data: Dataset | None) -> tuple[torch.Tensor, int | None] | None:
    """Gallery (test images by class), an uploaded PNG/JPEG, or a digit drawn on a canvas -> ((1,C,H,W), label).

    Gallery images carry their test label; drawn and uploaded ones carry the class the user gave, or None (then
    the attack moves away from the model's own prediction)."""
    names = _class_names(card, data)
    sources = (
        (["Gallery"] if data is not None else [])
        + ["Upload"]
        + (["Draw"] if card.spec.input_shape[0] == 1 else [])
    )
    source = st.radio("Image", sources, horizontal=True, key=state.IMAGE_SOURCE, **IN_URL)
    if source == "Gallery" and data is not None:
        by_class = data.test_indices_by_class()
        c1, c2 = st.columns(2)
        k = c1.selectbox(
            "Class", range(len(names)), format_func=lambda i: names[i], key=state.GALLERY_CLASS, **IN_URL
        )
        j = c2.number_input("Example", 0, len(by_class[k]) - 1, 0, key=state.GALLERY_INDEX, **IN_URL)
        idx = by_class[k][int(j)]
        return data.x_test[idx : idx + 1], int(data.y_test[idx])
    if source == "Upload":
        file = st.file_uploader(
            "A PNG or JPEG (converted to the model's input: gray, resized, a light-on-dark digit)",
            type=["png", "jpg", "jpeg"], key=state.IMAGE_UPLOAD,
        )  # fmt: skip
        if file is None:
            return None
        try:
            x = image_to_input(file.getvalue(), card.spec.input_shape, filename=file.name)
        except DlsecError as err:
            show_error(err)
            return None
        return x, _true_label(names)
    from streamlit_drawable_canvas import st_canvas  # imports only inside a running Streamlit app

    st.caption("Draw a digit with the mouse (white on black, like MNIST).")
    canvas = st_canvas(
        stroke_width=18, stroke_color="#FFFFFF", background_color="#000000", height=196, width=196,
        drawing_mode="freedraw", return_image_data=True, key=state.CANVAS,
    )  # fmt: skip
    if canvas.image_bytes is None:
        st.caption("Draw a digit first.")
        return None
    try:  # the browser sends a PNG: decode it with the same checks as an upload
        rgba = np.asarray(open_image(canvas.image_bytes, filename="drawing.png").convert("RGBA"))
        x = drawing_to_input(rgba, card.spec.input_shape)
    except DlsecError as err:
        show_error(err)
        return None
    return x, _true_label(names)


def _true_label(names: list[str]) -> int | None:
    """The class the user says their image shows, or None (not given: the default)."""
    choice = st.selectbox(
        "True class of your image (optional)", range(len(names)), index=None, format_func=lambda i: names[i],
        placeholder="not given: attack the model's own prediction", key=state.TRUE_LABEL, **IN_URL,
        help="Without it, the attack moves your image away from what the model predicts now, and “fooled” means "
        "that prediction changed. With it, the attack moves away from your class, and you are told if the model "
        "already gets the image wrong.",
    )  # fmt: skip
    return None if choice is None else int(choice)


def _class_names(card: ModelCard, data: Dataset | None) -> list[str]:
    if data is not None and data.num_classes == card.spec.num_classes:
        return list(data.class_names)
    return [str(i) for i in range(card.spec.num_classes)]


def class_names(card: ModelCard) -> list[str]:
    return _class_names(card, dataset_for(card))


#: An integer field whose whole range spans at most this many values gets a slider; a wider one a number box
#: (a slider over 1..10,000 steps is unusable, and capping it below the validator's maximum made the form and
#: the validator disagree).
SLIDER_SPAN = 100

#: The largest integer a browser's number box holds exactly (2^53 - 1): a seed's range (up to 2^63 - 1) is cut to
#: it in a form; every value offered is still one the validator accepts.
JS_MAX_INT = 2**53 - 1


@dataclasses.dataclass(frozen=True)
class FormField:
    """How `config_form` shows one `param` field: the widget and the bounds it offers (the validator's own)."""

    spec: ParamSpec
    widget: str  # "model", "radio", "checkbox", "slider" or "number"
    lo: float | None  # smallest value offered (None: unbounded)
    hi: float | None  # largest value offered
    options: tuple[Any, ...] = ()


def form_fields(cls: type, skip: tuple[str, ...] = ()) -> list[FormField]:
    """The widgets a form of `cls` shows, with bounds taken from the same metadata the validator checks.

    A field may declare `form_options`, a subset of its options that the page offers (CW: L2 only).
    Open ends become the nearest value inside (an exclusive 0 of a float offers the smallest positive float), so
    every value a form can produce is valid and nothing valid is cut off. Optional fields (`X | None`) keep
    their default rule (e.g. PGD's α = 2.5·ε/steps) and are not shown; neither are fields without a widget type.
    """
    out: list[FormField] = []
    for spec in specs(cls):
        if spec.name in skip or (spec.optional and spec.kind != "model"):
            continue
        lo, hi = spec.bounds.extremes() if spec.bounds is not None else (None, None)
        if spec.kind == "model":
            out.append(FormField(spec, "model", None, None))
        elif spec.options is not None:
            offered = spec.metadata.get("form_options", spec.options)  # a declared teaching subset, or all
            out.append(FormField(spec, "radio", None, None, tuple(getattr(o, "value", o) for o in offered)))
        elif spec.type is bool:
            out.append(FormField(spec, "checkbox", None, None))
        elif spec.type is int:
            narrow = lo is not None and hi is not None and hi - lo <= SLIDER_SPAN
            out.append(FormField(spec, "slider" if narrow else "number", lo, hi))
        elif spec.type is float:
            out.append(FormField(spec, "number", lo, hi))
    return out


def config_form(cls: type, *, prefix: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Widgets generated from a config class's `param(...)` metadata (label, help, range, options): the same
    bounds the validator checks (see `form_fields`)."""
    params: dict[str, Any] = {}
    for item in form_fields(cls, skip):
        spec = item.spec
        key, label, help_ = f"{prefix}{cls.__name__}_{spec.name}", spec.label, spec.help or None
        default: Any = getattr(spec.default, "value", spec.default)
        if item.widget == "model":
            params[spec.name] = _surrogate_picker(label, key)
        elif item.widget == "radio":
            options = list(item.options)
            params[spec.name] = st.radio(
                label, options, index=options.index(default) if default in options else 0, horizontal=True,
                key=key, format_func=_norm_label, help=help_, **IN_URL,
            )  # fmt: skip
        elif item.widget == "checkbox":
            params[spec.name] = st.checkbox(label, value=bool(default), key=key, help=help_, **IN_URL)
        elif item.widget == "slider":
            params[spec.name] = int(
                st.slider(label, int(item.lo or 0), int(item.hi or 0), int(default), int(spec.step or 1),
                          key=key, help=help_, **IN_URL)
            )  # fmt: skip
        elif spec.type is int:
            lo = None if item.lo is None else max(int(item.lo), -JS_MAX_INT)
            hi = None if item.hi is None else min(int(item.hi), JS_MAX_INT)
            params[spec.name] = int(
                st.number_input(
                    label, lo, hi,
                    int(default), int(spec.step or 1), key=key, help=help_, **IN_URL,
                )
            )  # fmt: skip
        else:
            params[spec.name] = float(
                st.number_input(
                    label, item.lo, item.hi, float(default), None if spec.step is None else float(spec.step),
                    key=key, help=help_, format="%g", **IN_URL,
                )
            )  # fmt: skip
    return params


def setting_values(cls: type, name: str, values: Sequence[Any]) -> list[Any]:
    """A page's curated teaching values for field `name` of config `cls`, checked against the field's metadata
    (the validator's own range and options): a page cannot offer a value the validator refuses.

    Raises ValueError naming the values outside (a page's bug, caught by tests/pages/test_study_settings.py).
    """
    spec = spec_of(cls, name)
    refused = [v for v in values if spec.problem(v)[0] is not None]
    if refused:
        raise ValueError(f"{cls.__name__}.{name} refuses {refused!r}: {spec.problem(refused[0])[0]}")
    return list(values)


def setting_range(cls: type, name: str, lo: float | None = None, hi: float | None = None) -> tuple[Any, Any]:
    """The range a slider for field `name` of `cls` offers: the metadata's extremes (open ends become the nearest
    value inside), optionally narrowed to [lo, hi] for teaching, which must lie inside (ValueError otherwise)."""
    spec = spec_of(cls, name)
    low, high = spec.bounds.extremes() if spec.bounds is not None else (None, None)
    lo = low if lo is None else lo
    hi = high if hi is None else hi
    if lo is None or hi is None:
        raise ValueError(f"{cls.__name__}.{name} has no upper or lower bound: give one")
    setting_values(cls, name, [lo, hi])
    kind = int if spec.type is int else float
    return kind(lo), kind(hi)


def setting_slider(
    where: Any,
    cls: type,
    name: str,
    *,
    key: str,
    value: Any = None,
    lo: float | None = None,
    hi: float | None = None,
    label: str | None = None,
    step: float | None = None,
    help: str | None = None,
) -> Any:
    """A slider for field `name` of config `cls`: label, help, range and step from its `param` metadata (the range
    optionally narrowed inside it, see `setting_range`); `where` is a column or `st`."""
    spec = spec_of(cls, name)
    low, high = setting_range(cls, name, lo, hi)
    default = spec.default if value is None else value
    kind = int if spec.type is int else float
    step = step if step is not None else spec.step if spec.step is not None else (1 if kind is int else None)
    chosen = where.slider(
        label or spec.label, low, high, kind(min(max(default, low), high)),
        None if step is None else kind(step), key=key, help=help or spec.help or None, **IN_URL,
    )  # fmt: skip
    return kind(chosen)


def setting_select_slider(
    where: Any,
    cls: type,
    name: str,
    values: Sequence[Any],
    *,
    key: str,
    value: Any = None,
    label: str | None = None,
    help: str | None = None,
    format_func: Any = str,
) -> Any:
    """A select slider over curated teaching values of field `name` of `cls`, each checked against its metadata
    (`setting_values`); label and help from the metadata unless given."""
    spec = spec_of(cls, name)
    options = setting_values(cls, name, values)
    default = spec.default if value is None else value
    return where.select_slider(
        label or spec.label, options, value=default if default in options else options[0], key=key,
        help=help or spec.help or None, format_func=format_func, **IN_URL,
    )  # fmt: skip


def _surrogate_picker(label: str, key: str) -> nn.Module | None:
    """Another stored model with the same input shape and classes, as the surrogate of a transfer attack."""
    current = st.session_state.get(state.MODEL)
    cards = get_store().list_models()
    me = next((c for c in cards if c.id == current), None)
    others = [
        c for c in cards
        if c.id != current and (me is None or (c.spec.input_shape, c.spec.num_classes) == (me.spec.input_shape, me.spec.num_classes))
    ]  # fmt: skip
    if not others:
        st.caption("Train or upload a second model for the same data to use it as the surrogate.")
        return None
    chosen = st.selectbox(
        label,
        [c.id for c in others],
        format_func=lambda i: model_label(next(c for c in others if c.id == i)),
        key=key,
    )
    return get_model(chosen)[0]


def surrogate_id(prefix: str = "") -> str | None:
    """The stored model picked as a transfer attack's surrogate in `attack_form(prefix)` (a run stores ids, not
    modules), or None."""
    chosen = st.session_state.get(f"{prefix}{ATTACKS['transfer'].__name__}_surrogate")
    return str(chosen) if chosen else None


def attack_form(prefix: str = "") -> Attack:
    """Attack picker plus a form generated from the chosen attack's hyperparameter fields (labels, ranges)."""
    name = st.selectbox(
        "Attack", list(ATTACKS), format_func=lambda n: ATTACKS[n].title, key=prefix + state.ATTACK, **IN_URL,
        help="; ".join(f"{cls.title}: {cls.paper}" for cls in ATTACKS.values()),
    )  # fmt: skip
    cls = ATTACKS[name]
    atlas_caption(cls.atlas_ids)
    params = config_form(cls, prefix=prefix, skip=("eps",))
    # The pages set ε from their own slider; start from the UI default of the chosen norm, since the class's
    # default ε belongs to its default norm (CW's L2 3.0 is no L∞ budget).
    try:
        return cls(**params, eps=EPS_RANGE[params["norm"]][3])
    except DlsecError as err:
        show_error(err)
        stop()


def defense_form(prefix: str = "") -> InputTransform | None:
    """An optional input-transform defense with its parameters (None = no defense)."""
    names = ["none", *TRANSFORMS]
    name = st.selectbox(
        "Input defense", names, key=prefix + state.DEFENSE, **IN_URL,
        format_func=lambda n: "none" if n == "none" else TRANSFORMS[n].title,
        help="The attack targets the whole defended pipeline. Non-differentiable transforms are attacked through "
        "a straight-through gradient (BPDA), random ones by averaging over draws (EOT): the adaptive attack.",
    )  # fmt: skip
    if name == "none":
        return None
    cls = TRANSFORMS[name]
    st.caption(cls.paper)
    atlas_caption(cls.atlas_ids)
    return cls(**config_form(cls, prefix=prefix))


def budget_form(attack: Attack, key: str) -> Attack:
    """The attack with its budget: the shared ε slider, except for minimal-perturbation attacks (DeepFool, CW),
    which look for the smallest change themselves: no budget unless the user caps it."""
    if attack.minimal:
        field = next(f for f in dataclasses.fields(attack) if f.name == "eps")
        capped = st.toggle(
            "Cap the size of the change (ε)", key=state.EPS_CAP, **IN_URL,
            help=f"{field.metadata.get('help', '')} Off: {attack.title} finds the smallest change that fools the "
            "model, and the sizes below are what it found.",
        )  # fmt: skip
        if not capped:
            st.caption(f"No budget: {attack.title} looks for the smallest change that fools the model.")
            return attack.with_params(eps=math.inf)
    return attack.with_params(eps=eps_slider(attack.norm, key))


@dataclasses.dataclass(frozen=True)
class AttackOutcome:
    """What to say about one attacked image: the headline metric and the sentences under it."""

    label: str  # "Fooled" or "Reached target"
    value: str  # "yes" or "no"
    detail: str  # a few words under the value: "already wrong", "target = true class" ("" for none)
    warning: str  # a sentence that must not be missed ("" for none)
    note: str  # what the reference was, what a minimal attack found ("" for none)


def attack_outcome(
    result: AttackResult, names: Sequence[str], attack: Attack, index: int = 0
) -> AttackOutcome:
    """The honest words for one attacked image: what it was attacked away from (or towards), whether the attack
    (not the model's own mistake) fooled it, and for a minimal-perturbation attack what size of change it found."""
    y, clean, adv = int(result.y[index]), int(result.pred_clean[index]), int(result.pred_adv[index])
    labelled = result.reference is Reference.LABEL
    ref = f"true class {names[y]}" if labelled else f"model's own prediction, {names[y]}"
    warning, note, detail = "", "", ""
    if result.target is not None:
        t = int(result.target[index])
        label, value = "Reached target", "yes" if bool(result.fooled[index]) else "no"
        if bool(result.target_is_reference[index]):
            value, detail = "no", "target = true class" if labelled else "target = its prediction"
            warning = (
                f"The target {names[t]} is the image's {ref}: a targeted attack has nothing to reach there. "
                "Nothing was changed and nothing was fooled; pick another target class."
            )
        elif clean == t:
            value, detail = "no", "already the target"
            warning = (
                f"The model already predicts the target {names[t]} for the clean image: nothing to reach."
            )
    else:
        label = "Fooled"
        value = "yes" if bool(result.fooled[index]) else "no"
        if not labelled:
            note = (
                f"No class was given: the attack moves the image away from the model's own prediction "
                f"({names[y]}), and “fooled” means that prediction changed."
            )
    if labelled and bool(result.already_wrong[index]) and not bool(result.target_is_reference[index]):
        if result.target is None:
            value, detail = "no", "already wrong"
        warning = warning or (
            f"The model already gets this image wrong: it says {names[clean]}, the true class is {names[y]}. "
            "There was nothing to fool."
        )
    if attack.minimal:
        unit = Norm(result.norm).symbol
        size = float((result.linf if result.norm == Norm.LINF else result.l2)[index])
        capped = "" if attack.unbounded else f" (within the cap ε = {result.eps:g})"
        if bool(result.success[index]):
            found = (
                f"{attack.title} found a change of {unit} size {size:.3f}{capped} that fools the model "
                f"({names[clean]} → {names[adv]})."
            )
        elif not attack.unbounded and size >= result.eps - 1e-4:
            found = (
                f"{attack.title} is capped at {unit} ε = {result.eps:g}: its change, cut back to that size, does not "
                "fool the model. Turn the cap off to see the smallest change it finds."
            )
        else:
            found = f"{attack.title} found no change that fools the model within its steps ({unit} {size:.3f} tried)."
        note = f"{note} {found}".strip()
    return AttackOutcome(label, value, detail, warning, note)


def eps_slider(norm: Norm | str, key: str) -> float:
    lo, hi, step, default = EPS_RANGE[Norm(norm)]
    unit = "L∞: largest change of any pixel" if norm == Norm.LINF else "L2: Euclidean length of the change"
    return float(
        st.slider(
            f"ε (perturbation budget, pixel units; {unit})",
            lo,
            hi,
            default,
            step,
            key=f"{key}_{norm}",
            format="%.3f",
            **IN_URL,
        )
    )


def _norm_label(option: Any) -> str:
    return Norm(option).symbol if option in NORMS else str(option)


def render_findings(checks: Sequence[CurveFindings]) -> None:
    """The honesty checks next to the curves: warnings as warning boxes, the rest as notes."""
    for group in checks:
        warnings = [f for f in group.findings if f.severity == "warning"]
        if not group.findings:
            st.success(f"**{group.model_name}**: no sign of gradient masking or of a weak evaluation.")
        for f in warnings:
            st.warning(f"**{group.model_name}: {f.title}.** {f.sentence}")
        for f in group.findings:
            if f.severity != "warning":
                st.caption(f"{group.model_name}: {f.title}. {f.sentence}")


def render_checks(findings: Sequence[Finding], subject: str) -> None:
    """Honesty checks of one result (no heading when there is nothing to say): warnings boxed, notes as captions."""
    render_findings([CurveFindings(model_name=subject, findings=list(findings))] if findings else [])


def show_error(err: DlsecError) -> None:
    """A user-facing error: its sentence, and any indented lines (a code fix) as a code block."""
    text: list[str] = []
    code: list[str] = []
    for line in str(err).splitlines():
        (code if line.startswith("    ") else text).append(
            line.strip() if not line.startswith("    ") else line[4:]
        )
    st.error(" ".join(text) + (("\n\n```python\n" + "\n".join(code) + "\n```") if code else ""))


def privacy_label(card: ModelCard, *, short: bool = False) -> str:
    """'ε = 2.1 (RDP, δ 1e-05)' for a model trained with DP (an imported copy says its file recorded it),
    'no DP' otherwise; `short`: just 'ε = 2.1'."""
    return spend_label(card.privacy, uploaded=card.source == "uploaded", short=short)


def privacy_twins(card: ModelCard, cards: list[ModelCard]) -> list[str]:
    """The model and its twin on the other side of DP, the default side-by-side of the privacy pages.

    The twin of a DP model is the newest *standard*-recipe model of the same architecture on the same data (not an
    adversarially trained one: that would change two things at once); the twin of any other model is the newest
    DP model of the same architecture on the same data.
    """
    private = card.privacy is not None
    twins = [
        c for c in cards
        if c.id != card.id and c.dataset == card.dataset and c.spec.arch == card.spec.arch
        and (c.recipe == "standard" if private else c.privacy is not None)
    ]  # fmt: skip
    twins.sort(key=lambda c: c.created_at, reverse=True)
    return [card.id] + [c.id for c in twins[:1]]


def twin_picker(card: ModelCard, key: str) -> dict[str, ModelCard]:
    """Up to four stored models on the current model's dataset, by default the model and its twin on the other
    side of DP (the privacy pages' side-by-side); returns the chosen ones, by id, in the order picked."""
    cards = get_store().list_models(dataset=card.dataset)
    by_id = {c.id: c for c in cards}
    twins = privacy_twins(card, cards)
    landed = st.session_state.get(state.TWIN_JOB)
    if landed and st.session_state.get(state.TWIN_APPLIED) != landed and len(twins) == 2:
        st.session_state[state.TWIN_APPLIED] = landed  # the twin trained here just landed: select the pair
        st.session_state[key] = twins
    chosen = ids_multiselect(
        "Models (same dataset)", list(by_id), default=twins, key=key, max_selections=4,
        format_func=lambda i: f"{model_label(by_id[i])} · {privacy_label(by_id[i])}",
    )  # fmt: skip
    if len(twins) == 1 and card.source == "trained":
        _offer_twin(card)
    return {i: by_id[i] for i in chosen if i in by_id}


TWIN_TARGET_EPSILON = 4.0


def _offer_twin(card: ModelCard) -> None:
    """No twin on the other side of DP yet: one click trains it with the same architecture, data and settings."""
    private = card.privacy is not None
    what = (
        "its non-private twin (standard recipe)"
        if private
        else f"its DP twin (DP-SGD, ε ≤ {TWIN_TARGET_EPSILON:g})"
    )
    if st.button(f"Train {what}: same architecture, data and settings", key=state.TWIN_BUTTON):
        try:
            recipe = (
                get_recipe("standard")
                if private
                else get_recipe("dp-sgd", target_epsilon=TWIN_TARGET_EPSILON)
            )
            st.session_state[state.TWIN_JOB] = submit_training(
                dataset=card.dataset, arch=card.spec.arch, name=f"{card.name}-{'nodp' if private else 'dp'}-twin",
                config=TrainConfig(**card.train_config), recipe=recipe, link=False,
            )  # fmt: skip
        except (DlsecError, TypeError) as err:
            st.error(f"Could not train the twin: {err}")
    _twin_progress()


@st.fragment(run_every=1.0)
def _twin_progress() -> None:
    job = show_session_run(state.TWIN_JOB, study="train", from_url=False)
    if job is not None and not job.is_active and st.session_state.get(state.TWIN_APPLIED) != job.id:
        st.rerun()  # the twin landed: rerun the page so the picker selects the pair
