"""A workshop room: optional passcodes, participants by display name, an instructor, and what they may do.

Without a room passcode configured the lab is one local user, as it always was (`RoomSettings.enabled` is False and
nothing here is used). With one:

- a participant enters the room passcode and a display name; the name is the owner of everything they make
  (`dlsec_core.access`: they see everyone's models, delete and cancel only their own);
- the instructor enters the instructor passcode; they may cancel any run and clear the room;
- passcodes are compared in constant time (`passcode_matches`), never logged or shown (`RoomSettings` leaves them
  out of its repr), and wrong ones are rate-limited (`AttemptLimiter`) per browser session and per name;
- each participant may have at most `max_active_runs` unfinished runs (`RunStore.submit(max_active=...)`).

The settings come from Streamlit's secrets (`[room]` in `.streamlit/secrets.toml`) or, for scripts and tests, the
environment (`DLSEC_ROOM_PASSCODE`, `DLSEC_ROOM_INSTRUCTOR_PASSCODE`, `DLSEC_ROOM_MAX_ACTIVE_RUNS`); see
`RoomSettings.from_sources`. Participants who logged in are kept in the store's `participants` table (schema 3),
so the instructor's list survives a server restart; `participants(store)` is the one place that lists them (a lesson
module adds its progress beside it).

Names are not accounts: anyone who knows the room passcode may type any free name. The passcode keeps strangers
out; within the room, ownership stops accidents and mischief between classmates, not a determined impersonator.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dlsec_core.access import INSTRUCTOR, Actor
from dlsec_core.errors import InvalidInputError, NotAllowedError
from dlsec_core.lessons.progress import ProgressStore
from dlsec_core.runs import RunStatus, RunStore
from dlsec_core.store import Store
from dlsec_core.text import timestamp

ENV_PASSCODE = "DLSEC_ROOM_PASSCODE"
ENV_INSTRUCTOR_PASSCODE = "DLSEC_ROOM_INSTRUCTOR_PASSCODE"
ENV_MAX_ACTIVE_RUNS = "DLSEC_ROOM_MAX_ACTIVE_RUNS"
SECRETS_SECTION = "room"

DEFAULT_MAX_ACTIVE_RUNS = 3
MAX_DISPLAY_NAME = 40
RESERVED_NAMES = frozenset({INSTRUCTOR, "local", "admin"})
MIN_PASSCODE = 4

MAX_FAILURES = 5
"""Wrong passcodes allowed per session, and per name, within `FAILURE_WINDOW_S`; the next attempts wait."""
FAILURE_WINDOW_S = 60.0


@dataclass(frozen=True, kw_only=True)
class RoomSettings:
    """A room's configuration. The passcodes never appear in a repr, a log line or an error message."""

    passcode: str | None = field(default=None, repr=False)
    instructor_passcode: str | None = field(default=None, repr=False)
    max_active_runs: int = DEFAULT_MAX_ACTIVE_RUNS

    @property
    def enabled(self) -> bool:
        """A room exists when a room passcode is configured; without one the lab is one local user."""
        return bool(self.passcode)

    @property
    def has_instructor(self) -> bool:
        return bool(self.instructor_passcode)

    @classmethod
    def from_sources(cls, secrets: Mapping[str, Any] | None, env: Mapping[str, str]) -> RoomSettings:
        """The `[room]` section of Streamlit's secrets when it has one, else the environment variables.

        Secrets keys: `passcode`, `instructor_passcode`, `max_active_runs`; environment: `DLSEC_ROOM_PASSCODE`,
        `DLSEC_ROOM_INSTRUCTOR_PASSCODE`, `DLSEC_ROOM_MAX_ACTIVE_RUNS`. Secrets win when both are set.

        Raises:
            InvalidInputError: a passcode shorter than 4 characters, an instructor passcode without a room
                passcode or equal to it, a limit that is not a positive integer, or unknown keys in `[room]`.
        """
        section = secrets.get(SECRETS_SECTION) if secrets is not None else None
        if section is not None:
            known = {"passcode", "instructor_passcode", "max_active_runs"}
            unknown = sorted(set(section) - known)
            if unknown:
                raise InvalidInputError(
                    f"The [room] secrets have unknown keys {unknown}; use {sorted(known)}."
                )
            raw: dict[str, Any] = {k: section.get(k) for k in known}
            where = "[room] in .streamlit/secrets.toml"
        else:
            raw = {
                "passcode": env.get(ENV_PASSCODE),
                "instructor_passcode": env.get(ENV_INSTRUCTOR_PASSCODE),
                "max_active_runs": env.get(ENV_MAX_ACTIVE_RUNS),
            }
            where = f"the environment ({ENV_PASSCODE}, ...)"
        passcode = _passcode(raw["passcode"], "passcode", where)
        instructor = _passcode(raw["instructor_passcode"], "instructor_passcode", where)
        if instructor and not passcode:
            raise InvalidInputError(f"{where} sets an instructor passcode but no room passcode; set both.")
        if instructor and passcode and hmac.compare_digest(instructor.encode(), passcode.encode()):
            raise InvalidInputError(f"{where}: the instructor passcode must differ from the room passcode.")
        limit_raw = raw["max_active_runs"]
        limit = DEFAULT_MAX_ACTIVE_RUNS
        if limit_raw not in (None, ""):
            try:
                limit = int(limit_raw)
            except (TypeError, ValueError):
                limit = 0
            if isinstance(limit_raw, bool) or limit < 1 or str(limit) != str(limit_raw).strip():
                raise InvalidInputError(
                    f"{where}: max_active_runs is a positive whole number, got {limit_raw!r}."
                )
        return cls(passcode=passcode, instructor_passcode=instructor, max_active_runs=limit)


def _passcode(value: Any, key: str, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidInputError(f"{where}: {key} is text (in quotes), got a {type(value).__name__}.")
    if len(value) < MIN_PASSCODE:  # the length only: the value itself is never shown
        raise InvalidInputError(f"{where}: {key} must be at least {MIN_PASSCODE} characters long.")
    return value


def passcode_matches(given: str, expected: str) -> bool:
    """Whether `given` is the passcode, in time that depends on neither (both are hashed to 32 bytes first, so not
    even the length leaks; `hmac.compare_digest` compares the digests in constant time)."""
    a = hashlib.sha256(given.encode("utf-8", "surrogatepass")).digest()
    b = hashlib.sha256(expected.encode("utf-8", "surrogatepass")).digest()
    return hmac.compare_digest(a, b)


def clean_display_name(name: str) -> str:
    """A participant's display name: 1-40 printable characters after stripping (inner spaces collapsed), not a
    reserved name ("instructor", "local", "admin", in any case).

    Raises:
        InvalidInputError: the name is empty, too long, has control characters, or is reserved.
    """
    if not isinstance(name, str):
        raise InvalidInputError(f"A display name is text, got {name!r}.")
    cleaned = " ".join(name.split())
    if not cleaned:
        raise InvalidInputError("Enter a display name: the others see it beside your models and runs.")
    if len(cleaned) > MAX_DISPLAY_NAME:
        raise InvalidInputError(
            f"A display name has at most {MAX_DISPLAY_NAME} characters, got {len(cleaned)}."
        )
    if not cleaned.isprintable():
        raise InvalidInputError("A display name cannot contain control characters.")
    if cleaned.casefold() in RESERVED_NAMES:
        raise InvalidInputError(f"{cleaned!r} is reserved; choose another display name.")
    return cleaned


class AttemptLimiter:
    """Counts wrong passcodes per key (a session, a name) in a sliding window; thread-safe.

    It lives in the server's memory, not in the store: attempts only matter for as long as a guesser keeps trying,
    the counter is read on every login (a database write per wrong guess would let a guesser load the store shared by
    every participant), and a restart that forgets it is something only the instructor can do. Keys are limited
    separately: a new browser session does not reset the per-name count, and guessing under many names from one
    session is still stopped by the session's count.

    Args:
        max_failures: wrong attempts allowed per key within `window_s`.
        window_s: the sliding window, in seconds.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window_s: float = FAILURE_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or window_s <= 0:
            raise ValueError(f"need max_failures >= 1 and window_s > 0, got {max_failures}, {window_s}")
        self.max_failures, self.window_s, self.clock = max_failures, window_s, clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key, deque())
        while times and now - times[0] >= self.window_s:
            times.popleft()
        if not times:
            self._failures.pop(key, None)
        return times

    def wait_s(self, *keys: str) -> float:
        """Seconds until every key may try again (0.0: now)."""
        with self._lock:
            now = self.clock()
            waits = [
                self.window_s - (now - times[0])
                for key in keys
                if len(times := self._recent(key, now)) >= self.max_failures
            ]
        return max(waits, default=0.0)

    def failed(self, *keys: str) -> None:
        with self._lock:
            now = self.clock()
            for key in keys:
                self._recent(key, now)
                self._failures.setdefault(key, deque()).append(now)

    def forget(self, *keys: str) -> None:
        """A successful login clears its keys' counts."""
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)


def log_in(
    settings: RoomSettings,
    limiter: AttemptLimiter,
    *,
    session: str,
    passcode: str,
    name: str = "",
    instructor: bool = False,
) -> Actor:
    """Check a login and return who acts: a participant (`name`) or the instructor.

    Rate limiting comes first: while a session or a name has used up its wrong attempts, the passcode is not even
    compared. Every refusal is the same sentence whatever was wrong about the passcode.

    Raises:
        NotAllowedError: wrong passcode, rate-limited, no room, or no instructor passcode configured.
        InvalidInputError: a bad display name (checked before the passcode, and not counted as an attempt).
    """
    if not settings.enabled:
        raise NotAllowedError("This lab has no workshop room: there is nothing to log in to.")
    if instructor:
        if not settings.has_instructor:
            raise NotAllowedError("This room has no instructor passcode configured.")
        expected, who = settings.instructor_passcode, INSTRUCTOR
    else:
        expected, who = settings.passcode, clean_display_name(name)
    keys = (f"session:{session}", f"name:{who.casefold()}")
    wait = limiter.wait_s(*keys)
    if wait > 0:
        raise NotAllowedError(f"Too many wrong passcodes. Wait {wait:.0f} s, then try again.")
    if not passcode_matches(passcode, expected or ""):  # `expected` is set: checked above
        limiter.failed(*keys)
        raise NotAllowedError("That passcode is not right. Ask the instructor for the room's passcode.")
    limiter.forget(*keys)
    return Actor(owner=who, instructor=instructor)


# -- the room's roster in the store -----------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def record_login(store: Store, actor: Actor) -> None:
    """Remember a participant (or the instructor) in the store's roster: first and last login."""
    role = "instructor" if actor.instructor else "participant"
    now = _now()
    with store._transaction() as conn:
        conn.execute(
            "INSERT INTO participants (name, role, first_seen, last_seen) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET last_seen = excluded.last_seen",
            (actor.owner, role, now, now),
        )


@dataclass(frozen=True, kw_only=True)
class Participant:
    """One participant as the instructor sees them (a lesson module adds progress beside these counts)."""

    name: str
    first_seen: str
    last_seen: str
    models: int
    runs: int
    active_runs: int

    def to_record(self) -> dict[str, Any]:
        return {"participant": self.name, "models": self.models, "runs": self.runs,
                "unfinished runs": self.active_runs, "first login": timestamp(self.first_seen),
                "last login": timestamp(self.last_seen)}  # fmt: skip


def participants(store: Store) -> list[Participant]:
    """Every participant who logged in to the room (not the instructor), by first login, with their counts.

    This is the hook for per-participant views (lesson progress): key anything per participant on `name`.
    """
    with store._connect() as conn:
        rows = conn.execute(
            "SELECT p.name, p.first_seen, p.last_seen, "
            "(SELECT COUNT(*) FROM models m WHERE m.owner = p.name) AS models, "
            "(SELECT COUNT(*) FROM runs r WHERE r.owner = p.name) AS runs, "
            "(SELECT COUNT(*) FROM runs r WHERE r.owner = p.name AND r.status IN (?, ?)) AS active "
            "FROM participants p WHERE p.role = 'participant' ORDER BY p.first_seen, p.name",
            (RunStatus.QUEUED.value, RunStatus.RUNNING.value),
        ).fetchall()
    return [
        Participant(name=r["name"], first_seen=r["first_seen"], last_seen=r["last_seen"], models=r["models"],
                    runs=r["runs"], active_runs=r["active"])
        for r in rows
    ]  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class ClearReport:
    """What clearing the room did."""

    models_deleted: int
    runs_deleted: int
    runs_stopping: int  # running runs asked to stop; they are deleted by the next clear once they ended
    participants_removed: int

    def sentence(self) -> str:
        text = (
            f"Deleted {self.models_deleted} model(s) and {self.runs_deleted} run(s) of "
            f"{self.participants_removed} participant(s)."
        )
        if self.runs_stopping:
            text += f" {self.runs_stopping} run(s) are still stopping: clear again in a few seconds."
        return text


def clear_room(store: Store, actor: Actor) -> ClearReport:
    """Delete every participant's models, runs and lesson progress and forget the participants (the instructor's own work, and
    models made before the room, stay). Running runs are cancelled first; those still stopping stay listed until
    the next clear.

    Raises:
        NotAllowedError: `actor` is not the instructor.
    """
    if not actor.instructor:
        raise NotAllowedError("Only the instructor can clear the room.")
    names = [p.name for p in participants(store)]
    runs = RunStore(store)
    models_deleted = runs_deleted = stopping = 0
    for name in names:
        for run in runs.list_runs(owner=name, limit=100_000):
            if run.is_active:
                run = runs.cancel(run.id, actor=actor)
            if run.is_active:
                stopping += 1
                continue
            runs.delete(run.id, actor=actor)
            runs_deleted += 1
        for card in [c for c in store.list_models() if c.owner == name]:
            store.delete_model(card.id, actor=actor)
            models_deleted += 1
        ProgressStore(store).reset(name)
    with store._transaction() as conn:
        removed = conn.execute(
            "DELETE FROM participants WHERE role = 'participant' AND name NOT IN "
            "(SELECT owner FROM runs WHERE owner IS NOT NULL)"
        ).rowcount
    return ClearReport(
        models_deleted=models_deleted, runs_deleted=runs_deleted, runs_stopping=stopping,
        participants_removed=removed,
    )  # fmt: skip
