"""Evaluate a model without leaving a trace on its train/eval mode."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def eval_mode(*models: nn.Module) -> Iterator[None]:
    """Put every submodule of `models` in eval mode, then restore each one's own mode.

    Restoring only the top module would be wrong for wrappers: `nn.Sequential(transform, model).train(False)`
    followed by `.train(True)` flips the wrapped, possibly shared, model into training mode.
    """
    saved = [(m, m.training) for model in models for m in model.modules()]
    for model in models:
        model.eval()
    try:
        yield
    finally:
        for m, was_training in saved:
            m.training = was_training


def device_of(model: nn.Module) -> torch.device:
    """The device of a model's parameters (CPU for a parameter-free module)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))
