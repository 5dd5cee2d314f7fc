"""Background jobs seen from the UI: submitting work for this session and rendering a job's state."""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

import streamlit as st

from dlsec_core.attacks.base import Attack
from dlsec_core.defense_studies import certification_study, detection_study
from dlsec_core.defenses.detection import FeatureSqueezingDetector
from dlsec_core.defenses.smoothing import CertifyEvent
from dlsec_core.defenses.transforms import InputTransform
from dlsec_core.errors import DlsecError
from dlsec_core.jobs import JobContext, JobSnapshot, JobState
from dlsec_core.studies.sweep import SweepStudyConfig, attack_params
from dlsec_core.studies.train import TrainStudyConfig
from dlsec_core.training.loop import TrainConfig
from dlsec_core.training.recipes import Recipe, StandardRecipe
from dlsec_ui import state
from dlsec_ui.resources import get_runner, get_store
from dlsec_ui.runs import submit_run

Progress = Callable[[Any, int], "tuple[float, str] | None"]  # (event, events so far) -> (fraction, message)


def _forward(
    ctx: JobContext, gen: Generator[Any, None, Any], progress: Progress
) -> Generator[Any, None, Any]:
    """Relay a workflow's events to the job runner, reporting progress; return the workflow's result."""
    count = 0
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        count += 1
        update = progress(event, count)
        if update is not None:
            ctx.progress(*update)
        yield event


def _submit(
    work: Callable[[], Generator[Any, None, Any]], progress: Progress, *, kind: str, title: str
) -> str:
    def job(ctx: JobContext) -> Generator[Any, None, Any]:
        return (yield from _forward(ctx, work(), progress))

    return get_runner().submit(job, kind=kind, title=title, owner=state.owner_id())


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


def submit_detection(
    model_id: str,
    detector: FeatureSqueezingDetector,
    attack: Attack,
    eps_values: Sequence[float],
    n_images: int,
    seed: int,
) -> str:
    store = get_store()
    total = len(eps_values)

    def progress(event: Any, done: int) -> tuple[float, str]:
        return done / (total + 1), f"ε={event.eps:.3g}" if done < total else "ROC and detector-aware attack"

    return _submit(
        lambda: detection_study(
            store, model_id, detector=detector, attack=attack, eps_values=list(eps_values), n_images=n_images,
            seed=seed,
        ),
        progress, kind="detection", title=f"Detection study ({attack.title})",
    )  # fmt: skip


def submit_certification(model_id: str, sigma: float, n_images: int, n: int, seed: int) -> str:
    store = get_store()

    def progress(event: Any, _: int) -> tuple[float, str]:
        if isinstance(event, CertifyEvent):
            return 0.8 * event.progress, f"certified {event.done}/{event.total} images"
        return 0.9, f"empirical attack at radius {event.eps:.3g}"

    return _submit(
        lambda: certification_study(store, model_id, sigma=sigma, n_images=n_images, n=n, seed=seed),
        progress, kind="certify", title=f"Certification (σ={sigma:g})",
    )  # fmt: skip


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


def poll_interval(job_key: str, seconds: float) -> float | None:
    """`seconds` while this session's job under `job_key` is queued or running, else None: a page's progress
    fragment polls only while there is something to watch. Every poll rebuilds the page's charts in the server
    process, beside the job itself (and other sessions' jobs), so a fragment that keeps polling a finished job
    slows every job on the server for nothing."""
    job_id = st.session_state.get(job_key)
    if not job_id:
        return None
    try:
        return seconds if get_runner().get(job_id).is_active else None
    except DlsecError:
        return None


def stop_polling_when_done(job: JobSnapshot | None, interval: float | None) -> None:
    """Call at the end of a polling fragment: once its job has ended, one full rerun starts the page again with a
    fragment that no longer polls (see `poll_interval`)."""
    if interval is not None and (job is None or not job.is_active):
        st.rerun(scope="app")


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
