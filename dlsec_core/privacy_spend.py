"""The privacy a DP-SGD run spent, as a typed value: (ε, δ) and the accountant that proves it.

A bottom-layer module (no Opacus, no store): the store's model cards carry a `PrivacySpend`, and the accounting
in `dlsec_core.privacy.accounting` returns them, so both import it from here without an import cycle.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dlsec_core.errors import InvalidInputError

ACCOUNTANT_LABELS: dict[str, str] = {
    "rdp": "RDP (Rényi DP, Mironov 2017)",
    "prv": "PRV (privacy random variables, Gopi et al. 2021)",
    "gdp": "GDP (Gaussian DP CLT approximation, Dong et al. 2019)",
}


@dataclass(frozen=True, kw_only=True)
class PrivacySpend:
    """(ε, δ) after `steps` DP-SGD steps, and which accountant says so.

    The run's settings (`steps`, `noise_multiplier`, `sample_rate`) are known for a run accounted here and may be
    None for a spend read from an older model card or an imported file that did not record them.
    """

    epsilon: float
    delta: float
    accountant: str
    steps: int | None = None
    noise_multiplier: float | None = None
    sample_rate: float | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.epsilon, int | float) and self.epsilon >= 0 and not math.isnan(self.epsilon)):
            raise InvalidInputError(f"ε must be a number >= 0, got {self.epsilon!r}.")
        if not (isinstance(self.delta, int | float) and 0 <= self.delta < 1):
            raise InvalidInputError(f"δ must be in [0, 1), got {self.delta!r}.")
        if not isinstance(self.accountant, str) or not self.accountant:
            raise InvalidInputError(f"A privacy spend must name its accountant, got {self.accountant!r}.")

    @property
    def accountant_label(self) -> str:
        return ACCOUNTANT_LABELS.get(self.accountant, self.accountant.upper())

    def describe(self) -> str:
        """e.g. "ε = 2.1 at δ = 1e-05 (RDP (Rényi DP, Mironov 2017), 105 steps)"."""
        steps = "" if self.steps is None else f", {self.steps} steps"
        return f"ε = {self.epsilon:.3g} at δ = {self.delta:g} ({self.accountant_label}{steps})"

    def label(self) -> str:
        """The short form for pickers and tables: "ε = 2.1 (RDP, δ 1e-05)"."""
        return f"ε = {self.epsilon:.3g} ({self.accountant.upper()}, δ {self.delta:g})"

    def to_record(self) -> dict[str, Any]:
        return {
            "epsilon": self.epsilon, "delta": self.delta, "steps": self.steps,
            "noise_multiplier": self.noise_multiplier, "sample_rate": self.sample_rate, "accountant": self.accountant,
        }  # fmt: skip

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> PrivacySpend:
        """The inverse of `to_record` (also reads a training-history row: epsilon, delta, accountant, ...).

        Raises:
            InvalidInputError: a record without a usable ε, δ or accountant.
        """
        steps = record.get("steps", record.get("dp_steps"))  # a training-history row says "dp_steps"
        try:
            return cls(
                epsilon=float(record["epsilon"]),
                delta=float(record["delta"]),
                accountant=str(record["accountant"]),
                steps=None if steps is None else int(steps),
                noise_multiplier=None
                if record.get("noise_multiplier") is None
                else float(record["noise_multiplier"]),
                sample_rate=None if record.get("sample_rate") is None else float(record["sample_rate"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            if isinstance(err, InvalidInputError):
                raise
            raise InvalidInputError(f"Not a privacy spend (ε, δ, accountant): {record!r}.") from err


def privacy_label(spend: PrivacySpend | None, *, uploaded: bool = False, short: bool = False) -> str:
    """'ε = 2.1 (RDP, δ 1e-05)' for a model trained with DP (an imported copy says its file recorded it), 'no DP'
    otherwise; `short`: just 'ε = 2.1'. The one wording of pages and stored study results."""
    if spend is None:
        return "no DP"
    if short:
        return f"ε = {spend.epsilon:.3g}"
    return spend.label() + (", as recorded in its file" if uploaded else "")


def spent_in(history: Sequence[dict[str, Any]]) -> PrivacySpend | None:
    """The spend a DP-SGD training history records: its last epoch's (ε, δ, accountant); None when the history
    records no ε (training without DP). The one place a history row becomes a `PrivacySpend`."""
    last = history[-1] if history else {}
    return PrivacySpend.from_record(last) if last.get("epsilon") is not None else None
