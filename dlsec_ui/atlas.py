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
    Part.EXTRACTION: "app_pages/theft.py",
    Part.POLICY: "app_pages/theft.py",
    Part.API: "app_pages/theft.py",
}
LIT, GREY = ":material/check_circle:", ":material/radio_button_unchecked:"
MATRIX_KEY = "atlas_matrix"  # the matrix's container (a CSS hook, not session state)
TACTICS_PER_ROW = 4  # eight tactics in one row leave ~100 px a column: names broken every few letters
#: Streamlit cuts a page link's label to one line with an ellipsis; in a narrow tactic column the technique's
#: name would be lost ("AML.T00..."), so inside the matrix the labels wrap.
_WRAP_LABELS = (
    f"<style>.st-key-{MATRIX_KEY} [data-testid='stPageLink-NavLink'] * "
    "{white-space: normal; overflow: visible; text-overflow: clip; word-break: normal}</style>"
)


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
        st.caption(f"{GREY} {indent}{cell.entry.id} {cell.entry.name}")


def tactic_matrix(matrix: AtlasMatrix) -> None:
    """The tactics as columns (ATLAS's order, four to a row), their techniques under them: lit links to the page
    that demonstrates them, or grey text."""
    container = st.container(key=MATRIX_KEY)
    container.html(_WRAP_LABELS)
    for start in range(0, len(matrix.columns), TACTICS_PER_ROW):
        row = matrix.columns[start : start + TACTICS_PER_ROW]
        for column, box in zip(row, container.columns(TACTICS_PER_ROW), strict=False):
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
                    st.page_link(page, icon=":material/arrow_forward:", help=shown_by(cell))
        else:
            left.markdown(
                f":gray[{GREY} **{cell.entry.id}** {cell.entry.name}]", help=cell.entry.note or None
            )
            right.caption("Not demonstrated in the lab yet.")
