"""The Federated learning page's helpers: the split preview, which federation each tab follows, the poisoning
comparison (one run per aggregator with otherwise equal settings, found again from the stored configs) and the
gradient-inversion drawing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

from dlsec_core.errors import DlsecError
from dlsec_core.federated.inversion import ATTACK_LABELS, DEFENSE_LABELS
from dlsec_core.federated.robust import AGGREGATOR_LABELS, Aggregator
from dlsec_core.federated.splits import ClientSplit, split_clients
from dlsec_core.runs import RunRecord, RunStatus
from dlsec_core.studies.federated import FederatedStudyConfig
from dlsec_core.studies.gradleak import GradLeakStudyConfig
from dlsec_core.text import plural
from dlsec_ui import figures, state
from dlsec_ui.resources import get_dataset
from dlsec_ui.runs import (
    event_records,
    get_runs,
    poll_while_active,
    refresh,
    render_run,
    submit_run,
    torch_images,
)

STUDY = "federated"
LEAK_STUDY = "gradleak"
#: settings that may differ between the runs of one comparison: the aggregator and its own parameters
RULE_FIELDS = ("aggregator", "trim", "krum_f", "store_model", "name")


def split_preview(dataset: str, clients: int, split: str, alpha: float, seed: int) -> ClientSplit:
    """The split a federation with these settings will deal (the same function and seed as the run)."""
    data = get_dataset(dataset)
    return split_clients(
        data.y_train, clients, kind=split, alpha=alpha, num_classes=data.num_classes, seed=seed
    )


def is_poisoned(run: RunRecord) -> bool:
    """A federation with malicious clients (the Poison tab's)."""
    return bool(run.config.get("malicious"))


def followed(key: str, *, study: str, poisoned: bool) -> RunRecord | None:
    """The run of `study` a tab follows: the one the URL's `?run=` names or the session followed under `key`, if
    it is of this tab's kind (with malicious clients or without); else the newest such run. (`runs.attach` with a
    second condition: a link to a poisoned federation must not replace the Train tab's run, nor the reverse.)"""
    for run_id in (st.query_params.get(state.RUN_PARAM), st.session_state.get(key)):
        if not run_id:
            continue
        try:
            run = get_runs().get(run_id)
        except DlsecError:
            continue
        if run.study == study and is_poisoned(run) == poisoned:
            st.session_state[key] = run.id
            return run
    return next((r for r in get_runs().list_runs(study=study) if is_poisoned(r) == poisoned), None)


def url_tab() -> str:
    """The tab the URL's run belongs on: Leak for a gradient inversion, Poison for a federation with malicious
    clients, else Train."""
    run_id = st.query_params.get(state.RUN_PARAM)
    try:
        run = get_runs().get(run_id) if run_id else None
    except DlsecError:
        return "Train"
    if run is not None and run.study == LEAK_STUDY:
        return "Leak"
    return "Poison" if run is not None and run.study == STUDY and is_poisoned(run) else "Train"


#: what the two scores mean, under every inversion drawn
SCORES_MEANING = (
    "PSNR: peak signal-to-noise ratio of each reconstruction against the client's image above it, in dB (higher "
    "is closer; 25 dB and more is a recognisable copy, 15 dB and less is not). SSIM: structural similarity (1 is "
    "the same image, 0 unrelated)."
)
RECOGNISABLE_DB = 25.0


def leak_heading(config: GradLeakStudyConfig) -> str:
    """Which attack against which defense, on what: the line above a drawn inversion (markdown)."""
    experiment = config.experiment()
    return (
        f"**{ATTACK_LABELS[experiment.attack_kind]}** against **{DEFENSE_LABELS[experiment.defense_kind]}**: "
        f"the update of a client holding {plural(experiment.batch_size, f'{config.dataset} image')} after "
        f"{plural(experiment.local_steps, 'local step')}, {config.arch}, seed {config.seed}"
    )


def _recovered(psnr: Sequence[float | str]) -> int:
    return sum(float(p) >= RECOGNISABLE_DB for p in psnr)


def _labels(values: Sequence[int]) -> str:
    return ", ".join(map(str, sorted(values)))


def draw_leak(run: RunRecord, key: str) -> None:
    """A gradient inversion: which attack against which defense, the client's images over the reconstructions
    (PSNR, SSIM), live as the attack runs, and what the scores mean."""
    config = GradLeakStudyConfig.from_json(run.config)
    st.markdown(leak_heading(config))
    if not (originals := event_records(run, "originals")):
        st.caption("The attack is starting.")
        return
    if not (steps := event_records(run, "step")):
        st.caption("The attack has started; the first reconstructions come shortly.")
        return
    last, images = steps[-1], originals[0]
    st.plotly_chart(
        figures.gradient_leakage(
            torch_images(images["images"]), images["labels"], torch_images(last["images"]), last["psnr"], last["ssim"]
        ),
        key=key,
    )  # fmt: skip
    b = len(last["psnr"])
    verdict = (
        f"{_recovered(last['psnr'])} of {b} image{'s' if b != 1 else ''} recovered (PSNR ≥ {RECOGNISABLE_DB:g} dB)"
        + (" after the whole attack." if run.result else f" at step {last['step']} of {last['steps']}.")
    )
    labels = ""
    if run.result:
        same = "the same" if run.result["labels_recovered"] else "not the same"
        labels = (
            f" Labels the attack used: {_labels(run.result['recovered_labels'])}; the client's: "
            f"{_labels(run.result['true_labels'])} ({same}; compared as sets, their order is not recoverable)."
        )
    st.caption(f"{verdict}{labels} {SCORES_MEANING}")
    st.caption(f"Settings: {config.experiment().describe()}.")


def _shared(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in RULE_FIELDS}


def comparison(run: RunRecord) -> list[RunRecord]:
    """The runs compared with `run`: the newest federation of each aggregator whose other settings equal its own
    (`run` itself for its aggregator), in the aggregators' order."""
    shared = _shared(run.config)
    newest: dict[str, RunRecord] = {run.config["aggregator"]: run}
    for other in get_runs().list_runs(study=STUDY):  # newest first
        rule = other.config.get("aggregator", Aggregator.FEDAVG)
        if rule not in newest and _shared(other.config) == shared:
            newest[rule] = other
    return [newest[a.value] for a in Aggregator if a.value in newest]


def submit_comparison(config: FederatedStudyConfig, aggregators: Sequence[str]) -> list[RunRecord]:
    """One run per aggregator, the other settings equal (validated before any is queued)."""
    configs = [FederatedStudyConfig.from_json({**config.to_json(), "aggregator": a}) for a in aggregators]
    return [submit_run(STUDY, c) for c in configs]


def comparison_curves(runs: Sequence[RunRecord]) -> dict[str, list[dict[str, Any]]]:
    """Each run's round records under its aggregator's label."""
    return {AGGREGATOR_LABELS[Aggregator(r.config["aggregator"])]: event_records(r, "round") for r in runs}


def comparison_table(runs: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """One row per run: its aggregator and the last round's clean accuracy and backdoor success."""
    rows = []
    for run in runs:
        last = (event_records(run, "round") or [{}])[-1]
        backdoor = last.get("backdoor_success")
        rows.append({
            "aggregator": AGGREGATOR_LABELS[Aggregator(run.config["aggregator"])], "status": str(run.status),
            "round": last.get("round"), "clean accuracy": f"{last['test_accuracy']:.1%}" if last else None,
            "backdoor success": None if backdoor is None else f"{backdoor:.1%}",
            "malicious clients": ", ".join(map(str, run.result["malicious"])) if run.result else None,
            "run": run.id,
        })  # fmt: skip
    return rows


def show_comparison(
    runs: Sequence[RunRecord], *, key: str, draw: Callable[[list[RunRecord]], None], every: float = 1.0
) -> None:
    """Several runs drawn together: each one's state line, then `draw(runs)`; a fragment polls while any is active
    and the whole page is drawn once more when the last one ends."""
    interval = next((i for r in runs if (i := poll_while_active(r, every)) is not None), None)

    @st.fragment(run_every=interval)
    def progress() -> None:
        current = [r for r in (refresh(run) for run in runs) if r is not None]
        if interval is not None and not any(r.is_active for r in current):
            st.rerun(scope="app")
        for r in current:
            if r.status != RunStatus.DONE:  # a finished run's line is the chart itself
                render_run(r, key=f"{key}_{r.id}")
        draw(current)

    progress()
