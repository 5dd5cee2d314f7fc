"""MITRE ATLAS in the app: the pages that demonstrate each entry, the tactic matrix, and the one-line tags that
attack, defense and recipe forms show (data from `dlsec_core.atlas` and `dlsec_core.atlas_coverage`)."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from dlsec_core.atlas import describe
from dlsec_core.atlas_coverage import AtlasMatrix, Cell, Component, Part
from dlsec_ui.runs import RUNS_PAGE, STUDY_PAGES

ATLAS_PAGE = "app_pages/atlas.py"
#: Where a part of the lab that is not a study is shown (a study opens on its own page: `STUDY_PAGES`).
PART_PAGES: dict[Part, str] = {
    Part.ATTACK: "app_pages/attack_lab.py",
    Part.TRANSFORM: "app_pages/attack_lab.py",
    Part.DETECTOR: "app_pages/detection.py",
    Part.RECIPE: "app_pages/models.py",
}
LIT, GREY = ":material/check_circle:", ":material/radio_button_unchecked:"


def page_of(component: Component) -> str:
    """The lab page that shows a component."""
    if component.part is Part.STUDY:
        return STUDY_PAGES.get(component.name, RUNS_PAGE)
    return PART_PAGES[component.part]


def pages_of(cell: Cell) -> list[str]:
    """The pages that demonstrate an entry, in the order of its components (no repeats)."""
    return list(dict.fromkeys(page_of(c) for c in cell.components))


def shown_by(cell: Cell) -> str:
    """ "Demonstrated by: FGSM, PGD (attacks); Robustness sweep (study)"."""
    groups: dict[Part, list[str]] = {}
    for c in cell.components:
        groups.setdefault(c.part, []).append(c.title)
    return "Demonstrated by: " + "; ".join(f"{', '.join(t)} ({p.value})" for p, t in groups.items())


def atlas_caption(atlas_ids: Sequence[str]) -> None:
    """One caption naming a component's ATLAS tags under its description ("MITRE ATLAS: AML.T0015 Evade ...")."""
    if atlas_ids:
        st.caption(f"MITRE ATLAS: {describe(tuple(atlas_ids))}")


def _entry(cell: Cell) -> None:
    indent = "↳ " if cell.depth else ""
    if cell.demonstrated:
        st.page_link(pages_of(cell)[0], label=f"{indent}{cell.entry.label}", icon=LIT, help=shown_by(cell))
    else:
        st.markdown(
            f":gray[{GREY} {indent}{cell.entry.id} {cell.entry.name}]", help="Not demonstrated in the lab."
        )


def tactic_matrix(matrix: AtlasMatrix) -> None:
    """The tactics as columns (ATLAS's order), their techniques under them: lit links or grey text."""
    for column, box in zip(matrix.columns, st.columns(len(matrix.columns)), strict=True):
        with box:
            st.markdown(f"**{column.tactic.name}**")
            st.caption(f"{column.tactic.id} · {column.demonstrated} of {len(column.cells)} demonstrated")
            for cell in column.cells:
                _entry(cell)


def entry_list(cells: Sequence[Cell]) -> None:
    """Mitigations (or local tags): each entry with every lab page that shows it, or greyed."""
    for cell in cells:
        left, right = st.columns([2, 3])
        if cell.demonstrated:
            left.markdown(f"{LIT} **{cell.entry.id}** {cell.entry.name}", help=cell.entry.note or None)
            with right:
                for page in pages_of(cell):
                    st.page_link(page, help=shown_by(cell))
        else:
            left.markdown(
                f":gray[{GREY} **{cell.entry.id}** {cell.entry.name}]", help=cell.entry.note or None
            )
            right.caption("Not demonstrated in the lab yet.")
