"""Attack Lab: one image, one attack, an ε slider; original | perturbation | adversarial, instantly."""

import streamlit as st

from dlsec_core.defenses.transforms import Mode
from dlsec_core.errors import DlsecError
from dlsec_core.store import ModelCard
from dlsec_ui import figures, lab_view, state
from dlsec_ui.resources import attack_batch, attack_one, get_detector, model_of
from dlsec_ui.sharing import page_fragment, stop
from dlsec_ui.widgets import (
    IN_URL,
    attack_form,
    attack_outcome,
    budget_form,
    class_names,
    current_model_card,
    dataset_for,
    defense_form,
    pick_image,
    show_error,
)

LAB_DEFENSE = "lab_" + state.DEFENSE  # defense_form(prefix="lab_")

st.title("Attack Lab")
card = current_model_card()
if card is None:
    stop()
names = class_names(card)
st.caption(f"Model: **{card.name}** ({card.spec.arch} on {card.dataset}). Change it in the sidebar.")


def lab(card: ModelCard, names: list[str]) -> None:
    """Everything below the model: a step of ε (or any control here) reruns only this, not the app's frame."""
    left, right = st.columns([1, 2], gap="large")
    with left:
        view = st.segmented_control(
            "View", ["Single image", "Batch"], default="Single image", key=state.LAB_VIEW, **IN_URL
        )
        attack = budget_form(attack_form(), key=state.EPS)
        targeted = st.toggle("Targeted (aim at a chosen class)", key=state.TARGETED, **IN_URL)
        target = (
            int(
                st.selectbox(
                    "Target class",
                    range(len(names)),
                    format_func=lambda i: names[i],
                    key=state.TARGET_CLASS,
                    **IN_URL,
                )
            )
            if targeted
            else None
        )
        # Open when a defense is chosen, here or by a link (a bound widget's value is in the URL before it is drawn).
        chosen = st.session_state.get(LAB_DEFENSE) or st.query_params.get(LAB_DEFENSE) or "none"
        with st.expander("Defense", expanded=chosen != "none"):
            defense = defense_form(prefix="lab_")
            mode = Mode.ADAPTIVE
            if defense is not None:
                mode = st.radio(
                    "How the attack treats the defense", list(Mode), horizontal=True, key=state.ATTACK_MODE, **IN_URL,
                    help="Adaptive: straight-through gradients (BPDA) and averages over random draws (EOT), the honest "
                    "evaluation. Naive: the transform's own gradient, which is zero for rounding: robustness that is "
                    "only hidden.",
                ) or Mode.ADAPTIVE  # fmt: skip
        picked = pick_image(card, dataset_for(card)) if view != "Batch" else None
        interactive = view != "Batch" and st.toggle(
            "Interactive charts", key=state.LAB_INTERACTIVE, **IN_URL,
            help="Plotly charts: pixel values on hover, zoom. They take the browser longer to redraw at every ε step "
            "(in a room of 30 on one server, everyone's step waits for it), so the lab shows plain images by default.",
        )  # fmt: skip

    seed = int(st.session_state.get(state.SEED, 0))
    with right:
        try:
            if view == "Batch":
                if dataset_for(card) is None:
                    st.info("The batch view needs the model's built-in test set.")
                    stop()
                n = st.select_slider("Test images", [8, 16, 32, 64], value=16, key=state.BATCH_N, **IN_URL)
                if targeted:
                    st.caption("The batch view runs the untargeted attack.")
                result = attack_batch(card, attack, n, seed, defense, mode)
                n_right = int((~result.already_wrong).sum())
                st.metric(
                    "Fooled", f"{int(result.fooled.sum()) / max(n_right, 1):.0%}",
                    help=f"Of the {n_right} images the model classified correctly; "
                    f"{n - n_right} were already wrong before the attack. {attack.describe()}.",
                )  # fmt: skip
                st.plotly_chart(figures.batch_grid(result, names), key="batch_grid")
                st.caption(
                    "Red frame = fooled by the attack, green = held, grey = the model already got it wrong. Under each "
                    f"image: true class → prediction after the attack. {attack.describe()}"
                    + (f", against {defense.describe()} ({mode} attack)." if defense is not None else ".")
                )
            elif picked is not None:
                x, y = picked
                result = attack_one(card, attack, x, y, target, seed, defense, mode)
                lab_view.show_triptych(result, names, interactive)
                said = attack_outcome(result, names, attack)
                m1, m2, m3, m4 = st.columns(4)
                m1.metric(said.label, said.value, said.detail or None, delta_color="off", delta_arrow="off")
                m2.metric("L∞ size", f"{float(result.linf[0]):.3f}")
                m3.metric("L2 size", f"{float(result.l2[0]):.3f}")
                m4.metric("L0 (pixels changed)", int(result.l0[0]))
                if said.warning:
                    st.warning(said.warning)
                if said.note:
                    st.caption(said.note)
                if st.toggle(
                    "Feature-squeezing detector",
                    key=state.LAB_DETECTOR,
                    **IN_URL,
                    help="Xu et al. 2018; see the Detection page.",
                ):
                    detector = get_detector(card)
                    score = float(detector.scores(model_of(card), result.x_adv)[0])
                    flagged = score > detector.threshold
                    st.markdown(
                        f"Detector: **{'flagged' if flagged else 'not flagged'}** (score {score:.3f}, threshold "
                        f"{detector.threshold:.3f}, set for a {detector.fpr_target:.0%} false-positive rate on clean images)."
                    )
                lab_view.show_probabilities(result, names, interactive)
                st.caption(attack.describe() + ". " + type(attack).paper + ".")
                if defense is not None:
                    other = Mode.NAIVE if mode == Mode.ADAPTIVE else Mode.ADAPTIVE
                    twin = attack_one(card, attack, x, y, target, seed, defense, other)
                    st.info(
                        f"Defense: {defense.describe()}. With the {other} attack instead, the image is "
                        f"{'fooled' if bool(twin.fooled[0]) else 'not fooled'} at this budget. A defense is only as strong as "
                        "its adaptive number: the naive attack follows the transform's own gradients, which a "
                        "non-differentiable transform zeroes out."
                    )
        except DlsecError as err:
            show_error(err)


page_fragment(lab, card, names)
