"""Pure privacy accounting for DP-SGD (Abadi et al. 2016), every number labelled with its accountant.

Thin, validated wrappers over Opacus's accountants: RDP (Mironov 2017; Mironov, Talwar, Zhang 2019), PRV
(Gopi, Lee, Wutschitz 2021) and the Gaussian-DP CLT approximation (Dong, Roth, Su 2019). Opacus's own defaults
differ (`PrivacyEngine` uses PRV, `get_noise_multiplier` RDP), so the accountant is always an explicit argument
here and part of every result. An accountant that breaks down numerically (PRV at tiny σ, GDP's root finding,
RDP below the smallest ε its Rényi orders can certify) raises an `AccountingError` naming it; the `*_by_accountant`
functions return one outcome per accountant, so one failure never hides the others' answers. Known value (Opacus's tests): σ 1.5, q 0.04, 2,250 steps, δ 1e-5 -> RDP ε ≈ 7.329.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from opacus.accountants import GaussianAccountant, PRVAccountant, RDPAccountant
from opacus.accountants.accountant import IAccountant
from opacus.accountants.analysis.prv import PoissonSubsampledGaussianPRV, compute_safe_domain_size
from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent
from opacus.accountants.utils import get_noise_multiplier

from dlsec_core.errors import DlsecError, InvalidInputError
from dlsec_core.privacy_spend import ACCOUNTANT_LABELS, PrivacySpend

# Opacus's RDP warns when the best Rényi order is the largest one tried; that happens for the tiny σ a noise search
# tries on its way (and ε is then an upper bound, still valid, merely loose), so it is noise in every log.
warnings.filterwarnings("ignore", message="Optimal order is the largest alpha", category=UserWarning)
# ...and when it is the smallest one (tiny σ: ε in the thousands, a valid and vacuous bound either way).
warnings.filterwarnings("ignore", message="Optimal order is the smallest alpha", category=UserWarning)

ACCOUNTANTS: dict[str, tuple[type[IAccountant], str]] = {
    "rdp": (RDPAccountant, ACCOUNTANT_LABELS["rdp"]),
    "prv": (PRVAccountant, ACCOUNTANT_LABELS["prv"]),
    "gdp": (GaussianAccountant, ACCOUNTANT_LABELS["gdp"]),
}
MAX_STEPS = 10_000_000
# PRV discretises the privacy loss on a mesh of 2L / mesh points. Ordinary runs need well under a million; tiny σ
# needs tens of millions, which takes minutes and then fails numerically ("Discrete mean differs significantly")
# or returns ∞ (measured: σ 0.1, q 0.128: 6e6 points fail after 2 s, 2.4e7 points return ∞ after 50 s).
MAX_PRV_POINTS = 4_000_000
_PRV_EPS_ERROR = 0.01  # Opacus's defaults for PRVAccountant.get_epsilon
_PRV_DELTA_ERROR_SHARE = 1e-3

__all__ = [
    "ACCOUNTANTS",
    "AccountingError",
    "AccountingFailure",
    "AccountingOutcome",
    "PrivacySpend",
    "RunSpend",
    "epsilon_after",
    "epsilon_by_accountant",
    "epsilon_curve",
    "noise_by_accountant",
    "noise_for_target",
    "rdp_epsilon_floor",
]


@dataclass(frozen=True, kw_only=True)
class RunSpend(PrivacySpend):
    """A spend accounted here, so the run's settings are known (never None)."""

    steps: int
    noise_multiplier: float
    sample_rate: float


@dataclass(frozen=True, kw_only=True)
class AccountingFailure:
    """One accountant could not answer for this setting; `reason` is a sentence saying why (and what still holds)."""

    accountant: str
    reason: str

    def describe(self) -> str:
        return f"{ACCOUNTANTS[self.accountant][1]}: {self.reason}"

    def to_record(self) -> dict[str, Any]:
        return {
            "accountant": self.accountant,
            "epsilon": None,
            "noise_multiplier": None,
            "failure": self.reason,
        }


AccountingOutcome = RunSpend | AccountingFailure


class AccountingError(DlsecError):
    """An accountant failed on valid input (a numerical limit, not a bad argument); `failure` says which and why."""

    def __init__(self, failure: AccountingFailure) -> None:
        super().__init__(failure.describe())
        self.failure = failure


_T = TypeVar("_T")


def _guarded(accountant: str, what: Callable[[], _T]) -> _T:
    """Run an Opacus computation; its numerical breakdowns become an `AccountingError` naming the accountant."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.filterwarnings("ignore", message="GDP accounting is experimental", category=UserWarning)
            return what()
    except (RuntimeError, ValueError, ArithmeticError, MemoryError) as err:
        raise AccountingError(
            AccountingFailure(
                accountant=accountant,
                reason=f"its numerical computation broke down for this setting (Opacus: {err}); "
                "RDP's bound stays valid.",
            )
        ) from err


def _prv_points(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """The size of the mesh Opacus's PRV accountant would discretise this run on (its own formulas)."""
    delta_error = delta * _PRV_DELTA_ERROR_SHARE
    half_width = compute_safe_domain_size(
        prvs=[PoissonSubsampledGaussianPRV(sample_rate, noise_multiplier)],
        max_self_compositions=[steps], eps_error=_PRV_EPS_ERROR, delta_error=delta_error,
    )  # fmt: skip
    mesh = _PRV_EPS_ERROR / math.sqrt(steps * math.log(12 / delta_error) / 2)
    return 2 * float(half_width) / mesh


@functools.lru_cache(maxsize=4096)
def _epsilon(accountant: str, noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """ε by one accountant, remembered: a pure function of its arguments that costs a fraction of a second (RDP
    over its 151 orders; PRV more), asked again with the same arguments by e.g. every client of a federation that
    plans the same local DP-SGD epoch each round. Failures raise and are not remembered."""
    if accountant == "prv":
        points = _guarded(accountant, lambda: _prv_points(noise_multiplier, sample_rate, steps, delta))
        if points > MAX_PRV_POINTS:
            raise AccountingError(
                AccountingFailure(
                    accountant=accountant,
                    reason=f"with noise this small its numerical composition breaks down (it would need "
                    f"{points / 1e6:,.0f} million grid points; the limit here is {MAX_PRV_POINTS / 1e6:g} million). "
                    "RDP's bound stays valid.",
                )
            )
    acc = ACCOUNTANTS[accountant][0]()
    acc.history = [(float(noise_multiplier), float(sample_rate), int(steps))]
    eps = float(_guarded(accountant, lambda: acc.get_epsilon(delta=float(delta))))
    if not math.isfinite(eps):
        raise AccountingError(
            AccountingFailure(
                accountant=accountant, reason="it bounds ε only by ∞ here: no privacy guarantee at all."
            )
        )
    return eps


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
) -> RunSpend:
    """The ε spent by `steps` steps of DP-SGD with Poisson sampling rate `sample_rate` and noise σ.

    Raises:
        InvalidInputError: a bad argument.
        AccountingError: this accountant cannot answer for this (valid) setting; its `failure` says why.
    """
    _check(noise_multiplier, sample_rate, steps, delta, accountant)
    eps = _epsilon(accountant, noise_multiplier, sample_rate, steps, delta)
    return RunSpend(
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
) -> list[RunSpend]:
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
            RunSpend(
                epsilon=float(get_privacy_spent(orders=orders, rdp=per_step * s, delta=delta)[0]),
                delta=float(delta),
                steps=s,
                noise_multiplier=float(noise_multiplier),
                sample_rate=float(sample_rate),
                accountant="rdp",
            )  # fmt: skip
            for s in grid
        ]
    # The last point first: it is the costliest and the likeliest to fail, and a failure fails the whole curve fast.
    last = epsilon_after(noise_multiplier, sample_rate, grid[-1], delta, accountant=accountant)
    return [
        epsilon_after(noise_multiplier, sample_rate, s, delta, accountant=accountant) for s in grid[:-1]
    ] + [last]


def rdp_epsilon_floor(delta: float) -> float:
    """The smallest ε Opacus's RDP accountant can certify at δ, however large σ: its Rényi orders stop at 63, and
    ε ≥ (log(1/δ) - log α) / (α - 1) + log((α - 1) / α) even when the Rényi divergence is 0 (about 0.10 at δ 1e-5)."""
    orders = RDPAccountant.DEFAULT_ALPHAS
    return float(get_privacy_spent(orders=orders, rdp=np.zeros(len(orders)), delta=float(delta))[0])


def noise_for_target(
    target_epsilon: float, sample_rate: float, steps: int, delta: float, *, accountant: str = "rdp"
) -> RunSpend:
    """The smallest noise σ (to Opacus's tolerance) whose ε after `steps` steps does not exceed the target.

    The returned spend is recomputed with the same accountant, so the caller sees the ε actually reached (never
    above the target: checked here, not assumed).

    Raises:
        InvalidInputError: a bad argument.
        AccountingError: no σ up to Opacus's search limit (10^6) reaches the target with this accountant, or the
            accountant broke down; the failure says why (for RDP below its floor, see `rdp_epsilon_floor`).
    """
    _check(None, sample_rate, steps, delta, accountant)
    if not (isinstance(target_epsilon, int | float) and math.isfinite(target_epsilon) and target_epsilon > 0):
        raise InvalidInputError(f"The target ε must be a positive number, got {target_epsilon!r}.")
    if accountant == "rdp" and target_epsilon < (floor := rdp_epsilon_floor(delta)):
        raise AccountingError(
            AccountingFailure(
                accountant=accountant,
                reason=f"no noise reaches ε = {target_epsilon:g}: with Opacus's Rényi orders (up to 63) RDP cannot "
                f"certify any ε below {floor:.3g} at δ = {delta:g}, however large σ is.",
            )
        )
    try:
        sigma = _guarded(
            accountant,
            lambda: get_noise_multiplier(
                target_epsilon=float(target_epsilon), target_delta=float(delta), sample_rate=float(sample_rate),
                steps=int(steps), accountant=accountant,
            ),
        )  # fmt: skip
    except AccountingError as err:
        if "budget is too low" not in str(err.__cause__):
            raise
        raise AccountingError(
            AccountingFailure(
                accountant=accountant,
                reason=f"no noise up to σ = 10^6 reaches ε = {target_epsilon:g} after {steps} steps at δ = {delta:g}.",
            )
        ) from err
    spend = epsilon_after(sigma, sample_rate, steps, delta, accountant=accountant)
    while spend.epsilon > target_epsilon:  # guard against tolerance: never overshoot the target
        sigma *= 1.01
        spend = epsilon_after(sigma, sample_rate, steps, delta, accountant=accountant)
    return spend


def _each(accountants: Iterable[str], compute: Callable[[str], RunSpend]) -> dict[str, AccountingOutcome]:
    names = list(dict.fromkeys(accountants))
    for name in names:  # bad names are a bad argument for all of them: refuse before computing any
        if name not in ACCOUNTANTS:
            raise InvalidInputError(f"Unknown accountant {name!r}; choose one of {', '.join(ACCOUNTANTS)}.")
    outcomes: dict[str, AccountingOutcome] = {}
    for name in names:
        try:
            outcomes[name] = compute(name)
        except AccountingError as err:  # one accountant's failure never hides the others' answers
            outcomes[name] = err.failure
    return outcomes


def epsilon_by_accountant(
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    accountants: Iterable[str] = ("rdp", "prv"),
) -> dict[str, AccountingOutcome]:
    """`epsilon_after` under each accountant: a `RunSpend`, or an `AccountingFailure` saying why not.

    Raises:
        InvalidInputError: a bad argument (these apply to every accountant alike).
    """
    return _each(
        accountants, lambda a: epsilon_after(noise_multiplier, sample_rate, steps, delta, accountant=a)
    )


def noise_by_accountant(
    target_epsilon: float,
    sample_rate: float,
    steps: int,
    delta: float,
    accountants: Iterable[str] = ("rdp", "prv"),
) -> dict[str, AccountingOutcome]:
    """`noise_for_target` under each accountant: the σ each needs, or an `AccountingFailure` saying why not.

    GDP is refused here: a central-limit approximation can underestimate ε, so noise is never calibrated on it.

    Raises:
        InvalidInputError: a bad argument, or "gdp" among the accountants.
    """
    names = list(accountants)
    if "gdp" in names:
        raise InvalidInputError(
            "GDP is an approximation, not an upper bound: calibrate the noise with RDP or PRV."
        )
    return _each(names, lambda a: noise_for_target(target_epsilon, sample_rate, steps, delta, accountant=a))
