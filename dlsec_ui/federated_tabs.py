"""The Federated learning page's three tabs (Train, Leak, Poison): their forms and the runs they draw.

The page (app_pages/federated.py) only lays out the tabs, calls these and attaches the runs they draw; the
helpers they share (the split preview, which run a tab follows, the poisoning comparison, the inversion drawing)
are in dlsec_ui/federated.py.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from dlsec_core.config import spec_of
from dlsec_core.data.builtin import DATASETS
from dlsec_core.errors import DlsecError
from dlsec_core.federated.inversion import ATTACK_LABELS
from dlsec_core.federated.robust import AGGREGATOR_LABELS, Aggregator
from dlsec_core.models.architectures import ARCHITECTURES
from dlsec_core.runs import RunRecord
from dlsec_core.studies.federated import FederatedStudyConfig as Fed
from dlsec_core.studies.gradleak import GradLeakStudyConfig as Leak
from dlsec_ui import federated as fed
from dlsec_ui import figures, state
from dlsec_ui.federated_figures import client_histogram, poisoning_rounds
from dlsec_ui.runs import event_records, follow, show_run, submit_run
from dlsec_ui.widgets import IN_URL, setting_select_slider, setting_slider, show_error


# -- Train -----------------------------------------------------------------------------------------------------
def _draw_train(run: RunRecord) -> None:
    if rounds_done := event_records(run, "round"):
        st.plotly_chart(figures.federated_rounds(rounds_done), key=state.FED_TRAIN_CHART)
    if run.result is not None:
        st.caption(run.result["description"] + ". The band is the range of the clients' own accuracies.")
        for note in run.result["notes"]:
            st.caption(note)


def train_form() -> dict[str, Any]:
    """The Train tab's form: the federation's settings, the split preview and the button that queues a
    federation. Returns the settings, which the Poison tab's federations share."""
    c1, c2, c3, c4 = st.columns(4)
    dataset = c1.selectbox("Dataset", list(DATASETS), key=state.FED_DATASET, **IN_URL)
    arch = c2.selectbox(
        "Architecture",
        list(ARCHITECTURES),
        index=list(ARCHITECTURES).index("logreg"),
        key=state.FED_ARCH,
        **IN_URL,
    )
    clients = setting_slider(c3, Fed, "clients", key=state.FED_CLIENTS, lo=1, hi=50)
    rounds = setting_slider(c4, Fed, "rounds", key=state.FED_ROUNDS, lo=1, hi=50)
    c1, c2, c3, c4 = st.columns(4)
    split = c1.radio(
        "Client split",
        ["iid", "dirichlet"],
        key=state.FED_SPLIT,
        horizontal=True,
        **IN_URL,
        format_func=str.upper,
    )
    alpha = setting_select_slider(
        c2, Fed, "alpha", [0.05, 0.1, 0.3, 0.5, 1.0, 10.0, 100.0], key=state.FED_ALPHA
    )
    fraction = setting_select_slider(c3, Fed, "fraction", [0.1, 0.2, 0.3, 0.5, 1.0], key=state.FED_FRACTION)
    epochs = setting_slider(c4, Fed, "local_epochs", key=state.FED_EPOCHS, lo=1, hi=5)
    c1, c2, c3, c4 = st.columns(4)
    lr = setting_select_slider(c1, Fed, "lr", [0.01, 0.03, 0.1, 0.3, 1.0], key=state.FED_LR)
    secure = c2.toggle(
        "Secure aggregation", key=state.FED_SECURE, **IN_URL, help=spec_of(Fed, "secure_aggregation").help
    )
    client_dp = c3.toggle("Client-level DP (DP-FedAvg)", key=state.FED_CLIENT_DP, **IN_URL)
    if client_dp:  # clip each update, noise σ·S on the sum; ε of the client sampling (RDP)
        clip = setting_select_slider(c3, Fed, "clip", [0.1, 0.3, 1.0, 3.0], key=state.FED_CLIP, value=1.0)
        sigma = setting_select_slider(
            c3, Fed, "noise_multiplier", [0.0, 0.5, 1.0, 2.0], key=state.FED_SIGMA, value=1.0
        )
    local_dp = c4.toggle(
        "Local DP-SGD (per client)", key=state.FED_LOCAL_DP, **IN_URL, help=spec_of(Fed, "local_dp").help
    )
    local = {"local_dp": local_dp}
    if local_dp:  # the lab's dp-sgd recipe (Opacus) inside each client
        local["local_noise_multiplier"] = setting_select_slider(
            c4, Fed, "local_noise_multiplier", [0.5, 1.0, 1.5, 3.0], key=state.FED_LOCAL_SIGMA
        )
        local["local_clip"] = setting_select_slider(
            c4, Fed, "local_clip", [0.1, 0.5, 1.0, 3.0], key=state.FED_LOCAL_CLIP
        )
    settings = {"dataset": dataset, "arch": arch, "clients": clients, "split": split, "alpha": alpha, "rounds": rounds,
                "fraction": fraction, "local_epochs": epochs, "lr": lr, **local, "seed": int(st.session_state.get(state.SEED, 0))}  # fmt: skip
    try:
        preview = fed.split_preview(dataset, clients, split, alpha, settings["seed"])
        st.plotly_chart(client_histogram(preview.histogram), key=state.FED_HISTOGRAM)
        st.caption(f"What each client holds (the split this seed deals): {preview.describe()}.")
        if st.button("Train the federation", type="primary", key=state.FED_TRAIN_BUTTON):
            dp = {"clip": clip, "noise_multiplier": sigma} if client_dp else {}
            follow(
                state.FED_TRAIN_JOB, submit_run("federated", Fed(**settings, **dp, secure_aggregation=secure))
            )
    except DlsecError as err:
        show_error(err)

    return settings


def show_train(run: RunRecord | None) -> None:
    """The federation the Train tab follows, round by round."""
    show_run(run, key=state.FED_TRAIN_JOB, draw=_draw_train)


# -- Leak ------------------------------------------------------------------------------------------------------
def leak_form() -> None:
    """The Leak tab's form: a gradient inversion's settings and the button that queues it."""
    st.caption(
        "An honest-but-curious server inverts one client's update back into the client's training images (no ATLAS "
        "entry: local tag DLSEC.federated-gradient-leakage). The model is a fresh, seeded network, the setting of the "
        "DLG papers; the sigmoid LeNet leaks the most. The settings here start a new run; the run drawn below names "
        "its own attack and defense."
    )
    c1, c2, c3, c4 = st.columns(4)
    leak_dataset = c1.selectbox("Dataset", list(DATASETS), key=state.FED_LEAK_DATASET, **IN_URL)
    leak_arch = c1.selectbox(
        "Architecture",
        list(ARCHITECTURES),
        index=list(ARCHITECTURES).index("lenet-sigmoid"),
        key=state.FED_LEAK_ARCH,
        **IN_URL,
    )
    leak_attack = c2.radio(
        "Attack", ["dlg", "idlg", "ig"], index=1, key=state.FED_LEAK_ATTACK, **IN_URL,
        format_func=ATTACK_LABELS.get,
        help=spec_of(Leak, "attack").help,
    )  # fmt: skip
    batch = setting_slider(c2, Leak, "batch_size", key=state.FED_LEAK_BATCH)
    local_steps = setting_slider(c3, Leak, "local_steps", key=state.FED_LEAK_STEPS, hi=10)
    leak_defense = c3.radio(
        "Defense", ["none", "dp", "topk", "secure-aggregation"], key=state.FED_LEAK_DEFENSE, **IN_URL,
        format_func={"none": "None", "dp": "Client DP", "topk": "Top-k sparsification",
                     "secure-aggregation": "Secure aggregation"}.get,
        help=spec_of(Leak, "defense").help,
    )  # fmt: skip
    extra: dict[str, object] = {}
    if leak_defense == "dp":
        extra["clip"] = setting_select_slider(c4, Leak, "clip", [0.1, 0.3, 1.0, 3.0], key=state.FED_LEAK_CLIP)
        extra["noise_multiplier"] = setting_select_slider(
            c4, Leak, "noise_multiplier", [0.0, 0.01, 0.1, 0.5, 1.0, 1.5, 3.0], key=state.FED_LEAK_SIGMA
        )
    elif leak_defense == "topk":
        extra["keep"] = setting_select_slider(
            c4, Leak, "keep", [0.01, 0.05, 0.1, 0.3, 1.0], key=state.FED_LEAK_KEEP
        )
    elif leak_defense == "secure-aggregation":
        extra["clients"] = setting_slider(c4, Leak, "clients", key=state.FED_LEAK_CLIENTS)
    if st.button("Invert the client's update", type="primary", key=state.FED_LEAK_BUTTON):
        try:
            leak_config = Leak(dataset=leak_dataset, arch=leak_arch, attack=leak_attack, batch_size=batch,
                               local_steps=local_steps, defense=leak_defense, **extra,  # type: ignore[arg-type]
                               seed=int(st.session_state.get(state.SEED, 0)))  # fmt: skip
            follow(state.FED_LEAK_JOB, submit_run("gradleak", leak_config))
        except DlsecError as err:
            show_error(err)


def show_leak(run: RunRecord | None) -> None:
    """The gradient inversion the Leak tab follows, live as the attack runs."""
    show_run(run, key=state.FED_LEAK_JOB, draw=lambda r: fed.draw_leak(r, state.FED_LEAK_CHART))


# -- Poison ----------------------------------------------------------------------------------------------------
def _draw_poison(runs: list[RunRecord]) -> None:
    st.plotly_chart(poisoning_rounds(fed.comparison_curves(runs)), key=state.FED_POISON_CHART)
    st.dataframe(fed.comparison_table(runs), hide_index=True)
    st.caption(
        f"{runs[0].title}, one run per aggregator. Backdoor success: the share of test images of the other "
        "classes that the global model sends to the target class once the trigger is stamped on them."
    )


def poison_form(settings: dict[str, Any]) -> None:
    """The Poison tab's form: malicious clients and aggregators on the Train tab's federation `settings`; the
    button queues one run per aggregator."""
    st.caption(
        "Malicious clients poison their own training (AML.T0020 Poison Training Data) and send honest-looking "
        "updates. The federation is the Train tab's (data, clients, split, rounds, local training, local DP), without "
        "client-level DP and secure aggregation: a robust rule must see each update."
    )
    c1, c2, c3, c4 = st.columns([1, 1, 1, 2])
    malicious = setting_slider(
        c1, Fed, "malicious", key=state.FED_MALICIOUS, value=2, lo=1, hi=max(2, settings["clients"])
    )
    attack = c2.radio(
        "Attack",
        ["label_flip", "backdoor"],
        key=state.FED_ATTACK,
        **IN_URL,
        format_func={"label_flip": "Label flipping", "backdoor": "Backdoor trigger"}.get,
    )
    backdoor = {}
    if attack == "backdoor":  # a white square in the bottom-right corner, relabelled to the target class
        backdoor["trigger"] = setting_slider(c3, Fed, "trigger", key=state.FED_TRIGGER, lo=1, hi=6)
        backdoor["target"] = setting_slider(c3, Fed, "target", key=state.FED_TARGET, lo=0, hi=9)
    aggregators = c4.multiselect("Aggregators (one run each)", [a.value for a in Aggregator], default=["fedavg", "median"],
                                 key=state.FED_AGGREGATORS, **IN_URL, format_func=lambda a: AGGREGATOR_LABELS[Aggregator(a)])  # fmt: skip
    if st.button(
        "Run the poisoned federations", type="primary", key=state.FED_POISON_BUTTON, disabled=not aggregators
    ):
        try:
            config = Fed(**settings, malicious=malicious, attack=attack, **backdoor)
            follow(state.FED_POISON_JOB, fed.submit_comparison(config, aggregators)[0])
        except DlsecError as err:
            show_error(err)


def show_poison(shown: RunRecord | None) -> None:
    """The poisoned federation the Poison tab follows, beside the newest run of each other aggregator with the same
    settings."""
    if shown is not None:
        fed.show_comparison(fed.comparison(shown), key=state.FED_POISON_JOB, draw=_draw_poison)
