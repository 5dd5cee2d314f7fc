"""The privacy pages' default comparison: a DP model beside its standard twin, and vice versa (issue 13, item 15)."""

from __future__ import annotations

from pathlib import Path

from dlsec_core.store import Store
from dlsec_core.training.loop import TrainResult
from dlsec_ui.widgets import privacy_label, privacy_twins

DP = [
    {"epoch": 1, "epsilon": 3.9, "delta": 1e-5, "accountant": "rdp", "noise_multiplier": 1.0, "dp_steps": 7}
]


def test_a_dp_model_is_paired_with_the_standard_model_not_the_adversarially_trained_one(
    tmp_home: Path, trained_digits: TrainResult
) -> None:
    store = Store(tmp_home)
    m, spec = trained_digits.model, trained_digits.spec
    standard = store.save_model(m, spec, name="std", dataset="digits", recipe="standard")
    dp4 = store.save_model(m, spec, name="dp4", dataset="digits", recipe="dp-sgd", history=DP)
    store.save_model(m, spec, name="pgd", dataset="digits", recipe="pgd")  # newest, but not the twin
    cards = store.list_models(dataset="digits")
    assert privacy_twins(dp4, cards) == [dp4.id, standard.id]
    assert privacy_twins(standard, cards) == [standard.id, dp4.id]


def test_an_uploaded_copy_of_a_dp_model_keeps_its_label_and_its_twin(
    tmp_home: Path, tmp_path: Path, trained_digits: TrainResult
) -> None:
    store = Store(tmp_home)
    m, spec = trained_digits.model, trained_digits.spec
    standard = store.save_model(m, spec, name="std", dataset="digits", recipe="standard")
    dp4 = store.save_model(m, spec, name="dp4", dataset="digits", recipe="dp-sgd", history=DP)
    weights, _ = store.export_model(dp4.id, tmp_path)
    copy = store.import_model(weights.read_bytes(), name="dp4 copy", dataset="digits")
    assert privacy_label(dp4) == "ε = 3.9 (RDP, δ 1e-05)"
    assert privacy_label(copy) == "ε = 3.9 (RDP, δ 1e-05), as recorded in its file"
    assert privacy_label(copy, short=True) == "ε = 3.9" and privacy_label(standard) == "no DP"
    cards = store.list_models(dataset="digits")
    assert privacy_twins(copy, cards) == [copy.id, standard.id]
    assert privacy_twins(standard, cards) == [standard.id, copy.id]  # the newest DP model, the copy
