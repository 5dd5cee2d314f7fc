"""Which parts of the lab demonstrate which MITRE ATLAS techniques and mitigations: the ATLAS page's matrix.

Every registered attack, input transform, detector, training recipe and study declares `atlas_ids` (ATLAS
technique and mitigation ids, or `DLSEC.` local tags; see `dlsec_core.atlas`). `components()` walks the registries,
so a newly registered part shows up without a list to update, and `atlas_matrix()` lays the lab's ATLAS table out
as ATLAS does: one column per tactic, its techniques under it (subtechniques under their technique; a technique
with several tactics in each of their columns), each with the parts of the lab that demonstrate it (a part that
demonstrates a subtechnique demonstrates its technique too), then the mitigations and the local tags.

This module sits above the registries and the studies (it imports them all); `dlsec_core.atlas` (the table) sits
below them, so a study may look names up there without an import cycle.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from dlsec_core.atlas import Entry, Kind, lookup, table, tactics_of
from dlsec_core.attacks import ATTACKS
from dlsec_core.catalog import RECIPES
from dlsec_core.defenses.detection import FeatureSqueezingDetector
from dlsec_core.defenses.transforms import TRANSFORMS
from dlsec_core.studies.catalog import STUDIES
from dlsec_core.theft.api import OUTPUT_POLICIES, PredictionAPI
from dlsec_core.theft.extraction import EXTRACTION_ATTACKS

#: The detectors of the lab (one so far; it has no registry of its own).
DETECTORS: tuple[type[FeatureSqueezingDetector], ...] = (FeatureSqueezingDetector,)


class Part(StrEnum):
    """The registry a component comes from."""

    ATTACK = "attack"
    TRANSFORM = "input defense"
    DETECTOR = "detector"
    RECIPE = "training recipe"
    STUDY = "study"
    EXTRACTION = "extraction attack"
    POLICY = "API output policy"
    API = "prediction API"


@dataclass(frozen=True)
class Component:
    """One registered part of the lab and the ATLAS ids it declares."""

    part: Part
    name: str  # its registry name ("pgd", "bit-depth", "membership")
    title: str
    atlas_ids: tuple[str, ...]


@dataclass(frozen=True)
class Cell:
    """An ATLAS entry in the matrix, with the components that demonstrate it (none: greyed on the page)."""

    entry: Entry
    components: tuple[Component, ...]
    depth: int = 0  # 1 for a subtechnique listed under its technique

    @property
    def demonstrated(self) -> bool:
        return bool(self.components)


@dataclass(frozen=True)
class Column:
    """A tactic and its techniques in the lab's table."""

    tactic: Entry
    cells: tuple[Cell, ...]

    @property
    def demonstrated(self) -> int:
        return sum(c.demonstrated for c in self.cells)


@dataclass(frozen=True)
class AtlasMatrix:
    """The lab's ATLAS table laid out for the page."""

    columns: tuple[Column, ...]  # tactics in ATLAS's order
    mitigations: tuple[Cell, ...]
    local: tuple[Cell, ...]  # the `DLSEC.` tags: ATLAS has no entry for them


def components() -> list[Component]:
    """Every registered attack, input transform, detector, recipe, study, extraction attack and API output policy,
    and the prediction API, in registry order."""
    found: list[Component] = []
    registries: list[tuple[Part, Iterable[tuple[str, str, tuple[str, ...]]]]] = [
        (Part.ATTACK, ((n, c.title, c.atlas_ids) for n, c in ATTACKS.items())),
        (Part.TRANSFORM, ((n, c.title, c.atlas_ids) for n, c in TRANSFORMS.items())),
        (Part.DETECTOR, ((c.name, c.title, c.atlas_ids) for c in DETECTORS)),
        (Part.RECIPE, ((n, c.title, c.atlas_ids) for n, c in RECIPES.items())),
        (Part.STUDY, ((n, s.title, s.atlas_ids) for n, s in STUDIES.items())),
        (Part.EXTRACTION, ((n, c.title, c.atlas_ids) for n, c in EXTRACTION_ATTACKS.items())),
        (Part.POLICY, ((n, c.title, c.atlas_ids) for n, c in OUTPUT_POLICIES.items())),
        (
            Part.API,
            (
                (
                    "prediction-api",
                    "Prediction API (budgets, rate limits, client ids, query log)",
                    PredictionAPI.atlas_ids,
                ),
            ),
        ),
    ]
    for part, entries in registries:
        found.extend(Component(part, name, title, tuple(ids)) for name, title, ids in entries)
    return found


def demonstrations(parts: Iterable[Component]) -> dict[str, tuple[Component, ...]]:
    """ATLAS id -> the components that demonstrate it (a subtechnique's count for its technique too).

    Raises `NotFoundError` (a `DlsecError`) for an id that is not in the lab's table.
    """
    found: dict[str, list[Component]] = {}
    for component in parts:
        for atlas_id in component.atlas_ids:
            entry = lookup(atlas_id)
            for key in (atlas_id, entry.parent) if entry.parent else (atlas_id,):
                if component not in found.setdefault(key, []):
                    found[key].append(component)
    return {k: tuple(v) for k, v in found.items()}


def atlas_matrix(parts: Iterable[Component] | None = None) -> AtlasMatrix:
    """The matrix of the lab's ATLAS table: the tactics as columns, their techniques (lit when demonstrated by
    one of `parts`, by default every registered component), then the mitigations and the local tags."""
    shown = demonstrations(components() if parts is None else parts)
    entries = table()

    def cell(entry: Entry, depth: int = 0) -> Cell:
        return Cell(entry, shown.get(entry.id, ()), depth)

    techniques = [e for e in entries.values() if e.kind is Kind.TECHNIQUE and e.parent is None]
    columns = []
    for tactic in (e for e in entries.values() if e.kind is Kind.TACTIC):
        cells: list[Cell] = []
        for technique in (t for t in techniques if tactic.id in tactics_of(t.id)):
            cells.append(cell(technique))
            cells.extend(cell(e, 1) for e in entries.values() if e.parent == technique.id)
        columns.append(Column(tactic, tuple(cells)))
    return AtlasMatrix(
        columns=tuple(columns),
        mitigations=tuple(cell(e) for e in entries.values() if e.kind is Kind.MITIGATION),
        local=tuple(cell(e) for e in entries.values() if e.kind is Kind.LOCAL),
    )
