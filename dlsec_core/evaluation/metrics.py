"""Clean accuracy and class probabilities, batched, without touching the model's train/eval mode for good."""

from __future__ import annotations

import torch
from torch import nn

from dlsec_core.models.modes import device_of, eval_mode


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Softmax probabilities (N, K) on CPU; the model's mode is restored afterwards."""
    device = device_of(model)
    with eval_mode(model):
        out = [
            model(x[i : i + batch_size].to(device)).softmax(1).cpu() for i in range(0, x.shape[0], batch_size)
        ]
    return torch.cat(out)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Fraction of `x` classified as `y`."""
    if x.shape[0] == 0:
        return float("nan")
    pred = predict_proba(model, x, batch_size).argmax(1)
    return int((pred == y.cpu()).sum()) / x.shape[0]
