"""A workshop room in the core: owners on models and runs enforced by the store itself, the per-participant run
limit, passcodes (constant-time comparison, rate limiting), the roster and clearing the room, and the upgrade of a
store written by schema 2 (tests/fixtures/home_schema2, made by the code of commit c1cb9d0)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from dlsec_core.access import INSTRUCTOR, Actor
from dlsec_core.errors import InvalidInputError, NotAllowedError
from dlsec_core.lessons.progress import ProgressStore
from dlsec_core.models import ModelSpec, build_model
from dlsec_core.room import (
    AttemptLimiter,
    RoomSettings,
    clean_display_name,
    clear_room,
    log_in,
    participants,
    passcode_matches,
    record_login,
)
from dlsec_core.runs import RunStatus, RunStore
from dlsec_core.store import SCHEMA_VERSION, Store

ROOT = Path(__file__).resolve().parents[2]
SPEC = ModelSpec(arch="logreg", input_shape=(1, 8, 8), num_classes=3, mean=(0.5,), std=(0.25,))
ALICE, BOB = Actor("alice"), Actor("bob")
TEACHER = Actor(INSTRUCTOR, instructor=True)


@pytest.fixture
def store(tmp_home: Path) -> Store:
    return Store(tmp_home)


def _model(store: Store, name: str, owner: str | None) -> str:
    return store.save_model(build_model(SPEC), SPEC, name=name, dataset="digits", owner=owner).id


def _run(runs: RunStore, owner: str | None, **kw: object) -> str:
    return runs.submit("sweep", {"n": 1}, title=f"sweep of {owner}", owner=owner, **kw).id  # type: ignore[arg-type]


def test_a_home_written_by_schema_2_is_upgraded(tmp_path: Path) -> None:
    home = tmp_path / "old_home"
    shutil.copytree(ROOT / "tests" / "fixtures" / "home_schema2", home)
    with sqlite3.connect(home / "dlsec.sqlite3") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    store = Store(home)
    with sqlite3.connect(store.db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    (card,) = store.list_models()
    assert (card.name, card.owner) == ("made-by-schema-2", None)  # made before rooms: nobody's
    store.load_model(card.id)
    (run,) = RunStore(store).list_runs()
    assert (run.title, run.owner, run.model_ids) == ("a queued run made by schema 2", "alice", (card.id,))
    assert participants(store) == []
    # A model made before the room: a participant cannot delete it, the instructor can.
    with pytest.raises(NotAllowedError, match="instructor"):
        store.delete_model(card.id, actor=ALICE)
    store.delete_model(card.id, actor=TEACHER)
    Store(home)  # opening again is a no-op


def test_participants_change_only_their_own_models(store: Store) -> None:
    a, b = _model(store, "a-model", "alice"), _model(store, "b-model", "bob")
    assert {c.name: c.owner for c in store.list_models()} == {"a-model": "alice", "b-model": "bob"}
    with pytest.raises(NotAllowedError, match="'b-model'.*bob's"):
        store.delete_model(b, actor=ALICE)
    with pytest.raises(NotAllowedError):
        store.rename_model(b, "mine now", actor=ALICE)
    assert store.get_card(b).name == "b-model"  # untouched
    assert store.rename_model(a, "a2", actor=ALICE).name == "a2"
    store.delete_model(a, actor=ALICE)
    store.delete_model(b, actor=TEACHER)  # the instructor may
    assert store.list_models() == []
    c = _model(store, "local", None)
    store.delete_model(c)  # outside a room (no actor): allowed, as before rooms


def test_participants_cancel_and_delete_only_their_own_runs(store: Store) -> None:
    runs = RunStore(store)
    mine, theirs = _run(runs, "alice"), _run(runs, "bob")
    with pytest.raises(NotAllowedError, match="bob's"):
        runs.cancel(theirs, actor=ALICE)
    assert runs.get(theirs).status == RunStatus.QUEUED  # still queued
    assert runs.cancel(mine, actor=ALICE).status == RunStatus.CANCELLED
    assert runs.cancel(theirs, actor=TEACHER).status == RunStatus.CANCELLED  # the instructor cancels any run
    with pytest.raises(NotAllowedError):
        runs.delete(theirs, actor=ALICE)
    runs.delete(mine, actor=ALICE)
    runs.delete(theirs, actor=BOB)
    assert runs.list_runs() == []
    # A running run: the participant's cancel request is refused, the owner's is recorded.
    running = _run(runs, "bob")
    assert runs.claim("w:1") is not None
    with pytest.raises(NotAllowedError):
        runs.cancel(running, actor=ALICE)
    assert not runs.get(running).cancel_requested
    assert runs.cancel(running, actor=BOB).cancel_requested


def test_models_a_run_wrote_belong_to_its_owner(store: Store) -> None:
    runs = RunStore(store)
    run_id = _run(runs, "alice")
    assert runs.claim("w:1") is not None
    written = _model(store, "trained by the run", None)  # a study stores models without knowing who queued it
    prepared = _model(store, "read by the run", INSTRUCTOR)
    runs.finish(run_id, RunStatus.DONE, result={}, model_ids=[written, prepared])
    assert store.get_card(written).owner == "alice"
    assert store.get_card(prepared).owner == INSTRUCTOR  # an owner is never overwritten


def test_unfinished_runs_per_participant_are_capped(store: Store) -> None:
    runs = RunStore(store)
    first = _run(runs, "alice", max_active=2)
    _run(runs, "alice", max_active=2)
    with pytest.raises(NotAllowedError, match=r"2 unfinished run\(s\).*\(2\)"):
        _run(runs, "alice", max_active=2)
    _run(runs, "bob", max_active=2)  # others are not affected
    assert runs.count_runs(owner="alice") == 2
    runs.cancel(first, actor=ALICE)
    again = runs.retry(first, owner="alice", max_active=2)  # a slot is free again; retry obeys the cap too
    with pytest.raises(NotAllowedError):
        runs.retry(first, owner="alice", max_active=2)
    assert again.owner == "alice" and again.retry_of == first
    _run(runs, "alice")  # no cap given: no cap (the CLI, outside a room)


def test_passcodes_compare_by_value_only() -> None:
    assert passcode_matches("owl-2026", "owl-2026")
    assert not passcode_matches("owl-2025", "owl-2026")
    assert not passcode_matches("", "owl-2026")
    assert not passcode_matches("owl-2026 ", "owl-2026")


def test_settings_from_secrets_or_environment() -> None:
    assert not RoomSettings.from_sources(None, {}).enabled  # nothing configured: no room, as before
    assert not RoomSettings.from_sources({}, {}).enabled
    env = {"DLSEC_ROOM_PASSCODE": "owl-2026", "DLSEC_ROOM_INSTRUCTOR_PASSCODE": "teach-me",
           "DLSEC_ROOM_MAX_ACTIVE_RUNS": "2"}  # fmt: skip
    s = RoomSettings.from_sources(None, env)
    assert (s.enabled, s.has_instructor, s.max_active_runs) == (True, True, 2)
    assert "owl" not in repr(s) and "teach" not in repr(s)  # never shown
    secrets = {"room": {"passcode": "from-secrets"}}
    s = RoomSettings.from_sources(secrets, env)  # secrets win over the environment
    assert (
        passcode_matches("from-secrets", s.passcode or "") and not s.has_instructor and s.max_active_runs == 3
    )
    bad = [
        ({"room": {"passcode": "abc"}}, "at least 4"),
        ({"room": {"passcode": 1234}}, "is text"),
        ({"room": {"instructor_passcode": "teach-me"}}, "no room passcode"),
        ({"room": {"passcode": "same-one", "instructor_passcode": "same-one"}}, "must differ"),
        ({"room": {"passcode": "owl-2026", "max_active_runs": 0}}, "positive whole number"),
        ({"room": {"passcode": "owl-2026", "max_active_runs": "2.5"}}, "positive whole number"),
        ({"room": {"pascode": "owl-2026"}}, "unknown keys"),
    ]
    for secrets, message in bad:
        with pytest.raises(InvalidInputError, match=message) as err:
            RoomSettings.from_sources(secrets, {})
        assert "same-one" not in str(err.value) and "abc" not in str(err.value)


def test_display_names() -> None:
    assert clean_display_name("  Ada   Lovelace ") == "Ada Lovelace"
    for bad in ("", "   ", "Instructor", "LOCAL", "x" * 41, "bell\x07"):
        with pytest.raises(InvalidInputError):
            clean_display_name(bad)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_wrong_passcodes_are_refused_and_rate_limited() -> None:
    settings = RoomSettings(passcode="owl-2026", instructor_passcode="teach-me")
    clock = Clock()
    limiter = AttemptLimiter(max_failures=5, window_s=60.0, clock=clock)
    assert log_in(settings, limiter, session="s1", passcode="owl-2026", name="Ada") == Actor("Ada")
    for _ in range(5):
        with pytest.raises(NotAllowedError, match="not right"):
            log_in(settings, limiter, session="s2", passcode="guess", name="Bob")
    # The sixth try is refused before the passcode is looked at, even with the right one.
    with pytest.raises(NotAllowedError, match="Too many wrong passcodes. Wait 60 s"):
        log_in(settings, limiter, session="s2", passcode="owl-2026", name="Bob")
    # Per name: a fresh session does not reset Bob's count; per session: another name from s2 waits too.
    with pytest.raises(NotAllowedError, match="Too many"):
        log_in(settings, limiter, session="s3", passcode="owl-2026", name="bob")
    with pytest.raises(NotAllowedError, match="Too many"):
        log_in(settings, limiter, session="s2", passcode="owl-2026", name="Cy")
    # Others log in meanwhile; the instructor uses the instructor passcode only.
    assert log_in(settings, limiter, session="s4", passcode="owl-2026", name="Cy") == Actor("Cy")
    with pytest.raises(NotAllowedError, match="not right"):
        log_in(settings, limiter, session="s5", passcode="owl-2026", instructor=True)
    assert log_in(settings, limiter, session="s5", passcode="teach-me", instructor=True) == TEACHER
    clock.now += 30
    with pytest.raises(NotAllowedError, match="Wait 30 s"):
        log_in(settings, limiter, session="s2", passcode="owl-2026", name="Bob")
    clock.now += 30.5  # the window slid past the failures
    assert log_in(settings, limiter, session="s2", passcode="owl-2026", name="Bob") == Actor("Bob")
    with pytest.raises(NotAllowedError, match="no workshop room"):
        log_in(RoomSettings(), limiter, session="s1", passcode="x", name="Ada")
    with pytest.raises(InvalidInputError):  # a bad name is not a passcode attempt
        log_in(settings, limiter, session="s6", passcode="guess", name="instructor")
    assert limiter.wait_s("session:s6") == 0.0


def test_roster_and_clearing_the_room(store: Store) -> None:
    runs = RunStore(store)
    for actor in (ALICE, BOB, TEACHER, ALICE):
        record_login(store, actor)
    _model(store, "a-model", "alice")
    _model(store, "b-model", "bob")
    prepared = _model(store, "prepared", INSTRUCTOR)
    before = _model(store, "before the room", None)
    _run(runs, "alice")
    running = _run(runs, "bob")
    runs.submit("sweep", {"n": 1}, title="b2", owner="bob")
    _run(runs, INSTRUCTOR)
    assert runs.claim("w:1") is not None  # alice's, the oldest, now runs
    listed = {p.name: (p.models, p.runs, p.active_runs) for p in participants(store)}
    assert listed == {"alice": (1, 1, 1), "bob": (1, 2, 2)}  # the instructor is not a participant
    progress = ProgressStore(store)
    progress.mark_passed("bob", "fool", "flip")
    progress.mark_passed(INSTRUCTOR, "fool", "flip")
    with pytest.raises(NotAllowedError, match="Only the instructor"):
        clear_room(store, ALICE)
    report = clear_room(store, TEACHER)
    assert (report.models_deleted, report.runs_deleted, report.runs_stopping) == (2, 2, 1)
    assert "still stopping" in report.sentence()
    assert {c.id for c in store.list_models()} == {prepared, before}
    assert [r.owner for r in runs.list_runs()] == [INSTRUCTOR, "alice"]  # alice's run is stopping
    assert running not in {r.id for r in runs.list_runs()}  # bob's queued runs: cancelled and deleted
    assert [p.owner for p in progress.everyone()] == [INSTRUCTOR]  # bob's lesson progress is forgotten too
    assert [p.name for p in participants(store)] == ["alice"]  # kept while their run stops
    (alice_run,) = runs.list_runs(owner="alice")
    runs.finish(alice_run.id, RunStatus.CANCELLED, error="Cancelled by its user.")
    report = clear_room(store, TEACHER)
    assert (report.runs_deleted, report.runs_stopping, report.participants_removed) == (1, 0, 1)
    assert participants(store) == [] and [r.owner for r in runs.list_runs()] == [INSTRUCTOR]
