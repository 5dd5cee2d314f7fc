"""Training: one loop (a generator of events) and the `Recipe` protocol with its registry.

Recipes live with their algorithm (`defenses`, `privacy`) and import this package, never the other way round;
importing it registers nothing beyond the standard recipe. For "the recipe called X", ask `dlsec_core.catalog`.
"""

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
