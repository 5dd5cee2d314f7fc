"""Model inversion: what a model reveals about a class, reconstructed from its outputs alone (MI-Face)."""

import streamlit as st

from dlsec_core.errors import DlsecError
from dlsec_core.privacy.inversion import InversionConfig
from dlsec_core.runs import RunRecord
from dlsec_core.studies.inversion import InversionStudyConfig, InversionStudyResult
from dlsec_ui import figures, state
from dlsec_ui.resources import get_dataset
from dlsec_ui.runs import (
    attach,
    get_runs,
    show_run,
    submit_run,
)
from dlsec_ui.sharing import stop
from dlsec_ui.widgets import IN_URL, config_form, current_model_card, show_error, twin_picker

st.title("Model inversion")
st.caption(
    "Start from a grey image and let gradient descent change it until the model is sure it shows the chosen class "
    "(Fredrikson, Jha, Ristenpart 2015, MI-Face), with a smoothness prior. What appears is what the model learned "
    "a class looks like: for a face recogniser, a recognisable face of a person in its training set. DP-SGD limits "
    "what any single training image can contribute; compare a DP model with its non-private twin."
)
card = current_model_card()
if card is None:
    stop()
data = get_dataset(card.dataset)

c1, c2 = st.columns([2, 1])
with c1:
    chosen = twin_picker(card, state.INV_MODELS)
classes = c1.multiselect(
    "Classes", list(range(data.num_classes)), default=list(range(min(10, data.num_classes))), key=state.INV_CLASSES, **IN_URL,
    format_func=lambda k: data.class_names[k],
)  # fmt: skip
with c2.expander("Inversion settings"):
    params = config_form(InversionConfig, prefix="inv_")
if c2.button("Invert", type="primary", key=state.INV_BUTTON, disabled=not (chosen and classes)):
    try:
        config = InversionStudyConfig(model_ids=list(chosen), classes=list(classes), inversion=params)
        st.session_state[state.INV_JOB] = submit_run("inversion", config).id
    except DlsecError as err:
        show_error(err)

# The run this session follows (or a ?run= link names); else the page opens on the current model's latest one.
shown = attach(state.INV_JOB, study="inversion") or get_runs().latest("inversion", model_id=card.id)


def render_inversion(run: RunRecord) -> None:
    if run.result is None:
        return
    result = InversionStudyResult.from_json(run.result)
    means, images = InversionStudyResult.images(get_runs().artifacts(run.id))
    rows = [] if means is None else [("training mean", means, result.class_names)]
    for m, imgs in zip(result.models, images, strict=True):
        titles = [
            f"{name}: p={c.p_target:.2f}" for name, c in zip(result.class_names, m.classes, strict=True)
        ]
        rows.append((f"{m.model_name[:16]}<br>{m.privacy_label(short=True)}", imgs, titles))
    st.plotly_chart(figures.image_rows(rows), key=state.INV_RESULT)
    st.caption(
        f"{result.description}. Top row: the average training image of each class, for reference (not something "
        "an attacker sees). p is the model's probability for the target class on the reconstruction. A linear "
        "model (logreg) gives digit-like reconstructions, as in Fredrikson et al.; a CNN gives the patterns it "
        "relies on, which need not look like any training image."
    )


show_run(shown, key=state.INV_JOB, draw=render_inversion, every=0.5)
