"""The one training loop: a generator of `TrainEvent`s that never prints.

The UI draws curves from the events, the CLI prints them, a worker cancels the loop by closing the
generator between events. Recipes (`recipes.py`) plug in training-time defenses. The same seed gives the same
weights on CPU: model initialisation happens under a process-wide lock right after seeding, and shuffling uses
a private generator.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlsec_core.config import Config, param
from dlsec_core.data.builtin import Dataset
from dlsec_core.device import get_device
from dlsec_core.errors import InvalidInputError
from dlsec_core.evaluation.metrics import accuracy
from dlsec_core.models.spec import ModelSpec, build_model
from dlsec_core.privacy_spend import PrivacySpend, spent_in
from dlsec_core.training.recipes import Recipe, StandardRecipe, TrainingSetup

OPTIMIZERS = ("adam", "sgd")
_INIT_LOCK = threading.Lock()  # torch's global RNG is shared by threads: seed + init must not interleave


@dataclass(frozen=True, kw_only=True)
class TrainConfig(Config):
    """Optimisation hyperparameters (the recipe holds the defense's own)."""

    title: ClassVar[str] = "Training settings"

    epochs: int = param(10, "Epochs", min=1, max=500, step=1)
    batch_size: int = param(64, "Batch size", min=1, max=8192, step=1)
    lr: float = param(2e-3, "Learning rate", min=0.0, min_open=True, max=10.0, step=1e-4)
    optimizer: str = param("adam", "Optimizer", options=OPTIMIZERS, help="Adam, or SGD with momentum 0.9.")
    weight_decay: float = param(0.0, "Weight decay", min=0.0, max=1.0, max_open=True, step=1e-4)
    seed: int = param(0, "Seed", min=0, max=2**63 - 1, step=1)
    one_cycle: bool = param(
        True, "One-cycle learning rate", help="Warm up, then anneal (Smith 2018), instead of a constant rate."
    )
    shift: int = param(
        2,
        "Random shift (pixels, 0 = off)",
        help="Cheap augmentation, +1 point of test accuracy on mnist5k. Capped at a 14th of the image side, so "
        "small images (8x8 digits) are not shifted at all.",
        min=0,
        max=8,
        step=1,
    )
    events_per_epoch: int = param(10, "Progress events per epoch", min=1, max=10_000, step=1)

    @classmethod
    def suggested(cls, recipe: type[Recipe] | Recipe, **overrides: Any) -> TrainConfig:
        """The defaults, then the recipe's suggested settings (DP-SGD: larger batches, a higher learning rate),
        then `overrides` (a None override keeps the suggestion)."""
        settings = {**recipe.suggested, **{k: v for k, v in overrides.items() if v is not None}}
        return cls(**settings)

    def to_dict(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in ("epochs", "batch_size", "lr", "optimizer", "weight_decay", "seed", "one_cycle", "shift")
        }


@dataclass(frozen=True, kw_only=True)
class TrainEvent:
    """Progress of a training run. `kind` is "step" (within an epoch) or "epoch" (end of an epoch)."""

    kind: str
    epoch: int  # 1-based
    epochs: int
    step: int  # global step, 1-based
    total_steps: int
    loss: float  # mean over the epoch so far
    train_accuracy: float  # over the epoch so far
    test_accuracy: float | None = None  # at the end of each epoch
    elapsed: float = 0.0  # seconds since the start
    metrics: dict[str, Any] = field(default_factory=dict)  # recipe-specific (epsilon, robust accuracy, ...)

    @property
    def progress(self) -> float:
        return self.step / max(1, self.total_steps)

    def to_record(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "loss": self.loss,
            "train_accuracy": self.train_accuracy,
            "test_accuracy": self.test_accuracy,
            "elapsed": self.elapsed,
            **self.metrics,
        }


@dataclass(frozen=True, eq=False)
class TrainResult:
    model: nn.Module  # plain module, eval mode, on the training device
    spec: ModelSpec
    config: TrainConfig
    recipe: Recipe
    test_accuracy: float
    seconds: float
    history: list[dict[str, Any]]  # one record per epoch
    stopped_early: str | None = None

    @property
    def privacy(self) -> PrivacySpend | None:
        """The (ε, δ) this training spent and its accountant (DP-SGD records it per epoch); None without DP."""
        return spent_in(self.history)


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to `max_shift` pixels (zero padding), drawn from `generator`."""
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    p = max_shift
    padded = F.pad(x, (p, p, p, p))  # (N, C, H, W) -> (N, C, H+2p, W+2p)
    dy = torch.randint(0, 2 * p + 1, (n, 1, 1), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * p + 1, (n, 1, 1), generator=generator).to(x.device)
    rows = dy + torch.arange(h, device=x.device).view(1, h, 1)  # (N, H, 1)
    cols = dx + torch.arange(w, device=x.device).view(1, 1, w)  # (N, 1, W)
    idx = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded[idx, :, rows, cols].permute(0, 3, 1, 2)  # advanced indexing gives (N, H, W, C)


def init_model(spec: ModelSpec, seed: int) -> nn.Module:
    """A freshly initialised model; the same seed gives the same weights."""
    with _INIT_LOCK:
        torch.manual_seed(seed)
        return build_model(spec)


def train(
    spec: ModelSpec,
    dataset: Dataset,
    config: TrainConfig | None = None,
    recipe: Recipe | None = None,
    *,
    device: torch.device | None = None,
) -> Generator[TrainEvent, None, TrainResult]:
    """Train a new model for `spec` on `dataset`, yielding events; the generator's return value is the result.

    Use `for event in train(...)` for progress, or `run_to_end(train(...))` to get the `TrainResult`.
    """
    config = config or TrainConfig()
    recipe = recipe or StandardRecipe()
    device = device or get_device()
    if tuple(dataset.input_shape) != tuple(spec.input_shape) or dataset.num_classes != spec.num_classes:
        raise InvalidInputError(
            f"The model expects {spec.input_shape} inputs and {spec.num_classes} classes, but the dataset has "
            f"{dataset.input_shape} and {dataset.num_classes}."
        )
    start = time.perf_counter()
    model = init_model(spec, config.seed).to(device)
    gen = torch.Generator().manual_seed(config.seed)
    loader: DataLoader[tuple[torch.Tensor, ...]] = DataLoader(
        TensorDataset(dataset.x_train, dataset.y_train),
        batch_size=config.batch_size,
        shuffle=True,
        generator=gen,
    )
    if config.optimizer == "adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
    else:
        optimizer = torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay
        )
    setup = recipe.prepare(
        TrainingSetup(
            model, optimizer, loader, config.epochs, gen, x_val=dataset.x_test, y_val=dataset.y_test
        )
    )
    steps_per_epoch = len(setup.loader)
    loss_fn = setup.loss_fn or recipe.loss
    total = steps_per_epoch * config.epochs
    scheduler = (
        torch.optim.lr_scheduler.OneCycleLR(setup.optimizer, max_lr=config.lr, total_steps=total)
        if config.one_cycle
        else None
    )
    every = max(1, steps_per_epoch // max(1, config.events_per_epoch))
    x_test, y_test = dataset.x_test, dataset.y_test
    shift = min(config.shift, min(dataset.input_shape[1:]) // 14)
    history: list[dict[str, Any]] = []
    step, test_acc, stopped = 0, 0.0, None
    for epoch in range(1, config.epochs + 1):
        setup.model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        for i, (xb, yb) in enumerate(setup.loader, start=1):
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            if xb.shape[0] == 0:  # Poisson sampling (DP) can draw an empty batch
                continue
            xb = random_shift(xb, shift, gen)
            setup.optimizer.zero_grad(set_to_none=True)
            loss, logits = loss_fn(setup.model, xb, yb, gen)
            if not torch.isfinite(loss.detach()):
                raise InvalidInputError(
                    f"Training diverged (loss became {float(loss.detach())}) at epoch {epoch}; "
                    "lower the learning rate."
                )
            loss.backward()
            setup.optimizer.step()
            if scheduler is not None:
                scheduler.step()
            step += 1
            loss_sum += float(loss.detach()) * xb.shape[0]
            hard = yb if yb.ndim == 1 else yb.argmax(1)  # (N, K) soft targets: their top class
            correct += int((logits.detach().argmax(1) == hard).sum())
            seen += xb.shape[0]
            if i % every == 0 and i < steps_per_epoch:
                yield TrainEvent(
                    kind="step", epoch=epoch, epochs=config.epochs, step=step, total_steps=total,
                    loss=loss_sum / seen, train_accuracy=correct / seen, elapsed=time.perf_counter() - start,
                )  # fmt: skip
        test_acc = accuracy(setup.model, x_test, y_test)
        metrics = recipe.epoch_metrics(setup)
        stopped = metrics.pop("stop", None)
        event = TrainEvent(
            kind="epoch", epoch=epoch, epochs=config.epochs, step=step, total_steps=total,
            loss=loss_sum / max(1, seen), train_accuracy=correct / max(1, seen), test_accuracy=test_acc,
            elapsed=time.perf_counter() - start, metrics=metrics,
        )  # fmt: skip
        history.append(event.to_record())
        yield event
        if stopped:
            break
    final = recipe.finalize(setup).eval()
    return TrainResult(
        model=final,
        spec=spec,
        config=config,
        recipe=recipe,
        test_accuracy=test_acc,
        seconds=time.perf_counter() - start,
        history=history,
        stopped_early=stopped,
    )


@dataclass(frozen=True, kw_only=True)
class RunProgress:
    """A training event of run `index` (0-based) of `total` in a series of runs, and the run's label."""

    index: int
    total: int
    label: str
    event: TrainEvent

    @property
    def progress(self) -> float:
        return (self.index + self.event.progress) / self.total


R = TypeVar("R")


def in_series(
    run: Generator[TrainEvent, None, R], *, index: int, total: int, label: str
) -> Generator[RunProgress, None, R]:
    """Relay one run of a series (a frontier sweep, an audit and its control) as `RunProgress`; return its result."""
    return relay(run, lambda event: RunProgress(index=index, total=total, label=label, event=event))


E = TypeVar("E")
S = TypeVar("S")


def relay(work: Generator[E, None, R], translate: Callable[[E], S | None]) -> Generator[S, None, R]:
    """Pass on the events of `work` as `translate` makes them (None: nothing to say) and return what `work`
    returns: a study relaying the progress of the training, attack or sweep it runs. Closing the relay (a
    cancelled run) closes `work` too, so the work inside stops at once rather than whenever it is collected."""
    try:
        while True:
            try:
                event = next(work)
            except StopIteration as stop:
                result: R = stop.value
                return result
            said = translate(event)
            if said is not None:
                yield said
    finally:
        work.close()


def run_to_end(events: Generator[E, None, R], on_event: Callable[[E], None] | None = None) -> R:
    """Drain a work item's generator (training, a study, a sweep) and return its result, handing each event to
    `on_event` if given (the CLI prints progress with it)."""
    while True:
        try:
            event = next(events)
        except StopIteration as stop:
            result: R = stop.value
            return result
        if on_event is not None:
            on_event(event)
