"""A victim model behind a prediction API: the only way an attacker reaches a stored model.

Zero trust by design. Every client has an identity, a query budget and an optional rate limit; every query is
logged per client (count, the inputs themselves, for detectors such as PRADA, and timestamps); the API never
answers past a budget: a batch that would overrun it is refused whole, with an error naming the budget. What the
API returns is its *output policy*, a frozen config:

- `full`: the softmax probabilities;
- `top-k`: the k largest probabilities, the others zeroed;
- `label`: the top-1 label only, as a one-hot vector;
- `rounded`: probabilities rounded to d decimals (Tramèr et al. 2016, "Stealing Machine Learning Models via
  Prediction APIs", study rounding as a countermeasure);
- `noise`: Gaussian noise on the probabilities, clipped and renormalised;
- `reverse-sigmoid`: Lee et al. 2019, "Defending Against NN Model Stealing Attacks Using Deceptive
  Perturbations": ỹ = α·(y − β·(s(γ·s⁻¹(y)) − ½)), s the sigmoid, α renormalises;
- `mad`: prediction poisoning after Orekondy et al. 2020, "Prediction Poisoning: Towards Defenses Against DNN
  Model Stealing Attacks" (MAD, argmax-preserving variant), simplified as `MADPolicy` says.

The attacker's side is an `Oracle`: its client id at one API, the answers it got and the waiting a rate limit
imposes (on a real clock, or a `SimulatedClock` so a study reports how long the theft would take).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from dlsec_core.config import Config, param
from dlsec_core.errors import DlsecError, InvalidInputError, NotFoundError
from dlsec_core.models.modes import device_of, eval_mode
from dlsec_core.models.spec import ModelSpec, build_model
from dlsec_core.registry import Registry
from dlsec_core.text import plural

if TYPE_CHECKING:
    from dlsec_core.store import Store

Clock = Callable[[], float]


class QueryBudgetError(DlsecError):
    """A client asked for more answers than its query budget has left; nothing was answered."""


class RateLimitError(DlsecError):
    """A client asked faster than its rate limit allows; `retry_after` seconds until the batch would fit."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# -- output policies -----------------------------------------------------------------------------------------
Responder = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (probabilities (N, K), inputs) -> answers


@dataclass(frozen=True, kw_only=True)
class OutputPolicy(Config):
    """What the API returns for each query. Subclasses transform the victim's probabilities (N, K), float64."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    #: MITRE ATLAS: every policy but the full answer is a Passive AI Output Obfuscation
    atlas_ids: ClassVar[tuple[str, ...]] = ("AML.M0002",)

    def bind(self, spec: ModelSpec, generator: torch.Generator) -> Responder:
        """The answering function for one API (a policy with state, e.g. MAD's surrogate, builds it here)."""
        return lambda probs, x: self.transform(probs, generator)

    def transform(self, probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> str:
        """One line naming the policy and its settings."""
        settings = ", ".join(f"{k} = {v}" for k, v in self.to_json().items())
        return self.title + (f" ({settings})" if settings else "")


OUTPUT_POLICIES: Registry[OutputPolicy] = Registry("output policy")
register_policy = OUTPUT_POLICIES.register


def get_policy(name: str, **params: Any) -> OutputPolicy:
    """A registered output policy by name with its settings, e.g. `get_policy("rounded", decimals=1)`."""
    return OUTPUT_POLICIES.build(name, **params)


def _renormalise(p: torch.Tensor) -> torch.Tensor:
    """Rows scaled to sum to 1 (a row of zeros becomes uniform)."""
    total = p.sum(1, keepdim=True)
    uniform = torch.full_like(p, 1.0 / p.shape[1])
    return torch.where(total > 0, p / total.clamp_min(1e-300), uniform)


@register_policy
@dataclass(frozen=True, kw_only=True)
class FullPolicy(OutputPolicy):
    """The softmax probabilities, unchanged."""

    name = "full"
    title = "Full probabilities"
    atlas_ids = ("DLSEC.no-mitigation",)  # the undefended baseline: the API hides nothing

    def transform(self, probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return probs


@register_policy
@dataclass(frozen=True, kw_only=True)
class TopKPolicy(OutputPolicy):
    """The k largest probabilities; the others are reported as 0 (not renormalised, as APIs show them)."""

    name = "top-k"
    title = "Top-k probabilities"

    k: int = param(1, "k (probabilities shown)", min=1, max=1000, step=1)

    def transform(self, probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        k = min(self.k, probs.shape[1])
        top = probs.topk(k, dim=1)
        return torch.zeros_like(probs).scatter(1, top.indices, top.values)


@register_policy
@dataclass(frozen=True, kw_only=True)
class LabelPolicy(OutputPolicy):
    """The top-1 label only, as a one-hot vector."""

    name = "label"
    title = "Label only"

    def transform(self, probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return torch.zeros_like(probs).scatter(1, probs.argmax(1, keepdim=True), 1.0)


@register_policy
@dataclass(frozen=True, kw_only=True)
class RoundedPolicy(OutputPolicy):
    """Probabilities rounded to d decimals (Tramèr et al. 2016's countermeasure); small ones become 0."""

    name = "rounded"
    title = "Rounded probabilities"
    paper = "Tramèr et al. 2016"

    decimals: int = param(2, "Decimals kept", min=0, max=15, step=1)

    def transform(self, probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return torch.round(probs, decimals=self.decimals)


@register_policy
@dataclass(frozen=True, kw_only=True)
class NoisePolicy(OutputPolicy):
    """Gaussian noise N(0, σ²) added to each probability, then clipped to [0, 1] and renormalised: the top-1
    label may change (the API's accuracy for honest users pays for it)."""

    name = "noise"
    title = "Gaussian noise"

    sigma: float = param(0.05, "Noise σ (probability units)", min=0.0, max=1.0, step=0.01)

    def transform(self, probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(probs.shape, generator=generator, dtype=probs.dtype) * self.sigma
        return _renormalise((probs + noise).clamp(0.0, 1.0))


@register_policy
@dataclass(frozen=True, kw_only=True)
class ReverseSigmoidPolicy(OutputPolicy):
    """Lee et al. 2019: ỹ = α·(y − β·(s(γ·s⁻¹(y)) − ½)), s the sigmoid, clipped to [0, 1], α renormalises.

    The perturbation is large where the attacker's loss is informative and keeps the order of most answers,
    but it can change the top-1 label (the API's honest accuracy shows how often).
    """

    name = "reverse-sigmoid"
    title = "Reverse sigmoid"
    paper = "Lee et al. 2019"

    beta: float = param(1.0, "β (perturbation size)", min=0.0, max=10.0, step=0.1)
    gamma: float = param(0.1, "γ (flatness)", min=0.0, min_open=True, max=10.0, step=0.05)

    def transform(self, probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        y = probs.clamp(1e-9, 1 - 1e-9)
        logit = torch.log(y / (1 - y))  # s⁻¹(y)
        r = self.beta * (torch.sigmoid(self.gamma * logit) - 0.5)
        return _renormalise((probs - r).clamp(0.0, 1.0))


@register_policy
@dataclass(frozen=True, kw_only=True)
class MADPolicy(OutputPolicy):
    """Prediction poisoning after Orekondy et al. 2020 (MAD, argmax-preserving), simplified:

    MAD answers ỹ within an L1 ball of size ε around y that maximises the angle between the gradient an attacker
    would take on ỹ and the one it would take on y, w.r.t. a surrogate's weights. Simplifications: (1) the
    gradient is taken w.r.t. the surrogate's *last layer* only, where it has a closed form, (p − y) ⊗ h, so the
    angle between the two gradients is the angle between p − ỹ and p − y in class space (p: the surrogate's
    prediction); (2) as in the paper's heuristic, ỹ moves from y towards the best one-hot vertex e_k, here by
    the largest step that stays within ε and keeps the top-1 label. The surrogate is a randomly initialised
    model of the victim's architecture (seeded), as the paper uses when the attacker's model is unknown.
    """

    name = "mad"
    title = "Prediction poisoning (MAD)"
    paper = "Orekondy et al. 2020"

    eps: float = param(0.5, "ε (L1 distance allowed from the true answer)", min=0.0, max=2.0, step=0.05)

    def bind(self, spec: ModelSpec, generator: torch.Generator) -> Responder:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
            surrogate = build_model(spec).eval()

        def respond(probs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                p = surrogate(x.float()).softmax(1).to(probs.dtype)
            return self.poison(probs, p)

        return respond

    def poison(self, y: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """ỹ for answers `y` (N, K) and the surrogate's predictions `p` (N, K)."""
        n, k = y.shape
        eye = torch.eye(k, dtype=y.dtype)
        base = p - y  # (N, K): the attacker's last-layer gradient direction on y, up to ⊗ h
        base = base / base.norm(dim=1, keepdim=True).clamp_min(1e-12)
        vertex = p.unsqueeze(1) - eye.unsqueeze(0)  # (N, K, K): the direction for ỹ = e_k
        vertex = vertex / vertex.norm(dim=2, keepdim=True).clamp_min(1e-12)
        deviation = (vertex - base.unsqueeze(1)).pow(2).sum(2)  # (N, K)
        best = deviation.argmax(1)  # (N,)
        target = eye[best]  # (N, K)
        top = y.argmax(1)
        distance = (target - y).abs().sum(1).clamp_min(1e-12)  # ||e_k − y||₁
        alpha = (self.eps / distance).clamp(max=1.0)
        # keep the top-1 label: (1 − α)·y_top > (1 − α)·y_k + α  <=>  α < gap / (1 + gap), gap = y_top − y_k
        y_top = y.gather(1, top[:, None]).squeeze(1)
        y_k = y.gather(1, best[:, None]).squeeze(1)
        gap = y_top - y_k
        keep = torch.where(best == top, torch.ones_like(alpha), 0.999 * gap / (1 + gap))
        alpha = torch.minimum(alpha, keep).unsqueeze(1)
        return (1 - alpha) * y + alpha * target


# -- the API ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class RateLimit(Config):
    """At most `queries` answers in any window of `per_seconds` seconds."""

    title: ClassVar[str] = "Rate limit"

    queries: int = param(100, "Queries per window", min=1, max=10**9, step=1)
    per_seconds: float = param(60.0, "Window (seconds)", min=0.0, min_open=True, max=86_400.0)


@dataclass
class _Client:
    budget: int
    rate_limit: RateLimit | None
    answered: int = 0
    refused: int = 0
    inputs: list[torch.Tensor] = field(default_factory=list)
    labels: list[torch.Tensor] = field(default_factory=list)
    times: list[torch.Tensor] = field(default_factory=list)


@dataclass(frozen=True, eq=False)
class ClientLog:
    """What the API recorded about one client: every answered query's input, label and time, and refusals."""

    client_id: str
    budget: int
    rate_limit: RateLimit | None
    answered: int
    refused: int  # queries refused (budget or rate limit), not answered and not in `inputs`
    inputs: torch.Tensor  # (answered, C, H, W), in the order answered
    labels: torch.Tensor  # (answered,) int64, the top-1 class of each answer (after the policy)
    times: torch.Tensor  # (answered,) float64, the API clock's reading when each was answered

    @property
    def remaining(self) -> int:
        return self.budget - self.answered


class PredictionAPI:
    """A model served behind a prediction API (see the module docstring).

    The model is private: an attacker is handed this object (or an `Oracle` on it) and can only `query` it under
    a registered client id. `input_shape` and `num_classes` are public, as an API's documentation would be.
    """

    #: MITRE ATLAS mitigations it implements: query budgets and rate limits, access by client identity, logging
    atlas_ids: ClassVar[tuple[str, ...]] = ("AML.M0004", "AML.M0019", "AML.M0024")

    def __init__(
        self,
        model: nn.Module,
        spec: ModelSpec,
        policy: OutputPolicy | None = None,
        *,
        seed: int = 0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._model = model
        self._clients: dict[str, _Client] = {}
        self._clock = clock
        self.spec = spec
        self.policy = policy or FullPolicy()
        self._generator = torch.Generator().manual_seed(seed)
        self._respond = self.policy.bind(spec, self._generator)

    @classmethod
    def serve(
        cls,
        store: Store,
        model_id: str,
        policy: OutputPolicy | None = None,
        *,
        seed: int = 0,
        clock: Clock = time.monotonic,
    ) -> PredictionAPI:
        """Serve a stored model."""
        model, card = store.load_model(model_id)
        return cls(model, card.spec, policy, seed=seed, clock=clock)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.spec.input_shape

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    def register(self, client_id: str, *, budget: int, rate_limit: RateLimit | None = None) -> None:
        """Open an account: `budget` answers in all, at most `rate_limit` (None = no limit)."""
        if not isinstance(client_id, str) or not client_id.strip():
            raise InvalidInputError(f"A client needs a non-empty id, got {client_id!r}.")
        if client_id in self._clients:
            raise InvalidInputError(f"Client {client_id!r} is already registered.")
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
            raise InvalidInputError(f"A query budget is an integer ≥ 0, got {budget!r}.")
        self._clients[client_id] = _Client(budget=budget, rate_limit=rate_limit)

    def clients(self) -> list[str]:
        return list(self._clients)

    def rate_limit(self, client_id: str) -> RateLimit | None:
        """The client's rate limit (None = none); public, as an API's terms of use are."""
        return self._client(client_id).rate_limit

    def _client(self, client_id: str) -> _Client:
        if client_id not in self._clients:
            raise NotFoundError(f"Unknown client {client_id!r}: the API answers registered clients only.")
        return self._clients[client_id]

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InvalidInputError(
                f"The API takes images (N, {', '.join(map(str, self.input_shape))}), got {shape}."
            )
        if x.numel() and (not bool(torch.isfinite(x).all()) or float(x.min()) < 0.0 or float(x.max()) > 1.0):
            raise InvalidInputError("The API takes pixels in [0, 1] (finite), got values outside.")

    def query(self, client_id: str, x: torch.Tensor) -> torch.Tensor:
        """The policy's answers (N, K) float64 for images `x` (N, C, H, W) in [0, 1].

        Raises:
            NotFoundError: an unregistered client.
            QueryBudgetError: the batch would overrun the client's budget (nothing is answered).
            RateLimitError: the batch does not fit the rate limit now (nothing is answered).
        """
        client = self._client(client_id)
        self._check_input(x)
        n = int(x.shape[0])
        if client.answered + n > client.budget:
            client.refused += n
            raise QueryBudgetError(
                f"Client {client_id!r} asked for {plural(n, 'answer')} but its query budget is {client.budget:,} "
                f"and {client.budget - client.answered:,} remain: the API refuses the whole batch."
            )
        now = self._clock()
        if client.rate_limit is not None:
            wait = self._wait_for(client, n, now)
            if wait > 0:
                client.refused += n
                limit = client.rate_limit
                raise RateLimitError(
                    f"Client {client_id!r} exceeds its rate limit of {plural(limit.queries, 'query', 'queries')} "
                    f"per {limit.per_seconds:g} s; retry in {wait:.3g} s.",
                    retry_after=wait,
                )
        with torch.no_grad(), eval_mode(self._model):
            logits = self._model(x.to(device_of(self._model), torch.float32)).cpu()
        answers = self._respond(logits.double().softmax(1), x.cpu())
        client.answered += n
        client.inputs.append(x.detach().cpu().float().clone())
        client.labels.append(answers.argmax(1).cpu() if n else torch.zeros(0, dtype=torch.int64))
        client.times.append(torch.full((n,), now, dtype=torch.float64))
        return answers.detach()

    def _wait_for(self, client: _Client, n: int, now: float) -> float:
        """Seconds until `n` more answers fit the sliding window (0 = now; inf = never, the batch is too big)."""
        limit = client.rate_limit
        assert limit is not None
        if n > limit.queries:
            return math.inf
        times = torch.cat(client.times) if client.times else torch.zeros(0, dtype=torch.float64)
        recent = times[times > now - limit.per_seconds]
        excess = recent.numel() + n - limit.queries
        if excess <= 0:
            return 0.0
        # the excess-th oldest answer in the window must leave it
        return float(recent[excess - 1] + limit.per_seconds - now)

    def log(self, client_id: str) -> ClientLog:
        """A snapshot of what the API recorded about `client_id`."""
        client = self._client(client_id)
        c, h, w = self.input_shape
        return ClientLog(
            client_id=client_id, budget=client.budget, rate_limit=client.rate_limit, answered=client.answered,
            refused=client.refused,
            inputs=torch.cat(client.inputs) if client.inputs else torch.zeros(0, c, h, w),
            labels=torch.cat(client.labels) if client.labels else torch.zeros(0, dtype=torch.int64),
            times=torch.cat(client.times) if client.times else torch.zeros(0, dtype=torch.float64),
        )  # fmt: skip


# -- the attacker's side -------------------------------------------------------------------------------------
class SimulatedClock:
    """A clock that only moves when someone waits on it: a study reports how long a theft would take at the API's
    rate limit without waiting for real."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


class Oracle:
    """The attacker's handle on an API: its client id, answers in batches, waiting out the rate limit.

    `spent` counts the answers received; `waited` the seconds spent waiting (on `sleep`'s clock); `throttled`
    the answers that came only after a wait (their batch was refused by the rate limit at least once); `refusals`
    how many times a batch was refused and retried.
    """

    def __init__(
        self,
        api: PredictionAPI,
        client_id: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        batch: int = 500,
    ) -> None:
        self.api = api
        self.client_id = client_id
        self._sleep = sleep
        self._batch = batch
        self.spent = 0
        self.waited = 0.0
        self.throttled = 0
        self.refusals = 0

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.api.input_shape

    @property
    def num_classes(self) -> int:
        return self.api.num_classes

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Answers (N, K) for `x`, asked in batches that fit the rate limit (waiting when told to)."""
        out = []
        limit = self.api.rate_limit(self.client_id)
        size = self._batch if limit is None else max(1, min(self._batch, limit.queries))
        for i in range(0, x.shape[0], size):
            chunk = x[i : i + size]
            waits = 0
            while True:
                try:
                    out.append(self.api.query(self.client_id, chunk))
                    break
                except RateLimitError as err:
                    self._sleep(err.retry_after)
                    self.waited += err.retry_after
                    waits += 1
            self.spent += int(chunk.shape[0])
            self.refusals += waits
            self.throttled += int(chunk.shape[0]) if waits else 0
        if not out:
            return torch.zeros(0, self.num_classes, dtype=torch.float64)
        return torch.cat(out)
