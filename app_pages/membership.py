"""Membership inference: can an attacker tell whether an image was in the training set? DP-SGD vs. no DP."""

from typing import Any

import streamlit as st

from dlsec_core.errors import DlsecError
from dlsec_core.privacy.membership import MEMBERSHIP_ATTACKS, LiraConfig
from dlsec_core.runs import RunRecord
from dlsec_core.studies.membership import MembershipModelResult, MembershipStudyConfig, MembershipStudyResult
from dlsec_ui import figures, state
from dlsec_ui.resources import get_dataset
from dlsec_ui.runs import (
    attach,
    event_records,
    get_runs,
    show_run,
    submit_run,
)
from dlsec_ui.sharing import stop
from dlsec_ui.widgets import IN_URL, config_form, current_model_card, setting_slider, show_error, twin_picker

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
    stop()

with st.container(border=True):
    chosen = twin_picker(card, state.MI_MODELS)
    c1, c2 = st.columns(2)
    attack = c1.radio(
        "Attack",
        list(MEMBERSHIP_ATTACKS),
        key=state.MI_ATTACK,
        **IN_URL,
        format_func=lambda a: MEMBERSHIP_ATTACKS[a],
    )
    data = get_dataset(card.dataset)
    most = min(len(data.y_train), len(data.y_test))
    n = setting_slider(
        c1, MembershipStudyConfig, "n", hi=most, value=min(500, most), key=f"{state.MI_N}_{card.dataset}",
        label="Members and non-members (each)", step=1,
        help="TPR at 0.1 % FPR needs about 1,000 non-members to mean anything; below that it reads as 0 or 1/n.",
    )  # fmt: skip
    lira: dict[str, Any] = {}
    if attack == "lira":
        with c2:
            lira = config_form(LiraConfig, prefix="mi_")
        c2.caption(
            "LiRA trains shadow models the way each target was trained (same architecture, recipe and settings), "
            "each on a random half of the train and test images, and compares the target's confidence on every "
            "candidate with the shadows that did and did not see it: a run of a few minutes."
        )
    if st.button("Run the attack", type="primary", key=state.MI_BUTTON, disabled=not chosen):
        try:
            config = MembershipStudyConfig(model_ids=list(chosen), attack=attack, n=n, lira=lira)
            st.session_state[state.MI_JOB] = submit_run("membership", config).id
        except DlsecError as err:
            show_error(err)

# The run this session follows (or a ?run= link names); else the page opens on the current model's latest attack.
shown = attach(state.MI_JOB, study="membership") or get_runs().latest("membership", model_id=card.id)


def render_membership(run: RunRecord) -> None:
    models = (
        MembershipStudyResult.from_json(run.result).models
        if run.result is not None
        else [
            MembershipModelResult.from_json(e) for e in event_records(run, "model")
        ]  # the models done so far
    )
    if not models:
        return
    curves, rows = [], []
    for m in models:
        label = f"{m.model_name} · {m.privacy_label()}"
        low = m.roc.tpr_at_low_fpr
        curves.append(
            {"label": label, "fpr": m.roc.fpr, "tpr": m.roc.tpr, "auc": m.auc, "tpr_at_0_1pct": low[0.001]}
        )
        rows.append({
            "model": m.model_name, "privacy": m.privacy_label(), "AUC": round(m.auc, 3),
            "TPR @ 0.1% FPR": low[0.001].describe(".2%"), "TPR @ 1% FPR": low[0.01].describe(".2%"),
            "train accuracy": round(m.member_accuracy, 3), "test accuracy": round(m.nonmember_accuracy, 3),
        })  # fmt: skip
    roc = models[0].roc
    st.plotly_chart(figures.membership_roc(curves, roc.n_members, roc.n_nonmembers), key=state.MI_ROC)
    st.dataframe(rows, hide_index=True)
    st.caption(
        "Attack: " + "; ".join(sorted({m.description for m in models})) + f". "
        f"{roc.n_members} members and {roc.n_nonmembers} non-members per model: a false-positive rate below "
        f"1/{roc.n_nonmembers} = {roc.min_meaningful_fpr:.2%} cannot be measured, so the axis starts there and "
        'rates read below it say "not measurable". The diagonal is guessing. A gap between train and test '
        "accuracy is what the attack exploits."
    )


show_run(shown, key=state.MI_JOB, draw=render_membership, every=1.0)
