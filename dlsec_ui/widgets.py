"""Shared widgets: model picker, image picker, attack form generated from the attack's dataclass fields."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import streamlit as st
import torch

from dlsec_core.attacks.base import ATTACKS, Attack
from dlsec_core.data.builtin import Dataset
from dlsec_core.data.images import drawing_to_input, image_to_input, open_image
from dlsec_core.errors import DlsecError
from dlsec_core.store import ModelCard
from dlsec_ui import state
from dlsec_ui.resources import get_dataset, get_store

EPS_RANGE = {"linf": (0.0, 0.5, 0.005, 0.1), "l2": (0.0, 5.0, 0.05, 1.0)}  # min, max, step, default


def current_model_card() -> ModelCard | None:
    """The model chosen in the sidebar, or None (with a hint to train one) when the store is empty."""
    model_id = st.session_state.get(state.MODEL)
    if not model_id:
        st.info("No model yet. Train one on the **Models** page (about 15 seconds), then come back.")
        st.page_link("pages/models.py", label="Go to Models", icon=":material/model_training:")
        return None
    try:
        return get_store().get_card(model_id)
    except DlsecError as err:
        st.error(str(err))
        return None


def model_label(card: ModelCard) -> str:
    acc = "" if card.clean_accuracy is None else f", {card.clean_accuracy:.1%}"
    return f"{card.name} ({card.spec.arch}, {card.dataset}{acc})"


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
            st.error(str(err))
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
        st.error(str(err))
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


def attack_form(prefix: str = "") -> Attack:
    """Attack picker plus a form generated from the chosen attack's hyperparameter fields (labels, ranges)."""
    name = st.selectbox(
        "Attack", list(ATTACKS), format_func=lambda n: ATTACKS[n].title, key=prefix + state.ATTACK,
        help="; ".join(f"{cls.title}: {cls.paper}" for cls in ATTACKS.values()),
    )  # fmt: skip
    cls = ATTACKS[name]
    params: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name == "eps":
            continue  # ε has its own slider, tied to the norm
        meta, key = f.metadata, f"{prefix}{name}_{f.name}"
        if "options" in meta:
            params[f.name] = st.radio(
                meta["label"], meta["options"], horizontal=True, key=key, format_func=_norm_label
            )
        elif f.type in (bool, "bool"):
            params[f.name] = st.checkbox(meta["label"], value=bool(f.default), key=key)
        elif f.type in (int, "int"):
            params[f.name] = int(
                st.slider(
                    meta["label"], int(meta["min"]), min(int(meta["max"]), 200), int(f.default), key=key
                )
            )
        # optional floats (PGD's alpha) keep their default rule, written in the attack's description
    return cls(**params)


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
