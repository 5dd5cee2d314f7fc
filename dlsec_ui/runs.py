"""Stored runs seen from the UI: submit a study as a run, follow it, render its state.

The web server only submits and polls: the study executes in a worker process (`dlsec_core.execution`), so a
run survives reruns, closed tabs and server restarts, and any tab re-attaches to it from `?run=<id>`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st
import torch

from dlsec_core.attacks.base import Attack
from dlsec_core.defenses.transforms import InputTransform
from dlsec_core.errors import DlsecError
from dlsec_core.evaluation.checks import Finding
from dlsec_core.execution.local import default_worker_count, ensure_workers, live_workers
from dlsec_core.runs import RunRecord, RunStatus, RunStore
from dlsec_core.studies.base import StudyConfig
from dlsec_core.studies.catalog import submit
from dlsec_core.studies.sweep import SweepStudyConfig, attack_params
from dlsec_core.studies.train import TrainStudyConfig
from dlsec_core.text import duration, plural, timestamp
from dlsec_core.training.loop import TrainConfig
from dlsec_core.training.recipes import Recipe, StandardRecipe
from dlsec_core.workflows import CurveFindings
from dlsec_ui import room, state
from dlsec_ui.resources import get_store


def get_runs() -> RunStore:
    return RunStore(get_store())


def submit_run(study_name: str, config: StudyConfig, *, link: bool = True) -> RunRecord:
    """Queue a run of a study for this session's participant and make sure workers are serving the store.

    Raises:
        NotAllowedError: in a workshop room, the participant already has the room's most unfinished runs.
    """
    run = submit(get_runs(), study_name, config, owner=state.owner_id(), max_active=room.run_limit())
    ensure_workers(get_store())
    if link:
        st.query_params[state.RUN_PARAM] = run.id  # a link to this view re-attaches to the run
    return run


def submit_training(
    *,
    dataset: str,
    arch: str,
    name: str | None,
    config: TrainConfig,
    recipe: Recipe | None = None,
    link: bool = True,
) -> str:
    """Queue a training run (executed by a worker process, see `dlsec_ui.runs`); returns the run id."""
    recipe = recipe or StandardRecipe()
    study = TrainStudyConfig(
        dataset=dataset, arch=arch, name=name, recipe=recipe.name, recipe_params=recipe.params(),
        train=config.to_dict(),
    )  # fmt: skip
    return submit_run("train", study, link=link).id


def submit_sweep(
    model_ids: Sequence[str],
    attack: Attack,
    eps_values: Sequence[float],
    n_images: int,
    *,
    defense: InputTransform | None = None,
    seed: int = 0,
    surrogate_id: str | None = None,
) -> str:
    """Queue a sweep run (executed by a worker process, see `dlsec_ui.runs`); returns the run id."""
    study = SweepStudyConfig(
        model_ids=list(model_ids), attack=attack.name, attack_params=attack_params(attack), eps=list(eps_values),
        n_images=n_images, seed=seed, defense=None if defense is None else defense.name,
        defense_params={} if defense is None else defense.to_dict()["params"],
        surrogate_id=surrogate_id if getattr(attack, "surrogate", None) is not None else None,
    )  # fmt: skip
    return submit_run("sweep", study).id


def attach(key: str, *, study: str | None = None, from_url: bool = True) -> RunRecord | None:
    """The run this session follows under `key`: the one the URL's `?run=<id>` names (`from_url`), so a run's
    link opens that run, in a new tab or from a link inside the app; else the one in session state. Only a run of
    `study` when given. None when there is none (or it was deleted)."""
    url = st.query_params.get(state.RUN_PARAM) if from_url else None
    for run_id in (url, st.session_state.get(key)):
        if not run_id:
            continue
        try:
            run = get_runs().get(run_id)
        except DlsecError:
            continue
        if study is None or run.study == study:
            st.session_state[key] = run.id
            return run
    return None


def follow(key: str, run: RunRecord) -> None:
    """Make `run` the one this session follows under `key`, and put it in the URL (a link re-attaches)."""
    st.session_state[key] = run.id
    st.query_params[state.RUN_PARAM] = run.id


def queue_position(run: RunRecord) -> int:
    queued = get_runs().list_runs(status=RunStatus.QUEUED)
    older = [r for r in queued if (r.created_at, r.id) <= (run.created_at, run.id)]
    return max(1, len(older))


def render_run(run: RunRecord, *, key: str) -> None:
    """Status line (queue place, progress, failure sentence) and the buttons that fit: cancel, retry."""
    runs = get_runs()
    if run.status == RunStatus.QUEUED:
        st.info(
            f"{run.title}: waiting in the queue (position {queue_position(run)}); "
            f"{default_worker_count()} worker(s) execute runs one at a time each."
        )
    elif run.status == RunStatus.RUNNING:
        label = "stopping…" if run.cancel_requested else (run.message or "running")
        st.progress(min(1.0, run.progress), text=f"{run.title}: {label} ({duration(run.seconds or 0)})")
    elif run.status == RunStatus.FAILED:
        st.error(f"{run.title} failed: {run.error}")
    elif run.status == RunStatus.CANCELLED:
        st.warning(f"{run.title} was cancelled; nothing was saved.")
    elif run.status == RunStatus.INTERRUPTED:
        st.warning(f"{run.title} was interrupted: {run.error}")
    elif run.status == RunStatus.DONE:
        st.success(
            f"{run.title}: done in {duration(run.seconds or 0)} ([run {run.id[:6]}](/runs?run={run.id}))."
        )
    mine = room.may_change(run.owner)
    if run.is_active and st.button(
        "Cancel", key=f"{key}_cancel", disabled=run.cancel_requested or not mine,
        help=None if mine else f"{room.not_yours(run.owner)} Only its owner or the instructor can cancel it.",
    ):  # fmt: skip
        try:  # the store checks the owner itself: a disabled button is only a hint in the browser
            runs.cancel(run.id, actor=room.actor())
        except DlsecError as err:
            st.error(str(err))
            return
        st.rerun()
    if run.status.can_retry and st.button("Retry", key=f"{key}_retry"):
        try:
            retry = runs.retry(run.id, owner=state.owner_id(), max_active=room.run_limit())
        except DlsecError as err:
            st.error(str(err))
            return
        ensure_workers(get_store())
        follow(key, retry)
        st.rerun()


#: The page that draws a study's runs: a run's link opens it there (`?run=<id>`); other studies open on the Runs page.
STUDY_PAGES: dict[str, str] = {
    "train": "app_pages/models.py",
    "sweep": "app_pages/robustness.py",
    "detection": "app_pages/detection.py",
    "certification": "app_pages/certification.py",
    "membership": "app_pages/membership.py",
    "inversion": "app_pages/inversion.py",
    "audit": "app_pages/audit.py",
    "frontier": "app_pages/privacy_budget.py",
    "extraction": "app_pages/theft.py",
    "ownership": "app_pages/theft.py",
    "federated": "app_pages/federated.py",
    "gradleak": "app_pages/federated.py",
    "scan": "app_pages/scorecard.py",
}
"""The page that opens a run of each study (re-attaching from `?run=`); a test checks every study has one."""
RUNS_PAGE = "app_pages/runs.py"
STATUS_ICONS: dict[RunStatus, str] = {
    RunStatus.QUEUED: ":material/hourglass_top:",
    RunStatus.RUNNING: ":material/pending:",
    RunStatus.DONE: ":material/check_circle:",
    RunStatus.FAILED: ":material/error:",
    RunStatus.CANCELLED: ":material/cancel:",
    RunStatus.INTERRUPTED: ":material/warning:",
}
MODEL_RUNS_SHOWN = 5  # a model card lists its newest few runs and links to the rest


def run_link(run: RunRecord) -> None:
    """A link that opens the run on its study's page (a training on Models, a sweep on Robustness)."""
    st.page_link(
        STUDY_PAGES.get(run.study, RUNS_PAGE), label=run.title, icon=STATUS_ICONS[run.status],
        query_params={state.RUN_PARAM: run.id},
    )  # fmt: skip


def model_runs(model_id: str, *, shown: int = MODEL_RUNS_SHOWN) -> None:
    """The runs that read or made a model, newest first (a few, each a link to its study's page), and a link to
    the Runs page filtered on the model."""
    runs = get_runs()
    total = runs.count_runs(model_id=model_id)
    st.markdown("**Runs** (newest first)")
    if not total:
        st.caption(
            "No run has read or made this model yet; its sweeps on the Robustness page, for one, are listed here."
        )
        return
    for run in runs.list_runs(model_id=model_id, limit=shown):
        run_link(run)
        took = "" if run.seconds is None else f", took {duration(run.seconds)}"
        st.caption(f"{run.study} · {run.status}{took} · {timestamp(run.created_at)} · run `{run.id}`")
    st.page_link(
        RUNS_PAGE, label=f"{f'All {total:,} runs' if total > 1 else 'The run'} of this model on the Runs page",
        icon=":material/history:",
        query_params={state.MODEL: model_id, state.RUNS_ONLY_MODEL: "true"},
    )  # fmt: skip


def render_server_runs() -> None:
    """One line for a shared server: runs executing and waiting, and this participant's own active runs.

    Runs waiting also start workers for free slots: a run queued by a process that starts none (a script, or
    another server whose idle worker was exiting just as it submitted) is not left waiting for the next submission.
    """
    runs = get_runs()
    runs.reap()
    active = [r for r in runs.list_runs(limit=200) if r.is_active]
    running = sum(1 for r in active if r.status == RunStatus.RUNNING)
    if len(active) > running:
        ensure_workers(get_store())
    mine = [r for r in active if r.owner == state.owner_id()]
    count = default_worker_count()
    workers = (
        f"on {plural(live_workers(get_store()), 'worker process', 'worker processes')} (up to {count})"
        if count
        else "on workers started by hand"
    )
    text = f"Server: {plural(running, 'run')} executing, {len(active) - running} waiting, {workers}."
    if active:
        text += " Yours: " + (", ".join(f"{r.title} ({r.progress:.0%})" for r in mine) or "none") + "."
    st.caption(text)


def show_session_run(key: str, *, study: str, from_url: bool = True) -> RunRecord | None:
    """The run of `study` this session follows under `key` (or that the URL's `?run=` names), rendered with its
    buttons; None when there is none."""
    run = attach(key, study=study, from_url=from_url)
    if run is not None:
        render_run(run, key=key)
    return run


def event_records(run: RunRecord, kind: str) -> list[dict[str, Any]]:
    """The run's stored events of one type ("epoch", "step", "point", "findings"), without the type tag."""
    return [
        {k: v for k, v in e.items() if k != "type"}
        for e in get_runs().events(run.id)
        if e.get("type") == kind
    ]


def torch_images(images: Any) -> torch.Tensor:
    """Images stored in an event payload as nested lists (B, C, H, W) -> a float32 tensor for a figure."""
    return torch.tensor(images, dtype=torch.float32)


def train_records(run: RunRecord) -> list[dict[str, Any]]:
    """Training events as chart records with a fractional epoch on the x axis (steps between epochs)."""
    out = []
    for e in get_runs().events(run.id):
        if e.get("type") != "train":
            continue
        per_epoch = max(1, e["total_steps"] // max(1, e["epochs"]))
        x = (
            float(e["epoch"])
            if e["kind"] == "epoch"
            else (e["epoch"] - 1) + (e["step"] - (e["epoch"] - 1) * per_epoch) / per_epoch
        )
        out.append({"epoch_float": x, **{k: v for k, v in e.items() if k != "type"}})
    return out


def overlay_sweeps(runs: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """The points of several sweep runs on one chart: each curve's label names its run."""
    out = []
    for run in runs:
        for rec in event_records(run, "point"):
            out.append({**rec, "model": f"{rec['model']} · run {run.id[:6]}"})
    return out


def run_table(runs: Sequence[RunRecord], *, key: str, in_url: bool = False) -> list[RunRecord]:
    """The runs as a table (with their owners in a workshop room); the rows the user selects are returned.

    With `in_url`, the selection is kept in the URL as run ids (`?runs=<id>&runs=<id>`): a link opens the table with
    the same rows selected (st.dataframe has no `bind`; `selection_default` applies on a session's first render).
    """
    in_room = room.enabled()
    rows = [
        {"run": r.id, "study": r.study, "what": r.title, "status": str(r.status), "progress": f"{r.progress:.0%}",
         "started": timestamp(r.created_at), "took": "—" if r.seconds is None else duration(r.seconds),
         "yours": "yes" if r.owner == state.owner_id() else ""}
        | ({"owner": r.owner or "—"} if in_room else {})
        for r in runs
    ]  # fmt: skip
    wanted = set(st.query_params.get_all(state.RUNS_PARAM)) if in_url else set()
    linked = [i for i, r in enumerate(runs) if r.id in wanted]
    event = st.dataframe(
        rows, hide_index=True, on_select="rerun", selection_mode="multi-row", key=key,
        selection_default={"selection": {"rows": linked}} if linked else None,
    )  # fmt: skip
    picked = [runs[i] for i in event.selection.rows if i < len(runs)]
    if in_url and picked:
        st.query_params[state.RUNS_PARAM] = [r.id for r in picked]
    elif in_url:
        st.query_params.pop(state.RUNS_PARAM, None)
    return picked


def run_export(run: RunRecord) -> tuple[str, str]:
    """The run as JSON (config, versions, result, events) and its points/epochs as CSV."""
    events = get_runs().events(run.id)
    payload = {**run.to_record(), "config": run.config, "versions": run.versions, "result": run.result,
               "events": events}  # fmt: skip
    rows = [
        {k: v for k, v in e.items() if k != "type"} for e in events if e.get("type") in ("point", "train")
    ]
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    return json.dumps(payload, indent=2, default=str), out.getvalue()


def export_buttons(run: RunRecord) -> None:
    as_json, as_csv = run_export(run)
    c1, c2 = st.columns(2)
    c1.download_button(
        "Download JSON", as_json, f"run-{run.id}.json", "application/json", key=f"json_{run.id}"
    )
    if as_csv:
        c2.download_button("Download CSV", as_csv, f"run-{run.id}.csv", "text/csv", key=f"csv_{run.id}")
    st.caption("Charts: the camera icon above each chart saves it as a PNG.")


def delete_button(run: RunRecord) -> None:
    """Delete a finished run after a confirmation (an active run must be cancelled first)."""
    if run.is_active:
        return
    mine = room.may_change(run.owner)
    with st.popover("Delete this run"):
        st.write(f"Delete run {run.id} ({run.title}), its events and files? Models it trained stay.")
        if not mine:
            st.caption(f"{room.not_yours(run.owner)} Only its owner or the instructor can delete it.")
        if st.button("Yes, delete it", type="primary", key=f"delete_{run.id}", disabled=not mine):
            try:  # the store checks the owner itself: a disabled button is only a hint in the browser
                get_runs().delete(run.id, actor=room.actor())
            except DlsecError as err:
                st.error(str(err))
                return
            st.query_params.pop(state.RUN_PARAM, None)
            st.rerun()


def sweep_findings(run: RunRecord) -> list[CurveFindings]:
    """The honesty checks a sweep run stored, typed again (for `widgets.render_findings`)."""
    return [
        CurveFindings(
            model_name=e["curve"],
            findings=[Finding(**{k: v for k, v in f.items() if k != "curve"}) for f in e["findings"]],
        )
        for e in event_records(run, "findings")
    ]


def poll_while_active(run: RunRecord | None, seconds: float) -> float | None:
    """A progress fragment's `run_every`: `seconds` while the run is queued or running, else None (a finished run
    is drawn once; polling it would rebuild its charts in the web server for nothing)."""
    return seconds if run is not None and run.is_active else None


def refresh(run: RunRecord | None) -> RunRecord | None:
    """The run as stored now (a polling fragment's fresh read), or None when there is none or it was deleted."""
    if run is None:
        return None
    try:
        return get_runs().get(run.id)
    except DlsecError:
        return None


def redraw_if_ended(run: RunRecord, interval: float | None) -> None:
    """At the start of a polling fragment: once its run has ended, rerun the whole page instead of drawing the
    final state here, so the page draws it once, with a fragment that no longer polls (and a browser never sees
    a final state that is about to be replaced)."""
    if interval is not None and not run.is_active:
        st.rerun(scope="app")


def show_run(
    run: RunRecord | None, *, key: str, draw: Callable[[RunRecord], None], every: float = 1.0
) -> None:
    """A study page's run, drawn where this is called: its state line (progress, cancel, failure) and `draw(run)`.

    While the run is active a fragment redraws it every `every` seconds (only the fragment reruns, not the page);
    when it ends the whole page is drawn once more, and a finished run is drawn once, without polling.
    """
    interval = poll_while_active(run, every)

    @st.fragment(run_every=interval)
    def progress() -> None:
        current = refresh(run)
        if current is None:
            return
        redraw_if_ended(current, interval)
        render_run(current, key=key)
        draw(current)

    progress()
