"""Model extraction through a prediction API: the attacker only has an `Oracle` (its client at the API).

- `equation-solving`: Tramèr et al. 2016, "Stealing Machine Learning Models via Prediction APIs". A softmax
  regression's log-probabilities are affine in the input: log p_i(x) − mean_j log p_j(x) = (w_i − w̄)·x + (b_i −
  b̄). Each answered query gives K such equations; with d+1 queries in general position the (d+1)(K−1) free
  unknowns are determined and least squares recovers the model exactly (up to the softmax's shift). Rounded
  probabilities break the equations (log 0 is clamped to `min_prob`).
- `copycat`: Correia-Silva et al. 2018, "Copycat CNN": label natural images from another source with the victim's
  top-1 labels and train a surrogate on them.
- `knockoff`: Orekondy et al. 2019, "Knockoff Nets", random strategy: the same with the victim's probability
  vectors (soft labels).
- `knockoff-adaptive`: the same paper's adaptive strategy: a gradient bandit over clusters of the pool chooses
  where the next queries come from, rewarded by the victim's certainty, the answers' diversity and the
  surrogate's loss on them (`KnockoffAdaptive` says what differs from the paper).
- `jacobian`: Papernot et al. 2017, "Practical Black-Box Attacks against Machine Learning": from a small seed
  set, grow the query set with x + λ·sign(∇ₓ F_sub(x)[O(x)]), retraining the substitute after each round.

Every attack reports, at each query budget, the surrogate's accuracy on the test split and its fidelity: the
fraction of test images on which it agrees with the victim's top-1 label. The `Judge` that scores it is the lab,
not the attacker: the attacker never sees the test labels nor the victim's answers on the test split.
Surrogates are trained by the lab's one training loop (`training.loop.train`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

from dlsec_core.config import Config, param
from dlsec_core.data.builtin import DATASETS, Dataset, load_dataset
from dlsec_core.errors import InvalidInputError
from dlsec_core.evaluation.metrics import predict_proba
from dlsec_core.models.architectures import ARCHITECTURES
from dlsec_core.models.modes import eval_mode
from dlsec_core.models.spec import ModelSpec, build_model
from dlsec_core.registry import Registry
from dlsec_core.text import plural
from dlsec_core.theft.api import Oracle
from dlsec_core.training.loop import TrainConfig, TrainEvent, relay, train
from dlsec_core.training.recipes import Recipe, TrainingSetup

# -- scoring ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Judge:
    """The lab's referee: test images, their true labels and the victim's own top-1 labels on them."""

    x: torch.Tensor  # (N, C, H, W)
    y: torch.Tensor  # (N,) true labels
    victim: torch.Tensor  # (N,) the victim's top-1 labels

    @classmethod
    def of(cls, victim: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Judge:
        return cls(x=x, y=y, victim=predict_proba(victim, x).argmax(1))

    @property
    def victim_accuracy(self) -> float:
        return float((self.victim == self.y).float().mean())

    def score(self, surrogate: nn.Module) -> tuple[float, float]:
        """(accuracy, fidelity) of `surrogate` on the test split."""
        pred = predict_proba(surrogate, self.x).argmax(1)
        return float((pred == self.y).float().mean()), float((pred == self.victim).float().mean())


class _Stopwatch:
    """The attacker's compute time: wall clock since the start, minus the time the judge spent scoring."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.judged = 0.0

    def point(self, judge: Judge, surrogate: nn.Module, queries: int, waited_s: float) -> ExtractionPoint:
        """The surrogate scored after `queries` answers; the scoring's time is not the attacker's."""
        t0 = time.perf_counter()
        accuracy, fidelity = judge.score(surrogate)
        self.judged += time.perf_counter() - t0
        return ExtractionPoint(
            queries=queries, accuracy=accuracy, fidelity=fidelity, seconds=self.seconds, waited_s=waited_s
        )

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start - self.judged


@dataclass(frozen=True, kw_only=True)
class ExtractionPoint:
    """The surrogate after `queries` answers: its test accuracy and fidelity to the victim."""

    queries: int
    accuracy: float
    fidelity: float
    seconds: (
        float  # the attacker's wall-clock time so far (querying and training; the judge's scoring excluded)
    )
    waited_s: float = 0.0  # time spent waiting out the API's rate limit (on the API's clock)

    def to_record(self) -> dict[str, Any]:
        return {"queries": self.queries, "accuracy": self.accuracy, "fidelity": self.fidelity,
                "seconds": self.seconds, "waited_s": self.waited_s}  # fmt: skip


@dataclass(frozen=True)
class ExtractionEvent:
    """Progress of an attack; `point` is set when a budget is reached."""

    progress: float
    message: str
    point: ExtractionPoint | None = None


@dataclass(frozen=True, eq=False)
class ExtractionResult:
    attack: str
    description: str  # names the paper, the attacker's knowledge and the settings
    points: list[ExtractionPoint]
    surrogate: nn.Module  # the last (largest budget) surrogate, eval mode, CPU
    spec: ModelSpec


# -- query pools -----------------------------------------------------------------------------------------------
class PoolKind(StrEnum):
    """Where a retraining attacker's queries come from, from closest to farthest from the victim's data."""

    SAME = "same"  # the victim dataset's training images, labels withheld
    OTHER = "other"  # the other built-in dataset, resized to the victim's input
    UPLOADED = "uploaded"  # the user's own uploaded dataset, resized to the victim's input
    NOISE = "noise"  # uniform noise in [0, 1]

    def describe(self) -> str:
        return {
            PoolKind.SAME: "images of the victim's own dataset (its training split, labels withheld)",
            PoolKind.OTHER: "images of another built-in dataset, resized to the victim's input",
            PoolKind.UPLOADED: "images of a dataset you uploaded (train and test, labels withheld), resized to the "
            "victim's input",
            PoolKind.NOISE: "uniform noise images",
        }[self]


def resize_images(x: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Images (N, C', H', W') in [0, 1] to (N, C, H, W): channels averaged or repeated, sides resized."""
    c, h, w = shape
    if x.shape[1] != c:
        x = x.mean(1, keepdim=True) if c == 1 else x.mean(1, keepdim=True).repeat(1, c, 1, 1)
    if tuple(x.shape[2:]) != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return x.clamp(0.0, 1.0).contiguous()


def other_dataset(name: str) -> str:
    """The built-in dataset an attacker uses as its 'other' pool for a victim trained on `name`."""
    return next(d for d in DATASETS if d != name)


def query_pool(
    kind: PoolKind | str,
    victim_data: Dataset,
    n: int,
    generator: torch.Generator,
    *,
    uploaded: Dataset | None = None,
    up_to: int | None = None,
) -> torch.Tensor:
    """`n` query images (N, C, H, W) shaped like the victim's input, in a seeded random order.

    `uploaded` is the user's dataset for the `uploaded` pool (its train and test images, labels withheld).
    `up_to` asks for more when the source has them (an attacker that chooses among candidates, e.g. Knockoff's
    adaptive strategy): min(up_to, images available) images, never fewer than `n`.
    """
    kind = PoolKind(kind)
    shape = victim_data.input_shape
    want = max(n, up_to or n)
    if kind is PoolKind.NOISE:
        return torch.rand((want, *shape), generator=generator)
    if kind is PoolKind.SAME:
        source, what = victim_data.x_train, f"the training split of {victim_data.name}"
    elif kind is PoolKind.UPLOADED:
        if uploaded is None:
            raise InvalidInputError("The 'uploaded' pool needs an uploaded dataset: pick one (Models page, "
                                    "'Upload a dataset').")  # fmt: skip
        source, what = (
            torch.cat([uploaded.x_train, uploaded.x_test]),
            f"your dataset {uploaded.name!r} (train and test)",
        )
    else:
        other = load_dataset(other_dataset(victim_data.name))
        source, what = torch.cat([other.x_train, other.x_test]), f"{other.name} (train and test)"
    if n > source.shape[0]:
        raise InvalidInputError(
            f"The {kind.value!r} pool has {plural(source.shape[0], 'image')} ({what}); a budget of {n:,} queries "
            "needs as many distinct images. Lower the budget or use the noise pool."
        )
    order = torch.randperm(source.shape[0], generator=generator)[: min(want, source.shape[0])]
    return resize_images(source[order], shape)


# -- attacks ---------------------------------------------------------------------------------------------------
def check_budgets(budgets: Sequence[int]) -> list[int]:
    """Budgets as a strictly increasing list of positive integers."""
    out = list(budgets)
    if not out or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in out):
        raise InvalidInputError(f"Query budgets are positive integers, got {budgets!r}.")
    if any(b >= c for b, c in zip(out, out[1:], strict=False)):
        raise InvalidInputError(f"Query budgets must increase, got {budgets!r}.")
    return out


Events = Generator[ExtractionEvent, None, ExtractionResult]


@dataclass(frozen=True, kw_only=True)
class ExtractionAttack(Config):
    """Base of the extraction attacks: a frozen config; `run` spends the oracle's answers up to each budget."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    knowledge: ClassVar[str] = ""  # what the attacker knows besides the API's answers
    uses_pool: ClassVar[bool] = True
    atlas_ids: ClassVar[tuple[str, ...]] = (
        "AML.T0024.002",
    )  # Exfiltration via AI Inference API: Extract AI Model

    def run(
        self, oracle: Oracle, judge: Judge, budgets: Sequence[int], *, pool: torch.Tensor | None, seed: int
    ) -> Events:
        raise NotImplementedError

    def pool_size(self, budgets: Sequence[int]) -> int:
        """How many pool images `run` needs for these budgets (0: the attack makes its own queries)."""
        return budgets[-1] if self.uses_pool else 0

    def pool_choice(self, budgets: Sequence[int]) -> int | None:
        """How many candidates the attack would like to choose its queries from (None: exactly `pool_size`)."""
        return None

    def describe(self) -> str:
        settings = ", ".join(f"{k} = {v}" for k, v in self.to_json().items())
        return f"{self.title} ({self.paper}; {settings}). Attacker knows: {self.knowledge}."


EXTRACTION_ATTACKS: Registry[ExtractionAttack] = Registry("extraction attack")
register_extraction = EXTRACTION_ATTACKS.register


def get_extraction(name: str, **params: Any) -> ExtractionAttack:
    """A registered extraction attack by name with its settings."""
    return EXTRACTION_ATTACKS.build(name, **params)


def _need_pool(pool: torch.Tensor | None, budgets: list[int]) -> torch.Tensor:
    if pool is None or pool.shape[0] < budgets[-1]:
        have = 0 if pool is None else pool.shape[0]
        raise InvalidInputError(f"The attack needs {budgets[-1]:,} pool images, got {have:,}.")
    return pool


# -- equation solving ------------------------------------------------------------------------------------------
def solve_softmax(
    x: torch.Tensor, answers: torch.Tensor, min_prob: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares W (K, d) and b (K,) with softmax(W x + b) = answers, for x (n, d) and answers (n, K).

    Centred log-ratios remove the softmax's unknown shift: log p_i − mean_j log p_j = (w_i − w̄)·x + (b_i − b̄).
    With fewer than d+1 queries the system is underdetermined and gelsd returns the minimum-norm solution.
    """
    logp = answers.double().clamp_min(min_prob).log()
    target = logp - logp.mean(1, keepdim=True)  # (n, K)
    a = torch.cat([x.double(), torch.ones(x.shape[0], 1, dtype=torch.float64)], 1)  # (n, d+1)
    solution = torch.linalg.lstsq(a, target, driver="gelsd").solution  # (d+1, K)
    return solution[:-1].T.contiguous(), solution[-1].contiguous()


def logreg_surrogate(
    shape: tuple[int, int, int], weight: torch.Tensor, bias: torch.Tensor
) -> tuple[nn.Module, ModelSpec]:
    """A stored-model-compatible `logreg` (identity normalisation) with the given weights in pixel space."""
    spec = ModelSpec(arch="logreg", input_shape=shape, num_classes=int(weight.shape[0]))
    model = cast(nn.Sequential, build_model(spec))  # Normalize, then Sequential(Flatten, Linear)
    linear = cast(nn.Linear, cast(nn.Sequential, model[1])[1])
    with torch.no_grad():
        linear.weight.copy_(weight.float())
        linear.bias.copy_(bias.float())
    return model.eval(), spec


@register_extraction
@dataclass(frozen=True, kw_only=True)
class EquationSolving(ExtractionAttack):
    """Exact extraction of a softmax regression by solving its equations (Tramèr et al. 2016)."""

    name = "equation-solving"
    title = "Equation solving"
    paper = "Tramèr et al. 2016"
    knowledge = "the model is a softmax regression on raw pixels, its input shape and its number of classes"
    uses_pool = False

    min_prob: float = param(
        1e-30, "Smallest probability trusted", min=0.0, min_open=True, max=0.5,
        help="Answers below it (a 0 from rounding) are clamped before taking logs.",
    )  # fmt: skip

    def run(
        self, oracle: Oracle, judge: Judge, budgets: Sequence[int], *, pool: torch.Tensor | None, seed: int
    ) -> Events:
        budgets = check_budgets(budgets)
        shape = oracle.input_shape
        gen = torch.Generator().manual_seed(seed)
        queries = torch.rand((budgets[-1], *shape), generator=gen)  # uniform inputs in general position
        watch = _Stopwatch()
        answers = torch.zeros(0, oracle.num_classes, dtype=torch.float64)
        points: list[ExtractionPoint] = []
        surrogate, spec = None, None
        for i, budget in enumerate(budgets):
            answers = torch.cat([answers, oracle(queries[answers.shape[0] : budget])])
            flat = queries[:budget].flatten(1)  # (n, C, H, W) -> (n, d)
            weight, bias = solve_softmax(flat, answers, self.min_prob)
            surrogate, spec = logreg_surrogate(shape, weight, bias)
            points.append(watch.point(judge, surrogate, budget, oracle.waited))
            yield ExtractionEvent(
                (i + 1) / len(budgets), f"{budget:,} queries: fidelity {points[-1].fidelity:.3f}", points[-1]
            )
        assert surrogate is not None and spec is not None
        return ExtractionResult(self.name, self.describe(), points, surrogate, spec)


# -- retraining attacks ----------------------------------------------------------------------------------------
class LabelMode(StrEnum):
    SOFT = "soft"  # train on the answers as probability targets
    HARD = "hard"  # train on their top-1 label


def batch_loader(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator
) -> DataLoader[tuple[torch.Tensor, ...]]:
    """The batches `DataLoader(TensorDataset(x, y), batch_size, shuffle=True, generator=generator)` yields, in the
    same order from the same generator state, but each batch is one indexing `x[idx]` instead of `batch_size`
    single-image lookups stacked together by the collate function (a third of the data-loading time of a small
    surrogate's step)."""
    data = TensorDataset(x, y)
    sampler = BatchSampler(RandomSampler(data, generator=generator), batch_size, drop_last=False)
    # batch_size=None: the sampler's index lists go to TensorDataset[idx] whole; the loader draws its per-epoch
    # base seed from `generator`, as the shuffling loader does, so later epochs shuffle alike too
    return DataLoader(data, sampler=sampler, batch_size=None, generator=generator)


def _in_format(model: nn.Module, memory_format: torch.memory_format) -> nn.Module:
    """`model` with its 4-D weights and buffers in `memory_format`, in place (the same Parameter objects, so an
    optimizer built on them still holds them). torch's stubs leave `memory_format` out of `Module.to`."""
    return cast(nn.Module, cast(Any, model).to(memory_format=memory_format))


@dataclass(frozen=True, kw_only=True, eq=False)
class AnswersRecipe(Recipe):
    """Train a surrogate on the victim's answers: `targets` (N, K) probabilities (soft labels) or (N,) top-1
    labels (hard). Soft labels train by knowledge distillation's loss (Hinton et al. 2015) at `temperature` T:
    T² · cross-entropy(softmax(z / T), targets), the targets already softened to softmax(log p / T)
    (`soften`); T = 1 is the plain cross-entropy with probability targets.

    The same optimisation as the standard recipe, done with less waste on a CPU: batches by indexing
    (`batch_loader`), the model in channels-last memory format while it trains (PyTorch's CPU max-pooling is
    several times faster on it than on NCHW), and Adam's fused kernel. The trained model is returned in the
    ordinary (contiguous) format. Not a registered recipe: the targets are data."""

    name = "answers"
    title = "The victim's answers as labels"

    targets: torch.Tensor = field(
        repr=False
    )  # (N, K) float32 rows summing to 1, or (N,) int64; aligned with x
    temperature: float = 1.0

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(x)
        if y.ndim == 1 or self.temperature == 1.0:
            return F.cross_entropy(logits, y), logits
        t = self.temperature
        return t * t * F.cross_entropy(logits / t, y), logits

    def prepare(self, setup: TrainingSetup) -> TrainingSetup:
        x = cast(TensorDataset, setup.loader.dataset).tensors[0]
        batch_size = setup.loader.batch_size or 1
        setup.loader = batch_loader(x, self.targets, batch_size, setup.generator)
        setup.model = _in_format(setup.model, torch.channels_last)
        old = setup.optimizer
        if type(old) is torch.optim.Adam:  # the same Adam (same parameters and settings), its fused kernel
            d = old.defaults
            setup.optimizer = torch.optim.Adam(setup.model.parameters(), lr=d["lr"], betas=d["betas"],
                                               eps=d["eps"], weight_decay=d["weight_decay"], fused=True)  # fmt: skip
        return setup

    def finalize(self, setup: TrainingSetup) -> nn.Module:
        return _in_format(setup.model, torch.contiguous_format)

    def params(self) -> dict[str, Any]:
        return {}


_SHIFT_HELP = (
    "Augmentation while training the surrogate: each batch's images moved by up to this many pixels (capped at a "
    "14th of the image side), labelled with the answer for the unmoved image: no extra queries."
)


def soften(probs: torch.Tensor, temperature: float, floor: float = 1e-30) -> torch.Tensor:
    """softmax(log p / T) (N, K) float32 for probabilities `probs` (N, K): T > 1 lifts the small probabilities,
    where a confident victim's answers carry what its top-1 label does not (which wrong classes it finds
    closer). Zeros (a label-only or rounding API) are floored at `floor` first, so they stay near zero: a one-hot
    answer of 10 classes softened at T = 4 keeps all but 3e-7 on its label."""
    p = probs.double().clamp_min(floor)
    return torch.softmax(p.log() / temperature, dim=1).float()


@dataclass(frozen=True, kw_only=True)
class SurrogateTraining(ExtractionAttack):
    """What retraining attacks share: the surrogate's architecture and how it is trained on the answers."""

    labels: LabelMode = param(LabelMode.SOFT, "Labels trained on", help="soft: the answers as probabilities; "
                              "hard: their top-1 label only.")  # fmt: skip
    arch: str = param("cnn", "Surrogate architecture", options=tuple(ARCHITECTURES))
    epochs: int = param(20, "Surrogate epochs", min=1, max=500, step=1)
    batch_size: int = param(64, "Batch size", min=1, max=4096, step=1)
    lr: float = param(2e-3, "Learning rate", min=0.0, min_open=True, max=1.0, step=1e-4)
    temperature: float = param(
        4.0, "Distillation temperature (soft labels)", min=1.0, max=100.0, step=0.5,
        help="Soft labels train on softmax(log p / T) with the distillation loss (Hinton et al. 2015): T > 1 "
        "lifts the small probabilities of the answers (cnn on mnist5k, 20 epochs, 250 queries: fidelity 0.97 at "
        "T = 4, 0.93 at T = 1); 1 is the plain cross-entropy, which learns faster in very short trainings (a "
        "few dozen steps). Hard labels ignore it.",
    )  # fmt: skip
    shift: int = param(0, "Random shift (pixels, 0 = off)", min=0, max=8, step=1, help=_SHIFT_HELP)
    shift_below: int = param(
        2_000, "Shift only below this many queries", min=1, max=1_000_000, step=1,
        help="Augmentation makes up for few images and costs a little accuracy once they are many: the shift "
        "applies while the surrogate trains on fewer answers than this.",
    )  # fmt: skip

    def fit(
        self, x: torch.Tensor, answers: torch.Tensor, seed: int
    ) -> Generator[TrainEvent, None, tuple[nn.Module, ModelSpec]]:
        """Train a fresh surrogate (seeded) on queries `x` and their answers. The loop gets an empty test split:
        the judge scores the surrogate once at the end instead of after every epoch (which cost more than the
        training itself at small budgets)."""
        answers = answers.double()
        answers = answers / answers.sum(1, keepdim=True).clamp_min(1e-12)
        hard = answers.argmax(1)
        k = answers.shape[1]
        none = torch.zeros(0, dtype=torch.int64)
        data = Dataset(name="stolen", x_train=x, y_train=hard, x_test=x[:0], y_test=none,
                       class_names=tuple(str(i) for i in range(k)))  # fmt: skip
        mean = tuple(round(float(m), 4) for m in x.mean(dim=(0, 2, 3)))  # the attacker's own data statistics
        std = tuple(round(float(s), 4) for s in x.std(dim=(0, 2, 3)).clamp_min(1e-3))
        spec = ModelSpec(arch=self.arch, input_shape=data.input_shape, num_classes=k, mean=mean, std=std)
        soft = self.labels is LabelMode.SOFT
        recipe = AnswersRecipe(
            targets=soften(answers, self.temperature) if soft else hard, temperature=self.temperature
        )
        # A constant learning rate: at small budgets a one-cycle schedule's warm-up takes a large share of the few
        # steps (Knockoff at 250 queries on mnist5k: fidelity 0.929 constant vs 0.903 one-cycle).
        shift = self.shift if len(x) < self.shift_below else 0
        config = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=seed, shift=shift,
                             one_cycle=False, events_per_epoch=1)  # fmt: skip
        result = yield from train(spec, data, config, recipe, device=torch.device("cpu"))
        return result.model.cpu().eval(), spec


def _relay(
    work: Generator[TrainEvent, None, tuple[nn.Module, ModelSpec]], done: float, share: float, what: str
) -> Generator[ExtractionEvent, None, tuple[nn.Module, ModelSpec]]:
    return relay(
        work,
        lambda event: (
            ExtractionEvent(done + share * event.progress, f"{what}: epoch {event.epoch}/{event.epochs}")
            if event.kind == "epoch"
            else None
        ),
    )


@dataclass(frozen=True, kw_only=True)
class Retraining(SurrogateTraining):
    """Label a pool with the victim's answers and train a surrogate on them, afresh at each budget."""

    def run(
        self, oracle: Oracle, judge: Judge, budgets: Sequence[int], *, pool: torch.Tensor | None, seed: int
    ) -> Events:
        budgets = check_budgets(budgets)
        pool = _need_pool(pool, budgets)
        watch = _Stopwatch()
        answers = torch.zeros(0, oracle.num_classes, dtype=torch.float64)
        points: list[ExtractionPoint] = []
        surrogate, spec = None, None
        for i, budget in enumerate(budgets):
            answers = torch.cat([answers, oracle(pool[answers.shape[0] : budget])])
            surrogate, spec = yield from _relay(
                self.fit(pool[:budget], answers, seed), i / len(budgets), 1 / len(budgets),
                f"{budget:,} queries",
            )  # fmt: skip
            points.append(watch.point(judge, surrogate, budget, oracle.waited))
            yield ExtractionEvent(
                (i + 1) / len(budgets), f"{budget:,} queries: fidelity {points[-1].fidelity:.3f}", points[-1]
            )
        assert surrogate is not None and spec is not None
        return ExtractionResult(self.name, self.describe(), points, surrogate, spec)


@register_extraction
@dataclass(frozen=True, kw_only=True)
class Copycat(Retraining):
    """Copycat CNN (Correia-Silva et al. 2018): natural images labelled with the victim's top-1 labels."""

    name = "copycat"
    title = "Copycat"
    paper = "Correia-Silva et al. 2018"
    knowledge = "unlabelled images from the chosen pool, the input shape and the number of classes"

    labels: LabelMode = param(
        LabelMode.HARD, "Labels trained on", help="Copycat trains on top-1 labels (hard)."
    )
    # top-1 labels carry less per image: augmentation helps them while images are few (cnn on mnist5k, 20 epochs,
    # seeds 0 / 1: fidelity 0.929 / 0.918 with a 2-pixel shift, 0.891 / 0.885 without at 250 queries), and costs a
    # little when they are many (0.979 / 0.982 with, 0.985 / 0.984 without at 4,000): hence `shift_below`; soft
    # labels at T = 4 gain nothing from it
    shift: int = param(2, "Random shift (pixels, 0 = off)", min=0, max=8, step=1, help=_SHIFT_HELP)


@register_extraction
@dataclass(frozen=True, kw_only=True)
class Knockoff(Retraining):
    """Knockoff Nets, random strategy (Orekondy et al. 2019): the victim's probability vectors as soft labels."""

    name = "knockoff"
    title = "Knockoff Nets (random)"
    paper = "Orekondy et al. 2019"
    knowledge = "unlabelled images from the chosen pool, the input shape and the number of classes"


class Reward(StrEnum):
    """Knockoff's adaptive rewards (Orekondy et al. 2019, section 4.1.2)."""

    CERTAINTY = "certainty"  # the victim's margin between its top two probabilities
    DIVERSITY = "diversity"  # how far the answer is from the mean of the recent answers
    LOSS = "loss"  # the surrogate's cross-entropy on the victim's answer: where it still has to learn
    ALL = "all"  # the three, each standardised by its running mean and deviation, summed


def kmeans(x: torch.Tensor, k: int, generator: torch.Generator, iterations: int = 20) -> torch.Tensor:
    """Cluster index (N,) of each image (N, C, H, W): Lloyd's k-means on the pixels, seeded initial centres."""
    flat = x.flatten(1)  # (N, C, H, W) -> (N, C*H*W)
    k = min(k, flat.shape[0])
    centres = flat[torch.randperm(flat.shape[0], generator=generator)[:k]].clone()
    assign = torch.zeros(flat.shape[0], dtype=torch.int64)
    for _ in range(iterations):
        assign = torch.cdist(flat, centres).argmin(1)
        for c in range(k):
            members = flat[assign == c]
            if members.shape[0]:
                centres[c] = members.mean(0)
    return assign


class _Standardiser:
    """Running mean and deviation of one reward (Welford), to put rewards of different scales on one footing."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        for v in r.tolist():
            self.n += 1
            delta = v - self.mean
            self.mean += delta / self.n
            self.m2 += delta * (v - self.mean)
        std = (self.m2 / self.n) ** 0.5 if self.n > 1 else 1.0
        return (r - self.mean) / max(std, 1e-8)


@register_extraction
@dataclass(frozen=True, kw_only=True)
class KnockoffAdaptive(SurrogateTraining):
    """Knockoff Nets, adaptive strategy (Orekondy et al. 2019): a gradient bandit chooses which part of the pool
    the next query comes from.

    The pool is split into `clusters` by k-means on the pixels (the paper uses its pool's own class hierarchy; an
    attacker here has unlabelled images, so clusters stand in for classes). A policy π = softmax(H) over clusters
    draws each query's cluster, and an unused image of that cluster is sent. The reward r of each answer updates
    the preferences (Sutton and Barto's gradient bandit, which the paper uses): H ← H + α (r − r̄)(1[a] − π), r̄
    the running mean reward. The surrogate for the loss reward is refitted every `refit_every` queries and at
    each budget (the paper updates it online after every batch); before the first refit the loss reward is 0.
    At each budget the surrogate is trained afresh on the chosen queries, exactly as the random strategy's is,
    so the two differ only in which images they asked about.
    """

    name = "knockoff-adaptive"
    title = "Knockoff Nets (adaptive)"
    paper = "Orekondy et al. 2019"
    knowledge = (
        "unlabelled images from the chosen pool (more than the budget, to choose from), the input shape and the "
        "number of classes"
    )

    reward: Reward = param(Reward.ALL, "Reward", help="What the bandit favours: the victim's certainty, the "
                           "answers' diversity, the surrogate's loss, or all three.")  # fmt: skip
    clusters: int = param(10, "Pool clusters (the bandit's arms)", min=2, max=1000, step=1)
    bandit_lr: float = param(0.5, "Bandit step α", min=0.0, min_open=True, max=100.0, step=0.05)
    pool_factor: int = param(
        4, "Candidates per query", min=1, max=100, step=1,
        help="The pool holds up to this many images per query of the largest budget (when the source has them).",
    )  # fmt: skip
    round_size: int = param(20, "Queries per bandit round", min=1, max=10_000, step=1)
    refit_every: int = param(
        250, "Refit the loss reward's surrogate every (queries)", min=1, max=100_000, step=1
    )
    window: int = param(50, "Diversity window (answers)", min=1, max=100_000, step=1)

    def pool_choice(self, budgets: Sequence[int]) -> int | None:
        return budgets[-1] * self.pool_factor

    def rewards(
        self, answers: torch.Tensor, x: torch.Tensor, recent: torch.Tensor, surrogate: nn.Module | None,
        scales: dict[Reward, _Standardiser],
    ) -> torch.Tensor:  # fmt: skip
        """Reward (m,) of each answer (m, K) to queries x, `recent` (r, K) the answers before them."""
        y = answers.float()
        out: dict[Reward, torch.Tensor] = {}
        if self.reward in (Reward.CERTAINTY, Reward.ALL):
            top2 = y.topk(min(2, y.shape[1]), dim=1).values
            out[Reward.CERTAINTY] = top2[:, 0] - (top2[:, 1] if top2.shape[1] > 1 else 0.0)
        if self.reward in (Reward.DIVERSITY, Reward.ALL):
            mean = recent.float().mean(0) if recent.shape[0] else torch.zeros(y.shape[1])
            out[Reward.DIVERSITY] = (y - mean).clamp_min(0.0).sum(1)
        if self.reward in (Reward.LOSS, Reward.ALL):
            if surrogate is None:
                out[Reward.LOSS] = torch.zeros(y.shape[0])
            else:
                logp = predict_proba(surrogate, x).clamp_min(1e-12).log()
                out[Reward.LOSS] = -(y * logp).sum(1)
        if self.reward is not Reward.ALL:
            return out[self.reward]
        return sum((scales[kind](r) for kind, r in out.items()), torch.zeros(y.shape[0]))

    def run(
        self, oracle: Oracle, judge: Judge, budgets: Sequence[int], *, pool: torch.Tensor | None, seed: int
    ) -> Events:
        budgets = check_budgets(budgets)
        pool = _need_pool(pool, budgets)
        gen = torch.Generator().manual_seed(seed)
        watch = _Stopwatch()
        assign = kmeans(pool, self.clusters, gen)
        arms = int(assign.max()) + 1
        # each cluster's unused images, in a seeded random order
        queues = [idx[torch.randperm(idx.numel(), generator=gen)].tolist()
                  for idx in (torch.nonzero(assign == c).flatten() for c in range(arms))]  # fmt: skip
        prefs = torch.zeros(arms, dtype=torch.float64)  # H
        mean_reward, rounds = 0.0, 0
        scales = {kind: _Standardiser() for kind in Reward}
        chosen: list[int] = []
        answers = torch.zeros(0, oracle.num_classes, dtype=torch.float64)
        points: list[ExtractionPoint] = []
        surrogate: nn.Module | None = None
        spec: ModelSpec | None = None
        stops = sorted({*budgets, *range(self.refit_every, budgets[-1], self.refit_every)})
        for stop in stops:
            while len(chosen) < stop:
                m = min(self.round_size, stop - len(chosen))
                picks, arms_drawn, probs = [], [], []
                for _ in range(m):
                    open_arms = torch.tensor([len(q) > 0 for q in queues])
                    pi = torch.where(open_arms, prefs, torch.tensor(-math.inf, dtype=torch.float64)).softmax(
                        0
                    )
                    arm = int(torch.multinomial(pi, 1, generator=gen))
                    picks.append(queues[arm].pop())
                    arms_drawn.append(arm)
                    probs.append(pi)
                x = pool[picks]
                got = oracle(x)
                r = self.rewards(got, x, answers[-self.window :], surrogate, scales)
                for arm, pi, reward in zip(arms_drawn, probs, r.tolist(), strict=True):
                    rounds += 1
                    mean_reward += (reward - mean_reward) / rounds
                    step = self.bandit_lr * (reward - mean_reward)
                    prefs -= step * pi
                    prefs[arm] += step
                chosen += picks
                answers = torch.cat([answers, got])
            i = sum(b <= stop for b in budgets) - 1
            surrogate, spec = yield from _relay(
                self.fit(pool[chosen], answers, seed), stop / budgets[-1] * 0.99, 0.0, f"{stop:,} queries"
            )
            if stop in budgets:
                points.append(watch.point(judge, surrogate, stop, oracle.waited))
                yield ExtractionEvent(
                    (i + 1) / len(budgets),
                    f"{stop:,} queries: fidelity {points[-1].fidelity:.3f}",
                    points[-1],
                )
        assert surrogate is not None and spec is not None
        return ExtractionResult(self.name, self.describe(), points, surrogate, spec)


@register_extraction
@dataclass(frozen=True, kw_only=True)
class JacobianAugmentation(SurrogateTraining):
    """Papernot et al. 2017: a small seed set grown by Jacobian-based dataset augmentation.

    Each round trains the substitute afresh on the set S, then adds x + λ_ρ·sign(∇ₓ F_sub(x)[O(x)]) for points of
    S (all of them, or a seeded random subset so the set lands exactly on the next budget), λ_ρ = λ·(−1)^⌊ρ/τ⌋
    (the paper's periodic step size). Each new point costs one query.
    """

    name = "jacobian"
    title = "Jacobian-based augmentation"
    paper = "Papernot et al. 2017"
    knowledge = "a small seed set of unlabelled images from the chosen pool, the input shape and the classes"

    labels: LabelMode = param(
        LabelMode.HARD, "Labels trained on", help="Papernot et al. train on top-1 labels."
    )
    seed_size: int = param(100, "Seed set size", min=1, max=100_000, step=1)
    lam: float = param(0.1, "Step λ (pixel units)", min=0.0, min_open=True, max=1.0, step=0.01)
    tau: int = param(3, "Sign flip period τ (rounds)", min=1, max=100, step=1)

    def pool_size(self, budgets: Sequence[int]) -> int:
        return self.seed_size

    def run(
        self, oracle: Oracle, judge: Judge, budgets: Sequence[int], *, pool: torch.Tensor | None, seed: int
    ) -> Events:
        budgets = check_budgets(budgets)
        if self.seed_size > budgets[0]:
            raise InvalidInputError(
                f"The seed set ({self.seed_size:,}) must fit the first budget ({budgets[0]:,})."
            )
        pool = _need_pool(pool, [self.seed_size])
        gen = torch.Generator().manual_seed(seed)
        watch = _Stopwatch()
        x = pool[: self.seed_size]
        answers = oracle(x)
        points: list[ExtractionPoint] = []
        surrogate, spec, rho = None, None, 0
        while True:
            n = x.shape[0]
            surrogate, spec = yield from _relay(
                self.fit(x, answers, seed), n / budgets[-1] * 0.99, 0.0, f"round {rho}, {n:,} queries"
            )
            if n in budgets:
                points.append(watch.point(judge, surrogate, n, oracle.waited))
                yield ExtractionEvent(
                    len(points) / len(budgets),
                    f"{n:,} queries: fidelity {points[-1].fidelity:.3f}",
                    points[-1],
                )
            if n >= budgets[-1]:
                break
            target = next(b for b in budgets if b > n)
            need = min(n, target - n)
            chosen = torch.arange(n) if need == n else torch.randperm(n, generator=gen)[:need]
            step = self.lam * (-1) ** (rho // self.tau)
            new = (
                x[chosen] + step * _label_gradient_sign(surrogate, x[chosen], answers[chosen].argmax(1))
            ).clamp(0, 1)
            answers = torch.cat([answers, oracle(new)])
            x = torch.cat([x, new])
            rho += 1
        assert surrogate is not None and spec is not None
        return ExtractionResult(self.name, self.describe(), points, surrogate, spec)


def _label_gradient_sign(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """sign(∇ₓ F(x)[label]) per image, F the softmax output (the substitute's Jacobian row of the oracle's label)."""
    with eval_mode(model):
        xs = x.clone().requires_grad_(True)
        out = model(xs).softmax(1).gather(1, labels[:, None]).sum()
        (grad,) = torch.autograd.grad(out, xs)
    return grad.sign()
