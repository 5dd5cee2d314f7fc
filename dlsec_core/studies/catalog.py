"""The catalog of studies: the one module that imports every study and hands them out by name (executors and the
CLI ask here; `dlsec_core.studies` itself registers nothing)."""

from __future__ import annotations

from typing import Any

from dlsec_core.errors import NotFoundError
from dlsec_core.studies.base import Study
from dlsec_core.studies.sweep import SweepStudy
from dlsec_core.studies.train import TrainStudy

STUDIES: dict[str, Study[Any]] = {s.name: s for s in (TrainStudy(), SweepStudy())}


def get_study(name: str) -> Study[Any]:
    """A registered study by name."""
    if name not in STUDIES:
        raise NotFoundError(f"No study named {name!r}; choose one of {', '.join(STUDIES)}.")
    return STUDIES[name]
