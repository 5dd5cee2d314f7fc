"""The training loop: determinism, events, cancellation, the recipe hook, validation, shift augmentation."""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlsec_core.data.builtin import Dataset, load_dataset
from dlsec_core.errors import InvalidInputError, NotFoundError
from dlsec_core.evaluation import accuracy
from dlsec_core.models import ModelSpec
from dlsec_core.training import (
    Recipe,
    StandardRecipe,
    TrainConfig,
    TrainEvent,
    TrainResult,
    get_recipe,
    train,
)
from dlsec_core.training.loop import init_model, random_shift, run_to_end
from dlsec_core.training.recipes import TrainingSetup

CPU = torch.device("cpu")
TINY = {"channels1": 8, "channels2": 16, "hidden": 32}


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


def digits_spec(ds: Dataset, hparams: dict[str, int] | None = None) -> ModelSpec:
    mean, std = ds.channel_stats()
    return ModelSpec(
        arch="cnn",
        input_shape=ds.input_shape,
        num_classes=ds.num_classes,
        hparams=TINY if hparams is None else hparams,
        mean=mean,
        std=std,
    )


def collect(
    events: Generator[TrainEvent, None, TrainResult],
) -> tuple[list[TrainEvent], TrainResult]:
    """All events of a run, and the generator's return value."""
    seen: list[TrainEvent] = []
    while True:
        try:
            seen.append(next(events))
        except StopIteration as stop:
            return seen, stop.value


# -- determinism ---------------------------------------------------------------------------------------------


def padded(ds: Dataset, pad: int) -> Dataset:
    """`ds` with a black border: 16x16 images are large enough for the loop's shift augmentation to run."""
    return Dataset(
        name=f"{ds.name}-padded",
        x_train=F.pad(ds.x_train, (pad,) * 4),
        y_train=ds.y_train,
        x_test=F.pad(ds.x_test, (pad,) * 4),
        y_test=ds.y_test,
        class_names=ds.class_names,
    )


@pytest.mark.parametrize("pad", [0, 4], ids=["digits", "digits16-shifted"])
def test_same_seed_same_weights_other_seed_other_weights(digits: Dataset, pad: int):
    data = padded(digits, pad) if pad else digits
    spec = digits_spec(data)

    def weights(seed: int) -> dict[str, torch.Tensor]:
        config = TrainConfig(epochs=1, seed=seed, batch_size=64)  # default shift: on for 16x16, off for 8x8
        return run_to_end(train(spec, data, config, device=CPU)).model.state_dict()

    first, again, other = weights(1), weights(1), weights(2)
    assert first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_shift_augmentation_runs_on_larger_images(digits: Dataset):
    # The same seed with and without augmentation: the shifted batches must change the weights.
    data = padded(digits, 4)

    def weights(shift: int) -> dict[str, torch.Tensor]:
        config = TrainConfig(epochs=1, seed=1, batch_size=64, shift=shift)
        return run_to_end(train(digits_spec(data), data, config, device=CPU)).model.state_dict()

    plain, shifted = weights(0), weights(2)
    assert not all(torch.equal(plain[k], shifted[k]) for k in plain)


# -- events and result ---------------------------------------------------------------------------------------


def test_events_steps_epochs_and_result(digits: Dataset):
    epochs, batch_size = 2, 64
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=5e-3, shift=0, events_per_epoch=4)
    events, result = collect(train(digits_spec(digits), digits, config, device=CPU))

    steps_per_epoch = math.ceil(digits.x_train.shape[0] / batch_size)
    kinds = [e.kind for e in events]
    assert set(kinds) == {"step", "epoch"}
    epoch_events = [e for e in events if e.kind == "epoch"]
    assert [e.epoch for e in epoch_events] == list(range(1, epochs + 1))
    # Per epoch: some "step" events, then exactly one "epoch" event, which closes it.
    for epoch in range(1, epochs + 1):
        mine = [e.kind for e in events if e.epoch == epoch]
        assert mine[-1] == "epoch" and mine.count("epoch") == 1 and len(mine) > 1
    assert kinds[-1] == "epoch"

    steps = [e.step for e in events]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    assert [e.step for e in epoch_events] == [steps_per_epoch * k for k in range(1, epochs + 1)]
    assert all(e.total_steps == steps_per_epoch * epochs for e in events)
    assert events[-1].progress == 1.0
    assert all(0 < e.progress <= 1 for e in events)
    assert all(e.test_accuracy is None for e in events if e.kind == "step")
    assert all(e.loss > 0 and 0 <= e.train_accuracy <= 1 for e in events)

    assert len(result.history) == epochs
    assert [h["epoch"] for h in result.history] == list(range(1, epochs + 1))
    assert result.test_accuracy == epoch_events[-1].test_accuracy == result.history[-1]["test_accuracy"]
    assert result.test_accuracy == accuracy(result.model, digits.x_test, digits.y_test)
    assert not result.model.training
    assert result.stopped_early is None
    assert result.config == config
    assert isinstance(result.recipe, StandardRecipe)


def test_run_to_end_returns_the_result(digits: Dataset):
    config = TrainConfig(epochs=1, shift=0)
    result = run_to_end(train(digits_spec(digits), digits, config, device=CPU))
    assert isinstance(result, TrainResult)
    assert len(result.history) == 1 and result.seconds > 0


def test_a_cnn_learns_digits(digits: Dataset):
    config = TrainConfig(epochs=3, lr=5e-3, shift=0)
    result = run_to_end(train(digits_spec(digits, hparams={}), digits, config, device=CPU))
    assert result.test_accuracy > 0.85
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0]


# -- cancellation and recipes --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CountingRecipe(Recipe):
    """Standard loss, counting its calls; reports a custom metric and asks to stop after `stop_after` epochs."""

    name = "counting-test"
    stop_after: int = 0
    calls: list[int] = field(default_factory=lambda: [0])
    epochs_seen: list[int] = field(default_factory=lambda: [0])

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls[0] += 1
        return super().loss(model, x, y, generator)

    def epoch_metrics(self, setup: TrainingSetup) -> dict[str, Any]:
        self.epochs_seen[0] += 1
        if self.stop_after and self.epochs_seen[0] >= self.stop_after:
            return {"custom": 1, "stop": "budget"}
        return {"custom": 1}


def test_closing_the_generator_cancels_training(digits: Dataset):
    recipe = CountingRecipe()
    config = TrainConfig(epochs=3, batch_size=32, shift=0, events_per_epoch=10)
    events = train(digits_spec(digits), digits, config, recipe, device=CPU)
    first = next(events)
    assert first.kind == "step"
    done = recipe.calls[0]
    events.close()  # what a worker does on cancel: no exception escapes
    with pytest.raises(StopIteration):
        next(events)
    assert recipe.calls[0] == done
    assert done < math.ceil(digits.x_train.shape[0] / 32)  # stopped within the first epoch


def test_a_recipe_can_add_metrics_and_stop_training(digits: Dataset):
    recipe = CountingRecipe(stop_after=1)
    config = TrainConfig(epochs=3, batch_size=64, shift=0)
    events, result = collect(train(digits_spec(digits), digits, config, recipe, device=CPU))

    epoch_events = [e for e in events if e.kind == "epoch"]
    assert len(epoch_events) == 1
    assert epoch_events[0].metrics == {"custom": 1}  # "stop" is a request, not a metric
    assert result.stopped_early == "budget"
    assert len(result.history) == 1 and result.history[0]["custom"] == 1
    assert recipe.calls[0] == math.ceil(digits.x_train.shape[0] / 64)  # the loss ran once per step
    assert result.recipe is recipe


@dataclass(frozen=True, kw_only=True)
class LastLayerOnly(Recipe):
    """Replaces the optimizer in `prepare`: only the final linear layer is trained."""

    name = "last-layer-test"

    def prepare(self, setup: TrainingSetup) -> TrainingSetup:
        last = [m for m in setup.model.modules() if isinstance(m, nn.Linear)][-1]
        setup.optimizer = torch.optim.Adam(last.parameters(), lr=1e-2)
        return setup


def test_prepare_can_replace_the_optimizer(digits: Dataset):
    spec = digits_spec(digits)
    config = TrainConfig(epochs=1, shift=0, seed=3)
    result = run_to_end(train(spec, digits, config, LastLayerOnly(), device=CPU))
    initial = init_model(spec, seed=3).state_dict()
    trained = result.model.state_dict()
    last = [k for k in trained if k.endswith("weight")][-1].rsplit(".", 1)[0]  # e.g. "1.10"
    for key, value in trained.items():
        if key.startswith(last + "."):
            assert not torch.equal(value, initial[key]), key
        else:
            assert torch.equal(value, initial[key]), key


def test_recipe_registry():
    assert isinstance(get_recipe("standard"), StandardRecipe)
    with pytest.raises(NotFoundError):
        get_recipe("nope")
    with pytest.raises(InvalidInputError):
        get_recipe("standard", bogus=1)


# -- validation ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"epochs": 0},
        {"epochs": 1.5},
        {"lr": -1e-3},
        {"lr": 0},
        {"lr": float("nan")},
        {"optimizer": "rmsprop"},
        {"batch_size": 0},
        {"shift": 99},
        {"shift": -1},
        {"weight_decay": 1.0},
        {"seed": -1},
    ],
)
def test_bad_configs_are_refused(params: dict[str, Any]):
    with pytest.raises(InvalidInputError):
        TrainConfig(**params)


@pytest.mark.parametrize(
    "spec",
    [
        ModelSpec(arch="logreg", input_shape=(1, 28, 28), num_classes=10),
        ModelSpec(arch="logreg", input_shape=(1, 8, 8), num_classes=3),
        ModelSpec(arch="logreg", input_shape=(3, 8, 8), num_classes=10),
    ],
    ids=["size", "classes", "channels"],
)
def test_a_dataset_that_does_not_fit_the_model_is_refused(digits: Dataset, spec: ModelSpec):
    with pytest.raises(InvalidInputError):
        next(train(spec, digits, TrainConfig(epochs=1), device=CPU))


# -- random shift augmentation -------------------------------------------------------------------------------


def centered_images(n: int = 16, side: int = 12, margin: int = 2) -> torch.Tensor:
    """Random content with a `margin`-pixel empty border, so a shift of up to `margin` loses nothing."""
    x = torch.zeros(n, 1, side, side)
    g = torch.Generator().manual_seed(0)
    x[:, :, margin : side - margin, margin : side - margin] = torch.rand(
        n, 1, side - 2 * margin, side - 2 * margin, generator=g
    )
    return x


def test_shift_zero_is_the_identity():
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(random_shift(x, 0, torch.Generator().manual_seed(0)), x)


def test_shift_translates_each_image_within_the_limit():
    x = centered_images(n=8)
    x = torch.cat([x, x.flip(2).expand(8, 3, 12, 12)], dim=1)  # (N, 4, H, W): all channels move together
    out = random_shift(x, 2, torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    offsets = set()
    for image, shifted in zip(x, out, strict=True):
        # Nothing is lost: the same pixel values, and the same total, as the input image.
        assert torch.equal(image.flatten().sort().values, shifted.flatten().sort().values)
        torch.testing.assert_close(image.sum(), shifted.sum())
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(torch.roll(image, (dy, dx), dims=(1, 2)), shifted)
        ]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) > 1  # each image draws its own offset


def test_shift_is_deterministic_given_the_generator():
    x = centered_images()
    a = random_shift(x, 2, torch.Generator().manual_seed(5))
    b = random_shift(x, 2, torch.Generator().manual_seed(5))
    c = random_shift(x, 2, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_relay_translates_skips_returns_and_closes_the_work_inside() -> None:
    from dlsec_core.training.loop import relay, run_to_end

    closed: list[bool] = []

    def work() -> Generator[int, None, str]:
        try:
            yield from range(5)
        finally:
            closed.append(True)
        return "done"

    said: list[str] = []
    assert run_to_end(relay(work(), lambda i: f"step {i}" if i % 2 == 0 else None), said.append) == "done"
    assert said == ["step 0", "step 2", "step 4"] and closed == [True]

    closed.clear()
    inner = work()  # still referenced here: only an explicit close stops it
    outer = relay(inner, str)
    assert next(outer) == "0"
    outer.close()  # a cancelled run: the work inside stops now, not whenever it is collected
    assert closed == [True]
