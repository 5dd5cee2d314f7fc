"""The catalog: the one module that imports every registered implementation and hands them out by name.

Packages register nothing when imported; whoever needs "the study called X" asks here (the way Opacus's
`accountants/registry.py` imports its accountants and maps names to them).
"""

from __future__ import annotations

from dlsec_core.errors import NotFoundError
from dlsec_core.studies.base import Study
from dlsec_core.studies.sweep import SweepStudy
from dlsec_core.studies.train import TrainStudy

STUDIES: dict[str, Study] = {s.name: s for s in (TrainStudy(), SweepStudy())}


def get_study(name: str) -> Study:
    """A registered study by name."""
    if name not in STUDIES:
        raise NotFoundError(f"No study named {name!r}; choose one of {', '.join(STUDIES)}.")
    return STUDIES[name]
