"""Training: one loop (a generator of events) and pluggable recipes (standard now; adversarial, DP-SGD next)."""

from dlsec_core.training.loop import TrainConfig, TrainEvent, TrainResult, train
from dlsec_core.training.recipes import RECIPES, Recipe, StandardRecipe, get_recipe, register_recipe

__all__ = [
    "RECIPES",
    "Recipe",
    "StandardRecipe",
    "TrainConfig",
    "TrainEvent",
    "TrainResult",
    "get_recipe",
    "register_recipe",
    "train",
]
