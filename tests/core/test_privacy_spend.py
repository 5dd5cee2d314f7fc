"""A model card's privacy spend is a typed value that survives export and import (issue 13, item 15)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dlsec_core.errors import InvalidInputError
from dlsec_core.models.spec import build_model
from dlsec_core.privacy_spend import PrivacySpend
from dlsec_core.safe_load import read_metadata
from dlsec_core.store import METADATA_PRIVACY_KEY, ModelCard, Store
from dlsec_core.training.loop import TrainResult
from dlsec_core.workflows import import_and_evaluate

DP_HISTORY = [
    {"epoch": 1, "loss": 1.0, "epsilon": 0.9, "delta": 1e-5, "accountant": "rdp", "noise_multiplier": 1.1,
     "sample_rate": 0.18, "dp_steps": 5},
    {"epoch": 2, "loss": 0.8, "epsilon": 1.4, "delta": 1e-5, "accountant": "rdp", "noise_multiplier": 1.1,
     "sample_rate": 0.18, "dp_steps": 10},
]  # fmt: skip


def save_dp(store: Store, result: TrainResult, name: str = "dp4") -> ModelCard:
    return store.save_model(
        result.model, result.spec, name=name, dataset="digits", recipe="dp-sgd", history=DP_HISTORY,
        clean_accuracy=result.test_accuracy,
    )  # fmt: skip


def test_a_dp_card_exposes_its_last_epochs_spend(tmp_home: Path, trained_digits: TrainResult) -> None:
    card = save_dp(Store(tmp_home), trained_digits)
    assert card.privacy == PrivacySpend(
        epsilon=1.4, delta=1e-5, accountant="rdp", steps=10, noise_multiplier=1.1, sample_rate=0.18
    )
    assert Store(tmp_home).get_card(card.id).privacy == card.privacy  # the same read back from the database
    assert card.privacy is not None and card.privacy.label() == "ε = 1.4 (RDP, δ 1e-05)"


def test_a_standard_card_has_no_spend(stored_model: ModelCard) -> None:
    assert stored_model.privacy is None


def test_export_then_import_keeps_the_spend(
    tmp_home: Path, tmp_path: Path, trained_digits: TrainResult
) -> None:
    store = Store(tmp_home)
    dp = save_dp(store, trained_digits)
    weights, _ = store.export_model(dp.id, tmp_path / "out")
    data = weights.read_bytes()
    assert json.loads(read_metadata(data)[METADATA_PRIVACY_KEY])["epsilon"] == 1.4
    copy = store.import_model(data, name="dp4 copy", dataset="digits")
    assert copy.recipe == "uploaded" and copy.privacy == dp.privacy
    # through the Models page's path too, and once more round the loop
    again = import_and_evaluate(store, data, None, name="dp4 again", dataset="digits")
    assert again.privacy == dp.privacy
    weights2, _ = store.export_model(again.id, tmp_path / "out2")
    assert store.import_model(weights2.read_bytes(), name="third", dataset="digits").privacy == dp.privacy


def test_a_standard_export_carries_no_spend(stored_model: ModelCard, tmp_home: Path, tmp_path: Path) -> None:
    store = Store(tmp_home)
    weights, _ = store.export_model(stored_model.id, tmp_path)
    assert METADATA_PRIVACY_KEY not in read_metadata(weights.read_bytes())
    assert store.import_model(weights.read_bytes(), name="copy", dataset="digits").privacy is None


def test_a_damaged_privacy_record_is_refused_with_a_sentence(stored_model: ModelCard, tmp_home: Path) -> None:
    from safetensors.torch import save

    store = Store(tmp_home)
    model = build_model(stored_model.spec)
    meta = {"dlsec_spec": stored_model.spec.to_json(), METADATA_PRIVACY_KEY: '{"epsilon": "lots"}'}
    with pytest.raises(InvalidInputError, match="privacy record"):
        store.import_model(save(model.state_dict(), metadata=meta), name="bad", dataset="digits")


def test_a_training_result_and_its_card_give_one_typed_spend(
    tmp_home: Path, trained_digits: TrainResult
) -> None:
    """Item 8: the spend is read from a history in one place (`spent_in`): a training result, its stored card and
    the audit's claim agree, and a history without ε (standard training) spends nothing."""
    import dataclasses

    from dlsec_core.privacy_spend import spent_in

    dp_result = dataclasses.replace(trained_digits, history=DP_HISTORY)
    card = save_dp(Store(tmp_home), trained_digits)
    assert dp_result.privacy == card.privacy == spent_in(DP_HISTORY)
    assert (
        dp_result.privacy is not None and dp_result.privacy.epsilon == 1.4 and dp_result.privacy.steps == 10
    )
    assert trained_digits.privacy is None and spent_in([]) is None
    with pytest.raises(InvalidInputError, match="Not a privacy spend"):
        spent_in([{"epoch": 1, "epsilon": 1.0}])  # an ε without its accountant is refused, not guessed
