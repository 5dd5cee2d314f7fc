"""A workshop room in the app (AppTest): the login in the frame, wrong passcodes refused and rate-limited, a
participant who cannot delete or cancel another's work (even by clicking a disabled button: the store refuses), the
instructor who can, the per-participant run cap, the Instructor page, and the lab without a room unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from background import finish_all
from streamlit.testing.v1 import AppTest

from dlsec_core.access import INSTRUCTOR
from dlsec_core.lessons.progress import ProgressStore
from dlsec_core.room import participants
from dlsec_core.runs import RunStatus, RunStore
from dlsec_core.store import ModelCard, Store
from dlsec_core.training.loop import TrainResult
from dlsec_ui import state
from dlsec_ui.lessons import lessons

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
MODELS, RUNS, INSTRUCTOR_PAGE = "app_pages/models.py", "app_pages/runs.py", "app_pages/instructor.py"
TIMEOUT = 60.0
ROOM = {"passcode": "owl-2026", "instructor_passcode": "teach-me", "max_active_runs": 2}


@pytest.fixture
def fresh(tmp_home: Path) -> Iterator[Path]:
    st.cache_resource.clear()  # the login limiter lives there: each test starts with no failed attempts
    st.cache_data.clear()
    yield tmp_home
    finish_all()
    st.cache_resource.clear()
    st.cache_data.clear()


def save(home: Path, trained: TrainResult, name: str, owner: str | None) -> ModelCard:
    return Store(home).save_model(
        trained.model,
        trained.spec,
        name=name,
        dataset="digits",
        clean_accuracy=trained.test_accuracy,
        owner=owner,
    )


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def door(room: dict[str, Any] | None = ROOM) -> AppTest:
    """A fresh browser session at the app's front door."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if room is not None:
        at.secrets["room"] = dict(room)
    return ok(at.run())


def enter(at: AppTest, name: str, passcode: str = ROOM["passcode"]) -> AppTest:
    at.text_input(key=state.ROOM_NAME).input(name)
    at.text_input(key=state.ROOM_PASSCODE).input(passcode)
    return ok(at.button(key=state.ROOM_LOGIN).click().run())


def enter_as_instructor(at: AppTest, passcode: str = ROOM["instructor_passcode"]) -> AppTest:
    at.text_input(key=state.ROOM_INSTRUCTOR_PASSCODE).input(passcode)
    return ok(at.button(key=state.ROOM_INSTRUCTOR_LOGIN).click().run())


def logged_in(name: str) -> AppTest:
    at = enter(door(), name)
    assert any(f"Signed in as **{name}**" in c.value for c in at.sidebar.caption), "login failed"
    return at


def forge_click(button: Any) -> None:
    """Click a disabled button anyway, as a hand-made websocket message could (AppTest's `click` refuses, as a
    browser would). Streamlit 1.67 discards a disabled widget's value on the server; behind it the store refuses
    another participant's change itself (tests/core/test_room.py)."""
    assert button.disabled
    button._value = True  # what Button.click() sets, without its browser-only guard


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def test_the_room_asks_for_a_passcode_and_a_name_first(fresh: Path) -> None:
    at = door()
    assert [t.value for t in at.title] == [":material/school: Workshop room"]
    assert not at.sidebar.number_input, "nothing of the lab before the login"
    enter(at, "Ada", "wrong-one")
    assert errors(at) == ["That passcode is not right. Ask the instructor for the room's passcode."]
    assert state.ROOM_ACTOR not in at.session_state and not at.sidebar.number_input
    assert at.text_input(key=state.ROOM_PASSCODE).value == ""  # a passcode is never kept
    enter(at, "Ada")
    assert not errors(at)
    assert at.sidebar.number_input(key=state.SEED), "the lab's frame runs after the login"
    assert any("Signed in as **Ada** (participant)" in c.value for c in at.sidebar.caption)
    assert at.session_state[state.OWNER] == "Ada"  # the owner of this session's runs
    assert [p.name for p in participants(Store(fresh))] == ["Ada"]
    ok(at.button(key=state.ROOM_SIGN_OUT).click().run())
    assert at.text_input(key=state.ROOM_PASSCODE) and not at.sidebar.number_input


def test_wrong_passcodes_are_rate_limited(fresh: Path) -> None:
    at = door()
    for _ in range(5):
        enter(at, "Bob", "guess-123")
        assert "not right" in errors(at)[0]
    enter(at, "Bob")  # the right passcode, too late
    assert "Too many wrong passcodes" in errors(at)[0] and not at.sidebar.number_input
    again = enter(door(), "bob")  # another session, the same name (any case): still waiting
    assert "Too many wrong passcodes" in errors(again)[0]
    assert not enter_as_instructor(door(), "teach-me").error  # others are not locked out
    assert not errors(enter(door(), "Cy"))


def test_a_participant_cannot_delete_anothers_model_the_instructor_can(
    fresh: Path, trained_digits: TrainResult
) -> None:
    bobs = save(fresh, trained_digits, "bobs-model", "Bob")
    at = logged_in("Ada")
    at.switch_page(MODELS).run()
    ok(at)
    table = at.dataframe[0].value
    assert list(table["owner"]) == ["Bob"]  # everyone's models are visible, with their owners
    button = at.button(key=state.DELETE_BUTTON)
    assert button.disabled
    assert any("Owned by Bob. Only its owner or the instructor can delete it." in c.value for c in at.caption)
    forge_click(button)
    ok(at.run())  # discarded
    assert [c.id for c in Store(fresh).list_models()] == [bobs.id]

    adas = save(fresh, trained_digits, "adas-model", "Ada")
    at.run()  # the sidebar lists it now
    at.sidebar.selectbox(key=state.MODEL).select(adas.id).run()
    ok(at)
    assert not at.button(key=state.DELETE_BUTTON).disabled
    ok(at.button(key=state.DELETE_BUTTON).click().run())  # her own: deleted
    assert [c.id for c in Store(fresh).list_models()] == [bobs.id]

    teacher = enter_as_instructor(door())
    teacher.switch_page(MODELS).run()
    ok(teacher)
    assert not teacher.button(key=state.DELETE_BUTTON).disabled
    ok(teacher.button(key=state.DELETE_BUTTON).click().run())
    assert Store(fresh).list_models() == []


def test_a_participant_cannot_cancel_anothers_run_the_instructor_can(fresh: Path) -> None:
    runs = RunStore(Store(fresh))
    bobs = runs.submit(
        "sweep", {"n": 1}, title="Bob's sweep", owner="Bob"
    ).id  # stays queued: no workers here
    at = logged_in("Ada")
    at.switch_page(RUNS).run()
    ok(at)
    assert list(at.dataframe[0].value["owner"]) == ["Bob"]
    cancel = at.button(key=f"{state.RUNS_OPEN}_cancel")
    assert cancel.disabled
    forge_click(cancel)
    ok(at.run())  # discarded
    assert runs.get(bobs).status == RunStatus.QUEUED

    teacher = enter_as_instructor(door())
    teacher.switch_page(RUNS).run()
    ok(teacher)
    assert not teacher.button(key=f"{state.RUNS_OPEN}_cancel").disabled
    ok(teacher.button(key=f"{state.RUNS_OPEN}_cancel").click().run())
    assert runs.get(bobs).status == RunStatus.CANCELLED


def test_a_participant_has_at_most_the_rooms_unfinished_runs(fresh: Path) -> None:
    at = logged_in("Ada")
    at.switch_page(MODELS).run()
    at.selectbox(key=state.TRAIN_DATASET).select("digits")
    at.selectbox(key=state.TRAIN_ARCH).select("logreg")
    at.slider(key=state.TRAIN_EPOCHS).set_value(1)  # the teardown executes the two queued trainings
    for _ in range(3):
        ok(at.button(key=state.TRAIN_BUTTON).click().run())
    assert any("You already have 2 unfinished run(s), the most this room allows" in e for e in errors(at))
    runs = RunStore(Store(fresh)).list_runs()
    assert [(r.owner, r.status) for r in runs] == [("Ada", RunStatus.QUEUED)] * 2


def test_the_instructor_sees_everyone_and_clears_the_room(fresh: Path, trained_digits: TrainResult) -> None:
    ada = logged_in("Ada")
    logged_in("Bob")
    save(fresh, trained_digits, "adas-model", "Ada")
    save(fresh, trained_digits, "bobs-model", "Bob")
    prepared = save(fresh, trained_digits, "prepared", INSTRUCTOR)
    RunStore(Store(fresh)).submit("sweep", {"n": 1}, title="Bob's sweep", owner="Bob")
    ProgressStore(Store(fresh)).mark_passed("Bob", "fool-a-model", "no-such-step")
    ok(ada.switch_page(INSTRUCTOR_PAGE).run())  # hidden for participants; typed in, it shows nothing
    assert [i.value for i in ada.info] == ["This page is for the instructor of a workshop room."]
    assert not ada.dataframe and [b.key for b in ada.button] == [state.ROOM_SIGN_OUT]

    teacher = enter_as_instructor(door())
    assert any("Signed in as **instructor** (instructor)" in c.value for c in teacher.sidebar.caption)
    ok(teacher.switch_page(INSTRUCTOR_PAGE).run())
    people = teacher.dataframe[0].value
    assert list(people["participant"]) == ["Ada", "Bob"]
    assert list(people["models"]) == [1, 1] and list(people["unfinished runs"]) == [0, 1]
    lesson_one = next(lesson for lesson in lessons() if lesson.id == "fool-a-model")
    assert list(people["lessons (steps passed)"]) == [
        "none yet",
        f"{lesson_one.title} 1/{len(lesson_one.steps)}",
    ]
    assert list(teacher.dataframe[1].value["owner"]) == ["Bob"]  # the room's runs
    assert teacher.button(key=state.INSTR_CLEAR).disabled  # until confirmed
    teacher.checkbox(key=state.INSTR_CLEAR_CONFIRM).check().run()
    ok(teacher.button(key=state.INSTR_CLEAR).click().run())
    assert [s.value for s in teacher.success] == ["Deleted 2 model(s) and 1 run(s) of 2 participant(s)."], (
        errors(teacher)
    )
    assert [c.id for c in Store(fresh).list_models()] == [prepared.id]
    assert RunStore(Store(fresh)).list_runs() == []
    assert any("Nobody has entered the room yet" in c.value for c in teacher.caption)


def _show_owner() -> None:
    import streamlit as st

    from dlsec_ui import room

    st.write(f"owner={room.current_owner()} actor={room.actor()} limit={room.run_limit()}")


def test_without_a_passcode_nothing_changes(fresh: Path, stored_model: ModelCard) -> None:
    at = door(room=None)
    assert at.sidebar.number_input(key=state.SEED) and not at.sidebar.button
    assert not [t for t in at.text_input if t.key == state.ROOM_PASSCODE]
    ok(at.switch_page(MODELS).run())
    assert "owner" not in at.dataframe[0].value.columns
    assert not at.button(key=state.DELETE_BUTTON).disabled
    probe = AppTest.from_function(_show_owner, default_timeout=TIMEOUT).run()
    assert [m.value for m in probe.markdown] == ["owner=local actor=None limit=None"]


@pytest.mark.parametrize(
    "room", [{"passcode": "abc"}, {"instructor_passcode": "teach-me"}], ids=["too-short", "no-room-passcode"]
)
def test_a_misconfigured_room_keeps_the_lab_closed(fresh: Path, room: dict[str, Any]) -> None:
    at = door(room)
    assert len(errors(at)) == 1 and errors(at)[0].startswith("The workshop room is configured wrongly")
    assert "abc" not in errors(at)[0] and "teach-me" not in errors(at)[0]
    assert not at.sidebar.number_input


def test_the_instructors_run_selection_is_in_the_link(fresh: Path) -> None:
    runs = RunStore(Store(fresh))
    bobs = runs.submit("sweep", {"n": 1}, title="Bob's sweep", owner="Bob").id
    runs.submit("sweep", {"n": 1}, title="Ada's sweep", owner="Ada")
    teacher = enter_as_instructor(door())
    teacher.query_params[state.RUNS_PARAM] = [bobs]  # a link with Bob's run selected
    teacher.switch_page(INSTRUCTOR_PAGE).run()
    ok(teacher)
    cancel = teacher.button(key=state.INSTR_CANCEL)
    assert cancel.label.startswith("Cancel 1 selected") and not cancel.disabled
    ok(cancel.click().run())
    assert runs.get(bobs).status == RunStatus.CANCELLED
    assert [r.status for r in runs.list_runs() if r.id != bobs] == [RunStatus.QUEUED]
