"""MITRE ATLAS: the lab's table against the ATLAS data, every id the code uses, every registered part tagged.

The components come from walking the registries (`atlas_coverage.components()`, checked here against ATTACKS,
TRANSFORMS, RECIPES and STUDIES), so an attack, recipe or study registered later is checked without a list to
update. The full ATLAS table (`../shared/atlas_ids.tsv`, data version 5.6.0) is not in the repository: the test
that compares names with it is skipped where it is absent (CI).
"""

from __future__ import annotations

import ast
import doctest
import re
from pathlib import Path

import pytest

from dlsec_core import atlas
from dlsec_core.atlas import ATLAS_VERSION, LOCAL_TAGS, TABLE_FILE, Kind, describe, id_form, lookup, table
from dlsec_core.atlas_coverage import DETECTORS, Component, Part, atlas_matrix, components, demonstrations
from dlsec_core.attacks import ATTACKS
from dlsec_core.catalog import RECIPES
from dlsec_core.defenses.transforms import TRANSFORMS
from dlsec_core.errors import NotFoundError
from dlsec_core.studies.catalog import STUDIES

ROOT = Path(__file__).resolve().parents[2]
TABLE_PATH = ROOT / "dlsec_core" / TABLE_FILE
FULL_TABLE = ROOT.parent / "shared" / "atlas_ids.tsv"
SOURCES = [ROOT / "app.py", *sorted((ROOT / "app_pages").glob("*.py"))] + [
    p for d in ("dlsec_core", "dlsec_ui") for p in sorted((ROOT / d).rglob("*.py"))
]
ID_LIKE = re.compile(r"(?:AML|DLSEC)\.\S*")


def _rows(path: Path) -> list[list[str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.split("\t") for line in lines if line.strip() and not line.startswith("#")]


def ids_in_source(text: str) -> set[str]:
    """Every string constant of a Python source that is an ATLAS id or a local tag, or looks like one."""
    return {
        node.value
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and ID_LIKE.fullmatch(node.value)
    }


def problems(ids: set[str]) -> list[str]:
    """The ids that are malformed or not in the lab's table, each with the reason."""
    found = []
    for atlas_id in sorted(ids):
        if id_form(atlas_id) is None:
            found.append(
                f"{atlas_id}: not of the form AML.T0000, AML.T0000.000, AML.M0000, AML.TA0000, DLSEC.name"
            )
        elif atlas_id not in table():
            found.append(f"{atlas_id}: not in the lab's ATLAS table ({TABLE_FILE}) nor a local tag")
    return found


# -- the table ---------------------------------------------------------------------------------------------------


def test_table_file_names_its_source_and_version() -> None:
    header = "\n".join(
        line for line in TABLE_PATH.read_text(encoding="utf-8").splitlines() if line.startswith("#")
    )
    for fact in ("MITRE ATLAS", f"data version {ATLAS_VERSION}", "mitre-atlas/atlas-data", "Apache-2.0"):
        assert fact in header, fact
    assert f"data version {ATLAS_VERSION}" in (atlas.__doc__ or "")
    assert "mitre-atlas/atlas-data" in (atlas.__doc__ or "") and "Apache-2.0" in (atlas.__doc__ or "")


def test_table_holds_ids_names_and_links_only() -> None:
    """No description is copied: four columns, a short name, links that are ids."""
    rows = _rows(TABLE_PATH)
    assert rows
    for kind, atlas_id, name, links in rows:
        assert kind in ("tactic", "technique", "mitigation")
        assert id_form(atlas_id) in {"tactic": ("tactic",), "technique": ("technique", "subtechnique"),
                                     "mitigation": ("mitigation",)}[kind]  # fmt: skip
        assert 0 < len(name) <= 60, name
        assert all(id_form(x) for x in links.split(",") if x), links


@pytest.mark.skipif(not FULL_TABLE.exists(), reason=f"the full ATLAS table is not here ({FULL_TABLE})")
def test_table_agrees_with_the_atlas_data() -> None:
    full = {r[1]: r for r in _rows(FULL_TABLE)}
    header = FULL_TABLE.read_text(encoding="utf-8").splitlines()[0]
    assert f"data version {ATLAS_VERSION}" in header
    for kind, atlas_id, name, links in _rows(TABLE_PATH):
        assert atlas_id in full, atlas_id
        full_kind, _, full_name, full_links = full[atlas_id]
        assert (kind, name) == (full_kind, full_name), atlas_id
        if kind == "mitigation":  # the techniques it mitigates that are in the lab's table
            assert set(links.split(",")) <= set(full_links.split(",")), atlas_id
        else:
            assert links == full_links, atlas_id


def test_table_is_closed_under_its_links() -> None:
    """Every technique's tactics and parent, and every mitigation's techniques, are in the table too."""
    entries = table()
    for entry in entries.values():
        for linked in (*entry.tactics, *entry.mitigates, *([entry.parent] if entry.parent else [])):
            assert linked in entries, (entry.id, linked)
        if entry.kind is Kind.TECHNIQUE:
            assert bool(entry.parent) != bool(entry.tactics), entry.id  # a parent, or tactics, never both


def test_module_examples() -> None:
    assert doctest.testmod(atlas).failed == 0


def test_lookup_and_describe() -> None:
    assert lookup("AML.T0024.002").name == "Extract AI Model"
    assert lookup("AML.T0024.002").parent == "AML.T0024"
    assert lookup("AML.M0003").name == "Model Hardening"
    assert describe(("AML.T0015", "AML.M0010")) == "AML.T0015 Evade AI Model · AML.M0010 Input Restoration"
    with pytest.raises(NotFoundError, match="not in the lab's MITRE ATLAS table"):
        lookup("AML.T0051")  # a real ATLAS id (LLM Prompt Injection), but not one the lab uses


@pytest.mark.parametrize(
    ("text", "form"),
    [("AML.TA0010", "tactic"), ("AML.T0043", "technique"), ("AML.T0043.000", "subtechnique"),
     ("AML.M0015", "mitigation"), ("DLSEC.differential-privacy", "local"), ("AML.T43", None),
     ("AML.T0043.0", None), ("AML.M015", None), ("aml.t0043", None), ("DLSEC.Watermark", None),
     ("DLSEC.", None), ("AML.T0043.000 ", None)],
)  # fmt: skip
def test_id_forms(text: str, form: str | None) -> None:
    assert id_form(text) == form


def test_local_tags_are_not_atlas_ids() -> None:
    required = {"DLSEC.differential-privacy", "DLSEC.watermarking", "DLSEC.federated-gradient-leakage"}
    assert required <= set(LOCAL_TAGS)
    for tag, (name, note) in LOCAL_TAGS.items():
        assert id_form(tag) == "local" and name and note
        assert lookup(tag).kind is Kind.LOCAL and lookup(tag).label.endswith("(local tag)")
    assert "ATLAS has no entry" in atlas.NO_ENTRY


# -- the ids the code uses ---------------------------------------------------------------------------------------


def test_the_id_checker_finds_bad_ids() -> None:
    """The checker on a known-bad example first: a malformed id and a well-formed one the table lacks."""
    source = (
        'x = ("AML.T0015", "AML.T15", "AML.T0051", "DLSEC.watermarking")\n"""Docstring naming AML.T0000."""\n'
    )
    found = ids_in_source(source)
    assert found == {"AML.T0015", "AML.T15", "AML.T0051", "DLSEC.watermarking"}
    assert [p.split(":")[0] for p in problems(found)] == ["AML.T0051", "AML.T15"]


def test_every_id_in_the_code_is_in_the_table() -> None:
    used: set[str] = set()
    for path in SOURCES:
        used |= ids_in_source(path.read_text(encoding="utf-8"))
    assert "AML.T0043.000" in used  # the walk reached the attacks
    assert problems(used) == []


# -- every registered part is tagged --------------------------------------------------------------------------


def test_components_walk_every_registry() -> None:
    by_part: dict[Part, list[str]] = {}
    for c in components():
        by_part.setdefault(c.part, []).append(c.name)
    assert by_part[Part.ATTACK] == list(ATTACKS)
    assert by_part[Part.TRANSFORM] == list(TRANSFORMS)
    assert by_part[Part.RECIPE] == list(RECIPES)
    assert by_part[Part.STUDY] == list(STUDIES)
    assert by_part[Part.DETECTOR] == [d.name for d in DETECTORS]


@pytest.mark.parametrize("component", components(), ids=lambda c: f"{c.part.name.lower()}-{c.name}")
def test_every_component_is_tagged(component: Component) -> None:
    assert component.atlas_ids, f"{component.title} declares no atlas_ids"
    assert problems(set(component.atlas_ids)) == []
    assert len(set(component.atlas_ids)) == len(component.atlas_ids), "an id twice"
    for atlas_id in component.atlas_ids:  # techniques and mitigations (or local tags), never a tactic
        assert lookup(atlas_id).kind is not Kind.TACTIC, atlas_id


@pytest.mark.parametrize("name", [n for n, cls in ATTACKS.items() if "AML.T0015" in cls.atlas_ids])
def test_an_evasion_attack_names_how_it_crafts_adversarial_data(name: str) -> None:
    """White-box gradient, black-box query or transfer: exactly one of the AML.T0043 subtechniques, which says
    what the attack needs (white-box: full model access)."""
    ids = ATTACKS[name].atlas_ids
    crafted = [i for i in ids if lookup(i).parent == "AML.T0043"]
    assert len(crafted) == 1, ids
    assert ("AML.T0044" in ids) == (crafted == ["AML.T0043.000"]), ids


# -- the matrix ---------------------------------------------------------------------------------------------------


def test_matrix_lights_what_the_given_parts_demonstrate() -> None:
    square = Component(Part.ATTACK, "square", "Square", ("AML.T0015", "AML.T0043.001"))
    dp = Component(Part.RECIPE, "dp-sgd", "DP-SGD", ("DLSEC.differential-privacy",))
    matrix = atlas_matrix([square, dp])
    lit = {cell.entry.id for col in matrix.columns for cell in col.cells if cell.demonstrated}
    # the parent technique is lit by its subtechnique
    assert lit == {"AML.T0015", "AML.T0043", "AML.T0043.001"}
    names = [col.tactic.name for col in matrix.columns]
    evade = [col.tactic.id for col in matrix.columns if any(c.entry.id == "AML.T0015" for c in col.cells)]
    assert evade == ["AML.TA0004", "AML.TA0007", "AML.TA0011"]  # each of its tactics, in ATLAS's order
    assert names.index("Initial Access") < names.index("Defense Evasion") < names.index("Impact")
    staging = next(col for col in matrix.columns if col.tactic.id == "AML.TA0001")
    order = [(c.entry.id, c.depth) for c in staging.cells]
    assert order.index(("AML.T0043", 0)) + 1 == order.index(("AML.T0043.000", 1))  # subtechniques follow it
    assert not any(c.demonstrated for c in matrix.mitigations)
    assert [c.entry.id for c in matrix.local if c.demonstrated] == ["DLSEC.differential-privacy"]
    assert next(c for c in matrix.local if c.demonstrated).components == (dp,)


def test_matrix_of_the_lab_lists_every_table_entry() -> None:
    matrix = atlas_matrix()
    listed = {cell.entry.id for col in matrix.columns for cell in col.cells}
    listed |= {c.entry.id for c in (*matrix.mitigations, *matrix.local)}
    assert listed == {i for i, e in table().items() if e.kind is not Kind.TACTIC}
    assert {c.tactic.id for c in matrix.columns} == {i for i, e in table().items() if e.kind is Kind.TACTIC}
    shown = demonstrations(components())
    assert {c.name for c in shown["AML.T0043.000"]} >= {"fgsm", "pgd"}
    assert {c.name for c in shown["AML.M0015"]} >= {"feature_squeezing", "detection"}


def test_an_unknown_id_is_refused_by_name() -> None:
    with pytest.raises(NotFoundError, match="AML.T9999"):
        demonstrations([Component(Part.ATTACK, "x", "X", ("AML.T9999",))])
