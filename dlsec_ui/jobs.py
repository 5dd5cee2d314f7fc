"""Background jobs seen from the UI: submitting work for this session and rendering a job's state."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

from dlsec_core.attacks.base import Attack
from dlsec_core.defense_studies import certification_study, detection_study
from dlsec_core.defenses.detection import FeatureSqueezingDetector
from dlsec_core.defenses.smoothing import CertifyEvent
from dlsec_core.defenses.transforms import InputTransform
from dlsec_core.errors import DlsecError
from dlsec_core.jobs import JobContext, JobSnapshot, JobState
from dlsec_core.training.loop import TrainConfig, TrainEvent
from dlsec_core.training.recipes import Recipe
from dlsec_core.workflows import CurveFindings, ModelSweepPoint, sweep_models, train_and_store
from dlsec_ui import state
from dlsec_ui.resources import get_runner, get_store


def submit_training(
    *, dataset: str, arch: str, name: str | None, config: TrainConfig, recipe: Recipe | None = None
) -> str:
    store = get_store()  # resolved here, in the script thread: the worker makes no st.* calls

    def work(ctx: JobContext) -> Any:
        gen = train_and_store(store, dataset=dataset, arch=arch, name=name, config=config, recipe=recipe)
        card = yield from _with_progress(ctx, gen)
        return card

    title = f"Train {name or arch} on {dataset}"
    return get_runner().submit(work, kind="train", title=title, owner=state.owner_id())


def submit_sweep(
    model_ids: Sequence[str],
    attack: Attack,
    eps_values: Sequence[float],
    n_images: int,
    *,
    defense: InputTransform | None = None,
    seed: int = 0,
) -> str:
    total = len(model_ids) * len(eps_values) * (2 if defense is not None else 1)

    store = get_store()  # resolved here, in the script thread: the worker makes no st.* calls

    def work(ctx: JobContext) -> Any:
        gen = sweep_models(
            store,
            list(model_ids),
            attack,
            list(eps_values),
            n_images=n_images,
            defense=defense,
            seed=seed,
        )
        records = yield from _with_progress(ctx, gen, total=total)
        return records

    title = f"{attack.title} sweep over {len(model_ids)} model(s)"
    return get_runner().submit(work, kind="sweep", title=title, owner=state.owner_id())


def submit_detection(
    model_id: str,
    detector: FeatureSqueezingDetector,
    attack: Attack,
    eps_values: Sequence[float],
    n_images: int,
    seed: int,
) -> str:
    total = len(eps_values)

    store = get_store()  # resolved here, in the script thread: the worker makes no st.* calls

    def work(ctx: JobContext) -> Any:
        gen = detection_study(
            store, model_id, detector=detector, attack=attack, eps_values=list(eps_values), n_images=n_images,
            seed=seed,
        )  # fmt: skip
        done = 0
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                return stop.value
            done += 1
            ctx.progress(
                done / (total + 1), f"ε={event.eps:.3g}" if done < total else "ROC and detector-aware attack"
            )
            yield event

    return get_runner().submit(
        work, kind="detection", title=f"Detection study ({attack.title})", owner=state.owner_id()
    )


def submit_certification(model_id: str, sigma: float, n_images: int, n: int, seed: int) -> str:
    store = get_store()  # resolved here, in the script thread: the worker makes no st.* calls

    def work(ctx: JobContext) -> Any:
        gen = certification_study(store, model_id, sigma=sigma, n_images=n_images, n=n, seed=seed)
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                return stop.value
            if isinstance(event, CertifyEvent):
                ctx.progress(0.8 * event.progress, f"certified {event.done}/{event.total} images")
            else:
                ctx.progress(0.9, f"empirical attack at radius {event.eps:.3g}")
            yield event

    return get_runner().submit(
        work, kind="certify", title=f"Certification (σ={sigma:g})", owner=state.owner_id()
    )


def _with_progress(ctx: JobContext, gen: Any, total: int | None = None) -> Any:
    """Forward a workflow's events and report progress: training events carry their own, sweeps count points."""
    points = 0
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if isinstance(event, TrainEvent):
            ctx.progress(event.progress, f"epoch {event.epoch}/{event.epochs}")
        elif isinstance(event, ModelSweepPoint) and total:
            points += 1
            ctx.progress(points / total, f"{event.model_name}: ε={event.point.eps:.3g}")
            if points == total:
                ctx.progress(1.0, "sanity checks")
        yield event


def show_session_job(job_key: str, *, cancel_key: str) -> JobSnapshot | None:
    """The job this session started under `job_key`, rendered (progress, queue place, failure, cancel); None if
    there is none (or the server restarted and forgot it)."""
    job_id = st.session_state.get(job_key)
    if not job_id:
        return None
    try:
        job = get_runner().get(job_id)
    except DlsecError:
        return None
    render_job(job, cancel_key=cancel_key)
    return job


def render_server_load() -> None:
    """One line for a shared server: how many jobs run and wait, and this session's own jobs still active (so a
    participant who reloaded the tab sees that their training is still going)."""
    runner = get_runner()
    active = [j for j in runner.list() if j.is_active]
    running = sum(1 for j in active if j.state is JobState.RUNNING)
    mine = [j for j in active if j.owner == state.owner_id()]
    text = f"Server: {running} job(s) running, {len(active) - running} waiting (at most {runner.max_running} at once)."
    if active:
        text += " Yours: " + (", ".join(f"{j.title} ({j.progress:.0%})" for j in mine) or "none") + "."
    st.caption(text)


def render_job(job: JobSnapshot, *, cancel_key: str) -> None:
    """Progress, queue position, failure sentence and a cancel button for one job."""
    if job.state is JobState.QUEUED:
        st.info(
            f"{job.title}: waiting in the queue (position {job.queue_position}); the server runs a few jobs at once."
        )
    elif job.state is JobState.RUNNING:
        label = "stopping…" if job.cancel_requested else (job.message or "running")
        st.progress(min(1.0, job.progress), text=f"{job.title}: {label} ({job.elapsed or 0:.0f} s)")
    elif job.state is JobState.FAILED:
        st.error(f"{job.title} failed: {job.error}")
    elif job.state is JobState.CANCELLED:
        st.warning(f"{job.title} was cancelled; nothing was saved.")
    elif job.state is JobState.DONE:
        st.success(f"{job.title}: done in {job.elapsed or 0:.1f} s.")
    if job.is_active and st.button("Cancel", key=cancel_key, disabled=job.cancel_requested):
        get_runner().cancel(job.id)
        st.rerun()


def train_records(events: Sequence[Any]) -> list[dict[str, Any]]:
    """Training events as chart records with a fractional epoch on the x axis."""
    out = []
    for e in events:
        if isinstance(e, TrainEvent):
            per_epoch = max(1, e.total_steps // max(1, e.epochs))
            x = (
                float(e.epoch)
                if e.kind == "epoch"
                else (e.epoch - 1) + (e.step - (e.epoch - 1) * per_epoch) / per_epoch
            )
            out.append({"epoch_float": x, **e.to_record()})
    return out


def sweep_records(events: Sequence[Any]) -> list[dict[str, Any]]:
    return [e.to_record() for e in events if isinstance(e, ModelSweepPoint)]


def sweep_findings(events: Sequence[Any]) -> list[CurveFindings]:
    return [e for e in events if isinstance(e, CurveFindings)]
