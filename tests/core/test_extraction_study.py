"""The extraction study: one curve point per budget as a run event, the stolen model stored, every bad setting
named at once. Oracles: a label-only API costs honest users nothing (its accuracy is the victim's own); the API's
log counts exactly the largest budget; the stored surrogate scores the last point's accuracy again."""

from __future__ import annotations

import pytest

from dlsec_core.data.builtin import load_dataset
from dlsec_core.errors import InvalidInputError
from dlsec_core.evaluation.metrics import accuracy
from dlsec_core.store import ModelCard, Store
from dlsec_core.studies.base import StudyEvent, run_study
from dlsec_core.studies.catalog import get_study
from dlsec_core.studies.theft import ExtractionStudy, ExtractionStudyConfig, ExtractionStudyResult


def test_the_study_draws_one_point_per_budget_and_stores_the_stolen_model(
    tmp_home: object, stored_model: ModelCard
) -> None:
    store = Store()
    config = ExtractionStudyConfig(
        model_id=stored_model.id, policy="label", attack="knockoff", attack_params={"arch": "mlp", "epochs": 3},
        budgets=[40, 80, 160], store_surrogate=True, seed=1,
    )  # fmt: skip
    events: list[StudyEvent] = []
    outcome = run_study(get_study("extraction"), store, config, events.append)
    points = [e.payload for e in events if e.payload is not None]
    assert [p["queries"] for p in points] == [40, 80, 160]
    result = ExtractionStudyResult.from_json(outcome.result)
    assert result.answered == 160 and [p.queries for p in result.points] == [40, 80, 160]
    assert result.api_accuracy == pytest.approx(result.victim_accuracy)  # label-only keeps every top-1
    assert (
        "Orekondy et al. 2019" in result.attack_description and "Attacker knows" in result.attack_description
    )
    assert outcome.model_ids == [result.surrogate_model_id]
    stolen, card = store.load_model(outcome.model_ids[0])
    data = load_dataset("digits")
    assert card.recipe == "extraction" and card.recipe_params["victim"] == stored_model.id
    assert accuracy(stolen, data.x_test, data.y_test) == pytest.approx(result.points[-1].accuracy)
    assert ExtractionStudy.atlas_ids == ("AML.T0024.002",)


def test_a_bad_config_names_every_problem() -> None:
    with pytest.raises(InvalidInputError) as err:
        ExtractionStudyConfig(
            model_id="abc", policy="rounded", policy_params={"decimals": -1}, attack="knockoff",
            attack_params={"bogus": 1}, budgets=[100, 50],
        )  # fmt: skip
    text = str(err.value)
    assert "Decimals kept" in text and "bogus" in text and "must increase" in text
    with pytest.raises(InvalidInputError, match="API output policy"):
        ExtractionStudyConfig(model_id="abc", policy="nope")


def test_jacobian_needs_only_its_seed_set_from_the_pool(tmp_home: object, stored_model: ModelCard) -> None:
    """The digits training split (1,438 images) is smaller than the budget: Jacobian augmentation draws only
    its 20 seed images from it and makes the other queries itself."""
    config = ExtractionStudyConfig(
        model_id=stored_model.id, attack="jacobian", budgets=[40, 1600],
        attack_params={"arch": "logreg", "epochs": 1, "seed_size": 20},
    )  # fmt: skip
    result = ExtractionStudyResult.from_json(run_study(get_study("extraction"), Store(), config).result)
    assert result.answered == 1600 and [p.queries for p in result.points] == [40, 1600]
