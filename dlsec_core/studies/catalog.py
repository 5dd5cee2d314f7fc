"""The catalog of studies: the one module that imports every study and hands them out by name (executors and the
CLI ask here; `dlsec_core.studies` itself registers nothing)."""

from __future__ import annotations

from typing import Any

from dlsec_core.errors import NotFoundError
from dlsec_core.runs import RunRecord, RunStore
from dlsec_core.studies.audit import AuditStudy
from dlsec_core.studies.base import Study, StudyConfig
from dlsec_core.studies.certification import CertificationStudy
from dlsec_core.studies.detection import DetectionStudy
from dlsec_core.studies.federated import FederatedStudy
from dlsec_core.studies.frontier import FrontierStudy
from dlsec_core.studies.gradleak import GradLeakStudy
from dlsec_core.studies.inversion import InversionStudy
from dlsec_core.studies.membership import MembershipStudy
from dlsec_core.studies.ownership import OwnershipStudy
from dlsec_core.studies.scan import ScanStudy
from dlsec_core.studies.sweep import SweepStudy
from dlsec_core.studies.theft import ExtractionStudy
from dlsec_core.studies.train import TrainStudy

STUDIES: dict[str, Study[Any]] = {
    s.name: s
    for s in (
        TrainStudy(),
        SweepStudy(),
        DetectionStudy(),
        CertificationStudy(),
        MembershipStudy(),
        InversionStudy(),
        AuditStudy(),
        FrontierStudy(),
        ExtractionStudy(),
        OwnershipStudy(),
        FederatedStudy(),
        GradLeakStudy(),
        ScanStudy(),
    )
}


def get_study(name: str) -> Study[Any]:
    """A registered study by name."""
    if name not in STUDIES:
        raise NotFoundError(f"No study named {name!r}; choose one of {', '.join(STUDIES)}.")
    return STUDIES[name]


def submit(
    runs: RunStore,
    study_name: str,
    config: StudyConfig,
    *,
    owner: str | None = None,
    max_active: int | None = None,
) -> RunRecord:
    """Queue a run of a registered study: its title, seed and models come from the study (`max_active`: a room's
    cap on the owner's unfinished runs, see `RunStore.submit`)."""
    study = get_study(study_name)
    return runs.submit(
        study.name, config.to_json(), title=study.title_for(config), seed=study.seed(config),
        model_ids=study.model_ids(config), owner=owner, max_active=max_active,
    )  # fmt: skip
