"""Lessons: the shipped files parse; bad files are refused naming the file and the step; every lesson's
checkpoints pass when its steps are followed and fail when they are not; progress survives per participant;
the schema-3 migration adds the progress table to an existing schema-2 home.

The shipped lessons name cnn models on mnist5k; here they are re-pointed at a softmax regression on the 8x8
digits (the conftest's `trained_digits`, about a second), so the same steps and checks run on tiny models.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import torch

from dlsec_core import store as store_mod
from dlsec_core.data.builtin import load_dataset
from dlsec_core.lessons.checks import LOCAL_OWNER, evaluate, find_model
from dlsec_core.lessons.progress import ProgressStore
from dlsec_core.lessons.schema import CHECKS, PAGES, Lesson, LessonError, load_lessons, parse_lesson
from dlsec_core.runs import RunStatus, RunStore
from dlsec_core.store import Store

ROOT = Path(__file__).resolve().parents[2]
LESSONS = ROOT / "lessons"


def shipped() -> list[Lesson]:
    return load_lessons(LESSONS)


def tiny(lesson: Lesson) -> Lesson:
    """The same lesson with every model alias on the digits softmax regression."""
    text = lesson.path.read_text(encoding="utf-8")
    text = text.replace('arch = "cnn"', 'arch = "logreg"').replace(
        'dataset = "mnist5k"', 'dataset = "digits"'
    )
    return parse_lesson(text, lesson.path)


def test_the_shipped_lessons_parse_and_cover_the_four_topics() -> None:
    lessons = shipped()
    assert [lesson.id for lesson in lessons][:4] == [
        "fool-a-model", "defend-honestly", "privacy-has-a-price", "steal-a-model",
    ]  # fmt: skip
    for lesson in lessons:
        assert lesson.steps and lesson.title and lesson.intro
        for step in lesson.steps:
            assert step.text, f"{lesson.id}/{step.id} explains nothing"
            assert step.page in PAGES and step.check.kind in CHECKS
    kinds = {s.check.kind for lesson in lessons for s in lesson.steps}
    assert kinds == set(CHECKS)  # every kind is used by a shipped lesson, so each is exercised below


def test_every_page_a_step_opens_is_in_the_app() -> None:
    app = (ROOT / "app.py").read_text(encoding="utf-8")
    for page in PAGES:
        assert f'"app_pages/{page}.py"' in app, page


GOOD = """+++
id = "x"
title = "X"
order = 1
[models.m]
recipe = "standard"
arch = "logreg"
dataset = "digits"
+++
Intro.

## First
Text.
```step
id = "one"
page = "attack_lab"
model = "m"
[params]
attack = "FGSM"
[check]
kind = "model_stored"
model = "m"
```
"""


def test_a_good_file_parses_into_steps_with_link_params() -> None:
    lesson = parse_lesson(GOOD, Path("x.md"))
    (step,) = lesson.steps
    assert (step.id, step.title, step.page, step.model, step.params) == (
        "one", "First", "attack_lab", "m", {"attack": "FGSM"},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('kind = "model_stored"', 'kind = "telepathy"'),
            r"bad\.md: step 1 \(one\): check kind 'telepathy' is unknown",
        ),
        (
            ('model = "m"\n[params]', 'model = "nobody"\n[params]'),
            r"step 1 \(one\): model 'nobody' is not an alias",
        ),
        (('page = "attack_lab"', 'page = "kitchen"'), r"step 1 \(one\): page 'kitchen' is not a lab page"),
        (('id = "one"', 'id = "One Step"'), r"step 1 \('First'\): 'id' must be lower-case"),
        (("```\n", ""), r"step 1 \('First'\): the ```step block is not closed"),
        (
            (
                'kind = "model_stored"\nmodel = "m"',
                'kind = "choice"\nquestion = "?"\noptions = ["a", "b"]\nanswer = 2',
            ),
            r"step 1 \(one\): 'answer' must be the index",
        ),
        (
            ('kind = "model_stored"\nmodel = "m"', 'kind = "run_done"'),
            r"step 1 \(one\): a 'run_done' check needs study",
        ),
        (("Text.\n", ""), r"step 1 \('First'\): needs a paragraph of explanation"),
        (("order = 1", 'order = "first"'), r"bad\.md: 'order' must be an integer"),
        (('arch = "logreg"\n', ""), r"bad\.md: model alias 'm' needs arch"),
    ],
)
def test_bad_files_are_refused_naming_the_file_and_the_step(change: tuple[str, str], message: str) -> None:
    old, new = change
    assert old in GOOD
    with pytest.raises(LessonError, match=message):
        parse_lesson(GOOD.replace(old, new, 1), Path("bad.md"))


def test_every_problem_is_reported_at_once() -> None:
    bad = GOOD.replace('page = "attack_lab"', 'page = "kitchen"').replace(
        'kind = "model_stored"', 'kind = "x"'
    )
    with pytest.raises(LessonError) as err:
        parse_lesson(bad, Path("bad.md"))
    assert "kitchen" in str(err.value) and "'x' is unknown" in str(err.value)


def test_a_folder_with_a_bad_lesson_names_it(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(GOOD)
    (tmp_path / "b.md").write_text(GOOD.replace("+++\nIntro", "Intro"))
    with pytest.raises(LessonError, match=r"b\.md: the front matter has no closing"):
        load_lessons(tmp_path)


# -- following the lessons ---------------------------------------------------------------------------------------


def fgsm_by_hand(model: torch.nn.Module, x: torch.Tensor, y: int, eps: float) -> int:
    """The oracle: Goodfellow's formula written out, the prediction after the step."""
    x = x.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([y]))
    (grad,) = torch.autograd.grad(loss, x)
    with torch.no_grad():
        return int(model((x + eps * grad.sign()).clamp(0, 1)).argmax(1))


def smallest_flip(model: torch.nn.Module, x: torch.Tensor, y: int, step: float) -> float:
    for k in range(1, int(0.5 / step) + 1):
        if fgsm_by_hand(model, x, y, k * step) != y:
            return round(k * step, 6)
    raise AssertionError("no ε up to 0.5 flips the digit")


def done_run(
    store: Store, study: str, config: dict[str, Any], model_ids: list[str], owner: str | None
) -> str:
    runs = RunStore(store)
    run = runs.submit(study, config, title=f"{study} for a test", model_ids=model_ids, owner=owner)
    claimed = runs.claim("test-worker", [study])
    assert claimed is not None and claimed.id == run.id
    runs.finish(run.id, RunStatus.DONE, result={})
    return run.id


@pytest.fixture
def lab(tmp_home: Path, trained_digits: Any, save_trained: Any) -> tuple[Store, dict[str, Any]]:
    store = Store(tmp_home)
    return store, {"result": trained_digits, "save": save_trained}


def store_alias(store: Store, lesson: Lesson, alias: str, trained: Any, save: Any) -> str:
    ref = lesson.models[alias]
    card = save(store.home, trained, name=f"{alias}-model")
    with store._transaction() as conn:  # the digits model stands in for the alias's recipe
        conn.execute("UPDATE models SET recipe = ? WHERE id = ?", (ref.recipe, card.id))
    found = find_model(store.list_models(), ref)
    assert found is not None and found.id == card.id
    return card.id


@pytest.mark.parametrize(
    "lesson_id", ["fool-a-model", "defend-honestly", "privacy-has-a-price", "steal-a-model"]
)
def test_each_lesson_passes_when_followed_and_not_otherwise(
    lab: tuple[Store, dict[str, Any]], lesson_id: str
) -> None:
    store, fx = lab
    lesson = tiny(next(lesson for lesson in shipped() if lesson.id == lesson_id))
    me, other = "ada", "bob"
    ids: dict[str, str] = {}
    for step in lesson.steps:
        check = step.check
        before = evaluate(store, lesson, step, owner=me, answer=None)
        assert not before.passed, f"{lesson_id}/{step.id} passed before it was done: {before.sentence}"
        for (
            alias
        ) in check.models:  # a model the step needs and the learner has not got: train it (here: store it)
            if alias not in ids:
                assert "train it" in before.sentence
                ids[alias] = store_alias(store, lesson, alias, fx["result"], fx["save"])
        if check.kind == "choice":
            wrong = (int(check.get("answer")) + 1) % len(check.get("options"))
            assert not evaluate(store, lesson, step, owner=me, answer=wrong).passed
            assert evaluate(store, lesson, step, owner=me, answer=check.get("answer")).passed
        elif check.kind == "model_stored":
            assert evaluate(store, lesson, step, owner=me).passed
        elif check.kind == "run_done":
            study, where = check.get("study"), dict(check.get("where", {}))
            models = [ids[a] for a in check.models]
            off = {k: f"not-{v}" for k, v in where.items()}
            if where:  # the same study with other settings does not count
                done_run(store, study, off, models, me)
                assert not evaluate(store, lesson, step, owner=me).passed
            if len(models) > 1:  # nor one of the models alone
                done_run(store, study, where, models[:1], me)
                assert not evaluate(store, lesson, step, owner=me).passed
            done_run(store, study, where, models, other)  # nor another participant's run
            assert not evaluate(store, lesson, step, owner=me).passed
            assert evaluate(store, lesson, step, owner=other).passed
            run_id = done_run(store, study, where, models, me)
            result = evaluate(store, lesson, step, owner=me)
            assert result.passed and result.evidence == {"run_id": run_id}
            assert evaluate(store, lesson, step, owner=LOCAL_OWNER).passed  # a lab without a room: all runs
        elif check.kind == "min_flip_eps":
            model, _ = store.load_model(ids[check.models[0]], device=torch.device("cpu"))
            data = load_dataset("digits")
            idx = data.test_indices_by_class()[check.get("gallery_class")][check.get("gallery_index")]
            x, y = data.x_test[idx : idx + 1], int(data.y_test[idx])
            step_size = float(check.get("step"))
            eps = smallest_flip(model, x, y, step_size)
            assert evaluate(store, lesson, step, owner=me, answer=eps).passed
            assert not evaluate(store, lesson, step, owner=me, answer=eps - step_size).passed  # too small
            # too large: it flips, but so does one step below (unless FGSM is not monotone there: skip that ε)
            bigger = round(eps + 2 * step_size, 6)
            assert fgsm_by_hand(model, x, y, bigger - step_size) != y
            assert not evaluate(store, lesson, step, owner=me, answer=bigger).passed
            assert not evaluate(store, lesson, step, owner=me, answer="seven").passed
        else:  # pragma: no cover - a new kind needs its case here
            raise AssertionError(check.kind)


def test_progress_is_kept_per_participant(tmp_home: Path) -> None:
    progress = ProgressStore(Store(tmp_home))
    progress.mark_passed("ada", "fool-a-model", "fgsm-by-hand", {"eps": 0.03})
    progress.mark_passed("ada", "fool-a-model", "fgsm-curve", {"run_id": "r1"})
    progress.mark_passed("bob", "fool-a-model", "fgsm-by-hand", {"eps": 0.04})
    first = progress.passed("ada")[("fool-a-model", "fgsm-by-hand")].passed_at
    progress.mark_passed("ada", "fool-a-model", "fgsm-by-hand", {"eps": 0.035})  # again: first time kept
    again = ProgressStore(Store(tmp_home))  # another process or a restart reads the same
    ada = again.passed("ada", "fool-a-model")
    assert set(ada) == {("fool-a-model", "fgsm-by-hand"), ("fool-a-model", "fgsm-curve")}
    assert ada[("fool-a-model", "fgsm-by-hand")].evidence == {"eps": 0.035}
    assert ada[("fool-a-model", "fgsm-by-hand")].passed_at == first
    assert set(again.passed("bob")) == {("fool-a-model", "fgsm-by-hand")}
    assert again.passed("carol") == {}
    assert {(p.owner, p.step) for p in again.everyone()} == {
        ("ada", "fgsm-by-hand"), ("ada", "fgsm-curve"), ("bob", "fgsm-by-hand"),
    }  # fmt: skip
    assert again.reset("ada") == 2 and again.passed("ada") == {} and len(again.passed("bob")) == 1


def test_a_schema_2_home_gets_the_progress_table(tmp_path: Path) -> None:
    """Migration 2 -> 3: a database written by schema 2 (with a run in it) opens, gains lesson_progress, keeps
    its rows."""
    home = tmp_path / "h"
    (home / "models").mkdir(parents=True)
    conn = sqlite3.connect(home / "dlsec.sqlite3")
    for version in (0, 1):  # exactly what a schema-2 dlsec created
        conn.executescript(store_mod._MIGRATIONS[version])
    conn.execute(
        "INSERT INTO runs (id, study, title, config, status, progress, message, cancel_requested, versions, "
        "created_at) VALUES ('abcdef012345', 'sweep', 't', '{}', 'done', 1, '', 0, '{}', '2026-01-01')"
    )
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    store = Store(home)
    with sqlite3.connect(store.db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == store_mod.SCHEMA_VERSION >= 3
        assert conn.execute("SELECT COUNT(*) FROM lesson_progress").fetchone()[0] == 0
    assert [r.id for r in RunStore(store).list_runs()] == ["abcdef012345"]
    ProgressStore(store).mark_passed("ada", "l", "s")
    assert set(ProgressStore(Store(home)).passed("ada")) == {("l", "s")}
