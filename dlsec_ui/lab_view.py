"""The Attack Lab's picture of one attacked image: original | perturbation | adversarial and the class
probabilities before and after.

Two renderings of the same words and scales (`figures.triptych`): the light one (images and an HTML table; the
default) and the interactive one (Plotly, with pixel values on hover and zoom). Plotly redraws cost the browser
about 0.13 s of CPU per ε step (benchmarks/README.md, bench_load run 5): with a room of 30 on one server every
step of everyone's slider pays it, so it is opt-in.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from dlsec_core.attacks.base import AttackResult
from dlsec_ui import figures

#: Containers (`.st-key-...` in the browser) of the light view; the interactive view's charts have these keys + "_plot".
TRIPTYCH, PROBABILITIES = "triptych", "prob_bars"
#: The light view's images arrive at their own resolution (28x28 for MNIST): the browser scales them up as blocks.
PIXELATED = f"<style>.st-key-{TRIPTYCH} img {{image-rendering: pixelated;}}</style>"


def show_triptych(result: AttackResult, names: Sequence[str], interactive: bool) -> None:
    if interactive:
        st.plotly_chart(figures.attack_triptych(result, names), key=TRIPTYCH + "_plot")
        return
    words = figures.triptych(result, names)
    images = figures.triptych_images(result, words)
    st.html(PIXELATED)  # style only: Streamlit puts it where it takes no space
    with st.container(key=TRIPTYCH):
        # bottom-aligned: the images stay level whatever the titles' lengths and wrapping
        for column, title, image, panel in zip(
            st.columns(3, gap="small", vertical_alignment="bottom"), words.titles, images,
            ("original", "perturbation", "adversarial"), strict=True,
        ):  # fmt: skip
            lines = [f"**{title[0]}**", *title[1:]]
            if panel == "adversarial" and words.fooled:
                lines[-1] = ":red[**FOOLED**]"
            column.markdown("  \n".join(lines))
            column.image(image, width="stretch", output_format="PNG")
    if words.changed:
        st.caption(f"Perturbation: blue = darker, red = brighter, ±{words.bound:.3g} at full colour.")


def show_probabilities(result: AttackResult, names: Sequence[str], interactive: bool) -> None:
    if interactive:
        st.plotly_chart(figures.probability_bars(result, names), key=PROBABILITIES + "_plot")
        return
    with st.container(key=PROBABILITIES):
        st.html(figures.probability_bars_html(result, names))
