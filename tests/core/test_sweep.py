"""Accuracy-vs-epsilon sweeps: the one-gradient FGSM shortcut equals recomputation, order, laziness, validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dlsec_core.attacks import FGSM, PGD, Attack
from dlsec_core.data.builtin import load_dataset
from dlsec_core.errors import InvalidInputError
from dlsec_core.evaluation import SweepPoint, accuracy, sweep
from dlsec_core.evaluation.sweep import MAX_POINTS
from dlsec_core.models import ModelSpec
from dlsec_core.training.loop import TrainConfig, run_to_end, train

CPU = torch.device("cpu")
EPS_VALUES = {"linf": [0.0, 0.03, 0.1, 0.2, 0.3], "l2": [0.0, 0.25, 0.75, 1.5, 3.0]}


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small cnn trained on digits (about 0.96 test accuracy in a fraction of a second) and 150 test samples.

    150 is not a multiple of the batch sizes used below, so the last batch is always a short one.
    """
    ds = load_dataset("digits")
    mean, std = ds.channel_stats()
    spec = ModelSpec(
        arch="cnn",
        input_shape=(1, 8, 8),
        num_classes=10,
        hparams={"channels1": 16, "channels2": 32, "hidden": 64},
        mean=mean,
        std=std,
    )
    result = run_to_end(train(spec, ds, TrainConfig(epochs=2, lr=1e-2, batch_size=32, shift=0), device=CPU))
    assert result.test_accuracy > 0.85
    return result.model, ds.x_test[:150], ds.y_test[:150]


class CountingModel(nn.Module):
    """Counts forward passes of the wrapped model (an exact measure of the work a sweep has done)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x)


def correct_under(attack: Attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> int:
    """The oracle: run the attack itself on each batch and count the samples it does not fool."""
    correct = 0
    for i in range(0, x.shape[0], batch_size):
        result = attack(model, x[i : i + batch_size], y[i : i + batch_size])
        correct += int((~result.success).sum())
    return correct


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("batch_size", [7, 64])
def test_fgsm_sweep_equals_per_epsilon_recomputation(trained, norm: str, batch_size: int):
    model, x, y = trained
    points = list(sweep(model, x, y, FGSM(norm=norm), EPS_VALUES[norm], batch_size=batch_size))
    assert [p.eps for p in points] == EPS_VALUES[norm]
    for point in points:
        expected = correct_under(FGSM(eps=point.eps, norm=norm), model, x, y, batch_size)
        assert point.correct == expected, point
        assert point.n == x.shape[0]
        assert point.accuracy == expected / x.shape[0]
    assert points[-1].correct < points[0].correct  # the largest budget actually fools the model


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fgsm_sweep_in_one_batch_equals_fgsm_on_all_inputs(trained, norm: str):
    model, x, y = trained
    for point in sweep(model, x, y, FGSM(norm=norm), EPS_VALUES[norm], batch_size=1000):
        result = FGSM(eps=point.eps, norm=norm)(model, x, y)
        assert point.correct == x.shape[0] - int(result.success.sum())
        assert point.accuracy == pytest.approx(
            1 - result.success_rate, abs=1e-6
        )  # success_rate is a float32 mean


@pytest.mark.parametrize("attack", [FGSM(), PGD(steps=5)], ids=["fgsm", "pgd"])
def test_points_come_in_the_given_order_and_eps_zero_is_clean_accuracy(trained, attack: Attack):
    model, x, y = trained
    eps_values = [0.2, 0.0, 0.05]
    points = list(sweep(model, x, y, attack, eps_values, batch_size=40))
    assert all(isinstance(p, SweepPoint) for p in points)
    assert [p.eps for p in points] == eps_values
    assert points[1].accuracy == accuracy(model, x, y)
    for point in points:
        assert point.attack.startswith(attack.title + " (L∞ ε=")
        assert f"ε={point.eps:g}" in point.attack
        assert point.norm == "linf"
        assert point.to_record()["correct"] == point.correct
    assert [p.elapsed for p in points] == sorted(p.elapsed for p in points)


def test_pgd_accuracy_does_not_rise_with_epsilon(trained):
    model, x, y = trained
    eps_values = [0.0, 0.02, 0.05, 0.1, 0.2]
    acc = [p.accuracy for p in sweep(model, x, y, PGD(steps=20), eps_values)]
    assert acc[0] > 0.85
    assert acc[-1] < 0.1
    for lower, higher in zip(acc, acc[1:], strict=False):
        assert higher <= lower + 0.01


def test_pgd_sweep_is_seeded(trained):
    model, x, y = trained
    first = [p.correct for p in sweep(model, x, y, PGD(steps=3), [0.05, 0.1], seed=4)]
    second = [p.correct for p in sweep(model, x, y, PGD(steps=3), [0.05, 0.1], seed=4)]
    assert first == second


@pytest.mark.parametrize("attack", [FGSM(), PGD(steps=10)], ids=["fgsm", "pgd"])
def test_the_sweep_is_lazy(trained, attack: Attack):
    model, x, y = trained
    alone = CountingModel(model)
    list(sweep(alone, x, y, attack, [0.1], batch_size=50))

    counted = CountingModel(model)
    points = sweep(counted, x, y, attack, [0.1, 0.2, 0.3, 0.4], batch_size=50)
    assert counted.calls == 0  # nothing happens until the first point is asked for
    first = next(points)
    assert counted.calls == alone.calls  # exactly the work of a one-point sweep, nothing for later points
    assert first.eps == 0.1
    next(points)
    assert counted.calls > alone.calls
    points.close()


@pytest.mark.parametrize(
    ("eps_values", "norm"),
    [
        ([], "linf"),
        ([0.1, -0.01], "linf"),
        ([float("nan")], "l2"),
        ([float("inf")], "l2"),
        ([0.5, 1.5], "linf"),
        ([0.01] * (MAX_POINTS + 1), "linf"),
    ],
)
def test_bad_eps_lists_are_refused(trained, eps_values: list[float], norm: str):
    model, x, y = trained
    with pytest.raises(InvalidInputError):
        next(sweep(model, x, y, FGSM(norm=norm), eps_values))


def test_an_l2_sweep_may_go_above_one(trained):
    model, x, y = trained
    assert [p.eps for p in sweep(model, x[:10], y[:10], FGSM(norm="l2"), [0.5, 2.0])] == [0.5, 2.0]


def test_bad_inputs_are_refused(trained):
    model, x, y = trained
    with pytest.raises(InvalidInputError):
        next(sweep(model, x * 2, y, FGSM(), [0.1]))
    with pytest.raises(InvalidInputError):
        next(sweep(model, x, y[:-1], FGSM(), [0.1]))


@pytest.mark.parametrize("attack", [FGSM(), PGD(steps=2)], ids=["fgsm", "pgd"])
@pytest.mark.parametrize("training", [True, False])
def test_mode_is_restored_after_the_sweep_and_after_closing_early(trained, attack: Attack, training: bool):
    model, x, y = trained
    try:
        model.train(training)
        list(sweep(model, x[:30], y[:30], attack, [0.0, 0.1]))
        assert model.training is training

        points = sweep(model, x[:30], y[:30], attack, [0.0, 0.1, 0.2])
        next(points)
        assert not model.training  # attacked in eval mode
        points.close()
        assert model.training is training
    finally:
        model.eval()


class _Coin(nn.Module):
    """A random classifier: class 0 with probability exactly 1/2 on every call, whatever the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = torch.randn(x.shape[0], 1)
        return torch.cat([u, torch.zeros_like(u)], dim=1)  # (N, 2): class 0 wins when u > 0


def test_draws_average_a_random_model_over_many_predictions() -> None:
    """Issue 13 item 12: one noise draw per image on 20 images let the Certified page's curve rise with the radius.
    With draws, each accuracy averages n x draws predictions: the binomial oracle says 1/2 within a few sigma."""
    torch.manual_seed(0)
    x, y = torch.rand(20, 1, 4, 4), torch.zeros(20, dtype=torch.long)
    (one,) = list(sweep(_Coin(), x, y, FGSM(), [0.0]))
    (many,) = list(sweep(_Coin(), x, y, FGSM(), [0.0], draws=400))
    assert one.draws == 1 and many.draws == 400 and many.n == 20
    assert many.accuracy == many.correct / (20 * 400)
    assert abs(many.accuracy - 0.5) < 4 * (0.25 / (20 * 400)) ** 0.5  # sigma = 0.0056
    with pytest.raises(InvalidInputError):
        sweep(_Coin(), x, y, FGSM(), [0.0], draws=0)
