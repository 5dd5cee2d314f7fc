"""Each participant's lesson progress, in the store's SQLite database (table `lesson_progress`, schema 3).

One row per passed step: (owner, lesson, step) -> when it passed and the evidence the check recorded (a run id,
the ε typed, the answer picked). A step passes once; passing it again keeps the first time and refreshes the
evidence. `owner` is the participant ("local" in a lab without a room).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dlsec_core.store import Store


@dataclass(frozen=True)
class StepProgress:
    owner: str
    lesson: str
    step: str
    passed_at: str  # ISO 8601, UTC
    evidence: dict[str, Any]


class ProgressStore:
    """Passed lesson steps per participant, beside the models and runs of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def mark_passed(self, owner: str, lesson: str, step: str, evidence: dict[str, Any] | None = None) -> None:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self.store._transaction() as conn:
            conn.execute(
                "INSERT INTO lesson_progress (owner, lesson, step, passed_at, evidence) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (owner, lesson, step) DO UPDATE SET evidence = excluded.evidence",
                (owner, lesson, step, now, json.dumps(evidence or {}, sort_keys=True, default=str)),
            )

    def passed(self, owner: str, lesson: str | None = None) -> dict[tuple[str, str], StepProgress]:
        """(lesson, step) -> its progress, for one participant (one lesson, or all)."""
        sql = "SELECT * FROM lesson_progress WHERE owner = ?" + (" AND lesson = ?" if lesson else "")
        with self.store._connect() as conn:
            rows = conn.execute(sql, (owner, lesson) if lesson else (owner,)).fetchall()
        return {(r["lesson"], r["step"]): _record(r) for r in rows}

    def everyone(self) -> list[StepProgress]:
        """Every participant's passed steps (an instructor's view), oldest first."""
        with self.store._connect() as conn:
            rows = conn.execute("SELECT * FROM lesson_progress ORDER BY passed_at, owner").fetchall()
        return [_record(r) for r in rows]

    def reset(self, owner: str, lesson: str | None = None) -> int:
        """Forget a participant's progress (one lesson, or all); returns how many steps were forgotten."""
        sql = "DELETE FROM lesson_progress WHERE owner = ?" + (" AND lesson = ?" if lesson else "")
        with self.store._transaction() as conn:
            return int(conn.execute(sql, (owner, lesson) if lesson else (owner,)).rowcount)


def _record(row: Any) -> StepProgress:
    return StepProgress(
        row["owner"], row["lesson"], row["step"], row["passed_at"], json.loads(row["evidence"])
    )
