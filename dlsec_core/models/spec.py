"""A model is rebuilt from a JSON-able spec: architecture, input shape, classes, hyperparameters, normalization.

Pixels are in [0, 1] everywhere; normalization is the first layer *inside* the model, so an attack's epsilon is
always in pixel units.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from dlsec_core.errors import InvalidInputError
from dlsec_core.models.architectures import ARCHITECTURES

MAX_HPARAM = 4096  # widths and depths of our small architectures; bounds what an uploaded spec can ask for
MAX_DEPTH = 16


class Normalize(nn.Module):
    """(x - mean) / std per channel, as a layer, so the model's input stays in pixel units [0, 1]."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        # Buffers, not parameters: they travel with the state dict but are never trained.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Everything needed to rebuild a model's structure (weights live elsewhere)."""

    arch: str
    input_shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int
    hparams: dict[str, Any] = field(default_factory=dict)
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise InvalidInputError(
                f"Unknown architecture {self.arch!r}; choose one of {', '.join(sorted(ARCHITECTURES))}."
            )
        shape = tuple(int(s) for s in self.input_shape)
        if len(shape) != 3 or min(shape) < 1 or shape[0] > 4 or max(shape[1:]) > 512:
            raise InvalidInputError(
                f"Input shape must be (channels<=4, height, width) with sides up to 512, got {self.input_shape}."
            )
        if not 2 <= int(self.num_classes) <= 1000:
            raise InvalidInputError(f"Number of classes must be between 2 and 1000, got {self.num_classes}.")
        mean = tuple(float(m) for m in self.mean)
        std = tuple(float(s) for s in self.std)
        if len(mean) not in (1, shape[0]) or len(std) not in (1, shape[0]):
            raise InvalidInputError("Normalization mean/std need one value, or one per channel.")
        if any(s <= 0 for s in std):
            raise InvalidInputError(f"Normalization std must be positive, got {std}.")
        unknown = set(self.hparams) - set(ARCHITECTURES[self.arch].defaults)
        if unknown:
            raise InvalidInputError(f"Unknown hyperparameters for {self.arch}: {', '.join(sorted(unknown))}.")
        for key, value in self.hparams.items():
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_HPARAM:
                raise InvalidInputError(
                    f"Hyperparameter {key} must be an integer from 1 to {MAX_HPARAM}, got {value!r}."
                )
        if self.hparams.get("depth", 1) > MAX_DEPTH:
            raise InvalidInputError(f"depth must be at most {MAX_DEPTH}, got {self.hparams['depth']}.")
        object.__setattr__(self, "input_shape", shape)
        object.__setattr__(self, "num_classes", int(self.num_classes))
        object.__setattr__(self, "mean", mean * shape[0] if len(mean) == 1 else mean)
        object.__setattr__(self, "std", std * shape[0] if len(std) == 1 else std)
        object.__setattr__(self, "hparams", {**ARCHITECTURES[self.arch].defaults, **self.hparams})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        if not isinstance(d, dict):
            raise InvalidInputError("A model spec must be a JSON object.")
        missing = {"arch", "input_shape", "num_classes"} - set(d)
        if missing:
            raise InvalidInputError(f"The model spec lacks {', '.join(sorted(missing))}.")
        extra = set(d) - {"arch", "input_shape", "num_classes", "hparams", "mean", "std"}
        if extra:
            raise InvalidInputError(f"The model spec has unknown fields: {', '.join(sorted(extra))}.")
        try:
            return cls(
                arch=str(d["arch"]),
                input_shape=tuple(int(v) for v in d["input_shape"]),  # type: ignore[arg-type]
                num_classes=int(d["num_classes"]),
                hparams=dict(d.get("hparams") or {}),
                mean=tuple(float(v) for v in d.get("mean", (0.0,))),
                std=tuple(float(v) for v in d.get("std", (1.0,))),
            )
        except (TypeError, ValueError) as err:
            if isinstance(err, InvalidInputError):
                raise
            raise InvalidInputError(f"The model spec has a field of the wrong type: {err}.") from err

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as err:
            raise InvalidInputError(
                f"The model spec is not valid JSON: {err.msg} (line {err.lineno})."
            ) from err


def build_model(spec: ModelSpec) -> nn.Module:
    """A freshly initialised model for `spec` (on CPU; the caller moves it): Normalize, then the architecture."""
    body = ARCHITECTURES[spec.arch].builder(spec.input_shape, spec.num_classes, **spec.hparams)
    return nn.Sequential(Normalize(spec.mean, spec.std), body)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
