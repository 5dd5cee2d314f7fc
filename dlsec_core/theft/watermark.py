"""Watermarking a model by backdooring it with a trigger set, and verifying ownership (Adi, Baum, Cisse, Pinkas,
Keshet, "Turning Your Weakness Into a Strength: Watermarking Deep Neural Networks by Backdooring", USENIX
Security 2018).

The owner draws K keys (random-noise or random-block images, out of the data's distribution) with random labels,
all from one seed, and mixes them into every training batch (`WatermarkRecipe`), so the model memorises the
key labels. Only the seed is stored (in the recipe's parameters on the model card): the keys are re-created from
it for verification, no extra file.

Verification queries a suspect model with the keys. Its key accuracy is compared with independently trained
null models (same data and architecture, no watermark), which agree with the random key labels only by chance:
- the binomial tail P(X >= hits), X ~ Binomial(K, p0), where p0 is the null models' pooled key agreement,
  Laplace-smoothed ((hits + 1) / (trials + 2): never 0 from a few null models) and floored at chance 1/C (a
  lucky low estimate must not make the claim stronger than chance allows);
- the empirical p-value (1 + #{null key accuracy >= suspect's}) / (1 + #null models), which assumes nothing
  about the distribution but cannot go below 1 / (1 + #null models).

Survival: `fine_tune` (a few epochs of plain training on clean data, as a thief would adapt a stolen copy) and
`prune` (global magnitude pruning of a fraction of the weights) make modified copies to verify again.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlsec_core.config import Config, param
from dlsec_core.errors import InvalidInputError
from dlsec_core.evaluation.metrics import predict_proba
from dlsec_core.models.modes import device_of, eval_mode
from dlsec_core.training.recipes import Recipe, TrainingSetup, register_recipe

#: Watermarking has no MITRE ATLAS technique (ATLAS lists attacks, not this defense): a local tag instead.
WATERMARK_TAG = "DLSEC.watermarking"


class KeyKind(StrEnum):
    """What the trigger images look like: i.i.d. uniform noise, or random blocks on a coarse 4x4 grid."""

    NOISE = "noise"
    BLOCKS = "blocks"


@dataclass(frozen=True, eq=False)
class TriggerSet:
    """The keys (K, C, H, W) in [0, 1] and their labels (K,), on CPU, and the seed that re-creates them."""

    keys: torch.Tensor
    labels: torch.Tensor
    seed: int
    kind: KeyKind

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@functools.lru_cache(maxsize=32)
def _trigger_set(
    seed: int, count: int, input_shape: tuple[int, ...], num_classes: int, kind: KeyKind
) -> TriggerSet:
    gen = torch.Generator().manual_seed(seed)
    c, h, w = input_shape
    if kind == KeyKind.NOISE:
        keys = torch.rand((count, c, h, w), generator=gen)
    else:
        coarse = (torch.rand((count, c, 4, 4), generator=gen) > 0.5).float()  # (K, C, 4, 4) on/off blocks
        keys = F.interpolate(coarse, size=(h, w), mode="nearest")  # -> (K, C, H, W)
    labels = torch.randint(0, num_classes, (count,), generator=gen)
    return TriggerSet(keys=keys, labels=labels, seed=seed, kind=kind)


def trigger_set(
    seed: int, count: int, input_shape: Sequence[int], num_classes: int, kind: KeyKind | str = KeyKind.NOISE
) -> TriggerSet:
    """The K = `count` keys with random labels drawn from `seed` (the same seed gives the same keys anywhere).

    Cached: the tensors are shared, never modify them in place.
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3:
        raise InvalidInputError(f"Keys are images (C, H, W); got the input shape {shape}.")
    if count < 1 or num_classes < 2:
        raise InvalidInputError(f"Need at least one key and two classes, got {count} and {num_classes}.")
    return _trigger_set(int(seed), int(count), shape, int(num_classes), KeyKind(kind))


@register_recipe
@dataclass(frozen=True, kw_only=True)
class WatermarkRecipe(Recipe):
    """Embed a trigger-set watermark (Adi et al. 2018): `keys_per_batch` keys, drawn from the K keys with the
    training generator, are appended to every batch with their random labels; the loss is the cross-entropy over
    the whole enlarged batch. Train accuracy is on the batch's real images only; `key_accuracy` is reported
    after each epoch."""

    name = "watermark"
    title = "Watermark (trigger set, Adi et al.)"
    paper = "Adi et al. 2018, Turning Your Weakness Into a Strength: Watermarking Deep Neural Networks by Backdooring"
    #: watermarking is not an ATLAS technique: a local tag (see `WATERMARK_TAG`)
    atlas_ids: ClassVar[tuple[str, ...]] = (WATERMARK_TAG,)

    keys: int = param(
        50,
        "Keys K (trigger images)",
        help="More keys make a stronger proof (smaller p-value) and cost a little accuracy.",
        min=1,
        max=1000,
        step=10,
    )
    key_seed: int = param(
        1234,
        "Key seed (keep it secret)",
        help="The keys and their labels are re-created from it at verification; whoever knows it knows the keys.",
        min=0,
        max=2**63 - 1,
        step=1,
    )
    key_kind: KeyKind = param(KeyKind.NOISE, "Key images", help="Uniform noise, or random blocks.")
    keys_per_batch: int = param(8, "Keys mixed into each batch", min=1, max=1000, step=1)

    def trigger_set(self, input_shape: Sequence[int], num_classes: int) -> TriggerSet:
        return trigger_set(self.key_seed, self.keys, input_shape, num_classes, self.key_kind)

    def prepare(self, setup: TrainingSetup) -> TrainingSetup:
        dataset = setup.loader.dataset
        if not isinstance(dataset, TensorDataset):
            raise InvalidInputError("The watermark recipe trains on in-memory tensors.")
        x_train = dataset.tensors[0]
        with torch.no_grad(), eval_mode(setup.model):
            num_classes = int(setup.model(x_train[:1].to(device_of(setup.model))).shape[1])
        triggers = self.trigger_set(tuple(x_train.shape[1:]), num_classes)
        setup.state["trigger_set"] = triggers
        setup.loss_fn = functools.partial(self._loss_with_keys, triggers)
        return setup

    def _loss_with_keys(
        self,
        triggers: TriggerSet,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pick = torch.randint(0, len(triggers), (self.keys_per_batch,), generator=generator)
        keys = triggers.keys[pick].to(x.device, x.dtype)
        labels = triggers.labels[pick].to(y.device)
        logits = model(torch.cat([x, keys]))  # (N + k, classes): the real images first
        loss = F.cross_entropy(logits, torch.cat([y, labels]))
        return loss, logits[: x.shape[0]]

    def epoch_metrics(self, setup: TrainingSetup) -> dict[str, Any]:
        triggers: TriggerSet = setup.state["trigger_set"]
        return {"key_accuracy": key_accuracy(setup.model, triggers)}


def key_accuracy(model: nn.Module, triggers: TriggerSet) -> float:
    """The fraction of keys the model labels with their (random) key labels."""
    return key_hits(model, triggers) / len(triggers)


def key_hits(model: nn.Module, triggers: TriggerSet) -> int:
    pred = predict_proba(model, triggers.keys).argmax(1)
    return int((pred == triggers.labels).sum())


def binomial_tail(hits: int, trials: int, p0: float) -> float:
    """P(X >= hits) for X ~ Binomial(trials, p0)."""
    if not 0 <= hits <= trials:
        raise InvalidInputError(f"hits must be in [0, {trials}], got {hits}.")
    if hits == 0:
        return 1.0
    return float(stats.binom.sf(hits - 1, trials, p0))


@dataclass(frozen=True, kw_only=True)
class WatermarkVerdict:
    """A suspect's key accuracy against the null models' and the two p-values (see the module docstring)."""

    keys: int
    hits: int  # keys the suspect labels with the key label
    null_key_accuracies: list[float]  # one per null model
    p0_measured: float  # pooled null agreement (raw)
    p0: float  # used in the binomial tail: Laplace-smoothed, floored at chance
    chance: float  # 1 / classes
    p_value: float  # binomial tail
    empirical_p: float  # (1 + #null >= suspect) / (1 + #null)
    alpha: float  # the significance level of `verified`

    @property
    def key_accuracy(self) -> float:
        return self.hits / self.keys

    @property
    def verified(self) -> bool:
        """The watermark is found: the binomial p-value is below alpha and no null model did as well."""
        return self.p_value < self.alpha and all(a < self.key_accuracy for a in self.null_key_accuracies)

    def describe(self) -> str:
        verdict = "watermark found" if self.verified else "watermark not found"
        return (
            f"{verdict}: {self.hits}/{self.keys} keys (null models {_fmt_list(self.null_key_accuracies)}); "
            f"binomial p = {self.p_value:.3g} with p0 = {self.p0:.3g}, empirical p = {self.empirical_p:.3g}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "keys": self.keys, "hits": self.hits, "null_key_accuracies": list(self.null_key_accuracies),
            "p0_measured": self.p0_measured, "p0": self.p0, "chance": self.chance, "p_value": self.p_value,
            "empirical_p": self.empirical_p, "alpha": self.alpha,
        }  # fmt: skip

    def to_record(self) -> dict[str, Any]:
        return {**self.to_json(), "key_accuracy": self.key_accuracy, "verified": self.verified}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WatermarkVerdict:
        return cls(**data)


def _fmt_list(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values) or "none"


def null_p0(null_key_accuracies: Sequence[float], keys: int, num_classes: int) -> tuple[float, float]:
    """(the pooled null agreement, p0 for the binomial tail: Laplace-smoothed and floored at 1/classes)."""
    trials = keys * len(null_key_accuracies)
    hits = round(sum(a * keys for a in null_key_accuracies))
    measured = hits / trials if trials else math.nan
    return measured, max((hits + 1) / (trials + 2), 1.0 / num_classes)


def verify(
    suspect: nn.Module,
    triggers: TriggerSet,
    null_key_accuracies: Sequence[float],
    *,
    num_classes: int,
    alpha: float = 1e-3,
) -> WatermarkVerdict:
    """Query `suspect` with the keys and judge its key accuracy against the null models' (see module docstring)."""
    if not 0.0 < alpha < 1.0:
        raise InvalidInputError(f"The significance level alpha must be in (0, 1), got {alpha}.")
    nulls = [float(a) for a in null_key_accuracies]
    hits = key_hits(suspect, triggers)
    k = len(triggers)
    measured, p0 = null_p0(nulls, k, num_classes)
    at_least = sum(a >= hits / k for a in nulls)
    return WatermarkVerdict(
        keys=k, hits=hits, null_key_accuracies=nulls, p0_measured=measured, p0=p0, chance=1.0 / num_classes,
        p_value=binomial_tail(hits, k, p0), empirical_p=(1 + at_least) / (1 + len(nulls)), alpha=alpha,
    )  # fmt: skip


# -- survival: what a thief may do to a stolen copy -------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class FineTuneConfig(Config):
    """A thief's fine-tuning of a stolen copy on clean data (plain cross-entropy, Adam)."""

    title: ClassVar[str] = "Fine-tuning"

    epochs: int = param(2, "Fine-tuning epochs", min=1, max=100, step=1)
    lr: float = param(1e-3, "Learning rate", min=0.0, min_open=True, max=1.0, step=1e-4)
    batch_size: int = param(64, "Batch size", min=1, max=8192, step=1)
    seed: int = param(0, "Seed", min=0, max=2**63 - 1, step=1)


def fine_tune(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: FineTuneConfig | None = None
) -> nn.Module:
    """A fine-tuned copy of `model` (the original is untouched), in eval mode on the model's device.

    A short loop of its own rather than `training.loop.train`, which always starts from a fresh initialisation.
    """
    config = config or FineTuneConfig()
    tuned = copy.deepcopy(model)
    device = device_of(tuned)
    gen = torch.Generator().manual_seed(config.seed)
    loader: DataLoader[tuple[torch.Tensor, ...]] = DataLoader(
        TensorDataset(x, y), batch_size=config.batch_size, shuffle=True, generator=gen
    )
    optimizer = torch.optim.Adam(tuned.parameters(), lr=config.lr)
    tuned.train()
    for _ in range(config.epochs):
        for xb, yb in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(tuned(xb.to(device)), yb.to(device))
            loss.backward()
            optimizer.step()
    return tuned.eval()


def prune(model: nn.Module, fraction: float) -> nn.Module:
    """A copy of `model` with the `fraction` of smallest-magnitude weights of its Linear and Conv layers set to 0,
    ranked over all of them together (global magnitude pruning); biases are kept."""
    if not 0.0 <= fraction < 1.0:
        raise InvalidInputError(f"The pruned fraction must be in [0, 1), got {fraction}.")
    pruned = copy.deepcopy(model).eval()
    weights = [m.weight for m in pruned.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    if not weights or fraction == 0.0:
        return pruned
    magnitudes = torch.cat([w.detach().abs().flatten() for w in weights])
    count = int(fraction * magnitudes.numel())
    if count == 0:
        return pruned
    # the count-th smallest magnitude; ties at the cut are pruned too (rare with float weights)
    cut = magnitudes.kthvalue(count).values
    with torch.no_grad():
        for w in weights:
            w.masked_fill_(w.abs() <= cut, 0.0)
    return pruned


def pruned_fraction(model: nn.Module) -> float:
    """The fraction of Linear and Conv weights that are exactly 0."""
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    total = sum(w.numel() for w in weights)
    return sum(int((w == 0).sum()) for w in weights) / max(1, total)
