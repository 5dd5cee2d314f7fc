"""Membership inference: can an attacker tell whether an image was in the training set? DP-SGD vs. no DP."""

import streamlit as st

from dlsec_core.errors import DlsecError
from dlsec_core.privacy.membership import MEMBERSHIP_ATTACKS, LiraConfig
from dlsec_ui import figures, state
from dlsec_ui.jobs import show_session_job, submit_membership
from dlsec_ui.resources import get_dataset
from dlsec_ui.widgets import config_form, current_model_card, privacy_label, show_error, twin_picker

st.title("Membership inference")
st.caption(
    "A model answers more confidently on images it was trained on. A membership-inference attack turns that into a "
    "test: member or not? Judge it by the true-positive rate at a low false-positive rate (Carlini et al. 2022): "
    "an attack that confidently identifies even a few members is a privacy failure, whatever its average accuracy. "
    "Members are the model's training images, non-members its held-out test images. DP-SGD bounds what any such "
    "attack can achieve; compare a DP model with its non-private twin."
)
card = current_model_card()
if card is None:
    st.stop()

with st.container(border=True):
    chosen = twin_picker(card, state.MI_MODELS)
    c1, c2 = st.columns(2)
    attack = c1.radio(
        "Attack", list(MEMBERSHIP_ATTACKS), key=state.MI_ATTACK, format_func=lambda a: MEMBERSHIP_ATTACKS[a]
    )
    data = get_dataset(card.dataset)
    most = min(len(data.y_train), len(data.y_test))
    n = int(
        c1.slider(
            "Members and non-members (each)", 10, most, min(500, most), key=f"{state.MI_N}_{card.dataset}",
            help="TPR at 0.1 % FPR needs about 1,000 non-members to mean anything; below that it reads as 0 or 1/n.",
        )
    )  # fmt: skip
    lira = None
    if attack == "lira":
        with c2:
            lira = LiraConfig(**config_form(LiraConfig, prefix="mi_"))
        c2.caption(
            "LiRA trains shadow models the way each target was trained (same architecture, recipe and settings), "
            "each on a random half of the train and test images, and compares the target's confidence on every "
            "candidate with the shadows that did and did not see it: a background job of a few minutes."
        )
    if st.button("Run the attack", type="primary", key=state.MI_BUTTON, disabled=not chosen):
        try:
            st.session_state[state.MI_JOB] = submit_membership(list(chosen), attack=attack, n=n, lira=lira)
        except DlsecError as err:
            show_error(err)


@st.fragment(run_every=1.0)
def membership_results() -> None:
    job = show_session_job(state.MI_JOB, cancel_key=state.CANCEL_MI)
    if job is None or job.result is None:
        return
    results = job.result
    curves, rows = [], []
    for model_card, result in results:
        label = f"{model_card.name} · {privacy_label(model_card)}"
        low = result.roc.tpr_at_low_fpr
        curves.append({"label": label, "fpr": result.roc.fpr, "tpr": result.roc.tpr, "auc": result.auc,
                       "tpr_at_0_1pct": low[0.001]})  # fmt: skip
        rows.append({
            "model": model_card.name, "privacy": privacy_label(model_card), "AUC": round(result.auc, 3),
            "TPR @ 0.1% FPR": low[0.001].describe(".2%"), "TPR @ 1% FPR": low[0.01].describe(".2%"),
            "train accuracy": round(result.member_accuracy, 3), "test accuracy": round(result.nonmember_accuracy, 3),
        })  # fmt: skip
    roc = results[0][1].roc
    st.plotly_chart(figures.membership_roc(curves, roc.n_members, roc.n_nonmembers), key=state.MI_ROC)
    st.dataframe(rows, hide_index=True)
    st.caption(
        "Attack: " + "; ".join(sorted({r.description for _, r in results})) + f". "
        f"{roc.n_members} members and {roc.n_nonmembers} non-members per model: a false-positive rate below "
        f"1/{roc.n_nonmembers} = {roc.min_meaningful_fpr:.2%} cannot be measured, so the axis starts there and "
        'rates read below it say "not measurable". The diagonal is guessing. A gap between train and test '
        "accuracy is what the attack exploits."
    )


membership_results()
