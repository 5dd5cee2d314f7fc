"""Runs: every study the lab executes, stored in the same SQLite database as the models.

A run is one execution of a registered study (`dlsec_core.studies`) with a frozen config. It lives through::

    queued -> running -> done | failed | cancelled | interrupted

Anyone may submit a run or ask to cancel it (the web server, the CLI, a notebook); only an executor's worker
moves it out of `queued` (`claim`) and writes its progress, events and result. A queued run that is cancelled
never starts; a running one stops at its next event. A running run whose worker stopped beating (killed, machine
gone) is marked `interrupted` by `reap`, which anyone may call; `retry` queues a fresh run with the same config.

In a workshop room every change is checked against the run's owner (`dlsec_core.access`): a participant cancels
and deletes only their own runs, the instructor any; `submit` can cap how many unfinished runs one owner has.

Tables (schema 2 of `dlsec_core.store`; schema 3 gave models an owner too, 4 added lesson progress)::

    runs         one row per run: study, config and result as JSON, status, progress, timings, versions, owner
    run_models   (run_id, model_id): which stored models a run reads or wrote, for "this model's runs"
    run_events   (run_id, seq, payload): the events a run yielded, in order (JSON), for charts that redraw

Artifact files (images, CSVs a study writes beside its JSON result) go under `<home>/runs/<run id>/`, written
atomically like model weights. Every method opens its own short-lived connection (see `Store`), so a `RunStore`
may be shared by threads and processes.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from dlsec_core.access import Actor, check_may_change
from dlsec_core.errors import InvalidInputError, NotAllowedError, NotFoundError
from dlsec_core.store import Store, write_atomic

STALE_AFTER_S = 30.0
"""A running run whose worker has not beaten for this long is interrupted (workers beat every few seconds)."""

_RUN_ID_LEN = 12


class RunStatus(StrEnum):
    """Where a run is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def is_active(self) -> bool:
        return self in (RunStatus.QUEUED, RunStatus.RUNNING)

    @property
    def can_retry(self) -> bool:
        return self in (RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED)


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """One run as stored (a snapshot: read it again for fresh progress)."""

    id: str
    study: str
    title: str
    config: dict[str, Any]
    seed: int | None
    model_ids: tuple[str, ...]
    status: RunStatus
    progress: float  # [0, 1]
    message: str
    cancel_requested: bool
    result: dict[str, Any] | None  # the study's result as JSON, once done
    error: str | None  # a sentence for the user, once failed or interrupted
    owner: str | None
    versions: dict[str, str]  # dlsec, torch, opacus, python
    worker: str | None  # host:pid of the worker that claimed it
    created_at: str  # ISO 8601, UTC
    started_at: str | None
    finished_at: str | None
    heartbeat_at: float | None  # seconds since the epoch
    retry_of: str | None

    @property
    def is_active(self) -> bool:
        return self.status.is_active

    @property
    def seconds(self) -> float | None:
        """Running time so far, or in total once finished; None before it started."""
        if self.started_at is None:
            return None
        end = datetime.fromisoformat(self.finished_at) if self.finished_at else datetime.now(UTC)
        return max(0.0, (end - datetime.fromisoformat(self.started_at)).total_seconds())

    def to_record(self) -> dict[str, Any]:
        """A flat row for a table or `--json`."""
        return {
            "id": self.id,
            "study": self.study,
            "title": self.title,
            "status": str(self.status),
            "progress": round(self.progress, 4),
            "message": self.message,
            "models": list(self.model_ids),
            "seed": self.seed,
            "owner": self.owner,
            "created": self.created_at,
            "seconds": None if self.seconds is None else round(self.seconds, 2),
            "error": self.error,
        }

    @classmethod
    def _from_row(cls, row: sqlite3.Row, model_ids: Sequence[str]) -> RunRecord:
        return cls(
            id=row["id"],
            study=row["study"],
            title=row["title"],
            config=json.loads(row["config"]),
            seed=row["seed"],
            model_ids=tuple(model_ids),
            status=RunStatus(row["status"]),
            progress=float(row["progress"]),
            message=row["message"],
            cancel_requested=bool(row["cancel_requested"]),
            result=None if row["result"] is None else json.loads(row["result"]),
            error=row["error"],
            owner=row["owner"],
            versions=json.loads(row["versions"]),
            worker=row["worker"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            heartbeat_at=row["heartbeat_at"],
            retry_of=row["retry_of"],
        )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def software_versions() -> dict[str, str]:
    """The versions a result depends on, stored with every run."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("dlsec", "torch", "opacus", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "source" if dist == "dlsec" else "absent"
    return out


def worker_name() -> str:
    """`host:pid` of this process: who claimed a run."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _check_run_id(run_id: str) -> str:
    if (
        not isinstance(run_id, str)
        or len(run_id) != _RUN_ID_LEN
        or not all(c in "0123456789abcdef" for c in run_id)
    ):
        raise NotFoundError(f"There is no run with id {run_id!r}.")
    return run_id


def _filters(
    *, study: str | None, status: RunStatus | str | None, model_id: str | None, owner: str | None
) -> tuple[str, list[str]]:
    """The WHERE clause (with its leading space, or empty) and parameters of a runs query over `runs r`."""
    where, params = [], []
    if study is not None:
        where.append("r.study = ?")
        params.append(study)
    if status is not None:
        where.append("r.status = ?")
        params.append(RunStatus(status).value)
    if owner is not None:
        where.append("r.owner = ?")
        params.append(owner)
    if model_id is not None:
        where.append("r.id IN (SELECT run_id FROM run_models WHERE model_id = ?)")
        params.append(model_id)
    return (" WHERE " + " AND ".join(where) if where else ""), params


class RunStore:
    """The runs of one store (same home, same database file)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.dir: Path = store.home / "runs"

    # -- submitting and reading ------------------------------------------------------------------------------

    def submit(
        self,
        study: str,
        config: dict[str, Any],
        *,
        title: str,
        seed: int | None = None,
        model_ids: Iterable[str] = (),
        owner: str | None = None,
        retry_of: str | None = None,
        max_active: int | None = None,
    ) -> RunRecord:
        """Queue a run; a worker picks it up. `config` must be the study config's JSON form.

        Args:
            owner: who queues it (a room participant's name, or a browser session's id outside a room).
            max_active: at most this many unfinished (queued or running) runs per owner (a workshop room's limit,
                so one participant cannot fill the shared workers' queue); None: no limit.

        Raises:
            NotAllowedError: `owner` already has `max_active` unfinished runs.
        """
        try:
            config_json = json.dumps(config, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise InvalidInputError(f"A run's config must be plain JSON, got {config!r}: {err}") from err
        run_id = uuid.uuid4().hex[:_RUN_ID_LEN]
        ids = list(dict.fromkeys(model_ids))
        if max_active is not None and owner is None:
            raise ValueError("max_active limits an owner's runs: give the owner")
        # Counted in the inserting transaction: two quick clicks cannot both pass the cap.
        with self.store._transaction() as conn:
            if max_active is not None:
                active = conn.execute(
                    "SELECT COUNT(*) FROM runs WHERE owner = ? AND status IN (?, ?)",
                    (owner, RunStatus.QUEUED.value, RunStatus.RUNNING.value),
                ).fetchone()[0]
                if active >= max_active:
                    raise NotAllowedError(
                        f"You already have {active} unfinished run(s), the most this room allows per participant "
                        f"({max_active}); wait for one to finish or cancel one, then try again."
                    )
            conn.execute(
                "INSERT INTO runs (id, study, title, config, seed, status, progress, message, cancel_requested, "
                "owner, versions, created_at, retry_of) VALUES (?, ?, ?, ?, ?, ?, 0, '', 0, ?, ?, ?, ?)",
                (run_id, study, title, config_json, seed, RunStatus.QUEUED.value, owner,
                 json.dumps(software_versions()), _now(), retry_of),
            )  # fmt: skip
            conn.executemany(
                "INSERT INTO run_models (run_id, model_id) VALUES (?, ?)", [(run_id, m) for m in ids]
            )
        return self.get(run_id)

    def get(self, run_id: str) -> RunRecord:
        _check_run_id(run_id)
        with self.store._connect() as conn:
            row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"There is no run with id {run_id!r}.")
            models = [
                r[0] for r in conn.execute("SELECT model_id FROM run_models WHERE run_id = ?", (run_id,))
            ]
        return RunRecord._from_row(row, models)

    def list_runs(
        self,
        *,
        study: str | None = None,
        status: RunStatus | str | None = None,
        model_id: str | None = None,
        owner: str | None = None,
        limit: int = 500,
    ) -> list[RunRecord]:
        """Runs, newest first, filtered by study, status, a model they touch, or owner."""
        where, params = _filters(study=study, status=status, model_id=model_id, owner=owner)
        sql = "SELECT r.* FROM runs r" + where + " ORDER BY r.created_at DESC, r.rowid DESC LIMIT ?"
        with self.store._connect() as conn:
            rows = conn.execute(sql, (*params, int(limit))).fetchall()
            ids = [r["id"] for r in rows]
            links: dict[str, list[str]] = {}
            for run_id, m in conn.execute(  # only the listed runs' links, not the whole table
                f"SELECT run_id, model_id FROM run_models WHERE run_id IN ({', '.join('?' for _ in ids)})",
                ids,
            ):
                links.setdefault(run_id, []).append(m)
        return [RunRecord._from_row(r, links.get(r["id"], [])) for r in rows]

    def count_runs(
        self,
        *,
        study: str | None = None,
        status: RunStatus | str | None = None,
        model_id: str | None = None,
        owner: str | None = None,
    ) -> int:
        """How many runs `list_runs` would list with these filters and no limit."""
        where, params = _filters(study=study, status=status, model_id=model_id, owner=owner)
        with self.store._connect() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM runs r" + where, params).fetchone()[0])

    def latest(self, study: str, *, model_id: str | None = None) -> RunRecord | None:
        """The newest finished (done) run of a study, for a page that opens on its last result."""
        done = self.list_runs(study=study, status=RunStatus.DONE, model_id=model_id, limit=1)
        return done[0] if done else None

    def events(self, run_id: str, since: int = 0) -> list[dict[str, Any]]:
        """The events with sequence number >= `since` (0-based), in order."""
        _check_run_id(run_id)
        with self.store._connect() as conn:
            rows = conn.execute(
                "SELECT payload FROM run_events WHERE run_id = ? AND seq >= ? ORDER BY seq", (run_id, since)
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def export_record(self, run_id: str) -> dict[str, Any]:
        """Everything stored about a run as one JSON-able dict: the table row, config, versions, result, events."""
        run = self.get(run_id)
        return {**run.to_record(), "config": run.config, "versions": run.versions, "result": run.result,
                "events": self.events(run.id)}  # fmt: skip

    # -- what users do to runs --------------------------------------------------------------------------------

    def cancel(self, run_id: str, *, actor: Actor | None = None) -> RunRecord:
        """A queued run is cancelled at once; a running one stops at its next event. Finished runs are left as is.

        Raises:
            NotFoundError: no run has this id.
            NotAllowedError: `actor` is a room participant and the run is not theirs (`dlsec_core.access`).
        """
        _check_run_id(run_id)
        with self.store._transaction() as conn:
            row = conn.execute("SELECT status, title, owner FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"There is no run with id {run_id!r}.")
            check_may_change(actor, row["owner"], f"run {run_id} ({row['title']})")
            if row["status"] == RunStatus.QUEUED:
                conn.execute(
                    "UPDATE runs SET status = ?, cancel_requested = 1, finished_at = ?, message = ? WHERE id = ?",
                    (RunStatus.CANCELLED.value, _now(), "cancelled before it started", run_id),
                )
            elif row["status"] == RunStatus.RUNNING:
                conn.execute("UPDATE runs SET cancel_requested = 1 WHERE id = ?", (run_id,))
        return self.get(run_id)

    def retry(self, run_id: str, *, owner: str | None = None, max_active: int | None = None) -> RunRecord:
        """Queue a new run with the same study, config and models as a failed, cancelled or interrupted one
        (owned by `owner`, default the old run's; `max_active` as in `submit`)."""
        old = self.get(run_id)
        if not old.status.can_retry:
            raise InvalidInputError(
                f"Run {run_id} is {old.status}; only failed, cancelled or interrupted runs retry."
            )
        return self.submit(
            old.study, old.config, title=old.title, seed=old.seed, model_ids=old.model_ids,
            owner=owner if owner is not None else old.owner, retry_of=old.id, max_active=max_active,
        )  # fmt: skip

    def delete(self, run_id: str, *, actor: Actor | None = None) -> None:
        """Remove a finished run, its events and its artifact files. An active run must be cancelled first.

        Raises:
            NotAllowedError: `actor` is a room participant and the run is not theirs (`dlsec_core.access`).
        """
        run = self.get(run_id)
        check_may_change(actor, run.owner, f"run {run_id} ({run.title})")
        if run.is_active:
            raise InvalidInputError(f"Run {run_id} is still {run.status}; cancel it before deleting it.")
        with self.store._transaction() as conn:
            conn.execute("DELETE FROM run_events WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM run_models WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        shutil.rmtree(self.dir / run_id, ignore_errors=True)

    # -- what workers do -----------------------------------------------------------------------------------------

    def claim(self, worker: str, studies: Iterable[str] | None = None) -> RunRecord | None:
        """Take the oldest queued run (of `studies`, if given) for `worker`; None when nothing is queued.

        One transaction (BEGIN IMMEDIATE), so two workers never claim the same run.
        """
        wanted = None if studies is None else list(studies)
        with self.store._transaction() as conn:
            sql = "SELECT id FROM runs WHERE status = ?"
            params: list[Any] = [RunStatus.QUEUED.value]
            if wanted is not None:
                sql += f" AND study IN ({', '.join('?' for _ in wanted)})"
                params += wanted
            row = conn.execute(sql + " ORDER BY created_at, rowid LIMIT 1", params).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE runs SET status = ?, worker = ?, started_at = ?, heartbeat_at = ?, message = ? WHERE id = ?",
                (RunStatus.RUNNING.value, worker, _now(), time.time(), "started", row["id"]),
            )
        return self.get(row["id"])

    def beat(self, run_id: str) -> bool:
        """The worker is alive; returns True when someone asked to cancel the run."""
        with self.store._transaction() as conn:
            conn.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (time.time(), run_id))
            row = conn.execute("SELECT cancel_requested FROM runs WHERE id = ?", (run_id,)).fetchone()
        return bool(row and row[0])

    def report(
        self,
        run_id: str,
        *,
        progress: float,
        message: str,
        events: Sequence[dict[str, Any]] = (),
    ) -> bool:
        """Append events and set progress; returns True when someone asked to cancel the run."""
        with self.store._transaction() as conn:
            start = conn.execute(
                "SELECT COALESCE(MAX(seq) + 1, 0) FROM run_events WHERE run_id = ?", (run_id,)
            ).fetchone()[0]
            conn.executemany(
                "INSERT INTO run_events (run_id, seq, payload) VALUES (?, ?, ?)",
                [(run_id, start + i, json.dumps(e, allow_nan=False)) for i, e in enumerate(events)],
            )
            conn.execute(
                "UPDATE runs SET progress = ?, message = ?, heartbeat_at = ? WHERE id = ? AND status = ?",
                (min(1.0, max(0.0, float(progress))), message, time.time(), run_id, RunStatus.RUNNING.value),
            )
            row = conn.execute("SELECT cancel_requested FROM runs WHERE id = ?", (run_id,)).fetchone()
        return bool(row and row[0])

    def finish(
        self,
        run_id: str,
        status: RunStatus,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        model_ids: Iterable[str] = (),
    ) -> RunRecord:
        """Record a run's end. Only a running run can finish (an interrupted one stays interrupted)."""
        if status.is_active:
            raise ValueError(f"finish needs a final status, got {status}")
        result_json = None if result is None else json.dumps(result, sort_keys=True, allow_nan=False)
        with self.store._transaction() as conn:
            updated = conn.execute(
                "UPDATE runs SET status = ?, result = ?, error = ?, finished_at = ?, progress = CASE WHEN ? THEN 1.0 "
                "ELSE progress END, message = ? WHERE id = ? AND status = ?",
                (status.value, result_json, error, _now(), status == RunStatus.DONE, str(status), run_id,
                 RunStatus.RUNNING.value),
            ).rowcount  # fmt: skip
            if updated:
                ids = list(model_ids)
                conn.executemany(
                    "INSERT OR IGNORE INTO run_models (run_id, model_id) VALUES (?, ?)",
                    [(run_id, m) for m in ids],
                )
                # The models a run wrote are its owner's (a study stores them without knowing who queued it).
                conn.executemany(
                    "UPDATE models SET owner = (SELECT owner FROM runs WHERE id = ?) WHERE id = ? AND owner IS NULL",
                    [(run_id, m) for m in ids],
                )
        return self.get(run_id)

    def reap(self, stale_after_s: float = STALE_AFTER_S) -> list[str]:
        """Mark running runs whose worker is gone as interrupted: a dead process on this host, or no heartbeat
        for `stale_after_s` seconds. Returns their ids. Safe to call from anywhere, any time."""
        host = socket.gethostname()
        now = time.time()
        gone: list[str] = []
        with self.store._connect() as conn:
            rows = conn.execute(
                "SELECT id, worker, heartbeat_at FROM runs WHERE status = ?", (RunStatus.RUNNING.value,)
            ).fetchall()
        for row in rows:
            w_host, _, pid = (row["worker"] or "").rpartition(":")
            dead = w_host == host and pid.isdigit() and not _pid_alive(int(pid))
            stale = row["heartbeat_at"] is None or now - float(row["heartbeat_at"]) > stale_after_s
            if dead or stale:
                gone.append(row["id"])
        if gone:
            with self.store._transaction() as conn:
                for run_id in gone:
                    conn.execute(
                        "UPDATE runs SET status = ?, finished_at = ?, error = ?, message = ? WHERE id = ? AND status = ?",
                        (RunStatus.INTERRUPTED.value, _now(),
                         "The worker running this stopped (killed or its machine went away); press Retry.",
                         "interrupted", run_id, RunStatus.RUNNING.value),
                    )  # fmt: skip
        return gone

    # -- artifact files ------------------------------------------------------------------------------------------

    def artifact_dir(self, run_id: str) -> Path:
        path = self.dir / _check_run_id(run_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def write_artifact(self, run_id: str, name: str, data: bytes) -> Path:
        """Write one artifact file atomically (a hidden fsync'ed temp file, then a rename)."""
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise InvalidInputError(f"An artifact name is a plain file name, got {name!r}.")
        path = self.artifact_dir(run_id) / name
        write_atomic(path, data)
        return path

    def artifacts(self, run_id: str) -> list[Path]:
        path = self.dir / _check_run_id(run_id)
        return (
            sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            if path.exists()
            else []
        )
