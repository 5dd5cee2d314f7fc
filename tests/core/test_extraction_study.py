"""The extraction study: one curve point per budget as a run event, the stolen model stored, every bad setting
named at once. Oracles: a label-only API costs honest users nothing (its accuracy is the victim's own); the API's
log counts exactly the largest budget; the stored surrogate scores the last point's accuracy again."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from dlsec_core.data.builtin import Dataset, load_dataset
from dlsec_core.errors import InvalidInputError
from dlsec_core.evaluation.metrics import accuracy
from dlsec_core.store import ModelCard, Store
from dlsec_core.studies.base import StudyEvent, run_study
from dlsec_core.studies.catalog import get_study
from dlsec_core.studies.theft import ExtractionStudy, ExtractionStudyConfig, ExtractionStudyResult
from dlsec_core.theft.extraction import PoolKind, resize_images
from dlsec_core.theft.prada import PradaConfig, prada
from dlsec_core.training.loop import TrainConfig, run_to_end
from dlsec_core.workflows import train_and_store


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


@pytest.fixture(scope="module")
def mnist_victim(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ModelCard]:
    """Softmax regression on mnist5k (about 89 %), as in tests/core/test_prada.py: on the 8x8 `digits` a Jacobian
    step is not small next to the distance between natural digits, and PRADA catches it far less reliably."""
    home = tmp_path_factory.mktemp("prada_home")
    card = run_to_end(
        train_and_store(
            Store(home), dataset="mnist5k", arch="logreg", name="mnist-logreg",
            config=TrainConfig(epochs=3, lr=0.05, shift=0, seed=3),
        )
    )  # fmt: skip
    return home, card


def _steal(mnist_victim: tuple[Path, ModelCard], attack: str, seed: int) -> ExtractionStudyResult:
    home, card = mnist_victim
    config = ExtractionStudyConfig(
        model_id=card.id,
        attack=attack,
        attack_params={"arch": "logreg", "epochs": 1},
        budgets=[400],
        seed=seed,
    )
    return ExtractionStudyResult.from_json(run_study(get_study("extraction"), Store(home), config).result)


@pytest.mark.parametrize("seed", [0, 1])
def test_prada_catches_jacobian_queries_and_not_the_benign_client(
    mnist_victim: tuple[Path, ModelCard], seed: int
) -> None:
    """Measured (δ = 0.9, 400 queries): the Jacobian attacker's W 0.79-0.88 at the first test (alarm at query 130
    or 150); the benign client sending 400 test images never below 0.95."""
    result = _steal(mnist_victim, "jacobian", seed)
    traces = result.prada_results()
    assert traces is not None
    attacker, benign = traces
    assert len(attacker.steps) == result.answered == 400
    assert result.prada_first_alarm is not None and result.prada_first_alarm == attacker.first_alarm
    assert attacker.first_alarm == attacker.tests[0][0] and attacker.tests[0][1] < attacker.delta
    # the benign client: 400 ordinary test images, tested many times, never alarmed
    assert len(benign.steps) == 400 and len(benign.tests) >= 20
    assert result.prada_benign_first_alarm is None and not benign.alarmed
    assert min(w for _, w in benign.tests) > benign.delta
    # its trace is PRADA's over test images in the seeded order (seed + 1), labelled by the victim itself (the
    # full policy keeps every top-1): the API's log carried the inputs and the labels it answered
    home, card = mnist_victim
    model, _ = Store(home).load_model(card.id)
    x_test = load_dataset("mnist5k").x_test
    order = torch.randperm(len(x_test), generator=torch.Generator().manual_seed(seed + 1))[:400]
    with torch.no_grad():
        labels = model(x_test[order]).argmax(1)
    assert prada(x_test[order], labels, PradaConfig()).to_json() == benign.to_json()


def test_prada_lets_knockoff_natural_images_slip_past(mnist_victim: tuple[Path, ModelCard]) -> None:
    """Juuti et al. 2019's own caveat: natural-image queries (Knockoff from held-out digits) look benign.
    Measured: W ≥ 0.98 at every test."""
    result = _steal(mnist_victim, "knockoff", 0)
    traces = result.prada_results()
    assert traces is not None
    attacker, _ = traces
    assert len(attacker.tests) >= 20 and result.prada_first_alarm is None


def test_a_run_made_before_detection_still_reads(tmp_home: object, stored_model: ModelCard) -> None:
    config = ExtractionStudyConfig(
        model_id=stored_model.id,
        attack="knockoff",
        attack_params={"arch": "logreg", "epochs": 1},
        budgets=[40],
    )
    stored = run_study(get_study("extraction"), Store(), config).result
    old = {k: v for k, v in stored.items() if not k.startswith("prada")}
    result = ExtractionStudyResult.from_json(old)
    assert result.prada_results() is None and result.prada_first_alarm is None
    assert ExtractionStudyResult.from_json(stored).to_json() == stored
    with pytest.raises(InvalidInputError, match="prada_params"):
        ExtractionStudyConfig(model_id="abc", prada_params={"delta": 2.0, "nope": 1})


def _uploaded(n: int) -> Dataset:
    """A user's dataset unlike the victim's: 16x16 RGB images (the victim takes 8x8 grey), 2 classes."""
    gen = torch.Generator().manual_seed(7)
    x = torch.rand((n, 3, 16, 16), generator=gen)
    y = torch.arange(n) % 2
    half = n // 2
    return Dataset(name="my-photos", x_train=x[:half], y_train=y[:half], x_test=x[half:], y_test=y[half:],
                   class_names=("a", "b"))  # fmt: skip


def test_the_uploaded_pool_sends_the_users_own_images(tmp_home: object, stored_model: ModelCard) -> None:
    """Oracle: PRADA's trace of the attacker's stream, as the API logged it, equals PRADA's on the user's images
    (train then test, in the seeded order, resized to 8x8 grey) labelled by the victim itself (full answers)."""
    store = Store()
    store.save_dataset(_uploaded(120))
    config = ExtractionStudyConfig(
        model_id=stored_model.id, attack="knockoff", attack_params={"arch": "logreg", "epochs": 1},
        pool=PoolKind.UPLOADED, pool_dataset="my-photos", budgets=[50, 100], seed=4,
    )  # fmt: skip
    result = ExtractionStudyResult.from_json(run_study(get_study("extraction"), store, config).result)
    assert result.answered == 100 and result.pool == "uploaded"
    assert "'my-photos'" in result.pool_description and "120 images" in result.pool_description
    mine = _uploaded(120)
    images = torch.cat([mine.x_train, mine.x_test])
    order = torch.randperm(120, generator=torch.Generator().manual_seed(4))[:100]
    sent = resize_images(images[order], (1, 8, 8))
    model, _ = store.load_model(stored_model.id)
    with torch.no_grad():
        labels = model(sent).argmax(1)
    assert result.prada == prada(sent, labels, PradaConfig()).to_json()
    # a budget larger than the upload is refused with the count; the config needs the dataset's name
    too_many = dataclasses.replace(config, budgets=[50, 500])
    with pytest.raises(InvalidInputError, match="has 120 images"):
        run_study(get_study("extraction"), store, too_many)
    with pytest.raises(InvalidInputError, match="needs the name of an uploaded dataset"):
        ExtractionStudyConfig(model_id="abc", pool=PoolKind.UPLOADED)
    with pytest.raises(InvalidInputError, match="read only by the 'uploaded' pool"):
        ExtractionStudyConfig(model_id="abc", pool=PoolKind.SAME, pool_dataset="my-photos")


def test_the_rate_limit_throttles_the_attacker_and_the_run_reports_it(
    tmp_home: object, stored_model: ModelCard
) -> None:
    """Oracle: 100 answers per 60 s and 300 queries: batches of 100, the first answered at once, the next two
    each after a 60 s wait on the API's clock: 120 s, 200 throttled answers, 2 refused batches."""
    config = ExtractionStudyConfig(
        model_id=stored_model.id, attack="copycat", attack_params={"arch": "logreg", "epochs": 1},
        budgets=[100, 300], rate_limit=100, rate_window_s=60.0,
    )  # fmt: skip
    result = ExtractionStudyResult.from_json(run_study(get_study("extraction"), Store(), config).result)
    assert result.rate_limit == "100 queries per 60 s"
    assert result.throttled_s == pytest.approx(120.0) and result.throttled_queries == 200
    assert result.rate_limit_refusals == 2 and result.answered == 300
    assert [p.waited_s for p in result.points] == pytest.approx([0.0, 120.0])
    free = dataclasses.replace(config, rate_limit=0)
    unlimited = ExtractionStudyResult.from_json(run_study(get_study("extraction"), Store(), free).result)
    assert unlimited.rate_limit == "" and unlimited.throttled_s == 0.0 and unlimited.throttled_queries == 0
    # the limit throttles; it changes no answer: same seed, same curve
    assert [p.fidelity for p in unlimited.points] == [p.fidelity for p in result.points]
