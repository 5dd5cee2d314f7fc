"""Training: one loop (a generator of events) and pluggable recipes (standard, adversarial training; DP-SGD next).

Importing this package registers every recipe in `RECIPES`, including those defined under `dlsec_core.defenses`.
"""

import dlsec_core.defenses.adversarial_training  # noqa: F401  (registers fgsm-rs, pgd, trades)
import dlsec_core.defenses.smoothing  # noqa: F401  (registers gaussian-noise)
import dlsec_core.privacy.dp_sgd  # noqa: F401  (registers dp-sgd)
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
