"""Adversarial-training recipes (FGSM-RS, PGD-AT, TRADES): the contract every one of them keeps, oracles for
the training inputs they build, and the point of the exercise: they raise PGD accuracy well above a standard
model's on mnist5k."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlsec_core.attacks import PGD
from dlsec_core.attacks._projection import random_start
from dlsec_core.data.builtin import Dataset, load_dataset
from dlsec_core.defenses.adversarial_training import (
    AdversarialRecipe,
    FGSMRSRecipe,
    PGDATRecipe,
    TRADESRecipe,
    trades_attack,
)
from dlsec_core.errors import InvalidInputError
from dlsec_core.evaluation import sweep
from dlsec_core.store import Store
from dlsec_core.training import RECIPES, TrainConfig, TrainEvent, TrainResult, get_recipe, train
from dlsec_core.training.loop import run_to_end
from dlsec_core.workflows import spec_for, train_and_store

CPU = torch.device("cpu")
TINY = {"channels1": 8, "channels2": 16, "hidden": 32}
#: Every registered adversarial-training recipe: a new one is tested the moment it is registered.
ADVERSARIAL = [name for name, cls in RECIPES.items() if issubclass(cls, AdversarialRecipe)]
ONE_EPOCH = TrainConfig(epochs=1, batch_size=64, shift=0)
ROBUST_N = 60  # held-out images for the per-epoch robust accuracy in the small runs


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


def run(
    data: Dataset, recipe_name: str, config: TrainConfig = ONE_EPOCH, **params: Any
) -> tuple[list[TrainEvent], TrainResult]:
    """All events and the result of training the tiny cnn with a recipe."""
    recipe = get_recipe(recipe_name, **params)
    events = train(spec_for(data, "cnn", **TINY), data, config, recipe, device=CPU)
    seen: list[TrainEvent] = []
    while True:
        try:
            seen.append(next(events))
        except StopIteration as stop:
            return seen, stop.value


@pytest.fixture(scope="module")
def first_runs(digits: Dataset) -> dict[str, tuple[list[TrainEvent], TrainResult]]:
    """One epoch of each adversarial recipe (and standard) on digits, seed 0, trained once per module."""
    runs = {name: run(digits, name, robust_eval_images=ROBUST_N) for name in ADVERSARIAL}
    runs["standard"] = run(digits, "standard")
    return runs


def test_the_three_recipes_are_registered_with_papers_and_ui_metadata():
    assert {"fgsm-rs", "pgd", "trades"} <= set(ADVERSARIAL)
    for name in ADVERSARIAL:
        cls = RECIPES[name]
        assert cls.name == name and cls.title and cls.paper and cls.__doc__
        for f in dataclasses.fields(cls):
            assert f.metadata.get("label"), f"{name}.{f.name} has no UI label"
            if f.type in ("int", "float", "float | None"):
                assert {"min", "max", "step"} <= set(f.metadata), f"{name}.{f.name} has no UI range"
                assert f.default is None or f.metadata["min"] <= f.default <= f.metadata["max"]
        assert cls().eps == 0.1  # FIELD_NOTES: on mnist5k adversarial training holds at 0.1, not 0.3


# -- determinism and events ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_same_seed_same_weights(digits: Dataset, name: str, first_runs: dict[str, Any]):
    _, first = first_runs[name]
    _, again = run(digits, name, robust_eval_images=ROBUST_N)
    a, b = first.model.state_dict(), again.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The recipe really changes training: other weights than standard training from the same seed.
    standard = first_runs["standard"][1].model.state_dict()
    assert not all(torch.equal(a[k], standard[k]) for k in a)


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_epoch_events_carry_robust_accuracy_and_the_attack_that_produced_it(
    digits: Dataset, name: str, first_runs: dict[str, Any]
):
    events, result = first_runs[name]
    recipe = result.recipe
    epoch_events = [e for e in events if e.kind == "epoch"]
    assert len(epoch_events) == 1
    metrics = epoch_events[0].metrics
    assert set(metrics) == {"robust_accuracy", "robust_attack", "robust_images"}
    assert metrics["robust_images"] == ROBUST_N
    attack = recipe.robust_attack()
    assert metrics["robust_attack"] == attack.describe()
    assert "PGD" in metrics["robust_attack"] and "ε=0.1," in metrics["robust_attack"]
    assert "10 steps" in metrics["robust_attack"]
    # Oracle: the named attack, run by the evaluation module with the same seed, gives the same number.
    (point,) = sweep(result.model, digits.x_test[:ROBUST_N], digits.y_test[:ROBUST_N], attack, [attack.eps])
    assert metrics["robust_accuracy"] == point.accuracy
    assert 0.0 <= metrics["robust_accuracy"] <= 1.0
    assert result.history[-1]["robust_accuracy"] == metrics["robust_accuracy"]
    assert result.history[-1]["robust_attack"] == metrics["robust_attack"]
    assert all("robust_accuracy" not in e.metrics for e in events if e.kind == "step")


def test_standard_training_reports_no_robust_metrics(first_runs: dict[str, Any]):
    events, _ = first_runs["standard"]
    assert all(e.metrics == {} for e in events)


def test_robust_eval_can_be_switched_off(digits: Dataset):
    events, _ = run(digits, "fgsm-rs", robust_eval_images=0)
    assert all(e.metrics == {} for e in events)


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_params_round_trip_into_the_model_card(tmp_home: Path, name: str):
    store = Store()
    recipe = get_recipe(name, eps=0.05, robust_eval_images=20)
    config = TrainConfig(epochs=1, lr=0.05, shift=0)
    card = run_to_end(train_and_store(store, dataset="digits", arch="logreg", config=config, recipe=recipe))
    assert card.recipe == name
    assert card.recipe_params == recipe.params() == dataclasses.asdict(recipe)
    assert card.recipe_params["eps"] == 0.05
    assert get_recipe(card.recipe, **card.recipe_params) == recipe
    assert card.history[-1]["robust_attack"] == recipe.robust_attack().describe()
    assert 0.0 <= card.history[-1]["robust_accuracy"] <= 1.0
    assert store.get_card(card.id).recipe_params == recipe.params()


# -- validation ----------------------------------------------------------------------------------------------

BAD_PARAMS = [
    ({"eps": -0.1}, ADVERSARIAL),
    ({"eps": 0.0}, ADVERSARIAL),
    ({"eps": 1.5}, ADVERSARIAL),
    ({"eps": float("nan")}, ADVERSARIAL),
    ({"eps": "0.1"}, ADVERSARIAL),
    ({"robust_eval_images": -1}, ADVERSARIAL),
    ({"robust_eval_images": 2.5}, ADVERSARIAL),
    ({"bogus": 1}, ADVERSARIAL),
    ({"alpha": 0.0}, ["fgsm-rs", "pgd", "trades"]),
    ({"alpha": -0.01}, ["fgsm-rs", "pgd", "trades"]),
    ({"alpha": 2.0}, ["fgsm-rs", "pgd", "trades"]),
    ({"steps": 0}, ["pgd", "trades"]),
    ({"steps": 2.5}, ["pgd", "trades"]),
    ({"steps": True}, ["pgd", "trades"]),
    ({"steps": 1000}, ["pgd", "trades"]),
    ({"clean_fraction": 1.0}, ["pgd"]),
    ({"clean_fraction": -0.1}, ["pgd"]),
    ({"beta": -1.0}, ["trades"]),
    ({"beta": float("inf")}, ["trades"]),
]


@pytest.mark.parametrize(
    ("name", "params"),
    [(name, params) for params, names in BAD_PARAMS for name in names],
    ids=lambda v: v if isinstance(v, str) else "-".join(f"{k}={v[k]}" for k in v),
)
def test_bad_params_are_refused(name: str, params: dict[str, Any]):
    with pytest.raises(InvalidInputError):
        get_recipe(name, **params)


def test_integers_are_accepted_as_floats():
    recipe = get_recipe("trades", eps=1, beta=6)
    assert isinstance(recipe.eps, float) and isinstance(recipe.beta, float)


# -- the inputs each recipe trains on ------------------------------------------------------------------------


class Recording(nn.Module):
    """Wraps a model and records the inputs of every forward pass."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return self.inner(x)


def linear_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


def batch(digits: Dataset, n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    return digits.x_train[:n], digits.y_train[:n]


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_the_loss_leaves_gradients_and_mode_alone_and_trains_inside_the_ball(digits: Dataset, name: str):
    recipe = get_recipe(name)
    x, y = batch(digits)
    model = Recording(linear_model())
    model.train()
    loss, logits = recipe.loss(model, x, y, torch.Generator().manual_seed(0))
    assert model.training
    assert all(p.grad is None for p in model.parameters())  # the attack used autograd.grad, not backward
    assert loss.ndim == 0 and torch.isfinite(loss) and logits.shape == (x.shape[0], 10)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    eps = recipe.eps
    moved = False
    for seen in model.inputs:
        reference = x.repeat(seen.shape[0] // x.shape[0], 1, 1, 1)  # TRADES feeds (2N, ...) = [x, x_adv]
        assert (seen - reference).abs().max() <= eps + 1e-6
        assert seen.min() >= 0.0 and seen.max() <= 1.0
        moved = moved or bool((seen - reference).abs().max() > eps / 2)
    assert moved


def test_fgsm_rs_oracle_on_a_linear_model(digits: Dataset):
    """Closed form: grad_x CE(Wx + b, y) = (softmax(Wx + b) - onehot(y)) W; one signed step of 1.25 eps from
    x + U(-eps, eps), clipped to the box, then to the eps-ball around x."""
    recipe = FGSMRSRecipe(eps=0.1)
    x, y = batch(digits)
    inner = linear_model()
    model = Recording(inner)
    recipe.loss(model, x, y, torch.Generator().manual_seed(3))

    start = random_start(x, 0.1, "linf", torch.Generator().manual_seed(3))
    layer = inner[1]
    assert isinstance(layer, nn.Linear)
    with torch.no_grad():
        probs = layer(start.flatten(1)).softmax(1)
        grad = ((probs - F.one_hot(y, 10).float()) @ layer.weight).view_as(x)
    expected = torch.min(torch.max((start + 0.125 * grad.sign()).clamp(0, 1), x - 0.1), x + 0.1)
    torch.testing.assert_close(model.inputs[-1], expected)


def test_pgd_at_trains_on_the_last_pgd_iterate(digits: Dataset):
    recipe = PGDATRecipe(eps=0.1, steps=4)
    x, y = batch(digits)
    model = Recording(linear_model())
    recipe.loss(model, x, y, torch.Generator().manual_seed(5))
    attack = PGD(eps=0.1, steps=4, random_start=True, stop_when_fooled=False)
    expected = attack.perturb(linear_model(), x, y, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(model.inputs[-1], expected)


def test_pgd_at_clean_fraction_mixes_the_two_losses(digits: Dataset):
    x, y = batch(digits)
    model = linear_model()
    mixed, _ = PGDATRecipe(eps=0.1, steps=2, clean_fraction=0.5).loss(
        model, x, y, torch.Generator().manual_seed(1)
    )
    adv, _ = PGDATRecipe(eps=0.1, steps=2).loss(model, x, y, torch.Generator().manual_seed(1))
    clean = F.cross_entropy(model(x), y)
    torch.testing.assert_close(mixed, 0.5 * clean + 0.5 * adv)


def test_trades_loss_is_ce_plus_beta_kl_and_its_attack_raises_the_kl(digits: Dataset):
    recipe = TRADESRecipe(eps=0.1, beta=6.0, steps=5)
    x, y = batch(digits)
    model = linear_model()
    loss, logits = recipe.loss(model, x, y, torch.Generator().manual_seed(2))
    x_adv = trades_attack(model, x, 0.1, 5, 0.025, torch.Generator().manual_seed(2))
    p_clean = model(x).softmax(1)

    def kl(points: torch.Tensor) -> torch.Tensor:
        return F.kl_div(model(points).log_softmax(1), p_clean, reduction="batchmean")

    torch.testing.assert_close(logits, model(x))
    torch.testing.assert_close(loss, F.cross_entropy(logits, y) + 6.0 * kl(x_adv))
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    assert kl(x_adv) > 5 * kl(random_start(x, 0.1, "linf", torch.Generator().manual_seed(0)))


# -- the point: robustness -----------------------------------------------------------------------------------


def test_fgsm_rs_training_raises_pgd_accuracy_well_above_standard_training():
    """Measured on 2 cores (seed 0, smaller cnn 16/32/64, all 4,000 mnist5k training digits, 3 epochs, no
    shift, PGD-20 with random start on the first 300 test images; clean accuracy 0.955 and 0.956):

        eps   standard  fgsm-rs (trained at 0.1)
        0.10  0.710     0.860
        0.15  0.413     0.710

    and fgsm-rs's per-epoch robust accuracy (PGD-10, 200 images) was 0.745, 0.855, 0.880. A standard model
    trained this briefly keeps much of its accuracy at eps 0.1 on this data (torchattacks' PGD agrees: 0.71), so
    the gap at the training eps is about 0.15, not the +0.3 the issue hoped for; one step further out (0.15)
    the baseline collapses and the gap doubles. The thresholds below keep a margin of 0.07-0.11.
    """
    data = load_dataset("mnist5k")
    spec = spec_for(data, "cnn", channels1=16, channels2=32, hidden=64)
    config = TrainConfig(epochs=3, shift=0)
    x, y = data.x_test[:300], data.y_test[:300]

    def pgd_accuracy(result: TrainResult, eps: float) -> float:
        (point,) = sweep(result.model, x, y, PGD(eps=eps, steps=20), [eps])
        return point.accuracy

    standard = run_to_end(train(spec, data, config, get_recipe("standard"), device=CPU))
    robust = run_to_end(train(spec, data, config, get_recipe("fgsm-rs", eps=0.1), device=CPU))
    base_10, at_10 = pgd_accuracy(standard, 0.1), pgd_accuracy(robust, 0.1)
    base_15, at_15 = pgd_accuracy(standard, 0.15), pgd_accuracy(robust, 0.15)

    assert robust.test_accuracy > 0.9 and standard.test_accuracy > 0.9  # robustness did not cost the task
    assert at_10 >= 0.75, (base_10, at_10)
    assert at_10 >= base_10 + 0.08, (base_10, at_10)
    assert at_15 >= base_15 + 0.2, (base_15, at_15)
    # The per-epoch robust accuracy (PGD-10 on 200 images) tells the same story while training.
    assert robust.history[-1]["robust_accuracy"] >= 0.7
