"""DP-SGD (Abadi et al. 2016) as a training recipe, through Opacus, with the budget spent reported every epoch.

Per step: every example joins the batch independently with probability q = batch size / N (Poisson sampling, the
sampled Gaussian mechanism the accountants analyse); each example's gradient is clipped to L2 norm C; the sum gets
Gaussian noise N(0, σ²C²) and is divided by the expected batch size. ε is tracked by an explicit accountant (RDP or
PRV, never Opacus's implicit default) that is named on every number.

Opacus mode: ghost clipping (`grad_sample_mode="ghost"`, Li et al. 2022; Bu et al. 2023) computes per-example
gradient *norms* without materialising per-example gradients, then a second backward pass of the reweighted loss.
Measured on the default cnn, mnist5k, batch 512, 2 CPU threads (benchmarks/bench_dp.py, CPU time per epoch
against non-private training): dlsec's ghost wiring 1.7x, Opacus's make_private with ghost 2.2x, hooks 4.2x,
functorch 5.1x. Its result equals clipping one-example gradients one at a time (tests/core/test_dp_sgd.py).

We wire Opacus's parts ourselves instead of calling `PrivacyEngine.make_private`, for one reason: make_private
sets q = 1 / len(data_loader) (e.g. 1/16 for 4,000 images in batches of 256) while the user asked for
256 / 4,000; here q is exactly batch size / N, and the same q drives the sampler, the noise scale and the
accountant.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from opacus.data_loader import DPDataLoader
from opacus.grad_sample import GradSampleModuleFastGradientClipping
from opacus.optimizers import DPOptimizerFastGradientClipping
from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping
from opacus.validators import ModuleValidator
from torch import nn
from torch.utils.data import DataLoader

from dlsec_core.config import param
from dlsec_core.errors import InvalidInputError
from dlsec_core.models.architectures import ARCHITECTURES
from dlsec_core.models.modes import device_of
from dlsec_core.models.spec import ModelSpec, build_model
from dlsec_core.privacy.accounting import ACCOUNTANTS, RunSpend, epsilon_after, noise_for_target
from dlsec_core.text import plural
from dlsec_core.training.recipes import Recipe, TrainingSetup, register_recipe

# Ghost clipping's two backward passes go through module hooks while the inputs need no gradient: torch says so
# at every step. It is expected here (Opacus 1.6), not a problem, and would flood the CLI's and the server's logs.
warnings.filterwarnings(
    "ignore", message="Full backward hook is firing when gradients are computed", category=UserWarning
)

#: accountants offered for training (GDP's CLT approximation is not an upper bound: calculator only)
TRAIN_ACCOUNTANTS = ("rdp", "prv")


# -- what Opacus refuses, and the one-click fix ----------------------------------------------------------------
def dp_problems(spec: ModelSpec) -> list[str]:
    """Why Opacus cannot train this architecture with DP (empty when it can), as sentences."""
    errors = ModuleValidator.validate(build_model(spec), strict=False)
    return [str(e).strip() for e in errors]


def dp_fixed_spec(spec: ModelSpec) -> ModelSpec:
    """The DP-compatible twin of `spec` (BatchNorm -> GroupNorm, as Opacus's `ModuleValidator.fix` does)."""
    fix = ARCHITECTURES[spec.arch].dp_fix
    if fix is None:
        if dp_problems(spec):
            raise InvalidInputError(f"No DP-compatible variant of {spec.arch!r} is known.")
        return spec
    return ModelSpec(
        arch=fix, input_shape=spec.input_shape, num_classes=spec.num_classes, hparams=dict(spec.hparams),
        mean=spec.mean, std=spec.std,
    )  # fmt: skip


def check_sampling(n: int, batch_size: int, delta: float) -> int:
    """Refuse settings no DP-SGD run should use; return the DP data loader's steps per epoch, int(1 / q).

    The batch must fit in the N training images, and δ must be below 1/N: a mechanism that publishes one random
    record in full is (0, 1/N)-DP, so a larger δ permits exactly that.
    """
    if not isinstance(n, int) or n < 1:
        raise InvalidInputError(f"The dataset size N must be a positive integer, got {n!r}.")
    if not isinstance(batch_size, int) or not 1 <= batch_size <= n:
        raise InvalidInputError(
            f"The batch size must be from 1 to the {n} training images, got {batch_size!r}."
        )
    if delta >= 1 / n:
        raise InvalidInputError(
            f"δ = {delta:g} is not below 1/N = {1 / n:.2g} for N = {n} training images: that would allow leaking "
            f"a whole record. Use δ ≤ {10 ** math.floor(math.log10(0.1 / n)):g}."
        )
    return int(1 / (batch_size / n))  # DPDataLoader draws int(1/q) batches per epoch


# -- Opacus wiring ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class PrivateParts:
    """One DP-SGD run's Opacus objects; `sample_rate` is the q that the sampler, noise and accountant share."""

    module: GradSampleModuleFastGradientClipping
    optimizer: DPOptimizerFastGradientClipping
    loader: DPDataLoader
    criterion: DPLossFastGradientClipping
    accountant: Any  # opacus IAccountant
    sample_rate: float
    noise_multiplier: float
    max_grad_norm: float


def privatize(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader[tuple[torch.Tensor, ...]],
    *,
    noise_multiplier: float,
    max_grad_norm: float,
    accountant: str,
    generator: torch.Generator,
    noise_seed: int,
) -> PrivateParts:
    """Wrap a model, optimizer and loader for DP-SGD with ghost clipping; q = loader.batch_size / N exactly.

    `generator` drives Poisson sampling; the noise comes from a generator seeded with `noise_seed` on the model's
    device (the same seed gives the same run on CPU).
    """
    problems = ModuleValidator.validate(model, strict=False)
    if problems:
        raise InvalidInputError(
            "Opacus cannot train this model with DP: " + "; ".join(str(p).strip() for p in problems)
        )
    n = len(loader.dataset)  # type: ignore[arg-type]
    batch_size = int(loader.batch_size or 1)
    if not 1 <= batch_size <= n:
        raise InvalidInputError(
            f"The batch size must be from 1 to the {n} training images, got {batch_size}."
        )
    q = batch_size / n
    module = GradSampleModuleFastGradientClipping(
        model, batch_first=True, loss_reduction="mean", max_grad_norm=max_grad_norm, use_ghost_clipping=True
    )
    device = device_of(model)
    noise_gen = torch.Generator(device=device).manual_seed(noise_seed)
    dp_optimizer = DPOptimizerFastGradientClipping(
        optimizer, noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm,
        expected_batch_size=batch_size, loss_reduction="mean", generator=noise_gen,
    )  # fmt: skip
    acc = ACCOUNTANTS[accountant][0]()
    dp_optimizer.attach_step_hook(acc.get_optimizer_hook_fn(sample_rate=q))
    dp_loader = DPDataLoader(loader.dataset, sample_rate=q, generator=generator)
    criterion = DPLossFastGradientClipping(
        module, dp_optimizer, nn.CrossEntropyLoss(reduction="mean"), loss_reduction="mean"
    )
    return PrivateParts(
        module=module, optimizer=dp_optimizer, loader=dp_loader, criterion=criterion, accountant=acc,
        sample_rate=q, noise_multiplier=float(noise_multiplier), max_grad_norm=float(max_grad_norm),
    )  # fmt: skip


def _hooks_off(module: nn.Module) -> Any:
    """Context manager: the module's Opacus hooks disabled (an attack's input gradient must not count)."""

    class _Off:
        def __enter__(self) -> None:
            if isinstance(module, GradSampleModuleFastGradientClipping):
                module.disable_hooks()

        def __exit__(self, *exc: object) -> None:
            if isinstance(module, GradSampleModuleFastGradientClipping):
                module.enable_hooks()

    return _Off()


# -- the recipe ------------------------------------------------------------------------------------------------
@register_recipe
@dataclass(frozen=True, kw_only=True)
class DPSGDRecipe(Recipe):
    """Differentially private training: clip each example's gradient, add Gaussian noise, count ε.

    The training batch size is the *expected* batch (q = batch / N). Give the noise σ directly, or a target ε
    (σ is then calibrated so the planned epochs end at or below it). A budget (`max_epsilon`) stops training
    cleanly before the epoch that would exceed it. With `adv_eps` > 0 each batch is first perturbed by FGSM with a
    random start (Wong et al. 2020); the per-example clipping still bounds each example's influence, so the
    privacy analysis is unchanged.
    """

    name = "dp-sgd"
    title = "DP-SGD (differential privacy, Opacus)"
    paper = "Abadi et al. 2016, Deep Learning with Differential Privacy"
    atlas_ids = ("DLSEC.differential-privacy",)  # ATLAS has no entry for differential privacy
    #: measured on mnist5k, default cnn: 91 % test accuracy at ε = 5.2 (RDP, δ 1e-5) with σ 1.5 (benchmarks/bench_dp.py)
    suggested: ClassVar[dict[str, Any]] = {"batch_size": 512, "epochs": 15, "lr": 2e-2}

    noise_multiplier: float = param(
        1.5,
        "Noise multiplier σ (ignored when a target ε is set)",
        help="Std of the Gaussian noise added to the summed clipped gradients, in units of the clipping norm. "
        "More noise: less ε spent per step, lower accuracy.",
        min=0.0,
        min_open=True,
        max=100.0,
        step=0.1,
    )
    target_epsilon: float = param(
        0.0,
        "Target ε (0 = use σ as given)",
        help="Calibrate σ so that all planned epochs spend at most this ε (by the chosen accountant).",
        min=0.0,
        max=1000.0,
        step=0.5,
    )
    max_grad_norm: float = param(
        1.0,
        "Clipping norm C",
        help="Each example's gradient is scaled down to at most this L2 norm: it bounds one example's influence.",
        min=0.0,
        min_open=True,
        max=1e4,
        step=0.1,
    )
    delta: float = param(
        1e-5,
        "δ",
        help="Probability the ε guarantee may fail. Must be well below 1/N (N training images): a mechanism that "
        "publishes one random record in full is (0, 1/N)-DP. 1e-5 suits datasets up to ~100,000 images.",
        min=0.0,
        min_open=True,
        max=0.1,
        step=1e-6,
    )
    accountant: str = param(
        "rdp",
        "Accountant",
        help="RDP (Mironov 2017) or PRV (Gopi et al. 2021, tighter). Every ε shown names it.",
        options=TRAIN_ACCOUNTANTS,
    )
    max_epsilon: float = param(
        0.0,
        "Budget: stop before ε exceeds (0 = no budget)",
        help="Training stops cleanly after the last epoch that keeps ε within this budget.",
        min=0.0,
        max=1000.0,
        step=0.5,
    )
    adv_eps: float = param(
        0.0,
        "Adversarial training ε (0 = off)",
        help="Combine with FGSM-RS adversarial training at this L∞ ε (pixel units).",
        min=0.0,
        max=1.0,
        step=0.01,
    )

    def cross_check(self, problems: list[str]) -> None:
        super().cross_check(problems)
        if self.target_epsilon and self.max_epsilon and self.max_epsilon < self.target_epsilon:
            problems.append(
                f"the budget ε {self.max_epsilon:g} is below the target ε {self.target_epsilon:g}; "
                "training would stop before reaching the target"
            )

    def plan(self, n: int, batch_size: int, epochs: int) -> RunSpend:
        """The σ this run will use (given, or calibrated to the target ε) and the ε all planned epochs spend."""
        steps = check_sampling(n, batch_size, self.delta) * epochs
        q = batch_size / n
        if self.target_epsilon > 0:
            return noise_for_target(self.target_epsilon, q, steps, self.delta, accountant=self.accountant)
        return epsilon_after(self.noise_multiplier, q, steps, self.delta, accountant=self.accountant)

    def prepare(self, setup: TrainingSetup) -> TrainingSetup:
        n = len(setup.loader.dataset)  # type: ignore[arg-type]
        batch_size = int(setup.loader.batch_size or 1)
        q = batch_size / n
        sigma = self.plan(n, batch_size, setup.epochs).noise_multiplier
        if self.max_epsilon > 0:
            first = epsilon_after(sigma, q, int(1 / q), self.delta, accountant=self.accountant)
            if first.epsilon > self.max_epsilon:
                raise InvalidInputError(
                    f"One epoch alone would spend {first.describe()}, over the budget ε = {self.max_epsilon:g}: "
                    "raise σ, lower the batch size, or raise the budget."
                )
        seed = int(torch.randint(0, 2**62, (1,), generator=setup.generator))
        parts = privatize(
            setup.model, setup.optimizer, setup.loader, noise_multiplier=sigma, max_grad_norm=self.max_grad_norm,
            accountant=self.accountant, generator=setup.generator, noise_seed=seed,
        )  # fmt: skip
        setup.state["dp"] = parts
        setup.model, setup.optimizer, setup.loader = parts.module, parts.optimizer, parts.loader
        setup.loss_fn = self._private_loss(parts)
        return setup

    def _private_loss(self, parts: PrivateParts) -> Any:
        adversary = None
        if self.adv_eps > 0:
            from dlsec_core.defenses.adversarial_training import FGSMRSRecipe  # noqa: PLC0415 (avoid a cycle)

            adversary = FGSMRSRecipe(eps=self.adv_eps, robust_eval_images=0)

        def loss(
            model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
        ) -> tuple[Any, torch.Tensor]:
            if adversary is not None:
                with _hooks_off(model):
                    x = adversary.perturb(model, x, y, generator)
            logits = model(x)
            return parts.criterion(logits, y), logits

        return loss

    def spent(self, setup: TrainingSetup) -> dict[str, Any]:
        """ε spent so far by this run's accountant, with everything needed to reproduce it."""
        parts: PrivateParts = setup.state["dp"]
        steps = sum(s for _, _, s in parts.accountant.history)
        record: dict[str, Any] = {
            "accountant": self.accountant, "delta": self.delta, "noise_multiplier": parts.noise_multiplier,
            "sample_rate": parts.sample_rate, "max_grad_norm": parts.max_grad_norm, "dp_steps": steps,
        }  # fmt: skip
        record["epsilon"] = float(parts.accountant.get_epsilon(delta=self.delta)) if steps else 0.0
        return record

    def epoch_metrics(self, setup: TrainingSetup) -> dict[str, Any]:
        metrics = self.spent(setup)
        if self.adv_eps > 0:
            from dlsec_core.defenses.adversarial_training import FGSMRSRecipe  # noqa: PLC0415

            inner = TrainingSetup(
                _unwrap(setup.model), setup.optimizer, setup.loader, setup.epochs, setup.generator,
                x_val=setup.x_val, y_val=setup.y_val,
            )  # fmt: skip
            with _hooks_off(setup.model):  # the robust evaluation's gradients must not reach the DP optimizer
                metrics |= FGSMRSRecipe(eps=self.adv_eps).epoch_metrics(inner)
        if self.max_epsilon > 0:
            parts: PrivateParts = setup.state["dp"]
            steps_per_epoch = int(1 / parts.sample_rate)
            nxt = epsilon_after(
                parts.noise_multiplier, parts.sample_rate, metrics["dp_steps"] + steps_per_epoch, self.delta,
                accountant=self.accountant,
            )  # fmt: skip
            if nxt.epsilon > self.max_epsilon:
                metrics["stop"] = (
                    f"privacy budget: another epoch would reach ε = {nxt.epsilon:.3g} "
                    f"> budget {self.max_epsilon:g} ({ACCOUNTANTS[self.accountant][1]})"
                )
        return metrics

    def finalize(self, setup: TrainingSetup) -> nn.Module:
        """The plain model, Opacus's hooks and per-parameter attributes removed."""
        if isinstance(setup.model, GradSampleModuleFastGradientClipping):
            setup.model.cleanup()
        return _unwrap(setup.model)


def _unwrap(module: nn.Module) -> nn.Module:
    inner = module._module if isinstance(module, GradSampleModuleFastGradientClipping) else module
    assert isinstance(inner, nn.Module)
    return inner


def privacy_plan(recipe: DPSGDRecipe, n: int, config: Any) -> str:
    """One sentence before training: the sampling rate, σ and the ε the planned epochs will spend."""
    spend = recipe.plan(n, int(config.batch_size), int(config.epochs))
    how = (
        f"σ = {spend.noise_multiplier:.3g} calibrated for target ε = {recipe.target_epsilon:g}"
        if recipe.target_epsilon > 0
        else f"σ = {spend.noise_multiplier:g}"
    )
    budget = (
        f" The budget ε = {recipe.max_epsilon:g} stops it earlier if needed." if recipe.max_epsilon else ""
    )
    return (
        f"Planned: {plural(int(config.epochs), 'epoch')} × {plural(int(1 / spend.sample_rate), 'step')}, "
        f"sampling rate q = "
        f"{config.batch_size}/{n} = {spend.sample_rate:.4g}, {how}, clipping C = {recipe.max_grad_norm:g} → "
        f"{spend.describe()}.{budget}"
    )
