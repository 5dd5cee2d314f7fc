"""Model inversion: what a model reveals about a class, reconstructed from its outputs alone (MI-Face)."""

import streamlit as st

from dlsec_core.errors import DlsecError
from dlsec_core.privacy.inversion import InversionConfig, class_means
from dlsec_ui import figures, state
from dlsec_ui.resources import get_dataset, invert_model
from dlsec_ui.widgets import config_form, current_model_card, privacy_label, show_error, twin_picker

st.title("Model inversion")
st.caption(
    "Start from a grey image and let gradient descent change it until the model is sure it shows the chosen class "
    "(Fredrikson, Jha, Ristenpart 2015, MI-Face), with a smoothness prior. What appears is what the model learned "
    "a class looks like: for a face recogniser, a recognisable face of a person in its training set. DP-SGD limits "
    "what any single training image can contribute; compare a DP model with its non-private twin."
)
card = current_model_card()
if card is None:
    st.stop()
data = get_dataset(card.dataset)

c1, c2 = st.columns([2, 1])
with c1:
    chosen = twin_picker(card, state.INV_MODELS)
classes = c1.multiselect(
    "Classes", list(range(data.num_classes)), default=list(range(min(10, data.num_classes))), key=state.INV_CLASSES,
    format_func=lambda k: data.class_names[k],
)  # fmt: skip
with c2.expander("Inversion settings"):
    params = config_form(InversionConfig, prefix="inv_")

if chosen and classes:
    try:
        config = InversionConfig(**params)
        rows = []
        rows.append(("training mean", class_means(data, classes), [data.class_names[k] for k in classes]))
        with st.spinner("Inverting…"):
            for m in chosen.values():
                result = invert_model(m.id, m.created_at, tuple(classes), config)
                titles = [
                    f"{data.class_names[k]}: p={p:.2f}"
                    for k, p in zip(classes, result.target_probability.tolist(), strict=True)
                ]
                rows.append((f"{m.name[:16]}<br>{privacy_label(m, short=True)}", result.images, titles))
        st.plotly_chart(figures.image_rows(rows), key=state.INV_RESULT)
        st.caption(
            f"{result.description}. Top row: the average training image of each class, for reference (not something "
            "an attacker sees). p is the model's probability for the target class on the reconstruction. A linear "
            "model (logreg) gives digit-like reconstructions, as in Fredrikson et al.; a CNN gives the patterns it "
            "relies on, which need not look like any training image."
        )
    except DlsecError as err:
        show_error(err)
