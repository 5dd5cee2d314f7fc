"""Gradient inversion: reconstructing a client's training images from the update it shares in federated learning.

Three attacks of an honest-but-curious server that knows the global model it sent:

- DLG (Zhu, Liu, Han 2019, "Deep Leakage from Gradients"): optimise dummy images *and* soft dummy labels with
  L-BFGS so that their gradient matches the observed one in squared L2 distance. Our L-BFGS uses a strong-Wolfe
  line search, which the papers' code does not: without it the first full step saturates the sigmoids of a 28x28
  digit's model and DLG stalled at 3.4 dB (benchmarks/README.md, bench_gradleak run 1); with it DLG recovers it.
- iDLG (Zhao, Mopuri, Bilen 2020, "iDLG: Improved Deep Leakage from Gradients"): read the label off the last layer's
  gradient first (with cross-entropy and non-negative inputs to the last layer, the row of the true class is the
  only one whose weight gradient sums to a negative number), then optimise the images only. For a batch of B > 1
  the B classes with the most negative row sums are taken (the extension of Yin et al. 2021, exact only when the
  batch's labels are distinct).
- Inverting Gradients (Geiping, Bauermeister, Dröge, Moeller 2020, "Inverting Gradients - How easy is it to break
  privacy in federated learning?"): cosine distance between the gradients plus a total-variation prior, Adam on the
  images in [0, 1] (projected after each step), optionally on the sign of the gradient (as `breaching`'s default),
  with the labels recovered as in iDLG and the learning rate cut tenfold at 3/8, 5/8 and 7/8 of the steps.

What the attacker observes (`observe`): the client's update on its batch of B images after E local steps of SGD
(each on the whole batch) at learning rate η, expressed as a pseudo-gradient g = (w_0 − w_E) / (E·η), which is the
gradient itself when E = 1. The attacker knows E and η (the server sets them) and simulates the same E steps on
its dummy batch, differentiably, as Geiping et al. do for FedAvg updates. Defenses change the observation:

- `dp`: the client clips its update to L2 norm S and adds Gaussian noise N(0, σ²S²) to each coordinate before
  sending it (the local version of DP-FedAvg's clip-and-noise; σ defaults to the lab's DP-SGD default).
- `topk`: only the largest-magnitude share of the update's entries is sent (gradient sparsification); the attacker
  is adaptive and matches only the coordinates it received.
- `secure-aggregation`: the server receives pairwise-masked updates of `clients` clients (`secure_aggregation`)
  and learns only their mean: the attacker inverts the mixture, and is scored against the target client's images.
- larger batches and several local steps are the settings B and E themselves.

Metrics: PSNR (data range 1) and SSIM (Wang, Bovik, Sheikh, Simoncelli 2004: Gaussian window σ = 1.5, 11x11 or
the largest odd size that fits, K1 = 0.01, K2 = 0.03, computed on the valid region as Wang's reference code does),
per image, each reconstruction paired with an original by the assignment that minimises the total squared error
(the order of a batch is not recoverable from its gradient).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn
from torch.func import functional_call

from dlsec_core.config import Config, param
from dlsec_core.errors import InvalidInputError
from dlsec_core.federated.secure_aggregation import mask_updates, unmask_sum
from dlsec_core.privacy.dp_sgd import DPSGDRecipe

MAX_BATCH = 8
#: the lab's default noise multiplier: DP-SGD's (the client-DP defense uses it unless told otherwise)
LAB_NOISE: float = next(f.default for f in dataclasses.fields(DPSGDRecipe) if f.name == "noise_multiplier")  # type: ignore[assignment]
SSIM_SIGMA = 1.5
SSIM_SIZE = 11
SSIM_K1, SSIM_K2 = 0.01, 0.03


class LeakAttack(StrEnum):
    DLG = "dlg"
    IDLG = "idlg"
    IG = "ig"


class LeakDefense(StrEnum):
    NONE = "none"
    DP = "dp"
    TOPK = "topk"
    SECURE_AGGREGATION = "secure-aggregation"


ATTACK_NAMES = {
    LeakAttack.DLG: "DLG (Zhu et al. 2019: L-BFGS on images and soft labels, L2 gradient distance)",
    LeakAttack.IDLG: "iDLG (Zhao et al. 2020: label from the last layer's gradient, L-BFGS on images)",
    LeakAttack.IG: "Inverting Gradients (Geiping et al. 2020: cosine distance + total variation, Adam)",
}
#: the attacks' and defenses' short names, for titles and choices
ATTACK_LABELS = {LeakAttack.DLG: "DLG", LeakAttack.IDLG: "iDLG", LeakAttack.IG: "Inverting Gradients"}
DEFENSE_LABELS = {
    LeakDefense.NONE: "no defense", LeakDefense.DP: "client DP", LeakDefense.TOPK: "top-k sparsification",
    LeakDefense.SECURE_AGGREGATION: "secure aggregation",
}  # fmt: skip
DEFAULT_STEPS = {LeakAttack.DLG: 60, LeakAttack.IDLG: 60, LeakAttack.IG: 1000}
DEFAULT_LR = {LeakAttack.DLG: 1.0, LeakAttack.IDLG: 1.0, LeakAttack.IG: 0.1}


@dataclass(frozen=True, kw_only=True)
class GradLeakConfig(Config):
    """One gradient-inversion experiment: the client's update, the defense on it, and the attack."""

    title: ClassVar[str] = "Gradient inversion"

    attack: str = param(
        LeakAttack.IDLG.value, "Attack", options=tuple(a.value for a in LeakAttack),
        help="DLG (L-BFGS, labels optimised), iDLG (label read off the gradient) or Inverting Gradients "
        "(cosine + total variation, Adam).",
    )  # fmt: skip
    batch_size: int = param(1, "Client batch size B", min=1, max=MAX_BATCH, step=1)
    local_steps: int = param(
        1, "Local steps E", min=1, max=20, step=1,
        help="SGD steps the client takes on its batch before sending the change of its weights.",
    )  # fmt: skip
    local_lr: float = param(0.1, "Local learning rate η", min=0.0, min_open=True, max=10.0)
    defense: str = param(
        LeakDefense.NONE.value, "Defense", options=tuple(d.value for d in LeakDefense),
        help="Client DP (clip + Gaussian noise), top-k sparsification, or secure aggregation (the server sees only "
        "the sum of several clients' updates).",
    )  # fmt: skip
    clip: float = param(1.0, "DP: update clip S", min=0.0, min_open=True, max=1000.0)
    noise_multiplier: float = param(
        LAB_NOISE, "DP: noise multiplier σ", min=0.0, max=1000.0,
        help="Gaussian noise of standard deviation σ·S on each coordinate of the clipped update (default: the "
        "lab's DP-SGD default).",
    )  # fmt: skip
    keep: float = param(
        0.1, "Top-k: share of entries sent", min=0.0, min_open=True, max=1.0,
        help="Gradient sparsification: only this share of the update's largest-magnitude entries is sent.",
    )  # fmt: skip
    clients: int = param(4, "Secure aggregation: clients in the sum", min=2, max=16, step=1)
    steps: int | None = param(
        None, "Attack steps (empty: the attack's default)", min=1, max=100_000, step=1,
        help="L-BFGS steps (each up to 20 evaluations) for DLG and iDLG, Adam steps for Inverting Gradients.",
    )  # fmt: skip
    lr: float | None = param(
        None, "Attack learning rate (empty: 1 for L-BFGS, 0.1 for Adam)", min=0.0, min_open=True, max=100.0
    )
    tv: float = param(
        1e-4, "Total-variation weight (Inverting Gradients)", min=0.0, max=100.0,
        help="Weight of the image prior: mean absolute difference of neighbouring pixels.",
    )  # fmt: skip
    signed: bool = param(
        True, "Signed gradients (Inverting Gradients)", help="Adam on the sign of the image gradient (breaching's "
        "default), which is more robust to the scale of the objective.",
    )  # fmt: skip
    events: int = param(20, "Progress events with the current images", min=1, max=200, step=1)
    seed: int = param(0, "Seed", min=0, max=2**63 - 1, step=1)

    @property
    def attack_kind(self) -> LeakAttack:
        return LeakAttack(self.attack)

    @property
    def defense_kind(self) -> LeakDefense:
        return LeakDefense(self.defense)

    def attack_steps(self) -> int:
        return self.steps if self.steps is not None else DEFAULT_STEPS[self.attack_kind]

    def attack_lr(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.attack_kind]

    def describe_defense(self) -> str:
        d = self.defense_kind
        if d is LeakDefense.DP:
            return f"client DP: update clipped to S = {self.clip:g}, Gaussian noise σ·S with σ = {self.noise_multiplier:g}"
        if d is LeakDefense.TOPK:
            return f"top-k sparsification: {self.keep:.0%} of the update's entries sent"
        if d is LeakDefense.SECURE_AGGREGATION:
            return (
                f"secure aggregation: the server sees only the mean of {self.clients} clients' masked updates"
            )
        return "no defense"

    def describe(self) -> str:
        c = self
        extra = ""
        if c.attack_kind is LeakAttack.IG:
            extra = f", TV {c.tv:g}, {'signed ' if c.signed else ''}Adam"
        return (
            f"{ATTACK_NAMES[c.attack_kind]}, {c.attack_steps()} steps at lr {c.attack_lr():g}{extra}; the client's "
            f"update on B = {c.batch_size} image(s) after E = {c.local_steps} local step(s) at η = {c.local_lr:g}; "
            f"{c.describe_defense()}"
        )


# -- metrics --------------------------------------------------------------------------------------------------
def psnr(reference: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image of (N, C, H, W) batches in [0, 1]: 10·log10(1 / MSE); inf when
    the images are identical."""
    mse = (reference.double() - image.double()).pow(2).flatten(1).mean(1)
    return torch.where(mse > 0, 10 * torch.log10(1.0 / mse), torch.full_like(mse, math.inf))


def gaussian_window(size: int, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """The normalised (size, size) Gaussian window of SSIM."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim_window_size(height: int, width: int) -> int:
    """11, or the largest odd size that fits smaller images (an 8x8 digit gets 7)."""
    side = min(SSIM_SIZE, height, width)
    return side if side % 2 else side - 1


def ssim(reference: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Structural similarity per image of (N, C, H, W) batches in [0, 1] (data range 1), averaged over channels and
    over the valid positions of the Gaussian window (see the module docstring); 1 for identical images."""
    x, y = reference.double(), image.double()
    n, c, h, w = x.shape
    size = ssim_window_size(h, w)
    window = gaussian_window(size).to(x).expand(c, 1, size, size)

    def blur(
        t: torch.Tensor,
    ) -> torch.Tensor:  # (N, C, H, W) -> (N, C, H-size+1, W-size+1), each channel alone
        return F.conv2d(t, window, groups=c)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cov = blur(x * y) - mx * my
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    index = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return index.flatten(1).mean(1)


def match_images(originals: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """The reconstructions reordered so that the i-th one goes with the i-th original: the assignment with the
    least total squared error (Hungarian algorithm)."""
    cost = torch.cdist(originals.flatten(1).double(), reconstructions.flatten(1).double()) ** 2
    rows, cols = linear_sum_assignment(cost.numpy())
    order = torch.as_tensor(cols[np.argsort(rows)])
    return reconstructions[order]


# -- the client's update and what the server observes ---------------------------------------------------------
def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.detach() for k, p in model.named_parameters()}


def _flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def simulate_update(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int,
    lr: float,
    create_graph: bool = False,
) -> torch.Tensor:
    """The pseudo-gradient (w_0 − w_E) / (E·η) after E = `steps` SGD steps on the whole batch (mean cross-entropy;
    `labels` are class indices (B,) or label distributions (B, K)), flat over the model's parameters. With
    `create_graph` it stays differentiable in `x` (and in soft labels): the attacker's simulation."""
    start = dict(model.named_parameters())
    params = {k: p if create_graph else p.detach().requires_grad_(True) for k, p in start.items()}
    for _ in range(steps):
        logits = functional_call(model, params, (x,))
        if labels.ndim == 2:  # soft labels (DLG): cross-entropy against a distribution
            loss = -(labels * F.log_softmax(logits, dim=1)).sum(1).mean()
        else:
            loss = F.cross_entropy(logits, labels)
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
        params = {k: p - lr * g for (k, p), g in zip(params.items(), grads, strict=True)}
    delta = _flat([start[k].detach() - params[k] for k in start])
    return delta / (steps * lr) if create_graph else delta.detach() / (steps * lr)


@dataclass(frozen=True, eq=False)
class Observation:
    """What the server sees of the target client: a flat pseudo-gradient, and which entries it received (None: all)."""

    gradient: torch.Tensor
    mask: torch.Tensor | None
    local_steps: int
    local_lr: float
    batch_size: int


def observe(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: GradLeakConfig,
    *,
    others: Sequence[tuple[torch.Tensor, torch.Tensor]] = (),
) -> Observation:
    """The target client's update on (x, y) under `config`'s defense, as the server receives it.

    Args:
        model: the global model the server sent (not modified).
        x, y: the client's batch, (B, C, H, W) in [0, 1] and (B,).
        config: local steps, learning rate and the defense.
        others: the other clients' batches, summed with the target's under secure aggregation (`clients` − 1).
    """
    c = config
    model = copy.deepcopy(model).eval()
    generator = torch.Generator().manual_seed(c.seed + 1)
    g = simulate_update(model, x, y, steps=c.local_steps, lr=c.local_lr)
    delta = g * (c.local_steps * c.local_lr)  # the change of the weights the client would send
    mask = None
    if c.defense_kind is LeakDefense.DP:
        norm = float(delta.norm())
        delta = delta * min(1.0, c.clip / norm) if norm > 0 else delta
        delta = delta + torch.randn(delta.shape, generator=generator) * (c.noise_multiplier * c.clip)
    elif c.defense_kind is LeakDefense.TOPK:
        k = max(1, math.ceil(c.keep * delta.numel()))
        mask = torch.zeros(delta.numel(), dtype=torch.bool)
        mask[delta.abs().topk(k).indices] = True
        delta = torch.where(mask, delta, torch.zeros_like(delta))
    elif c.defense_kind is LeakDefense.SECURE_AGGREGATION:
        if len(others) != c.clients - 1:
            raise InvalidInputError(
                f"Secure aggregation over {c.clients} clients needs {c.clients - 1} other batches, got {len(others)}."
            )
        updates = [delta] + [
            simulate_update(model, ox, oy, steps=c.local_steps, lr=c.local_lr) * (c.local_steps * c.local_lr)
            for ox, oy in others
        ]
        delta = unmask_sum(mask_updates(updates, c.seed)).to(delta.dtype) / len(updates)
    return Observation(
        gradient=delta / (c.local_steps * c.local_lr), mask=mask, local_steps=c.local_steps, local_lr=c.local_lr,
        batch_size=x.shape[0],
    )  # fmt: skip


def last_linear_weight(model: nn.Module) -> tuple[int, int, nn.Linear]:
    """(offset, size) of the last linear layer's weight in the flat parameter vector, and the layer."""
    offset, found = 0, None
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if isinstance(module, nn.Linear) and name == "weight":
                found = (offset, p.numel(), module)
            offset += p.numel()
    if found is None:
        raise InvalidInputError("The label recovery of iDLG needs a model that ends in a linear layer.")
    return found


def recover_labels(model: nn.Module, observation: Observation) -> torch.Tensor:
    """iDLG's labels: the B classes whose rows of the last layer's weight gradient sum to the most negative values
    (B = 1: the one row with a negative sum, Zhao et al. 2020). Entries the server did not receive count as 0."""
    offset, size, layer = last_linear_weight(model)
    g = observation.gradient[offset : offset + size].view_as(layer.weight)  # (K, features)
    row_sums = g.sum(1)
    order = torch.argsort(row_sums)
    return order[: observation.batch_size].sort().values


# -- the attacks ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LeakEvent:
    """One progress report: the step, the objective, and the current reconstructions (B, C, H, W) in [0, 1]."""

    step: int
    steps: int
    loss: float
    images: torch.Tensor


@dataclass(frozen=True, eq=False)
class LeakResult:
    """The attack's output: reconstructions (B, C, H, W) in [0, 1] (in the attack's order), the labels it used or
    recovered, the final objective and the time taken."""

    images: torch.Tensor
    labels: torch.Tensor
    loss: float
    steps: int
    seconds: float


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of vertically and of horizontally neighbouring pixels (anisotropic TV)."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def gradient_distance(
    simulated: torch.Tensor, observed: torch.Tensor, mask: torch.Tensor | None, *, cosine: bool
) -> torch.Tensor:
    """Squared L2 distance (DLG) or 1 − cosine similarity (Inverting Gradients) over the received entries."""
    if mask is not None:
        simulated, observed = simulated[mask], observed[mask]
    if cosine:
        return 1 - (simulated * observed).sum() / (simulated.norm() * observed.norm() + 1e-12)
    return (simulated - observed).pow(2).sum()


def invert_gradients(
    model: nn.Module,
    observation: Observation,
    config: GradLeakConfig,
    input_shape: tuple[int, int, int],
    num_classes: int,
) -> Generator[LeakEvent, None, LeakResult]:
    """Reconstruct the client's batch from the observation, yielding `config.events` progress events.

    Args:
        model: the global model (the attacker's copy; not modified).
        observation: what the server received (`observe`).
        config: the attack and its settings (the attacker knows E and η).
        input_shape: (C, H, W) of the data; num_classes: of the model's output.

    Returns:
        The `LeakResult` with the best iterate by objective (as `breaching` keeps it), clamped to [0, 1].
    """
    c = config
    start = time.perf_counter()
    model = copy.deepcopy(model).eval()
    for p in model.parameters():
        p.requires_grad_(True)
    b = observation.batch_size
    generator = torch.Generator().manual_seed(c.seed)
    kind = c.attack_kind
    steps, lr = c.attack_steps(), c.attack_lr()
    observed = observation.gradient.detach()
    if kind is LeakAttack.DLG:  # DLG's initialisation: images and label logits from N(0, 1)
        x = torch.randn((b, *input_shape), generator=generator).requires_grad_(True)
        label_logits = torch.randn((b, num_classes), generator=generator).requires_grad_(True)
        variables = [x, label_logits]
    else:
        x = torch.rand((b, *input_shape), generator=generator).requires_grad_(True)
        labels = recover_labels(model, observation)
        variables = [x]

    def current_labels() -> torch.Tensor:
        return F.softmax(label_logits, dim=1) if kind is LeakAttack.DLG else labels

    def objective() -> torch.Tensor:
        simulated = simulate_update(
            model,
            x,
            current_labels(),
            steps=observation.local_steps,
            lr=observation.local_lr,
            create_graph=True,
        )
        loss = gradient_distance(simulated, observed, observation.mask, cosine=kind is LeakAttack.IG)
        if kind is LeakAttack.IG and c.tv > 0:
            loss = loss + c.tv * total_variation(x)
        return loss

    step_fn: Callable[[], float]
    if kind is LeakAttack.IG:
        optimizer: torch.optim.Optimizer = torch.optim.Adam(variables, lr=lr)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=[int(steps * 3 / 8), int(steps * 5 / 8), int(steps * 7 / 8)], gamma=0.1
        )

        def step_fn() -> float:
            optimizer.zero_grad()
            loss = objective()
            (grad,) = torch.autograd.grad(loss, [x])
            x.grad = grad.sign() if c.signed else grad
            optimizer.step()
            scheduler.step()
            with torch.no_grad():
                x.clamp_(0, 1)
            return float(loss.detach())
    else:
        optimizer = torch.optim.LBFGS(variables, lr=lr, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = objective()
            grads = torch.autograd.grad(loss, variables)
            for v, g in zip(variables, grads, strict=True):
                v.grad = g
            return loss.detach()

        def step_fn() -> float:
            return float(optimizer.step(closure))

    best_loss, best = math.inf, x.detach().clone()
    report = max(1, steps // c.events)
    loss = math.inf
    for step in range(1, steps + 1):
        loss = step_fn()
        if not math.isfinite(loss):
            break
        if loss < best_loss:
            best_loss, best = loss, x.detach().clone()
        if step % report == 0 or step == steps:
            yield LeakEvent(step, steps, loss, best.clamp(0, 1))
    final_labels = current_labels().argmax(1) if kind is LeakAttack.DLG else labels
    return LeakResult(
        images=best.clamp(0, 1), labels=final_labels.detach(), loss=best_loss, steps=steps,
        seconds=time.perf_counter() - start,
    )  # fmt: skip


# -- the whole experiment --------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class GradLeakResult:
    """Originals, reconstructions (paired with them), labels and the metrics per image."""

    config: GradLeakConfig
    originals: torch.Tensor  # (B, C, H, W)
    reconstructions: torch.Tensor  # (B, C, H, W), the i-th paired with the i-th original
    true_labels: list[int]
    recovered_labels: list[
        int
    ]  # the attack's labels (iDLG, IG: read off the gradient; DLG: argmax of its soft labels)
    psnr: list[float]
    ssim: list[float]
    loss: float
    seconds: float

    @property
    def labels_recovered(self) -> bool:
        """Whether the attack's labels are the batch's labels (as multisets: the order is not recoverable)."""
        return sorted(self.true_labels) == sorted(self.recovered_labels)

    def to_json(self) -> dict[str, Any]:
        def number(v: float) -> float | str:
            return v if math.isfinite(v) else str(v)  # JSON has no inf

        return {
            "description": self.config.describe(), "config": self.config.to_json(),
            "true_labels": self.true_labels, "recovered_labels": self.recovered_labels,
            "labels_recovered": self.labels_recovered, "psnr": [number(v) for v in self.psnr],
            "ssim": self.ssim, "mean_psnr": number(float(np.mean(self.psnr))),
            "mean_ssim": float(np.mean(self.ssim)), "loss": number(self.loss), "seconds": self.seconds,
        }  # fmt: skip


def scores(originals: torch.Tensor, images: torch.Tensor) -> tuple[torch.Tensor, list[float], list[float]]:
    """(the images paired with the originals, PSNR per image, SSIM per image)."""
    paired = match_images(originals, images)
    return paired, psnr(originals, paired).tolist(), ssim(originals, paired).tolist()


def gradient_leakage(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: GradLeakConfig,
    *,
    others: Sequence[tuple[torch.Tensor, torch.Tensor]] = (),
) -> Generator[LeakEvent, None, GradLeakResult]:
    """Observe the client's update on (x, y) under the defense, invert it, and score the reconstructions.

    Raises:
        InvalidInputError: a batch larger than `config.batch_size` allows or images outside [0, 1].
    """
    if x.shape[0] != config.batch_size or y.shape != (x.shape[0],):
        raise InvalidInputError(
            f"Give a batch of {config.batch_size} images and as many labels, got {tuple(x.shape)}."
        )
    if x.min() < 0 or x.max() > 1:
        raise InvalidInputError("Images must be in [0, 1].")
    observation = observe(model, x, y, config, others=others)
    with torch.no_grad():
        num_classes = int(model(x[:1]).shape[1])
    c, h, w = (int(s) for s in x.shape[1:])
    result = yield from invert_gradients(model, observation, config, (c, h, w), num_classes)
    paired, p, s = scores(x, result.images)
    return GradLeakResult(
        config=config, originals=x.detach().clone(), reconstructions=paired, true_labels=y.tolist(),
        recovered_labels=result.labels.tolist(), psnr=p, ssim=s, loss=result.loss, seconds=result.seconds,
    )  # fmt: skip
