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
from opacus.accountants import RDPAccountant
from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlsec_core.config import Config, param
from dlsec_core.data.builtin import Dataset
from dlsec_core.errors import InvalidInputError
from dlsec_core.federated.poisoning import AttackKind, backdoor_inputs, poison
from dlsec_core.federated.robust import AGGREGATOR_LABELS, Aggregator, aggregate
from dlsec_core.federated.secure_aggregation import secure_sum
from dlsec_core.federated.splits import MAX_CLIENTS, ClientSplit, SplitKind, split_clients
from dlsec_core.models.spec import ModelSpec, build_model
from dlsec_core.privacy.accounting import ACCOUNTANTS, RunSpend, epsilon_after, epsilon_curve
from dlsec_core.privacy.dp_sgd import TRAIN_ACCOUNTANTS, DPSGDRecipe
from dlsec_core.training.recipes import TrainingSetup

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
    local_dp: bool = param(
        False, "Local DP-SGD on each client",
        help="Each client trains with DP-SGD (Opacus, the lab's dp-sgd recipe): per-example clipping and noise, "
        "an example-level ε per client.",
    )  # fmt: skip
    local_noise_multiplier: float = param(
        1.0, "Local noise multiplier σ (DP-SGD)", min=0.0, min_open=True, max=100.0,
        help="Noise on each client's summed clipped per-example gradients, in units of the clipping norm.",
    )  # fmt: skip
    local_clip: float = param(1.0, "Local clipping norm C (DP-SGD)", min=0.0, min_open=True, max=1e4)
    local_delta: float = param(
        1e-5, "δ (example level, per client)", min=0.0, min_open=True, max=0.1,
        help="Must be below 1 / the client's example count.",
    )  # fmt: skip
    local_accountant: str = param("rdp", "Local accountant", options=TRAIN_ACCOUNTANTS)
    aggregator: str = param(
        "fedavg", "Aggregator", options=tuple(a.value for a in Aggregator),
        help="FedAvg's weighted mean, or a robust rule: coordinate-wise median or trimmed mean (Yin et al. 2018), "
        "Krum (Blanchard et al. 2017).",
    )  # fmt: skip
    trim: float = param(
        0.2, "Trimmed share β per side (trimmed mean)", min=0.0, max=0.5, max_open=True,
        help="Each coordinate drops its ⌊βn⌋ largest and ⌊βn⌋ smallest client values.",
    )  # fmt: skip
    krum_f: int = param(
        2, "Byzantine clients f assumed by Krum", min=0, max=MAX_CLIENTS, step=1,
        help="Krum scores each update by its n − f − 2 nearest neighbours; it needs n > 2f + 2 updates.",
    )  # fmt: skip
    malicious: int = param(
        0, "Malicious clients", min=0, max=MAX_CLIENTS, step=1,
        help="How many of the K clients poison their training (drawn from the seed, fixed for the federation).",
    )  # fmt: skip
    attack: str = param(
        "label_flip", "Attack", options=tuple(a.value for a in AttackKind),
        help="Label flipping (l -> C−1−l) or a backdoor (a white square in the corner, relabelled to the target).",
    )  # fmt: skip
    trigger: int = param(3, "Trigger size (pixels, backdoor)", min=1, max=64, step=1)
    target: int = param(0, "Backdoor target class", min=0, max=100_000, step=1)
    poison_fraction: float = param(
        0.5, "Poisoned share of a malicious client's images (backdoor)", min=0.0, min_open=True, max=1.0
    )
    seed: int = param(0, "Seed", min=0, max=2**63 - 1, step=1)

    def cross_check(self, problems: list[str]) -> None:
        super().cross_check(problems)
        federation_problems(self, problems)

    @property
    def poisoned(self) -> bool:
        """Some clients are malicious."""
        return self.malicious > 0

    @property
    def backdoor(self) -> bool:
        """Backdoor success is measured (malicious clients with a trigger)."""
        return self.malicious > 0 and self.attack == AttackKind.BACKDOOR

    @property
    def private(self) -> bool:
        """Client-level DP-FedAvg: clipped updates, Poisson client sampling, the fixed-denominator estimator."""
        return self.clip is not None

    def per_round(self) -> int:
        """Clients picked per round by plain FedAvg: max(1, round(C·K)) (DP-FedAvg: qK on average)."""
        return max(1, round(self.fraction * self.clients))


def federation_problems(c: Any, problems: list[str]) -> None:
    """The rules between a federation's fields, for `FedAvgConfig` and every config that carries its fields (the
    federated study's): append one sentence per problem."""
    if c.noise_multiplier and c.clip is None:
        problems.append("server noise (`noise_multiplier`) needs an update clip S (`clip`): noise is σ·S")
    if c.malicious > c.clients:
        problems.append(f"{c.malicious} malicious clients but only {c.clients} clients")
    # a study config checks these even when some field is invalid on its own: only a known aggregator has rules
    if c.aggregator in {a.value for a in Aggregator} and c.aggregator != Aggregator.FEDAVG:
        if c.secure_aggregation:
            problems.append(
                f"the {c.aggregator} aggregator needs each update; secure aggregation shows only their sum"
            )
        if c.clip is not None:
            problems.append(
                f"client-level DP-FedAvg adds noise to the sum; it cannot use the {c.aggregator} aggregator"
            )
    per_round = max(1, round(c.fraction * c.clients))
    if c.aggregator == Aggregator.KRUM and per_round <= 2 * c.krum_f + 2:
        problems.append(
            f"Krum with f = {c.krum_f} needs more than {2 * c.krum_f + 2} clients per round; C·K gives {per_round}"
        )


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
    malicious: tuple[int, ...] = ()  # the participants that poisoned their training this round
    #: the share of triggered test images (not of the target class) classified as the target (backdoor only)
    backdoor_success: float | None = None
    krum_choice: int | None = None  # the client whose update Krum picked
    #: the largest example-level ε any client has spent so far by local DP-SGD (None without local DP)
    local_epsilon: float | None = None

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
            "malicious": list(self.malicious), "backdoor_success": self.backdoor_success,
            "krum_choice": self.krum_choice, "local_epsilon": self.local_epsilon,
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
    malicious: tuple[int, ...] = ()  # the malicious clients' ids
    #: per client, the example-level ε its local DP-SGD spent over the whole federation (None: never trained)
    local_privacy: tuple[RunSpend | None, ...] | None = None

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
        local = ""
        if self.local_privacy is not None:
            spent = [s for s in self.local_privacy if s is not None]
            local = (
                f"; local DP-SGD on each client (σ = {c.local_noise_multiplier:g}, C = {c.local_clip:g}): "
                + (
                    f"example-level ε up to {max(s.epsilon for s in spent):.3g} at δ = {c.local_delta:g} "
                    f"({spent[0].accountant_label}, per client over its own rounds)"
                    if spent
                    else "no client trained"
                )
            )
        attack = ""
        if c.poisoned:
            how = (
                "label flipping" if c.attack == AttackKind.LABEL_FLIP
                else f"backdoor ({c.trigger}×{c.trigger} trigger -> class {c.target}, {c.poison_fraction:.0%} poisoned)"
            )  # fmt: skip
            attack = f"; {c.malicious} of {c.clients} clients malicious ({how})"
        return (
            f"{AGGREGATOR_LABELS[Aggregator(c.aggregator)]}, {self.split.describe()}; {c.rounds} rounds, "
            f"C = {c.fraction:g}, E = {c.local_epochs}, η = {c.lr:g}, B = {c.batch_size}; "
            f"{'secure aggregation' if c.secure_aggregation else 'plain sum'}; {privacy}{local}{attack}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "description": self.description(), "config": self.config.to_json(), "split": self.split.to_json(),
            "initial_accuracy": self.initial_accuracy, "test_accuracy": self.test_accuracy,
            "rounds": [e.to_record() for e in self.history],
            "privacy": None if self.privacy is None else {
                **self.privacy.to_record(), "accountant_label": self.privacy.accountant_label, "level": "client",
            },
            "seconds": self.seconds, "notes": self.notes, "malicious": list(self.malicious),
            "backdoor_success": self.history[-1].backdoor_success,
            "local_privacy": None if self.local_privacy is None else {
                "level": "example", "accountant": self.config.local_accountant,
                "accountant_label": ACCOUNTANTS[self.config.local_accountant][1],
                "per_client": [None if s is None else s.to_record() for s in self.local_privacy],
                "max_epsilon": max((s.epsilon for s in self.local_privacy if s is not None), default=None),
            },
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


def local_dp_update(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    recipe: DPSGDRecipe,
) -> tuple[nn.Module, int]:
    """A client's local training by DP-SGD through the lab's dp-sgd recipe (Opacus, ghost clipping, Poisson
    sampling at q = B / n_k): a plain copy of the global model after `epochs` epochs of private SGD, and the DP
    steps it took (for the client's accountant). The recipe's σ is used as given (no target ε per round).

    The steps are read off the Opacus accountant's history (what `recipe.spent` sums) rather than through
    `recipe.spent`, which would also convert them to an ε: the federation accounts each client's ε itself
    (`LocalAccounting`), over all its rounds, and the per-round conversion was most of a local-DP round's time.
    """
    local = copy.deepcopy(model)
    local.train()
    generator = torch.Generator().manual_seed(seed)
    loader: DataLoader[tuple[torch.Tensor, ...]] = DataLoader(TensorDataset(x, y), batch_size=batch_size)
    setup = recipe.prepare(
        TrainingSetup(local, torch.optim.SGD(local.parameters(), lr=lr), loader, epochs, generator)
    )
    assert setup.loss_fn is not None  # DP-SGD's loss goes through Opacus's criterion
    for _ in range(epochs):
        for xb, yb in setup.loader:
            if xb.shape[0] == 0:  # Poisson sampling can draw an empty batch
                continue
            setup.optimizer.zero_grad(set_to_none=True)
            loss, _ = setup.loss_fn(setup.model, xb, yb, generator)
            loss.backward()
            setup.optimizer.step()
    steps = sum(s for _, _, s in setup.state["dp"].accountant.history)
    return recipe.finalize(setup), int(steps)


class LocalAccounting:
    """Each client's example-level ε from its local DP-SGD steps so far, equal to `epsilon_after` (the same
    accountant, the same numbers) but fast enough to ask every client every round.

    With RDP (Mironov 2017) the Rényi divergence of T steps of the sampled Gaussian is T times that of one step,
    so the one-step RDP at each orders of Opacus's `RDPAccountant` is computed once per sampling rate q = B / n_k
    (clients of an IID split share one or two rates) and each ε is then only the conversion to (ε, δ): exactly
    what `RDPAccountant.get_epsilon` computes for a history of (σ, q, T), in the same floating-point operations.
    Other accountants (PRV) go through `epsilon_after`, remembered per (q, T) so clients with the same rate and
    step count share one computation.
    """

    def __init__(self, noise_multiplier: float, delta: float, accountant: str) -> None:
        self.noise_multiplier, self.delta, self.accountant = float(noise_multiplier), float(delta), accountant
        self._per_step: dict[float, np.ndarray] = {}
        self._spent: dict[tuple[float, int], RunSpend] = {}

    def spent(self, sample_rate: float, steps: int) -> RunSpend:
        """The ε after `steps` local DP-SGD steps at sampling rate `sample_rate` (a `RunSpend`, as `epsilon_after`)."""
        key = (float(sample_rate), int(steps))
        if key in self._spent:
            return self._spent[key]
        if self.accountant != "rdp":
            spend = epsilon_after(
                self.noise_multiplier, key[0], key[1], self.delta, accountant=self.accountant
            )
        else:
            orders = RDPAccountant.DEFAULT_ALPHAS
            if key[0] not in self._per_step:
                self._per_step[key[0]] = compute_rdp(
                    q=key[0], noise_multiplier=self.noise_multiplier, steps=1, orders=orders
                )
            rdp = sum([self._per_step[key[0]] * key[1]])  # RDPAccountant's sum over its one-entry history
            with np.errstate(all="ignore"):
                eps = float(get_privacy_spent(orders=orders, rdp=rdp, delta=self.delta)[0])
            spend = RunSpend(
                epsilon=eps, delta=self.delta, steps=key[1], noise_multiplier=self.noise_multiplier,
                sample_rate=key[0], accountant="rdp",
            )  # fmt: skip
        self._spent[key] = spend
        return spend


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
    malicious = tuple(
        sorted(torch.randperm(config.clients, generator=torch.Generator().manual_seed(
            derive_seed(config.seed, 0xBAD))
        )[: config.malicious].tolist())
    )  # fmt: skip
    backdoor_x = backdoor_y = None
    if config.backdoor:
        if not 0 <= config.target < data.num_classes:
            raise InvalidInputError(
                f"The backdoor target class must be from 0 to {data.num_classes - 1}, got {config.target}."
            )
        backdoor_x, backdoor_y = backdoor_inputs(
            data.x_test, data.y_test, size=config.trigger, target=config.target
        )
    recipe = (
        DPSGDRecipe(
            noise_multiplier=config.local_noise_multiplier,
            max_grad_norm=config.local_clip,
            delta=config.local_delta,
            accountant=config.local_accountant,
        )  # fmt: skip
        if config.local_dp
        else None
    )
    dp_steps = [0] * config.clients  # each client's local DP-SGD steps so far
    ledger = LocalAccounting(config.local_noise_multiplier, config.local_delta, config.local_accountant)
    local_epsilon: dict[int, float] = {}
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
            x, y = data.x_train[idx], data.y_train[idx]
            if k in malicious:
                x, y = poison(
                    config.attack, x, y, num_classes=data.num_classes, size=config.trigger, target=config.target,
                    fraction=config.poison_fraction, generator=torch.Generator().manual_seed(derive_seed(config.seed, k, 4)),
                )  # fmt: skip
            client_seed = derive_seed(config.seed, t, 1, k)
            if recipe is not None:
                local, steps = local_dp_update(
                    model, x, y, epochs=config.local_epochs, lr=config.lr, batch_size=config.batch_size,
                    seed=client_seed, recipe=recipe,
                )  # fmt: skip
                dp_steps[k] += steps
                local_epsilon[k] = ledger.spent(config.batch_size / idx.numel(), dp_steps[k]).epsilon
            else:
                local = local_update(
                    model, x, y, epochs=config.local_epochs, lr=config.lr, batch_size=config.batch_size,
                    seed=client_seed,
                )  # fmt: skip
            update = flat_state(local, keys) - weights
            norms.append(float(update.norm()))
            if config.clip is not None:
                contributions.append(clip_update(update, config.clip))
            elif config.aggregator == Aggregator.FEDAVG:
                # FedAvg's weights n_k / Σ n_k, applied by each client before (possibly masked) summing
                contributions.append(update * (split.sizes[k] / sum(sizes)))
            else:  # a robust rule sees each raw update
                contributions.append(update)
            used.append(k)
        chosen: int | None = None
        if not contributions:
            total = torch.zeros_like(weights)
        elif config.secure_aggregation:
            total = secure_sum(contributions, derive_seed(config.seed, t, 2), ids=used)
        elif config.aggregator == Aggregator.FEDAVG or config.clip is not None:
            total = torch.stack(contributions).sum(0)
        else:
            combined = aggregate(config.aggregator, contributions, beta=config.trim, f=config.krum_f)
            total = combined.update
            chosen = None if combined.chosen is None else used[combined.chosen]
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
            seconds=time.perf_counter() - began, malicious=tuple(k for k in used if k in malicious),
            backdoor_success=(
                None if backdoor_x is None or backdoor_y is None
                else float(_predict(model, backdoor_x, backdoor_y)[0].float().mean())
            ),
            krum_choice=chosen, local_epsilon=max(local_epsilon.values(), default=None) if recipe else None,
        )  # fmt: skip
        history.append(event)
        yield event
    model.eval()
    return FedAvgResult(
        model=model, config=config, split=split, history=history, initial_accuracy=initial_accuracy,
        privacy=privacy, seconds=time.perf_counter() - start, notes=notes, malicious=malicious,
        local_privacy=None if recipe is None else tuple(
            ledger.spent(config.batch_size / split.sizes[k], dp_steps[k]) if dp_steps[k] else None
            for k in range(config.clients)
        ),
    )  # fmt: skip
