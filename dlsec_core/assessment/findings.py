"""A scan's finding: what was measured, how bad it is by which documented threshold, and what would reduce it.

Findings are data (after AutoAttack's `checks.py` and the lab's `evaluation.checks`), typed and round-tripped
through JSON, so a stored scan reads back into the same objects a scorecard or a report shows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from dlsec_core.assessment.severity import Level, Scale, Severity
from dlsec_core.errors import InvalidInputError


@dataclass(frozen=True, kw_only=True)
class Grade:
    """Why a finding has its severity: the scale, the threshold crossed (or the scale's `info` sentence), the
    citation behind it."""

    severity: Severity
    scale: str  # a key of `severity.SCALES`, or "" for a fixed rule (e.g. context, no DP claim)
    rule: str
    citation: str

    @classmethod
    def on(cls, scale: Scale, value: float) -> Grade:
        """Grade `value` on `scale`."""
        level = scale.crossed(value)
        if level is None:
            return cls(severity=Severity.INFO, scale=scale.name, rule=scale.otherwise, citation="")
        return cls.by(level, scale=scale.name)

    @classmethod
    def by(cls, level: Level, *, scale: str = "") -> Grade:
        """The grade a single documented rule gives."""
        return cls(severity=level.severity, scale=scale, rule=level.reason, citation=level.citation)

    @classmethod
    def context(cls, rule: str) -> Grade:
        """Context, not a weakness (clean accuracy): always `info`."""
        return cls(severity=Severity.INFO, scale="", rule=rule, citation="")


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One result of a scan.

    Attributes:
        id: stable across scans of any model ("evasion-pgd-linf-0.3"), for comparing models side by side.
        title: a short name for a tile.
        grade: the severity and the documented threshold behind it.
        summary: one sentence with the number, for a person outside the room.
        evidence: plain-JSON numbers and settings (the attack, its strength, n, seed) that reproduce it.
        atlas_ids: MITRE ATLAS techniques (and mitigations) it concerns, from the lab's table (`dlsec_core.atlas`).
        reduce: what would reduce it (with the ATLAS mitigation ids where ATLAS has one).
        checks: the honesty checks that travel with the number (`evaluation.checks.Finding.to_record()`).
    """

    id: str
    title: str
    grade: Grade
    summary: str
    evidence: dict[str, Any]
    atlas_ids: tuple[str, ...] = ()
    reduce: str = ""
    checks: list[dict[str, str]] = field(default_factory=list)

    @property
    def severity(self) -> Severity:
        return self.grade.severity

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["grade"]["severity"] = str(self.grade.severity)
        data["atlas_ids"] = list(self.atlas_ids)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Finding:
        try:
            grade = Grade(**{**data["grade"], "severity": Severity(data["grade"]["severity"])})
            return cls(**{**data, "grade": grade, "atlas_ids": tuple(data["atlas_ids"])})
        except (KeyError, TypeError, ValueError) as err:
            raise InvalidInputError(f"Not a scan finding: {err}.") from err
