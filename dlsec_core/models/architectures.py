"""Small architectures that train in seconds on 2 CPU cores and that Opacus can make private (no BatchNorm).

- `logreg`: softmax regression, the linear model of Goodfellow, Shlens, Szegedy 2015 ("Explaining and Harnessing
  Adversarial Examples"), which FGSM fools almost always at eps 0.25 on MNIST.
- `mlp`: fully connected ReLU network.
- `cnn`: two conv + two fc layers, the usual MNIST baseline (default).
"""

from __future__ import annotations

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


ARCHITECTURES: dict[str, ArchInfo] = {}


def register_architecture(name: str, description: str, **defaults: Any) -> Callable[[Builder], Builder]:
    """Register `builder(input_shape, num_classes, **hparams) -> nn.Module` under `name`."""

    def deco(builder: Builder) -> Builder:
        if name in ARCHITECTURES:
            raise ValueError(f"architecture {name!r} registered twice")
        ARCHITECTURES[name] = ArchInfo(name, builder, description, dict(defaults))
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


@register_architecture(
    "cnn", "Two conv + two fully connected layers (default).", channels1=32, channels2=64, hidden=128
)
def cnn(
    input_shape: tuple[int, int, int],
    num_classes: int,
    channels1: int = 32,
    channels2: int = 64,
    hidden: int = 128,
) -> nn.Module:
    c, h, w = input_shape
    features = nn.Sequential(
        nn.Conv2d(c, int(channels1), 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(int(channels1), int(channels2), 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
    )
    with torch.no_grad():  # (1, C, H, W) -> (1, channels2 * H//4 * W//4)
        flat = features(torch.zeros(1, c, h, w)).shape[1]
    return nn.Sequential(
        *features, nn.Linear(flat, int(hidden)), nn.ReLU(), nn.Linear(int(hidden), num_classes)
    )
