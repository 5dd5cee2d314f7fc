"""Shared widgets: model picker, image picker, attack form generated from the attack's dataclass fields."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import streamlit as st
import torch
from torch import nn

from dlsec_core.attacks.base import ATTACKS, Attack
from dlsec_core.data.builtin import Dataset
from dlsec_core.data.images import drawing_to_input, image_to_input, open_image
from dlsec_core.defenses.transforms import TRANSFORMS, InputTransform
from dlsec_core.errors import DlsecError
from dlsec_core.evaluation.checks import Finding
from dlsec_core.store import ModelCard
from dlsec_core.training.loop import TrainConfig
from dlsec_core.training.recipes import get_recipe
from dlsec_core.workflows import CurveFindings
from dlsec_ui import state
from dlsec_ui.jobs import show_session_job, submit_training
from dlsec_ui.resources import get_dataset, get_model, get_store

EPS_RANGE = {"linf": (0.0, 0.5, 0.005, 0.1), "l2": (0.0, 5.0, 0.05, 1.0)}  # min, max, step, default


def current_model_card() -> ModelCard | None:
    """The model chosen in the sidebar, or None (with a hint to train one) when the store is empty."""
    model_id = st.session_state.get(state.MODEL)
    if not model_id:
        st.info("No model yet. Train one on the **Models** page (about 15 seconds), then come back.")
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


def model_picker(cards: dict[str, ModelCard]) -> None:
    """The sidebar's current-model select box, mirrored in the URL as `?model=<id>`: a link opens that model.

    Not `bind="query-params"`: a bound select box writes its label into the URL, not the id.
    """
    if st.session_state.get(state.MODEL) not in cards:
        wanted = st.query_params.get(state.MODEL)
        st.session_state[state.MODEL] = wanted if wanted in cards else next(iter(cards))
    st.selectbox("Current model", list(cards), format_func=lambda i: model_label(cards[i]), key=state.MODEL)
    st.query_params[state.MODEL] = st.session_state[state.MODEL]


def dataset_for(card: ModelCard) -> Dataset | None:
    """The dataset a model was trained on (built-in or uploaded), or None when it is gone."""
    try:
        return get_dataset(card.dataset)
    except DlsecError:
        return None


def pick_image(card: ModelCard, data: Dataset | None) -> tuple[torch.Tensor, int] | None:
    """Gallery (test images by class), an uploaded PNG/JPEG, or a digit drawn on a canvas -> ((1,C,H,W), label)."""
    names = _class_names(card, data)
    sources = (
        (["Gallery"] if data is not None else [])
        + ["Upload"]
        + (["Draw"] if card.spec.input_shape[0] == 1 else [])
    )
    source = st.radio("Image", sources, horizontal=True, key=state.IMAGE_SOURCE)
    if source == "Gallery" and data is not None:
        by_class = data.test_indices_by_class()
        c1, c2 = st.columns(2)
        k = c1.selectbox("Class", range(len(names)), format_func=lambda i: names[i], key=state.GALLERY_CLASS)
        j = c2.number_input("Example", 0, len(by_class[k]) - 1, 0, key=state.GALLERY_INDEX)
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


def _true_label(names: list[str]) -> int:
    return int(
        st.selectbox(
            "True class of your image", range(len(names)), format_func=lambda i: names[i], key="true_label"
        )
    )


def _class_names(card: ModelCard, data: Dataset | None) -> list[str]:
    if data is not None and data.num_classes == card.spec.num_classes:
        return list(data.class_names)
    return [str(i) for i in range(card.spec.num_classes)]


def class_names(card: ModelCard) -> list[str]:
    return _class_names(card, dataset_for(card))


def config_form(cls: type, *, prefix: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Widgets generated from a config dataclass's fields and their `param(...)` metadata (label, range,
    options). Optional floats whose default is None keep their default rule (e.g. PGD's α = 2.5·ε/steps)."""
    params: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if f.name in skip or "label" not in meta or not f.init:
            continue
        key, kind = f"{prefix}{cls.__name__}_{f.name}", str(f.type)
        if meta.get("kind") == "model":
            params[f.name] = _surrogate_picker(meta["label"], key)
        elif "options" in meta:
            options = list(meta["options"])
            params[f.name] = st.radio(
                meta["label"], options, index=options.index(f.default) if f.default in options else 0,
                horizontal=True, key=key, format_func=_norm_label,
            )  # fmt: skip
        elif kind == "bool":
            params[f.name] = st.checkbox(meta["label"], value=bool(f.default), key=key)
        elif (
            kind == "int"
            and "max" in meta
            and ("ui_max" in meta or int(meta["max"]) - int(meta["min"]) <= 1000)
        ):
            hi = min(int(meta["max"]), int(meta.get("ui_max", 200)))
            params[f.name] = int(st.slider(meta["label"], int(meta["min"]), hi, int(f.default), key=key))
        elif kind == "int":  # wide or open ranges (seeds, counts): a number box
            params[f.name] = int(
                st.number_input(
                    meta["label"], int(meta["min"]), int(meta["max"]) if "max" in meta else None, int(f.default),
                    int(meta.get("step", 1)), key=key, help=meta.get("help") or None,
                )
            )  # fmt: skip
        elif kind == "float" and f.default is not None:
            params[f.name] = float(
                st.number_input(
                    meta["label"], float(meta["min"]), float(meta["max"]), float(f.default), float(meta.get("step", 0.01)),
                    key=key, help=meta.get("help") or None, format="%g",
                )
            )  # fmt: skip
    return params


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


def attack_form(prefix: str = "") -> Attack:
    """Attack picker plus a form generated from the chosen attack's hyperparameter fields (labels, ranges)."""
    name = st.selectbox(
        "Attack", list(ATTACKS), format_func=lambda n: ATTACKS[n].title, key=prefix + state.ATTACK,
        help="; ".join(f"{cls.title}: {cls.paper}" for cls in ATTACKS.values()),
    )  # fmt: skip
    cls = ATTACKS[name]
    params = config_form(cls, prefix=prefix, skip=("eps",))
    # The pages set ε from their own slider; start from the UI default of the chosen norm, since the class's
    # default ε belongs to its default norm (CW's L2 3.0 is no L∞ budget).
    try:
        return cls(**params, eps=EPS_RANGE[params["norm"]][3])
    except DlsecError as err:
        show_error(err)
        st.stop()


def defense_form(prefix: str = "") -> InputTransform | None:
    """An optional input-transform defense with its parameters (None = no defense)."""
    names = ["none", *TRANSFORMS]
    name = st.selectbox(
        "Input defense", names, key=prefix + state.DEFENSE,
        format_func=lambda n: "none" if n == "none" else TRANSFORMS[n].title,
        help="The attack targets the whole defended pipeline. Non-differentiable transforms are attacked through "
        "a straight-through gradient (BPDA), random ones by averaging over draws (EOT): the adaptive attack.",
    )  # fmt: skip
    if name == "none":
        return None
    cls = TRANSFORMS[name]
    st.caption(cls.paper)
    return cls(**config_form(cls, prefix=prefix))


def eps_slider(norm: str, key: str) -> float:
    lo, hi, step, default = EPS_RANGE[norm]
    unit = "L∞: largest change of any pixel" if norm == "linf" else "L2: Euclidean length of the change"
    return float(
        st.slider(
            f"ε (perturbation budget, pixel units; {unit})",
            lo,
            hi,
            default,
            step,
            key=f"{key}_{norm}",
            format="%.3f",
        )
    )


def _norm_label(norm: str) -> str:
    return {"linf": "L∞", "l2": "L2"}.get(norm, norm)


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
    text, code = [], []
    for line in str(err).splitlines():
        (code if line.startswith("    ") else text).append(
            line.strip() if not line.startswith("    ") else line[4:]
        )
    st.error(" ".join(text) + (("\n\n```python\n" + "\n".join(code) + "\n```") if code else ""))


def privacy_label(card: ModelCard) -> str:
    """'ε = 2.1 (RDP, δ 1e-05)' for a DP-SGD model (its last epoch's spend), 'no DP' otherwise."""
    last = card.history[-1] if card.history else {}
    if card.recipe == "dp-sgd" and last.get("epsilon") is not None:
        return f"ε = {last['epsilon']:.3g} ({str(last['accountant']).upper()}, δ {last['delta']:g})"
    return "no DP"


def privacy_twins(card: ModelCard, cards: list[ModelCard]) -> list[str]:
    """The model and the newest model of the same architecture on the same data on the other side of DP (a DP run
    for a non-private model and vice versa): the default side-by-side of the privacy pages."""
    private = card.recipe == "dp-sgd"
    twins = [
        c for c in cards
        if c.id != card.id and c.dataset == card.dataset and c.spec.arch == card.spec.arch
        and (c.recipe == "dp-sgd") != private
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
    chosen = st.multiselect(
        "Models (same dataset)", list(by_id), default=None if key in st.session_state else twins, key=key,
        max_selections=4,
        format_func=lambda i: f"{model_label(by_id[i])} · {privacy_label(by_id[i])}",
    )  # fmt: skip
    if len(twins) == 1 and card.source == "trained":
        _offer_twin(card)
    return {i: by_id[i] for i in chosen if i in by_id}


TWIN_TARGET_EPSILON = 4.0


def _offer_twin(card: ModelCard) -> None:
    """No twin on the other side of DP yet: one click trains it with the same architecture, data and settings."""
    private = card.recipe == "dp-sgd"
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
                config=TrainConfig(**card.train_config), recipe=recipe,
            )  # fmt: skip
        except (DlsecError, TypeError) as err:
            st.error(f"Could not train the twin: {err}")
    _twin_progress()


@st.fragment(run_every=1.0)
def _twin_progress() -> None:
    job = show_session_job(state.TWIN_JOB, cancel_key=state.CANCEL_TWIN)
    if job is not None and not job.is_active and st.session_state.get(state.TWIN_APPLIED) != job.id:
        st.rerun()  # the twin landed: rerun the page so the picker selects the pair
