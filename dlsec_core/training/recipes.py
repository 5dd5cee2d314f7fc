"""Training recipes: the one hook through which a training-time defense changes the training loop.

A recipe can
- `prepare` the model, optimizer and data loader before the first step (DP-SGD wraps all three with Opacus);
- define the per-batch `loss` (adversarial training attacks the batch first, TRADES adds a KL term);
- report extra per-epoch metrics and ask to stop (privacy budget spent, robust accuracy);
- `finalize` the trained model back into a plain `nn.Module` (Opacus's `_module`).
The standard recipe is plain empirical risk minimisation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from dlsec_core.config import Config
from dlsec_core.errors import InvalidInputError, NotFoundError

#: (model, x, y, generator) -> (loss to minimise, logits for train accuracy)
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], tuple[Any, torch.Tensor]]


@dataclass
class TrainingSetup:
    """The mutable objects a recipe may replace in `prepare`, and held-out data it may evaluate on."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loader: DataLoader[tuple[torch.Tensor, ...]]
    epochs: int
    generator: torch.Generator
    #: held-out images (N, C, H, W) and labels (N,) on CPU (the dataset's test split), for per-epoch metrics
    #: such as robust accuracy; never trained on. None when the caller has none.
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None
    #: replaces `Recipe.loss` for this run when set (DP-SGD's loss goes through Opacus's per-run criterion)
    loss_fn: LossFn | None = None
    #: per-run objects a recipe keeps between its hooks (Opacus's accountant); recipes themselves are frozen configs
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Recipe(Config):
    """Base recipe (standard training). Subclasses are frozen configs of their own hyperparameters, declared
    with `param` and validated by `Config`; rules between fields go in `cross_check`."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    #: MITRE ATLAS technique and mitigation ids (or `DLSEC.` local tags) this recipe demonstrates: see
    #: dlsec_core/atlas.py.
    atlas_ids: ClassVar[tuple[str, ...]] = ()
    #: training settings this recipe works best with (the UI's defaults), e.g. DP-SGD's larger batches
    suggested: ClassVar[dict[str, Any]] = {}

    def prepare(self, setup: TrainingSetup) -> TrainingSetup:
        """Called once before training; may wrap or replace the model, optimizer and loader."""
        return setup

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch loss to minimise and the logits used for train accuracy."""
        logits = model(x)
        return F.cross_entropy(logits, y), logits

    def epoch_metrics(self, setup: TrainingSetup) -> dict[str, Any]:
        """Extra numbers reported after each epoch (e.g. epsilon spent). Key "stop" = a reason to stop now."""
        return {}

    def finalize(self, setup: TrainingSetup) -> nn.Module:
        """The trained model as a plain module (undo any wrapping done in `prepare`)."""
        return setup.model

    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


R = TypeVar("R", bound=type[Recipe])
RECIPES: dict[str, type[Recipe]] = {}


def register_recipe(cls: R) -> R:
    if not cls.name or cls.name in RECIPES:
        raise ValueError(f"recipe name {cls.name!r} is empty or registered twice")
    RECIPES[cls.name] = cls
    return cls


@register_recipe
@dataclass(frozen=True, kw_only=True)
class StandardRecipe(Recipe):
    """Plain training: minimise the cross-entropy on clean inputs."""

    name = "standard"
    title = "Standard (no defense)"
    atlas_ids = ("DLSEC.no-mitigation",)  # the undefended baseline (a local tag: no ATLAS mitigation applied)


def get_recipe(name: str, **params: Any) -> Recipe:
    if name not in RECIPES:
        raise NotFoundError(f"No training recipe {name!r}; choose one of {', '.join(RECIPES)}.")
    known = {f.name for f in dataclasses.fields(RECIPES[name]) if f.init}
    unknown = sorted(set(params) - known)
    if unknown:
        raise InvalidInputError(f"The recipe {name} has no parameter(s) {', '.join(unknown)}.")
    return RECIPES[name](**params)
