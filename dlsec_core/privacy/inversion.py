"""Model inversion: what does the model think a class looks like?

Fredrikson, Jha, Ristenpart, "Model Inversion Attacks that Exploit Confidence Information and Basic
Countermeasures", CCS 2015 (MI-Face). Gradient descent on the *input*, from a featureless start, on the cost

    c(x) = ℓ(p_c(x)) + tv_weight · TV(x) + l2_weight · mean(x²),    x clamped to [0, 1] after every step,

where p_c is the model's softmax probability of the target class c. The class term ℓ is, by default,
-log p_c (`objective="cross-entropy"`, whose gradient does not vanish while p_c is still tiny); MI-Face's own
cost is 1 - p_c (`objective="1-p"`). The priors are what the paper calls auxiliary terms: the total variation
TV(x) (mean absolute difference of neighbouring pixels) favours smooth images, the L2 term (mean squared pixel)
dark backgrounds; without them the result is an adversarial pattern rather than a picture.

All target classes are inverted as one batch. The cost is a sum of per-image terms and both optimisers (Adam,
signed gradient) act element-wise, so every image follows the trajectory it would follow alone (up to float
rounding, which TV's kink at ties can amplify: after Adam's first ±lr step from a flat start many neighbours tie).
An image stops as soon as its p_c exceeds `stop_at` (MI-Face's threshold γ): that iterate is kept and no more
steps are spent on it. The model is used in eval mode (its mode is restored) and its parameter gradients are
never touched.

Cost: one forward and one input-gradient pass of the model per step, which is nearly all of the time. 100 steps
(the default) for the 10 classes of the default cnn at 28x28 took 0.55-0.9 s on one shared CPU thread; with
`stop_at=0.99` a trained model stops after 3-6 steps (0.07 s), with noisier images.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from dlsec_core.config import Config, param
from dlsec_core.data.builtin import Dataset
from dlsec_core.errors import InvalidInputError
from dlsec_core.models.modes import device_of, eval_mode

OPTIMIZERS = ("adam", "sign")
OBJECTIVES = ("cross-entropy", "1-p")
MAX_STEPS = 10_000
MAX_TARGETS = 1000
_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8


@dataclass(frozen=True, kw_only=True)
class InversionConfig(Config):
    """Hyperparameters of MI-Face model inversion (see the module docstring for the cost).

    Checked from the `param` metadata (`Config.validate`): every bad setting named in one error."""

    title: ClassVar[str] = "Inversion settings"

    steps: int = param(100, "Steps (at most)", min=1, max=MAX_STEPS, step=10)
    lr: float = param(0.1, "Step size (pixel units)", min=0.0, min_open=True, max=10.0, step=0.005)
    optimizer: str = param(
        "adam", "Optimiser", options=OPTIMIZERS, help="Adam, or x ← x - lr · sign(∇c(x)) (signed gradient)."
    )
    objective: str = param(
        "cross-entropy",
        "Class term",
        options=OBJECTIVES,
        help="-log p_c (cross-entropy), or MI-Face's 1 - p_c (weak gradient while p_c is small).",
    )
    tv_weight: float = param(0.3, "Total-variation weight (smoothness prior)", min=0.0, max=1000.0, step=0.05)
    l2_weight: float = param(0.1, "L2 weight (dark-background prior)", min=0.0, max=1000.0, step=0.05)
    start: float = param(0.5, "Starting grey level", min=0.0, max=1.0, step=0.05)
    init_noise: float = param(
        0.0, "Noise on the start (std, pixel units)", min=0.0, max=1.0, step=0.01,
        help="Gaussian noise added to the grey start, drawn with the seed; 0 = the same start for every class.",
    )  # fmt: skip
    stop_at: float | None = param(
        None,
        "Stop an image once p_c exceeds (empty = run all steps)",
        min=0.0,
        max=1.0,
        step=0.01,
        min_open=True,
        max_open=True,
    )
    seed: int = param(0, "Seed (for the start noise)", min=0, max=2**63 - 1, step=1, describe=False)

    def describe(self) -> str:
        """One line naming the method and every setting that shapes the images."""
        term = "-log p_c" if self.objective == "cross-entropy" else "(1 - p_c)"
        opt = "Adam" if self.optimizer == "adam" else "signed gradient"
        noise = f" + N(0, {self.init_noise:g}²)" if self.init_noise > 0 else ""
        stop = f", stop at p_c > {self.stop_at:g}" if self.stop_at is not None else ""
        return (
            f"MI-Face model inversion (Fredrikson et al. 2015): minimise {term} + {self.tv_weight:g}·TV "
            f"+ {self.l2_weight:g}·L2 by {opt} (step {self.lr:g}, up to {self.steps} steps{stop}) "
            f"from grey {self.start:g}{noise}"
        )


@dataclass(frozen=True, eq=False)
class InversionResult:
    """One reconstruction per target class. Tensors are detached and on CPU."""

    images: torch.Tensor  # (K, C, H, W) in [0, 1]
    target_classes: torch.Tensor  # (K,) int64
    probabilities: torch.Tensor  # (K, num_classes) softmax of the model on `images`
    steps: torch.Tensor  # (K,) int64 steps taken per image (fewer than config.steps when stopped early)
    config: InversionConfig
    seconds: float

    @property
    def target_probability(self) -> torch.Tensor:
        """(K,) p_c: the model's probability of each image's target class."""
        return self.probabilities.gather(1, self.target_classes.view(-1, 1)).squeeze(1)

    @property
    def predicted(self) -> torch.Tensor:
        return self.probabilities.argmax(dim=1)

    @property
    def success(self) -> torch.Tensor:
        """(K,) bool: the model classifies the reconstruction as its target class."""
        return self.predicted == self.target_classes

    @property
    def description(self) -> str:
        return self.config.describe()

    def to_records(self) -> list[dict[str, Any]]:
        p_c = self.target_probability
        return [
            {
                "target": int(self.target_classes[i]), "p_target": float(p_c[i]), "predicted": int(self.predicted[i]),
                "steps": int(self.steps[i]), "total_variation": float(total_variation(self.images[i : i + 1])[0]),
            }
            for i in range(self.images.shape[0])
        ]  # fmt: skip


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """(N,) anisotropic total variation: mean absolute difference of vertical and horizontal neighbours."""
    dv = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().flatten(1).sum(1)
    dh = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().flatten(1).sum(1)
    return (dv + dh) / x[0].numel()


def invert(
    model: nn.Module,
    target_classes: Sequence[int],
    input_shape: Sequence[int],
    *,
    config: InversionConfig | None = None,
) -> InversionResult:
    """Reconstruct a representative input for each target class (MI-Face), all classes as one batch.

    Args:
        model: a classifier returning logits for inputs in [0, 1]; used in eval mode, its mode is restored.
        target_classes: the classes to invert (repeats allowed, e.g. with start noise).
        input_shape: (C, H, W) the model expects.
        config: the hyperparameters (defaults: `InversionConfig()`).

    Returns:
        The reconstructions (K, C, H, W) in [0, 1] with the model's probabilities on them, on CPU.
    """
    config = config or InversionConfig()
    start_time = time.perf_counter()
    targets = _check_targets(target_classes)
    shape = _check_shape(input_shape)
    device = device_of(model)
    k = targets.shape[0]
    gen = torch.Generator().manual_seed(config.seed)
    # Drawn on the CPU: the same seed gives the same start on every device.
    x = torch.full((k, *shape), config.start) + config.init_noise * torch.randn((k, *shape), generator=gen)
    x = x.clamp(0, 1).to(device)
    steps = torch.full((k,), config.steps, dtype=torch.long)
    with eval_mode(model), torch.enable_grad():
        num_classes = _check_logits(model, x[:1], shape)
        if int(targets.max()) >= num_classes:
            raise InvalidInputError(
                f"Target classes must be below the model's {num_classes} classes, got {int(targets.max())}."
            )
        _optimise(model, x, targets.to(device), steps, config)
        with torch.no_grad():
            probs = F.softmax(model(x), dim=1).cpu()
    return InversionResult(
        images=x.detach().cpu(),
        target_classes=targets,
        probabilities=probs,
        steps=steps,
        config=config,
        seconds=time.perf_counter() - start_time,
    )


def _optimise(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: torch.Tensor, config: InversionConfig
) -> None:
    """Run the descent in place on `x` (K, C, H, W); `steps` (K,) gets the steps each image took."""
    # The images still being optimised, compacted (with their Adam moments) whenever some stop.
    idx = torch.arange(x.shape[0], device=x.device)
    xa, ya = x.clone(), y
    m1, m2 = torch.zeros_like(x), torch.zeros_like(x)  # Adam's moment estimates
    b1, b2 = _ADAM_BETAS
    for t in range(1, config.steps + 1):
        xa.requires_grad_(True)
        log_p = F.log_softmax(model(xa), dim=1).gather(1, ya.view(-1, 1)).squeeze(1)  # (A,)
        class_term = -log_p if config.objective == "cross-entropy" else 1 - log_p.exp()
        prior = config.tv_weight * total_variation(xa) + config.l2_weight * xa.square().flatten(1).mean(1)
        # A sum of per-image costs: each image's gradient is the gradient of its own cost.
        (grad,) = torch.autograd.grad((class_term + prior).sum(), xa)
        xa = xa.detach()
        if config.stop_at is not None:
            done = log_p.detach() > math.log(config.stop_at)
            if bool(done.any()):  # these keep the iterate that crossed the threshold, after t - 1 steps
                x[idx[done]] = xa[done]
                steps[idx[done].cpu()] = t - 1
                keep = ~done
                idx, xa, ya, grad, m1, m2 = idx[keep], xa[keep], ya[keep], grad[keep], m1[keep], m2[keep]
                if idx.numel() == 0:
                    return
        if config.optimizer == "adam":
            m1.mul_(b1).add_(grad, alpha=1 - b1)
            m2.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            # Every active image has taken t - 1 steps: all started together and none restarts.
            update = (m1 / (1 - b1**t)) / ((m2 / (1 - b2**t)).sqrt_() + _ADAM_EPS)
        else:
            update = grad.sign()
        xa = (xa - config.lr * update).clamp_(0, 1)
    x[idx] = xa


def _check_targets(target_classes: Sequence[int]) -> torch.Tensor:
    if isinstance(target_classes, torch.Tensor):
        if target_classes.dtype.is_floating_point or target_classes.dtype == torch.bool:
            raise InvalidInputError("Target classes must be integers.")
        values: list[Any] = target_classes.reshape(-1).tolist()
    elif isinstance(target_classes, str | bytes) or not isinstance(target_classes, Sequence):
        raise InvalidInputError(f"Give the target classes as a list of integers, got {target_classes!r}.")
    else:
        values = list(target_classes)
    if not 1 <= len(values) <= MAX_TARGETS:
        raise InvalidInputError(f"Give from 1 to {MAX_TARGETS} target classes, got {len(values)}.")
    bad = [v for v in values if not _is_int(v) or v < 0]
    if bad:
        raise InvalidInputError(f"Target classes must be integers >= 0, got {bad[0]!r}.")
    return torch.tensor([int(v) for v in values], dtype=torch.long)


def _check_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(input_shape) if isinstance(input_shape, Sequence | torch.Size) else ()
    if (
        len(shape) != 3
        or not all(_is_int(s) and s >= 1 for s in shape)
        or shape[0] > 4
        or max(shape[1:]) > 512
    ):
        raise InvalidInputError(
            f"The input shape must be (channels<=4, height, width) with sides up to 512, got {input_shape!r}."
        )
    return (int(shape[0]), int(shape[1]), int(shape[2]))


def _check_logits(model: nn.Module, x: torch.Tensor, shape: tuple[int, int, int]) -> int:
    """The model's number of classes, from one forward pass; a clear error when it does not fit the shape."""
    try:
        with torch.no_grad():
            logits = model(x)
    except RuntimeError as err:
        raise InvalidInputError(f"The model does not accept inputs of shape {shape}: {err}") from err
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise InvalidInputError(
            f"The model must output one score per class, (N, classes), got {tuple(logits.shape)}."
        )
    return int(logits.shape[1])


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def class_means(dataset: Dataset, classes: Sequence[int]) -> torch.Tensor:
    """(K, C, H, W): the average training image of each class, the reference a reconstruction is compared with."""
    return torch.stack(
        [dataset.x_train[dataset.y_train == k].mean(0) for k in _check_targets(classes).tolist()]
    )
