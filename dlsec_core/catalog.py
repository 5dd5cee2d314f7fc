"""The catalog of algorithms: the one module that imports every training recipe's implementation and hands them
out by name (the way Opacus's `accountants/registry.py` imports its accountants and maps names to them).

Packages register nothing when imported: `dlsec_core.training` defines the `Recipe` protocol and its registry,
`defenses`, `privacy` and `theft` define recipes (adversarial training, Gaussian noise, DP-SGD, watermarking) on top of it, and whoever
needs "the recipe called X" asks here, so the registry is complete whatever was imported before.
(Studies, the layer above, have their own catalog: `dlsec_core.studies.catalog`.)
"""

from __future__ import annotations

from typing import Any

from dlsec_core.defenses.adversarial_training import FGSMRSRecipe, PGDATRecipe, TRADESRecipe
from dlsec_core.defenses.smoothing import GaussianNoiseRecipe
from dlsec_core.privacy.dp_sgd import DPSGDRecipe
from dlsec_core.theft.watermark import WatermarkRecipe
from dlsec_core.training.recipes import RECIPES, Recipe, StandardRecipe
from dlsec_core.training.recipes import get_recipe as _get_recipe

IMPLEMENTATIONS: tuple[type[Recipe], ...] = (
    StandardRecipe, FGSMRSRecipe, PGDATRecipe, TRADESRecipe, GaussianNoiseRecipe, DPSGDRecipe, WatermarkRecipe,
)  # fmt: skip
assert all(RECIPES.get(cls.name) is cls for cls in IMPLEMENTATIONS)  # each registered itself under its name

__all__ = ["IMPLEMENTATIONS", "RECIPES", "get_recipe"]


def get_recipe(name: str, **params: Any) -> Recipe:
    """A registered training recipe by name with its hyperparameters, e.g. `get_recipe("dp-sgd", target_epsilon=4)`."""
    return _get_recipe(name, **params)
