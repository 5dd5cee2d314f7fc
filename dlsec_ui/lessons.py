"""The Lessons page's parts: a lesson's steps with their "do this" links and checkpoints, progress per participant.

Lesson content is data (`lessons/*.md`, see lessons/README.md), parsed and checked in `dlsec_core.lessons`.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dlsec_core.catalog import RECIPES
from dlsec_core.errors import DlsecError
from dlsec_core.lessons.checks import evaluate, resolve_models
from dlsec_core.lessons.progress import ProgressStore
from dlsec_core.lessons.schema import Lesson, ModelRef, Step, load_lessons
from dlsec_core.models.architectures import ARCHITECTURES
from dlsec_core.store import ModelCard
from dlsec_ui import room, state
from dlsec_ui.resources import get_store
from dlsec_ui.widgets import model_label

LESSONS_DIR = Path(__file__).resolve().parents[1] / "lessons"


def participant() -> str:
    """Who is following the lessons: the room's participant (their runs are stored under the same name, so a
    "run X" checkpoint finds them), "local" in a lab without a room."""
    return room.current_owner()


def lessons() -> list[Lesson]:
    """Every lesson file, parsed and validated (a few small files: read on each run, so edits show at once)."""
    return load_lessons(LESSONS_DIR)


def page_path(page: str) -> str:
    return f"app_pages/{page}.py"


def train_link_params(ref: ModelRef) -> dict[str, str]:
    """The Models page's train form preset to the alias's recipe, architecture and dataset (its bound widgets
    carry their displayed labels in the URL)."""
    params = {state.TRAIN_DATASET: ref.dataset, state.TRAIN_RECIPE: RECIPES[ref.recipe].title}
    if ref.arch in ARCHITECTURES:
        params[state.TRAIN_ARCH] = f"{ref.arch}: {ARCHITECTURES[ref.arch].description}"
    return params


def _missing(lesson: Lesson, alias: str) -> None:
    ref = lesson.models[alias]
    st.warning(f"This step needs {ref.describe()} (alias **{alias}**), and none is stored yet.")
    if ref.recipe in RECIPES:
        st.page_link(
            page_path("models"), label=f"Train it on the Models page ({RECIPES[ref.recipe].title})",
            icon=":material/model_training:", query_params=train_link_params(ref),
        )  # fmt: skip


def render_step(
    lesson: Lesson, step: Step, n: int, models: dict[str, ModelCard | None], owner: str, done: str | None
) -> None:
    """One step: its explanation, its "do this" link (the lab page in the state the step needs), its checkpoint."""
    mark = ":material/check_circle:" if done else ":material/radio_button_unchecked:"
    with st.container(border=True, key=f"{state.LESSON_STEP}{step.id}"):
        st.markdown(f"#### {mark} {n}. {step.title}")
        st.markdown(step.text)
        needed = [a for a in dict.fromkeys(([step.model] if step.model else []) + step.check.models)]
        for alias in needed:
            if models.get(alias) is None:
                _missing(lesson, alias)
        if step.page is not None:
            params = dict(step.params)
            card = models.get(step.model) if step.model else None
            if card is not None:
                params[state.MODEL] = card.id
            if step.model is None or card is not None:
                st.page_link(
                    page_path(step.page),
                    label=step.link,
                    icon=":material/arrow_forward:",
                    query_params=params,
                )
            if card is not None:
                st.caption(f"Model **{step.model}**: {model_label(card)}")
        _checkpoint(lesson, step, models, owner, done)


def _checkpoint(
    lesson: Lesson, step: Step, models: dict[str, ModelCard | None], owner: str, done: str | None
) -> None:
    check = step.check
    key = f"{state.LESSON_ANSWER}{lesson.id}_{step.id}"
    answer = None
    question = check.get("question")
    if check.kind == "min_flip_eps":
        answer = st.number_input(
            question or "Your ε", 0.0, 0.5, None, float(check.get("step", 0.005)), format="%.3f", key=key,
            placeholder="the ε you found",
        )  # fmt: skip
    elif check.kind == "choice":
        options = list(check.get("options"))
        answer = st.radio(
            question, range(len(options)), index=None, format_func=lambda i: options[i], key=key
        )
    elif question:
        st.markdown(question)
    if done:
        st.success(f"Passed ({done}).", icon=":material/check:")
    if st.button(
        "Check", key=f"{state.LESSON_CHECK}{lesson.id}_{step.id}", type="secondary" if done else "primary"
    ):
        with st.spinner("Checking what you did…"):
            try:
                result = evaluate(get_store(), lesson, step, owner=owner, answer=answer, models=models)
            except DlsecError as err:
                st.error(f"The check could not run: {err}")
                return
        if result.passed:
            ProgressStore(get_store()).mark_passed(owner, lesson.id, step.id, result.evidence)
            st.success(result.sentence, icon=":material/task_alt:")
        else:
            st.warning(result.sentence, icon=":material/pending:")


def render_lesson(lesson: Lesson, owner: str) -> None:
    store = get_store()
    models = resolve_models(store, lesson)
    passed = ProgressStore(store).passed(owner, lesson.id)
    when = {step: p.passed_at.replace("T", " ")[:16] + " UTC" for (_, step), p in passed.items()}
    done = sum(s.id in when for s in lesson.steps)
    st.progress(done / len(lesson.steps), text=f"{done} of {len(lesson.steps)} steps passed")
    if lesson.intro:
        st.markdown(lesson.intro)
    for n, step in enumerate(lesson.steps, 1):
        render_step(lesson, step, n, models, owner, when.get(step.id))


def progress_by_participant() -> dict[str, str]:
    """Participant -> their passed steps per lesson, e.g. "Fool a model 3/4 · Defend it honestly 1/5" (the
    instructor's view of the room)."""
    counts: dict[str, dict[str, int]] = {}
    for record in ProgressStore(get_store()).everyone():
        per = counts.setdefault(record.owner, {})
        per[record.lesson] = per.get(record.lesson, 0) + 1
    titles = {lesson.id: (lesson.title, len(lesson.steps)) for lesson in lessons()}
    return {
        owner: " · ".join(
            f"{titles[lid][0]} {n}/{titles[lid][1]}" if lid in titles else f"{lid} {n}"
            for lid, n in per.items()
        )
        for owner, per in counts.items()
    }
