"""Federated averaging (McMahan et al. 2017, "Communication-Efficient Learning of Deep Networks from Decentralized
Data") with optional client-level differential privacy (DP-FedAvg: McMahan, Ramage, Talwar, Zhang 2018, "Learning
Differentially Private Recurrent Language Models") and simulated secure aggregation (`secure_aggregation`).

Each round the server picks a fraction C of the K clients; each trains a copy of the global model for E local
epochs of SGD (learning rate η, batch size B) on its own examples and returns its update Δ_k = w_k − w. Plain
FedAvg averages the updates weighted by the clients' example counts n_k. DP-FedAvg instead samples each client
independently with probability q = C (Poisson sampling, which its accounting assumes), clips each update to L2 norm
at most S (`clip`), sums them and adds Gaussian noise N(0, σ²S²) at the server, and divides by the expected number
of participants qK (the fixed-denominator estimator of McMahan et al. 2018, whose sensitivity is S / qK). One round
is one step of the sampled Gaussian mechanism over clients, so the client-level ε after T rounds is the RDP bound
for the subsampled Gaussian (Mironov, Talwar, Zhang 2019) with sampling rate q, noise σ and T steps, computed by
`dlsec_core.privacy.accounting` (Opacus's RDP accountant) and named in the result.

Why in-process clients and not Flower: Flower (`flwr` 1.42.0, the current release) runs simulations on Ray and its
`simulation` extra pins `ray==2.55.1` (checked with `pip install --dry-run --report`), while the lab pins
`ray==2.60.0` (requirements-dev.txt) for its executor; two Rays cannot live in one environment, and a simulated
client here is a few milliseconds of SGD on a small CPU model, far below Ray's per-task overhead. So the clients run
one after another in this process, each from its own seeded generator, which also makes a federation reproducible
bit for bit from its seed.

The update is the change of every floating-point entry of the model's state (weights, and running statistics of
a BatchNorm model, if any): what a client would send.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlsec_core.config import Config, param
from dlsec_core.data.builtin import Dataset
from dlsec_core.errors import InvalidInputError
from dlsec_core.federated.secure_aggregation import secure_sum
from dlsec_core.federated.splits import MAX_CLIENTS, ClientSplit, SplitKind, split_clients
from dlsec_core.models.spec import ModelSpec, build_model
from dlsec_core.privacy.accounting import RunSpend, epsilon_curve

ACCOUNTANT = "rdp"  # the client-level ε: RDP of the Poisson-subsampled Gaussian (Opacus's RDPAccountant)
EVAL_BATCH = 1024


@dataclass(frozen=True, kw_only=True)
class FedAvgConfig(Config):
    """A federation: how the data is split, how clients train, how the server aggregates."""

    title: ClassVar[str] = "Federated averaging"

    clients: int = param(10, "Clients (K)", min=1, max=MAX_CLIENTS, step=1)
    split: str = param(
        "iid", "Client split", options=tuple(s.value for s in SplitKind),
        help="IID: a random equal split. Dirichlet: each class dealt to the clients in proportions drawn from Dir(α).",
    )  # fmt: skip
    alpha: float = param(
        0.5, "Dirichlet α (non-IID skew)", min=0.0, min_open=True, max=1000.0,
        help="Smaller α: clients hold fewer classes. Only used by the Dirichlet split.",
    )  # fmt: skip
    rounds: int = param(10, "Rounds (T)", min=1, max=1000, step=1)
    fraction: float = param(
        1.0, "Client fraction C", min=0.0, min_open=True, max=1.0,
        help="The share of clients picked each round; with client-level DP, each client's sampling probability q.",
    )  # fmt: skip
    local_epochs: int = param(1, "Local epochs (E)", min=1, max=100, step=1)
    lr: float = param(0.1, "Local learning rate η", min=0.0, min_open=True, max=10.0)
    batch_size: int = param(32, "Local batch size (B)", min=1, max=1_000_000, step=1)
    secure_aggregation: bool = param(
        False, "Secure aggregation", help="The server sees only pairwise-masked updates; their sum is exact."
    )
    clip: float | None = param(
        None, "Update clip S (client-level DP)", min=0.0, min_open=True, max=1000.0,
        help="Clip each client's update to this L2 norm (empty: no client-level DP).",
    )  # fmt: skip
    noise_multiplier: float = param(
        0.0, "Noise multiplier σ", min=0.0, max=1000.0,
        help="Gaussian noise of standard deviation σ·S added to the sum of clipped updates at the server.",
    )  # fmt: skip
    delta: float = param(1e-5, "δ (client level)", min=0.0, min_open=True, max=1.0, max_open=True)
    seed: int = param(0, "Seed", min=0, max=2**63 - 1, step=1)

    def cross_check(self, problems: list[str]) -> None:
        super().cross_check(problems)
        if self.noise_multiplier and self.clip is None:
            problems.append("server noise (`noise_multiplier`) needs an update clip S (`clip`): noise is σ·S")

    @property
    def private(self) -> bool:
        """Client-level DP-FedAvg: clipped updates, Poisson client sampling, the fixed-denominator estimator."""
        return self.clip is not None

    def per_round(self) -> int:
        """Clients picked per round by plain FedAvg: max(1, round(C·K)) (DP-FedAvg: qK on average)."""
        return max(1, round(self.fraction * self.clients))


@dataclass(frozen=True, kw_only=True)
class RoundEvent:
    """One finished round: the new global model's test accuracy and its accuracy on each client's own data."""

    round: int  # 1-based
    rounds: int
    test_accuracy: float
    test_loss: float
    #: the global model's accuracy on each client's own examples (None: a client without examples)
    client_accuracies: tuple[float | None, ...]
    participants: tuple[int, ...]  # the clients whose updates were aggregated
    update_norms: tuple[float, ...]  # each participant's update L2 norm, before clipping
    epsilon: float | None  # client-level ε after this round (None without DP noise)
    seconds: float  # this round's wall time

    @property
    def progress(self) -> float:
        return self.round / self.rounds

    def client_spread(self) -> tuple[float, float, float]:
        """(min, mean, max) of the client accuracies."""
        values = [a for a in self.client_accuracies if a is not None]
        return (min(values), float(np.mean(values)), max(values)) if values else (math.nan,) * 3

    def to_record(self) -> dict[str, Any]:
        lo, mean, hi = self.client_spread()
        return {
            "round": self.round, "rounds": self.rounds, "test_accuracy": self.test_accuracy,
            "test_loss": self.test_loss, "client_accuracies": list(self.client_accuracies),
            "client_min": lo, "client_mean": mean, "client_max": hi, "participants": list(self.participants),
            "update_norms": list(self.update_norms), "epsilon": self.epsilon, "seconds": self.seconds,
        }  # fmt: skip


@dataclass(frozen=True, eq=False)
class FedAvgResult:
    """A finished federation: the global model (CPU, eval mode), the split, every round and the privacy spent."""

    model: nn.Module
    config: FedAvgConfig
    split: ClientSplit
    history: list[RoundEvent]
    initial_accuracy: float
    privacy: RunSpend | None  # client-level, None without DP noise
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def test_accuracy(self) -> float:
        return self.history[-1].test_accuracy

    def description(self) -> str:
        c = self.config
        if c.private:
            privacy = (
                f"client-level DP-FedAvg (clip S = {c.clip:g}, σ = {c.noise_multiplier:g}, q = {c.fraction:g}): "
                + (
                    f"client-level ε = {self.privacy.epsilon:.3g} at δ = {self.privacy.delta:g} "
                    f"({self.privacy.accountant_label}, {c.rounds} rounds at q = {c.fraction:g})"
                    if self.privacy is not None
                    else "no noise, so no ε (clipping only)"
                )
            )
        else:
            privacy = "no client-level DP"
        return (
            f"FedAvg, {self.split.describe()}; {c.rounds} rounds, C = {c.fraction:g}, E = {c.local_epochs}, "
            f"η = {c.lr:g}, B = {c.batch_size}; {'secure aggregation' if c.secure_aggregation else 'plain sum'}; "
            f"{privacy}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "description": self.description(), "config": self.config.to_json(), "split": self.split.to_json(),
            "initial_accuracy": self.initial_accuracy, "test_accuracy": self.test_accuracy,
            "rounds": [e.to_record() for e in self.history],
            "privacy": None if self.privacy is None else {
                **self.privacy.to_record(), "accountant_label": self.privacy.accountant_label, "level": "client",
            },
            "seconds": self.seconds, "notes": self.notes,
        }  # fmt: skip


# -- flat model state -------------------------------------------------------------------------------------------
def state_keys(model: nn.Module) -> list[str]:
    """The state entries an update covers: every floating-point tensor (weights, biases, float buffers)."""
    return [k for k, v in model.state_dict().items() if v.is_floating_point()]


def flat_state(model: nn.Module, keys: list[str]) -> torch.Tensor:
    """The entries `keys` of the model's state as one vector: each tensor flattened, in order."""
    state = model.state_dict()
    return torch.cat([state[k].detach().reshape(-1).to(torch.float32) for k in keys])


def load_flat_state(model: nn.Module, keys: list[str], vector: torch.Tensor) -> None:
    """Write a vector made by `flat_state` back into the model."""
    state = model.state_dict()
    offset = 0
    with torch.no_grad():
        for k in keys:
            target = state[k]
            target.copy_(vector[offset : offset + target.numel()].view_as(target))
            offset += target.numel()


def derive_seed(*parts: int) -> int:
    """A seed for one purpose (a round's sampling, a client's batches, the server's noise) from the federation's."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint64)[0] >> 1)


# -- one client, the server ---------------------------------------------------------------------------------------
def local_update(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float, batch_size: int, seed: int
) -> nn.Module:
    """A client's local training: a copy of the global model after `epochs` epochs of plain SGD (mean
    cross-entropy over each shuffled batch of `batch_size`), the global model untouched."""
    local = copy.deepcopy(model)
    local.train()
    optimizer = torch.optim.SGD(local.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(local(x[batch]), y[batch]).backward()
            optimizer.step()
    return local


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(correct per example (bool, (N,)), mean loss) in eval mode."""
    was = model.training
    model.eval()
    correct, loss = [], 0.0
    for start in range(0, x.shape[0], EVAL_BATCH):
        logits = model(x[start : start + EVAL_BATCH])
        target = y[start : start + EVAL_BATCH]
        correct.append(logits.argmax(1) == target)
        loss += float(F.cross_entropy(logits, target, reduction="sum"))
    model.train(was)
    return torch.cat(correct), loss / max(1, x.shape[0])


def clip_update(update: torch.Tensor, clip: float) -> torch.Tensor:
    """The update scaled to L2 norm at most `clip` (McMahan et al. 2018's flat clipping)."""
    norm = float(update.norm())
    return update * min(1.0, clip / norm) if norm > 0 else update


def _sample(config: FedAvgConfig, generator: torch.Generator) -> list[int]:
    if config.private:  # Poisson sampling, as the accountant assumes
        return (
            torch.nonzero(torch.rand(config.clients, generator=generator) < config.fraction)
            .flatten()
            .tolist()
        )
    chosen = torch.randperm(config.clients, generator=generator)[: config.per_round()]
    return sorted(chosen.tolist())


def federated_averaging(
    spec: ModelSpec, data: Dataset, config: FedAvgConfig, *, model: nn.Module | None = None
) -> Generator[RoundEvent, None, FedAvgResult]:
    """Train a model by FedAvg (or DP-FedAvg) over simulated clients, yielding one `RoundEvent` per round.

    Args:
        spec: the model to build (its initial weights seeded by `config.seed`).
        data: the dataset; its training split is dealt to the clients, its test split measures the global model.
        config: the federation.
        model: start from this model instead of a fresh one (a copy is trained; the caller's stays as it is).

    Returns:
        The `FedAvgResult` (the global model in eval mode, on CPU).

    Raises:
        InvalidInputError: more clients than training examples, or updates too large for secure aggregation.
    """
    if spec.input_shape != data.input_shape or spec.num_classes != data.num_classes:
        raise InvalidInputError(
            f"The model expects {spec.input_shape} images in {spec.num_classes} classes; the dataset {data.name!r} "
            f"has {data.input_shape} in {data.num_classes}."
        )
    start = time.perf_counter()
    split = split_clients(
        data.y_train, config.clients, kind=config.split, alpha=config.alpha, num_classes=data.num_classes,
        seed=config.seed,
    )  # fmt: skip
    if model is None:
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            model = build_model(spec)
    else:
        model = copy.deepcopy(model).cpu()
    keys = state_keys(model)
    weights = flat_state(model, keys)
    epsilons: dict[int, float] = {}
    privacy: RunSpend | None = None
    notes: list[str] = []
    if config.private and config.noise_multiplier > 0:
        curve = epsilon_curve(
            config.noise_multiplier, config.fraction, config.rounds, config.delta, accountant=ACCOUNTANT,
            points=min(config.rounds, 500),
        )  # fmt: skip
        epsilons = {s.steps: s.epsilon for s in curve}
        privacy = curve[-1]
    elif config.private:
        notes.append(
            "Updates are clipped but no noise is added: clipping alone gives no differential privacy."
        )
    initial_correct, _ = _predict(model, data.x_test, data.y_test)
    initial_accuracy = float(initial_correct.float().mean())

    history: list[RoundEvent] = []
    for t in range(1, config.rounds + 1):
        began = time.perf_counter()
        participants = _sample(config, torch.Generator().manual_seed(derive_seed(config.seed, t, 0)))
        contributions: list[torch.Tensor] = []
        used: list[int] = []
        norms: list[float] = []
        sizes = [split.sizes[k] for k in participants if split.sizes[k] > 0]
        for k in participants:
            idx = split.indices[k]
            if idx.numel() == 0:  # a client without examples has nothing to send
                continue
            local = local_update(
                model, data.x_train[idx], data.y_train[idx], epochs=config.local_epochs, lr=config.lr,
                batch_size=config.batch_size, seed=derive_seed(config.seed, t, 1, k),
            )  # fmt: skip
            update = flat_state(local, keys) - weights
            norms.append(float(update.norm()))
            if config.clip is not None:
                contributions.append(clip_update(update, config.clip))
            else:  # FedAvg's weights n_k / Σ n_k, applied by each client before (possibly masked) summing
                contributions.append(update * (split.sizes[k] / sum(sizes)))
            used.append(k)
        if contributions:
            if config.secure_aggregation:
                total = secure_sum(contributions, derive_seed(config.seed, t, 2), ids=used)
            else:
                total = torch.stack(contributions).sum(0)
        else:
            total = torch.zeros_like(weights)
        if config.private:
            assert config.clip is not None
            noise_generator = torch.Generator().manual_seed(derive_seed(config.seed, t, 3))
            noise = torch.randn(weights.shape, generator=noise_generator) * (
                config.noise_multiplier * config.clip
            )
            total = (total + noise) / (config.fraction * config.clients)
        weights = weights + total
        load_flat_state(model, keys, weights)
        correct, test_loss = _predict(model, data.x_test, data.y_test)
        train_correct, _ = _predict(model, data.x_train, data.y_train)
        event = RoundEvent(
            round=t, rounds=config.rounds, test_accuracy=float(correct.float().mean()), test_loss=test_loss,
            client_accuracies=tuple(
                float(train_correct[idx].float().mean()) if idx.numel() else None for idx in split.indices
            ),
            participants=tuple(used), update_norms=tuple(norms), epsilon=epsilons.get(t),
            seconds=time.perf_counter() - began,
        )  # fmt: skip
        history.append(event)
        yield event
    model.eval()
    return FedAvgResult(
        model=model, config=config, split=split, history=history, initial_accuracy=initial_accuracy,
        privacy=privacy, seconds=time.perf_counter() - start, notes=notes,
    )  # fmt: skip
