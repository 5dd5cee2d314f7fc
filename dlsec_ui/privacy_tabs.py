"""The Privacy budget page's two tabs: the calculator (the ε a DP-SGD run will spend, per accountant, and the noise
a target ε needs) and the privacy-utility frontier (stored DP-SGD models, and the sweep that trains more as a run).

The page (app_pages/privacy_budget.py) only lays out the tabs, calls these and attaches the sweep drawn; the
accountants' curves come from the cached `privacy_curve` and `noise_needed` (dlsec_ui/resources.py), the
frontier's points from the store.
"""

from __future__ import annotations

import math

import streamlit as st

from dlsec_core.config import spec_of
from dlsec_core.errors import DlsecError
from dlsec_core.models.architectures import ARCHITECTURES
from dlsec_core.privacy.accounting import ACCOUNTANTS, AccountingFailure
from dlsec_core.privacy.dp_sgd import DPSGDRecipe, check_sampling
from dlsec_core.runs import RunRecord
from dlsec_core.studies.frontier import FrontierPoint, FrontierStudyConfig, frontier_points
from dlsec_core.training.loop import TrainConfig
from dlsec_core.workflows import dataset_names
from dlsec_ui import figures, state
from dlsec_ui.model_forms import BATCH_SIZES
from dlsec_ui.resources import get_dataset, get_store, noise_needed, privacy_curve
from dlsec_ui.runs import (
    event_records,
    poll_while_active,
    redraw_if_ended,
    refresh,
    render_run,
    submit_run,
)
from dlsec_ui.widgets import IN_URL, setting_slider, show_error

MAX_SIGMA = 10_000.0  # PRV needs σ = 240 for ε 0.05 over 100 epochs of the default run: let people check it
VACUOUS_EPSILON = 10.0


def calculator_tab() -> None:
    """The Calculator tab: ε over the epochs of a DP-SGD run (N, batch, epochs, σ, δ) for each chosen accountant,
    and the σ each needs for a target ε."""
    c1, c2, c3 = st.columns(3)
    names = dataset_names(get_store())
    dataset = c1.selectbox("Dataset (sets N)", names, key=state.PB_DATASET, **IN_URL)
    n = int(
        c1.number_input(
            "Training set size N",
            10,
            10_000_000,
            len(get_dataset(dataset).y_train),
            key=f"{state.PB_N}_{dataset}",
            **IN_URL,
        )
    )
    batch = int(
        c2.select_slider(
            "Expected batch size",
            BATCH_SIZES,
            value=DPSGDRecipe.suggested["batch_size"],
            key=state.PB_BATCH,
            **IN_URL,
        )
    )
    epochs = int(c2.slider("Epochs", 1, 100, DPSGDRecipe.suggested["epochs"], key=state.PB_EPOCHS, **IN_URL))
    sigma = float(
        c3.number_input(
            "Noise multiplier σ", 0.1, MAX_SIGMA, 1.5, 0.1, key=state.PB_SIGMA, format="%g", **IN_URL
        )
    )
    delta = float(
        c3.number_input(
            "δ", 1e-10, 1e-2, 1e-5, 1e-6, key=state.PB_DELTA, format="%g", **IN_URL,
            help="Keep δ well below 1/N: a mechanism that publishes one random record in full is (0, 1/N)-DP.",
        )
    )  # fmt: skip
    accountants = st.multiselect(
        "Accountants", list(ACCOUNTANTS), default=["rdp", "prv"], key=state.PB_ACCOUNTANTS, **IN_URL,
        format_func=lambda a: ACCOUNTANTS[a][1],
        help="GDP is a central-limit approximation and can underestimate ε: shown for comparison only.",
    )  # fmt: skip
    try:
        per_epoch = check_sampling(n, batch, delta)
    except DlsecError as err:
        show_error(err)
        per_epoch = 0
    if per_epoch and accountants:
        q = batch / n
        steps = per_epoch * epochs
        chart = st.empty()
        curves: dict = {}
        failures: list[AccountingFailure] = []
        for acc in sorted(accountants, key=lambda a: a == "prv"):  # the fast ones draw first
            if acc == "prv":
                chart.plotly_chart(figures.epsilon_curves(curves, per_epoch), key=f"{state.PB_CHART}_fast")
                with st.spinner("PRV: composing privacy loss distributions…"):
                    outcome = privacy_curve(acc, sigma, q, steps, delta)
            else:
                outcome = privacy_curve(acc, sigma, q, steps, delta)
            if isinstance(outcome, AccountingFailure):
                failures.append(outcome)
            else:
                curves[acc] = outcome
        chart.plotly_chart(figures.epsilon_curves(curves, per_epoch), key=state.PB_CHART)
        rows = [
            {"accountant": ACCOUNTANTS[a][1], "ε after all epochs": round(c[-1]["epsilon"], 3), "δ": delta,
             "steps": steps, "q": round(q, 5)}
            for a, c in curves.items()
        ]  # fmt: skip
        st.dataframe(rows, hide_index=True)
        for failure in failures:
            st.warning(f"**No ε from {failure.describe()}**")
        if any(c[-1]["epsilon"] > VACUOUS_EPSILON for c in curves.values()):
            st.info(
                f"An ε above {VACUOUS_EPSILON:g} promises next to nothing: the guarantee lets one training example "
                f"change what the model reveals by a factor e^ε > {math.exp(VACUOUS_EPSILON):,.0f}. Raise σ."
            )
        st.markdown("**Inverse: how much noise for a target ε?**")
        t1, t2 = st.columns([1, 2])
        target = float(
            t1.number_input("Target ε", 0.01, 100.0, 2.0, 0.5, key=state.PB_TARGET, format="%g", **IN_URL)
        )
        try:
            needed = noise_needed(tuple(a for a in accountants if a != "gdp"), target, q, steps, delta)
        except DlsecError as err:
            show_error(err)
            needed = {}
        t2.markdown(
            "\n".join(
                f"- **{ACCOUNTANTS[a][1]}**: {o.reason}"
                if isinstance(o, AccountingFailure)
                else f"- **{ACCOUNTANTS[a][1]}**: σ ≥ {o.noise_multiplier:.3g} keeps ε ≤ {target:g} after {epochs} "
                f"epochs (reaches ε = {o.epsilon:.3g})"
                for a, o in needed.items()
            )
        )


def frontier_form() -> tuple[str, str]:
    """The Privacy-utility frontier tab's form: dataset, architecture, accountant, target ε values and epochs; the
    button queues the sweep. Returns the dataset and architecture the frontier is drawn for."""
    st.caption(
        "Test accuracy against the ε each stored DP-SGD model spent, beside the same architecture trained without "
        "DP. The sweep trains one DP model per target ε (σ calibrated for it) as a run (it keeps going if you close the tab)."
    )
    f1, f2, f3 = st.columns(3)
    fr_dataset = f1.selectbox("Dataset", dataset_names(get_store()), key=state.FR_DATASET, **IN_URL)
    dp_archs = [a for a, info in ARCHITECTURES.items() if info.dp_fix is None]
    fr_arch = f2.selectbox("Architecture", dp_archs, index=dp_archs.index("cnn"), key=state.FR_ARCH, **IN_URL)
    fr_accountant = f3.radio(
        "Accountant",
        list(spec_of(FrontierStudyConfig, "accountant").options or ()),
        horizontal=True,
        key=state.FR_ACCOUNTANT,
        **IN_URL,
    )
    targets_text = f1.text_input(
        "Target ε values (comma-separated)", "0.5, 1, 2, 4, 8", key=state.FR_TARGETS, **IN_URL
    )
    fr_epochs = setting_slider(
        f2,
        TrainConfig,
        "epochs",
        hi=30,
        value=DPSGDRecipe.suggested["epochs"],
        key=state.FR_EPOCHS,
        label="Epochs per run",
    )
    if f3.button("Run the sweep", type="primary", key=state.FR_BUTTON):
        try:
            targets = [float(t) for t in targets_text.replace(";", ",").split(",") if t.strip()]
        except ValueError:
            st.error(
                f"Could not read the target ε values {targets_text!r}: give numbers separated by commas."
            )
        else:
            try:
                config = FrontierStudyConfig(
                    dataset=fr_dataset, arch=fr_arch, targets=targets, accountant=fr_accountant,
                    train={"epochs": fr_epochs, "seed": int(st.session_state.get(state.SEED, 0))},
                )  # fmt: skip
                st.session_state[state.FR_JOB] = submit_run("frontier", config).id
            except DlsecError as err:
                show_error(err)
    return fr_dataset, fr_arch


def show_frontier(fr_shown: RunRecord | None, fr_dataset: str, fr_arch: str) -> None:
    """The sweep `fr_shown` (its status line, polled while it runs) and test accuracy against ε for the stored
    models of `fr_dataset` and `fr_arch`, with the points the sweep has landed so far."""
    poll = poll_while_active(fr_shown, 1.0)

    @st.fragment(run_every=poll)
    def frontier_view() -> None:
        run = refresh(fr_shown)
        if run is not None:
            redraw_if_ended(run, poll)
            render_run(run, key=state.FR_JOB)
        points = frontier_points(get_store(), fr_dataset, fr_arch)
        if run is not None and run.is_active:  # points that landed during this run (the store has them too)
            known = {p.model_id for p in points}
            landed = [FrontierPoint.from_record(e) for e in event_records(run, "point")]
            points += [p for p in landed if p.model_id not in known]
        if not points:
            st.info(
                f"No DP-SGD or standard {fr_arch} model on {fr_dataset} yet: run the sweep, or train one on Models."
            )
            return
        records = [p.to_record() for p in points]
        st.plotly_chart(figures.privacy_frontier(records), key=state.FR_CHART)
        st.dataframe(records, hide_index=True)

    frontier_view()
