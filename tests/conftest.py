"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from dlsec_core.store import ModelCard
    from dlsec_core.training.loop import TrainResult

#: A configuration that trains a useful digits model in about a second on two CPU cores.
FAST_TRAIN = {"epochs": 3, "lr": 0.05, "shift": 0}


@pytest.fixture
def tmp_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty DLSEC_HOME for one test (the store, jobs and runs all live under it)."""
    home = tmp_path / "dlsec_home"
    monkeypatch.setenv("DLSEC_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def trained_digits() -> TrainResult:
    """A softmax regression trained on the 8x8 `digits` data (about 93 % test accuracy), trained once per session.

    Shared by many tests: never train or modify `.model`; save it into a store instead (`stored_model`).
    """
    from dlsec_core.data.builtin import load_dataset
    from dlsec_core.training.loop import TrainConfig, run_to_end, train
    from dlsec_core.workflows import spec_for

    data = load_dataset("digits")
    return run_to_end(train(spec_for(data, "logreg"), data, TrainConfig(**FAST_TRAIN)))


def store_trained(home: Path, result: TrainResult, name: str = "digits-logreg") -> ModelCard:
    """Save a trained model into the store under `home`, with its card filled in as training would."""
    from dlsec_core.store import Store

    return Store(home).save_model(
        result.model,
        result.spec,
        name=name,
        dataset="digits",
        train_config=result.config.to_dict(),
        seed=result.config.seed,
        clean_accuracy=result.test_accuracy,
        train_seconds=result.seconds,
        history=result.history,
    )


@pytest.fixture(scope="session")
def save_trained() -> Callable[..., ModelCard]:
    """`store_trained` for other folders' fixtures (a conftest module cannot be imported by name)."""
    return store_trained


@pytest.fixture
def stored_model(tmp_home: Path, trained_digits: TrainResult) -> ModelCard:
    """One trained `digits` model in this test's fresh DLSEC_HOME."""
    return store_trained(tmp_home, trained_digits)
