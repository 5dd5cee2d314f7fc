"""Small architectures that train in seconds on 2 CPU cores and that Opacus can make private (no BatchNorm).

- `logreg`: softmax regression, the linear model of Goodfellow, Shlens, Szegedy 2015 ("Explaining and Harnessing
  Adversarial Examples"), which FGSM fools almost always at eps 0.25 on MNIST.
- `mlp`: fully connected ReLU network.
- `cnn`: two conv + two fc layers, the usual MNIST baseline (default).
- `lenet-sigmoid`: the small sigmoid LeNet of the gradient-leakage papers (Zhu et al. 2019, "Deep Leakage from
  Gradients"; Zhao et al. 2020, iDLG), the model gradient inversion is demonstrated on.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ArchInfo:
    name: str
    builder: Builder
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)
    #: the architecture Opacus's `ModuleValidator.fix` turns this one into (BatchNorm -> GroupNorm), if any
    dp_fix: str | None = None


ARCHITECTURES: dict[str, ArchInfo] = {}


def register_architecture(
    name: str, description: str, *, dp_fix: str | None = None, **defaults: Any
) -> Callable[[Builder], Builder]:
    """Register `builder(input_shape, num_classes, **hparams) -> nn.Module` under `name`."""

    def deco(builder: Builder) -> Builder:
        if name in ARCHITECTURES:
            raise ValueError(f"architecture {name!r} registered twice")
        ARCHITECTURES[name] = ArchInfo(name, builder, description, dict(defaults), dp_fix)
        return builder

    return deco


@register_architecture("logreg", "Softmax regression (one linear layer): Goodfellow's linear model.")
def logreg(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    c, h, w = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, num_classes))


@register_architecture("mlp", "Fully connected ReLU network.", hidden=256, depth=2)
def mlp(input_shape: tuple[int, int, int], num_classes: int, hidden: int = 256, depth: int = 2) -> nn.Module:
    c, h, w = input_shape
    layers: list[nn.Module] = [nn.Flatten()]
    width = c * h * w
    for _ in range(int(depth)):
        layers += [nn.Linear(width, int(hidden)), nn.ReLU()]
        width = int(hidden)
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def _cnn(
    input_shape: tuple[int, int, int],
    num_classes: int,
    channels1: int,
    channels2: int,
    hidden: int,
    norm: str,
) -> nn.Module:
    """Conv(3x3) [-> norm] -> ReLU -> MaxPool, twice, then two fully connected layers.

    `norm` is "none", "batch" (BatchNorm2d: Opacus refuses it, a sample's output depends on its batch) or
    "group" (GroupNorm with min(32, C) groups: exactly what Opacus's `ModuleValidator.fix` swaps BatchNorm for).
    """
    c, h, w = input_shape
    layers: list[nn.Module] = []
    for c_in, c_out in ((c, int(channels1)), (int(channels1), int(channels2))):
        layers.append(nn.Conv2d(c_in, c_out, 3, padding=1))
        if norm == "batch":
            layers.append(nn.BatchNorm2d(c_out))
        elif norm == "group":
            layers.append(nn.GroupNorm(min(32, c_out), c_out))
        layers += [nn.ReLU(), nn.MaxPool2d(2)]
    features = nn.Sequential(*layers, nn.Flatten())
    with torch.no_grad():  # (1, C, H, W) -> (1, channels2 * H//4 * W//4)
        flat = features.eval()(torch.zeros(1, c, h, w)).shape[1]
    features.train()
    return nn.Sequential(
        *features, nn.Linear(flat, int(hidden)), nn.ReLU(), nn.Linear(int(hidden), num_classes)
    )


_CNN_DEFAULTS: dict[str, Any] = {"channels1": 32, "channels2": 64, "hidden": 128}
for _name, _norm, _fix, _description in (
    ("cnn", "none", None, "Two conv + two fully connected layers (default)."),
    (
        "cnn-bn",
        "batch",
        "cnn-gn",
        "The cnn with BatchNorm after each conv: Opacus cannot train it with DP (fix: cnn-gn).",
    ),
    (
        "cnn-gn",
        "group",
        None,
        "The cnn with GroupNorm after each conv (DP-compatible replacement of cnn-bn).",
    ),
):
    register_architecture(_name, _description, dp_fix=_fix, **_CNN_DEFAULTS)(
        functools.partial(_cnn, norm=_norm)
    )


@register_architecture(
    "lenet-sigmoid",
    "Sigmoid LeNet of the gradient-leakage papers (DLG, iDLG): three 5x5 convs and one fully connected layer.",
    channels=12,
)
def lenet_sigmoid(input_shape: tuple[int, int, int], num_classes: int, channels: int = 12) -> nn.Module:
    """The LeNet variant of Zhu et al. 2019 (DLG) and Zhao et al. 2020 (iDLG): Conv(5x5, stride 2) -> sigmoid,
    Conv(5x5, stride 2) -> sigmoid, Conv(5x5, stride 1) -> sigmoid, one linear layer; no pooling.

    Why a separate architecture: DLG matches gradients with L-BFGS, a second-order method that needs a smooth
    objective; its gradient (through the model's gradient) is smooth only with smooth activations (sigmoid, as in
    the papers), while ReLU and max pooling make it piecewise constant. Weights and biases are drawn uniformly from
    [-0.5, 0.5] as in DLG's code: PyTorch's default initialisation gives a sigmoid network small, nearly
    input-independent gradients, from which much less leaks.
    """
    c, h, w = input_shape
    k = int(channels)
    features = nn.Sequential(
        nn.Conv2d(c, k, 5, stride=2, padding=2), nn.Sigmoid(),
        nn.Conv2d(k, k, 5, stride=2, padding=2), nn.Sigmoid(),
        nn.Conv2d(k, k, 5, stride=1, padding=2), nn.Sigmoid(),
        nn.Flatten(),
    )  # fmt: skip
    with torch.no_grad():  # (1, C, H, W) -> (1, k * ceil(H/4) * ceil(W/4))
        flat = features(torch.zeros(1, c, h, w)).shape[1]
    model = nn.Sequential(*features, nn.Linear(flat, num_classes))
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.5, 0.5)
    return model
