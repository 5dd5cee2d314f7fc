"""The privacy studies as runs: their typed results read back what the algorithms computed.

Oracles: the membership study's ROC and scores equal `loss_threshold_attack` called directly on the stored model;
the inversion study's images equal `invert` called directly; the audit study's bound is recomputed from its stored
scores and coin flips (`guess_membership`, `eps_lower_bound`); the frontier study's points are the store's own.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from dlsec_core.data.builtin import load_dataset
from dlsec_core.errors import InvalidInputError
from dlsec_core.privacy.audit import eps_lower_bound, guess_membership
from dlsec_core.privacy.inversion import InversionConfig, class_means, invert
from dlsec_core.privacy.membership import loss_threshold_attack
from dlsec_core.store import ModelCard, Store
from dlsec_core.studies.artifacts import read_arrays
from dlsec_core.studies.audit import AuditStudy, AuditStudyConfig, AuditStudyResult
from dlsec_core.studies.base import run_study
from dlsec_core.studies.frontier import (
    FrontierStudy,
    FrontierStudyConfig,
    FrontierStudyResult,
    frontier_points,
)
from dlsec_core.studies.inversion import InversionStudy, InversionStudyConfig, InversionStudyResult
from dlsec_core.studies.membership import MembershipStudy, MembershipStudyConfig, MembershipStudyResult

FAST = {"epochs": 1, "lr": 0.05, "shift": 0, "seed": 3}


def _artifacts(tmp_path: Path, files: dict[str, bytes]) -> list[Path]:
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return sorted(tmp_path / n for n in files)


def test_membership_result_is_the_attack_on_the_stored_model(tmp_home: Path, stored_model: ModelCard) -> None:
    store = Store(tmp_home)
    events: list = []
    outcome = run_study(
        MembershipStudy(), store, MembershipStudyConfig(model_ids=[stored_model.id], n=60), events.append
    )
    (got,) = MembershipStudyResult.from_json(outcome.result).models
    model, _ = store.load_model(stored_model.id)
    data = load_dataset("digits")
    direct = loss_threshold_attack(
        model, data.x_train[:60], data.y_train[:60], data.x_test[:60], data.y_test[:60]
    )
    assert got.auc == direct.auc and got.model_name == stored_model.name
    np.testing.assert_array_equal(got.roc.fpr, direct.roc.fpr)
    assert got.roc.tpr_at_low_fpr[0.01].reading == direct.roc.tpr_at_low_fpr[0.01].reading
    assert got.privacy_label() == "no DP" and got.description == direct.description
    np.testing.assert_array_equal(np.load(io.BytesIO(outcome.artifacts["scores-0.npy"])), direct.scores)
    payloads = [e.payload for e in events if e.payload is not None]
    assert [p["type"] for p in payloads] == ["model"]  # one per attacked model: the page draws it live


def test_inversion_images_are_the_direct_inversion(
    tmp_home: Path, tmp_path: Path, stored_model: ModelCard
) -> None:
    store = Store(tmp_home)
    config = InversionStudyConfig(model_ids=[stored_model.id], classes=[1, 7], inversion={"steps": 15})
    outcome = run_study(InversionStudy(), store, config)
    result = InversionStudyResult.from_json(outcome.result)
    means, (images,) = InversionStudyResult.images(_artifacts(tmp_path, outcome.artifacts))
    model, _ = store.load_model(stored_model.id)
    direct = invert(model, [1, 7], (1, 8, 8), config=InversionConfig(steps=15))
    torch.testing.assert_close(images, direct.images)
    assert means is not None
    torch.testing.assert_close(means, class_means(load_dataset("digits"), [1, 7]))
    assert result.targets == [1, 7] and result.class_names == ["1", "7"]
    assert result.description == direct.description
    assert [c.p_target for c in result.models[0].classes] == pytest.approx(direct.target_probability.tolist())


def test_audit_bound_is_recomputed_from_its_stored_scores(tmp_home: Path, tmp_path: Path) -> None:
    config = AuditStudyConfig(
        dataset="digits", arch="logreg", recipe="standard", train=FAST, audit={"canaries": 60}, control=True
    )
    outcome = run_study(AuditStudy(), Store(tmp_home), config)
    result = AuditStudyResult.from_json(outcome.result)
    (run,) = result.runs  # standard training is its own control: one run
    ((scores, included),) = AuditStudyResult.arrays(_artifacts(tmp_path, outcome.artifacts))
    b = run.bound
    guesses = guess_membership(torch.from_numpy(scores), b.k_plus, b.k_minus)
    v = int((guesses == torch.where(torch.from_numpy(included), 1, -1)).sum())
    assert v == b.v and b.m == 60 == len(scores)
    assert b.eps_lower_bound == eps_lower_bound(b.m, b.r, v, b.delta, p=1 - b.confidence)
    assert b.claimed_epsilon is None and "no claim" in b.describe()
    assert Store(tmp_home).list_models() == []  # an audit stores no model


def test_frontier_points_are_the_stored_models(tmp_home: Path, stored_model: ModelCard) -> None:
    store = Store(tmp_home)
    config = FrontierStudyConfig(dataset="digits", arch="logreg", targets=[3.0], train=FAST)
    outcome = run_study(FrontierStudy(), store, config)
    (point,) = FrontierStudyResult.from_json(outcome.result).points  # a baseline was stored: only the DP run
    assert outcome.model_ids == [point.model_id]
    assert point in frontier_points(store, "digits", "logreg") and point.epsilon <= 3.0


def test_bad_privacy_configs_name_every_problem() -> None:
    with pytest.raises(InvalidInputError) as err:
        MembershipStudyConfig(model_ids=[], attack="guess", n=3, lira={"shadows": 1})
    assert str(err.value).startswith("Membership study: 4 settings are invalid")
    assert all(w in str(err.value) for w in ("pick 1 to 4", "guess", "`n`", "≥ 10", "`shadows`"))
    with pytest.raises(InvalidInputError) as err:
        InversionStudyConfig(model_ids=["a"], classes=[-1], inversion={"steps": 0, "bogus": 1})
    assert all(w in str(err.value) for w in ("class numbers", "'bogus'", "`steps`"))
    with pytest.raises(InvalidInputError) as err:
        AuditStudyConfig(arch="vit", audit={"canaries": 5}, train={"epochs": 0})
    assert all(w in str(err.value) for w in ("vit", "`canaries`", "`epochs`"))
    with pytest.raises(InvalidInputError) as err:
        FrontierStudyConfig(targets=[0.0], accountant="gdp")
    assert "(0, 100]" in str(err.value) and "gdp" in str(err.value)
    assert read_arrays([]) == {}
