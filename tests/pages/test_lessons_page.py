"""The Lessons page in AppTest: a lesson's steps, the missing-model hint, and a learner following a small lesson
on the digits model: the checkpoints fail before the work and pass after it, and the progress is stored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
import torch
from background import finish_all, finish_work
from streamlit.testing.v1 import AppTest

from dlsec_core.data.builtin import load_dataset
from dlsec_core.lessons.checks import flips
from dlsec_core.lessons.progress import ProgressStore
from dlsec_core.store import ModelCard, Store
from dlsec_ui import lessons as lessons_ui
from dlsec_ui import state

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app.py"
TIMEOUT = 60.0

LESSON = """+++
id = "tiny"
title = "Tiny lesson"
order = 1
summary = "On the digits model."
[models.victim]
recipe = "standard"
arch = "logreg"
dataset = "digits"
+++
Intro.

## FGSM by hand
Find the smallest ε.
```step
id = "by-hand"
page = "attack_lab"
model = "victim"
[params]
attack = "FGSM"
gallery_class = "7"
[check]
kind = "min_flip_eps"
model = "victim"
gallery_class = 7
gallery_index = 0
```

## The curve
Run a sweep.
```step
id = "curve"
page = "robustness"
model = "victim"
[params]
sweep_attack = "FGSM"
[check]
kind = "run_done"
study = "sweep"
models = ["victim"]
where = { attack = "fgsm" }
```
"""


@pytest.fixture
def open_lessons(tmp_home: Path) -> Iterator[AppTest]:
    st.cache_resource.clear()
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    at.switch_page("app_pages/lessons.py").run()
    assert not at.exception, [e.value for e in at.exception]
    yield at
    finish_all()
    st.cache_resource.clear()


def check_button(at: AppTest, lesson: str, step: str) -> None:
    at.button(key=f"{state.LESSON_CHECK}{lesson}_{step}").click().run()
    assert not at.exception, [e.value for e in at.exception]


def test_the_shipped_lesson_1_says_which_model_is_missing(open_lessons: AppTest) -> None:
    at = open_lessons
    assert at.selectbox(key=state.LESSON).value == "Fool a model"
    assert [s.key for s in at.selectbox if s.key == state.LESSON]
    text = " ".join(w.value for w in at.warning)
    assert "none is stored yet" in text and "standard" in text
    check_button(at, "fool-a-model", "compare")
    assert "Pick an answer first" in " ".join(w.value for w in at.warning)
    at.selectbox(key=state.LESSON).select("Steal a model").run()
    assert any("Steal it" in m.value for m in at.markdown)


def test_a_learner_follows_a_lesson(
    open_lessons: AppTest, stored_model: ModelCard, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "lessons"
    folder.mkdir()
    (folder / "01-tiny.md").write_text(LESSON, encoding="utf-8")
    monkeypatch.setattr(lessons_ui, "LESSONS_DIR", folder)
    at = open_lessons
    at.run()
    assert at.selectbox(key=state.LESSON).value == "Tiny lesson"
    # the oracle: scan ε on the same image with the core attack
    model, _ = Store().load_model(stored_model.id, device=torch.device("cpu"))
    data = load_dataset("digits")
    idx = data.test_indices_by_class()[7][0]
    x, y = data.x_test[idx : idx + 1], data.y_test[idx : idx + 1]
    eps = next(round(k * 0.005, 3) for k in range(1, 101) if flips(model, "fgsm", x, y, k * 0.005))
    answer = f"{state.LESSON_ANSWER}tiny_by-hand"
    at.number_input(key=answer).set_value(eps + 0.05).run()  # flips, but so does one step below
    check_button(at, "tiny", "by-hand")
    assert "smaller ε" in " ".join(w.value for w in at.warning)
    at.number_input(key=answer).set_value(eps).run()
    check_button(at, "tiny", "by-hand")
    assert any("flips the digit" in s.value for s in at.success)

    check_button(at, "tiny", "curve")  # no sweep yet
    assert "No finished sweep run" in " ".join(w.value for w in at.warning)
    at.switch_page("app_pages/robustness.py").run()
    at.selectbox(key=state.SWEEP_ATTACK).select("fgsm").run()
    at.slider(key=state.SWEEP_POINTS).set_value(3)
    at.select_slider(key=state.SWEEP_IMAGES).set_value(100)
    at.button(key=state.SWEEP_BUTTON).click().run()
    assert finish_work(at.session_state[state.SWEEP_JOB]) is None
    at.switch_page("app_pages/lessons.py").run()
    check_button(at, "tiny", "curve")
    assert any("Found your finished run" in s.value for s in at.success)
    passed = ProgressStore(Store()).passed("local", "tiny")
    assert set(passed) == {("tiny", "by-hand"), ("tiny", "curve")}
    assert passed[("tiny", "by-hand")].evidence["eps"] == pytest.approx(eps)
    at.run()
    assert "2 of 2 steps passed" in at.get("progress")[0].proto.text
