"""Pure privacy accounting for DP-SGD (Abadi et al. 2016), every number labelled with its accountant.

Thin, validated wrappers over Opacus's accountants: RDP (Mironov 2017; Mironov, Talwar, Zhang 2019), PRV
(Gopi, Lee, Wutschitz 2021) and the Gaussian-DP CLT approximation (Dong, Roth, Su 2019). Opacus's own defaults
differ (`PrivacyEngine` uses PRV, `get_noise_multiplier` RDP), so the accountant is always an explicit argument
here and part of every result. Known value (Opacus's tests): σ 1.5, q 0.04, 2,250 steps, δ 1e-5 -> RDP ε ≈ 7.329.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

from opacus.accountants import GaussianAccountant, PRVAccountant, RDPAccountant
from opacus.accountants.accountant import IAccountant
from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent
from opacus.accountants.utils import get_noise_multiplier

from dlsec_core.errors import InvalidInputError

# Opacus's RDP warns when the best Rényi order is the largest one tried; that happens for the tiny σ a noise search
# tries on its way (and ε is then an upper bound, still valid, merely loose), so it is noise in every log.
warnings.filterwarnings("ignore", message="Optimal order is the largest alpha", category=UserWarning)

ACCOUNTANTS: dict[str, tuple[type[IAccountant], str]] = {
    "rdp": (RDPAccountant, "RDP (Rényi DP, Mironov 2017)"),
    "prv": (PRVAccountant, "PRV (privacy random variables, Gopi et al. 2021)"),
    "gdp": (GaussianAccountant, "GDP (Gaussian DP CLT approximation, Dong et al. 2019)"),
}
MAX_STEPS = 10_000_000


@dataclass(frozen=True, kw_only=True)
class PrivacySpend:
    """(ε, δ) after `steps` DP-SGD steps, and which accountant says so."""

    epsilon: float
    delta: float
    steps: int
    noise_multiplier: float
    sample_rate: float
    accountant: str

    def describe(self) -> str:
        return f"ε = {self.epsilon:.3g} at δ = {self.delta:g} ({ACCOUNTANTS[self.accountant][1]}, {self.steps} steps)"

    def to_record(self) -> dict[str, Any]:
        return {
            "epsilon": self.epsilon, "delta": self.delta, "steps": self.steps,
            "noise_multiplier": self.noise_multiplier, "sample_rate": self.sample_rate, "accountant": self.accountant,
        }  # fmt: skip


def _check(
    noise_multiplier: float | None, sample_rate: float, steps: int, delta: float, accountant: str
) -> None:
    if accountant not in ACCOUNTANTS:
        raise InvalidInputError(f"Unknown accountant {accountant!r}; choose one of {', '.join(ACCOUNTANTS)}.")
    if noise_multiplier is not None and not (
        isinstance(noise_multiplier, int | float) and math.isfinite(noise_multiplier) and noise_multiplier > 0
    ):
        raise InvalidInputError(
            f"The noise multiplier σ must be a positive number, got {noise_multiplier!r}."
        )
    if not (isinstance(sample_rate, int | float) and 0 < sample_rate <= 1):
        raise InvalidInputError(
            f"The sampling rate q = batch size / dataset size must be in (0, 1], got {sample_rate!r}."
        )
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= MAX_STEPS:
        raise InvalidInputError(f"Steps must be an integer from 1 to {MAX_STEPS}, got {steps!r}.")
    if not (isinstance(delta, int | float) and 0 < delta < 1):
        raise InvalidInputError(f"δ must be in (0, 1), got {delta!r}.")


def epsilon_after(
    noise_multiplier: float, sample_rate: float, steps: int, delta: float, *, accountant: str = "rdp"
) -> PrivacySpend:
    """The ε spent by `steps` steps of DP-SGD with Poisson sampling rate `sample_rate` and noise σ."""
    _check(noise_multiplier, sample_rate, steps, delta, accountant)
    acc = ACCOUNTANTS[accountant][0]()
    acc.history = [(float(noise_multiplier), float(sample_rate), int(steps))]
    eps = float(acc.get_epsilon(delta=float(delta)))
    return PrivacySpend(
        epsilon=eps, delta=float(delta), steps=int(steps), noise_multiplier=float(noise_multiplier),
        sample_rate=float(sample_rate), accountant=accountant,
    )  # fmt: skip


def epsilon_curve(
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    *,
    accountant: str = "rdp",
    points: int = 50,
) -> list[PrivacySpend]:
    """ε after evenly spaced step counts up to `steps` (for a budget-over-training chart)."""
    _check(noise_multiplier, sample_rate, steps, delta, accountant)
    if not 1 <= points <= 500:
        raise InvalidInputError(f"Points must be from 1 to 500, got {points}.")
    grid = sorted({max(1, round(steps * (i + 1) / points)) for i in range(points)})
    if (
        accountant == "rdp"
    ):  # RDP adds up over steps: one per-step computation serves every point (~100x faster)
        orders = RDPAccountant.DEFAULT_ALPHAS
        per_step = compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=orders)
        return [
            PrivacySpend(
                epsilon=float(get_privacy_spent(orders=orders, rdp=per_step * s, delta=delta)[0]),
                delta=float(delta),
                steps=s,
                noise_multiplier=float(noise_multiplier),
                sample_rate=float(sample_rate),
                accountant="rdp",
            )  # fmt: skip
            for s in grid
        ]
    return [epsilon_after(noise_multiplier, sample_rate, s, delta, accountant=accountant) for s in grid]


def noise_for_target(
    target_epsilon: float, sample_rate: float, steps: int, delta: float, *, accountant: str = "rdp"
) -> PrivacySpend:
    """The smallest noise σ (to Opacus's tolerance) whose ε after `steps` steps does not exceed the target.

    The returned spend is recomputed with the same accountant, so the caller sees the ε actually reached (never
    above the target: checked here, not assumed).
    """
    _check(None, sample_rate, steps, delta, accountant)
    if not (isinstance(target_epsilon, int | float) and math.isfinite(target_epsilon) and target_epsilon > 0):
        raise InvalidInputError(f"The target ε must be a positive number, got {target_epsilon!r}.")
    try:
        sigma = get_noise_multiplier(
            target_epsilon=float(target_epsilon), target_delta=float(delta), sample_rate=float(sample_rate),
            steps=int(steps), accountant=accountant,
        )  # fmt: skip
    except ValueError as err:
        raise InvalidInputError(f"No noise level reaches ε = {target_epsilon:g} here: {err}") from err
    spend = epsilon_after(sigma, sample_rate, steps, delta, accountant=accountant)
    while spend.epsilon > target_epsilon:  # guard against tolerance: never overshoot the target
        sigma *= 1.01
        spend = epsilon_after(sigma, sample_rate, steps, delta, accountant=accountant)
    return spend
