"""Privacy audit: a measured lower bound on ε from one training run with canaries, next to the claimed ε."""

import streamlit as st

from dlsec_core.errors import DlsecError
from dlsec_core.models.architectures import ARCHITECTURES
from dlsec_core.privacy.audit import AuditConfig
from dlsec_core.privacy.dp_sgd import DPSGDRecipe
from dlsec_core.runs import RunRecord
from dlsec_core.studies.audit import AuditedRun, AuditStudyConfig, AuditStudyResult
from dlsec_core.training.loop import TrainConfig
from dlsec_core.workflows import dataset_names
from dlsec_ui import figures, state
from dlsec_ui.model_forms import BATCH_SIZES
from dlsec_ui.resources import get_store
from dlsec_ui.runs import (
    attach,
    event_records,
    get_runs,
    show_run,
    submit_run,
)
from dlsec_ui.widgets import IN_URL, config_form, setting_select_slider, setting_slider, show_error

st.title("Privacy audit")
st.caption(
    "An accountant's ε is a proof about the algorithm; an audit measures what actually leaks (Steinke, Nasr, "
    "Jagielski 2023, one training run). Mislabeled test images, the canaries, each join the training set on a coin "
    "flip; after training, the canaries the model fits best are guessed 'in', the worst 'out'. Many correct guesses "
    "prove a lower bound on ε with 95 % confidence. A correct DP implementation never shows a bound above its "
    "claim; a non-private positive control shows what the audit can detect when nothing protects the data."
)

with st.container(border=True):
    c1, c2, c3 = st.columns(3)
    dataset = c1.selectbox("Dataset", dataset_names(get_store()), key=state.AU_DATASET, **IN_URL)
    archs = [a for a, info in ARCHITECTURES.items() if info.dp_fix is None]
    arch = c1.selectbox("Architecture", archs, index=archs.index("cnn"), key=state.AU_ARCH, **IN_URL)
    epochs = setting_slider(
        c1, TrainConfig, "epochs", hi=30, value=DPSGDRecipe.suggested["epochs"], key=state.AU_EPOCHS
    )
    batch = int(
        setting_select_slider(
            c1, TrainConfig, "batch_size", BATCH_SIZES, value=DPSGDRecipe.suggested["batch_size"],
            key=state.AU_BATCH, label="Expected batch size",
        )
    )  # fmt: skip
    with c2:
        st.markdown("**DP-SGD under audit**")
        dp_params = config_form(DPSGDRecipe, prefix="audit_", skip=("max_epsilon", "adv_eps"))
    with c3:
        st.markdown("**Canaries**")
        audit_params = config_form(AuditConfig, prefix="audit_")
        control = st.checkbox(
            "Also audit the positive control (standard training)", True, key=state.AU_CONTROL, **IN_URL,
            help="Same canaries and coin flips, no clipping and no noise: the leakage DP is there to stop.",
        )  # fmt: skip
    if st.button("Run the audit", type="primary", key=state.AU_BUTTON):
        try:
            config = AuditStudyConfig(
                dataset=dataset, arch=arch, recipe=DPSGDRecipe.name, recipe_params=dp_params, audit=audit_params,
                train={"epochs": epochs, "batch_size": batch, "seed": int(st.session_state.get(state.SEED, 0))},
                control=control,
            )  # fmt: skip
            st.session_state[state.AU_JOB] = submit_run("audit", config).id
        except DlsecError as err:
            show_error(err)

# The run this session follows (or a ?run= link names); else the page opens on the latest audit.
shown = attach(state.AU_JOB, study="audit") or get_runs().latest("audit")


def render_audit(run: RunRecord) -> None:
    audited = (
        AuditStudyResult.from_json(run.result).runs
        if run.result is not None
        else [AuditedRun.from_json(e) for e in event_records(run, "audit")]  # the audits done so far
    )
    if not audited:
        return
    cols = st.columns(len(audited))
    for col, a in zip(cols, audited, strict=True):
        result = a.bound
        with col.container(border=True):
            st.markdown(f"**{a.label}**")
            claim = (
                f"≤ {result.claimed_epsilon:.3g} ({(result.accountant or '').upper()})"
                if result.claimed_epsilon is not None
                else "none (no DP)"
            )
            st.metric("Claimed ε", claim)
            st.metric(f"Measured ε ({result.confidence:.0%} lower bound)", f"≥ {result.eps_lower_bound:.3g}")
            st.caption(result.describe() + f". Test accuracy {result.test_accuracy:.1%}.")
            if result.claim_refuted:
                st.error("The measured bound exceeds the claim: the DP training or its accounting is wrong.")
            testable = result.claim_testable
            if result.claim_refutable is False and testable is not None:
                needs = (
                    f" ε ≤ {result.claimed_epsilon:.3g} still allows a guess error rate of {testable.level:.2g}, "
                    f"below the 1/{result.r} that {result.r} guesses resolve: testing it takes at least "
                    f"{testable.n_needed:,} guesses."
                    if not testable.measurable
                    else ""
                )
                st.info(
                    f"This audit cannot test the claim: even all {result.r} guesses right would prove only "
                    f"ε ≥ {result.max_provable_epsilon:.3g}, below the claimed {result.claimed_epsilon:.3g}. "
                    f"Use more canaries.{needs}"
                )
            elif testable is None:
                st.caption(
                    f"With {result.r} guesses this audit can show at most ε ≥ {result.max_provable_epsilon:.3g}."
                )
    if run.result is None:
        return  # the histograms come with the finished run's arrays
    arrays = AuditStudyResult.arrays(get_runs().artifacts(run.id))
    runs = [(a.label, scores, included) for a, (scores, included) in zip(audited, arrays, strict=True)]
    st.plotly_chart(figures.audit_scores(runs), key=state.AU_CHART)
    st.caption(
        "A lower bound of 0 does not prove privacy: one run with a few hundred canaries can only detect strong "
        "leakage. The gap between claim and measurement is the price of a worst-case guarantee."
    )


show_run(shown, key=state.AU_JOB, draw=render_audit, every=1.0)
