"""Which rates a finite sample can measure: one rule for membership inference, the privacy audit and detection.

With n negatives (non-members, clean images, guesses), the false-positive rates a test can take are 0, 1/n, 2/n,
...: an operating point below 1/n ("TPR at 0.1 % FPR" on 100 non-members) is read at zero false positives, and
the number that comes out says nothing about that rate. Carlini et al. 2022 ("Membership Inference Attacks From
First Principles") make the same point: low-FPR numbers need at least 1/FPR negatives, better several times that.

>>> r = measured_rate(0.01, level=0.001, n=100)
>>> r.measurable, r.reading, r.n_needed
(False, None, 1000)
>>> r.describe()
'not measurable at n = 100 (needs n ≥ 1,000)'
>>> measured_rate(0.25, level=0.01, n=100).describe()
'25.0%'
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dlsec_core.errors import InvalidInputError


def smallest_measurable_rate(n: int) -> float:
    """The smallest non-zero rate n trials can show, 1/n: every operating point below it is out of reach.

    Raises:
        InvalidInputError: n is not a positive integer.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidInputError(f"A rate needs a positive number of trials, got n = {n!r}.")
    return 1.0 / n


@dataclass(frozen=True, kw_only=True)
class MeasuredRate:
    """A rate read at an operating point `level` (e.g. TPR at 0.1 % FPR) from n negatives, with whether n can
    resolve that point at all. `value` is what the sample shows; `reading` is it, or None when not measurable."""

    value: float
    level: float
    n: int

    @property
    def resolution(self) -> float:
        return smallest_measurable_rate(self.n)

    @property
    def measurable(self) -> bool:
        return self.level * self.n >= 1 - 1e-9  # level >= 1/n, robust to 0.001 * 1000 rounding

    @property
    def n_needed(self) -> int:
        """The fewest negatives that resolve `level`: ceil(1 / level)."""
        return math.ceil(1 / self.level - 1e-9)

    @property
    def reading(self) -> float | None:
        return self.value if self.measurable else None

    def describe(self, fmt: str = ".1%") -> str:
        if self.measurable:
            return format(self.value, fmt)
        return f"not measurable at n = {self.n:,} (needs n ≥ {self.n_needed:,})"


def measured_rate(value: float, *, level: float, n: int) -> MeasuredRate:
    """Tag a rate read at operating point `level` with whether n negatives can measure it (`level` >= 1/n).

    Args:
        value: the rate the sample shows at that operating point, in [0, 1].
        level: the operating point, e.g. 0.001 for "at 0.1 % FPR", in (0, 1].
        n: the number of negatives the operating point is counted on.

    Raises:
        InvalidInputError: a value or level outside its range, or n not a positive integer.
    """
    smallest_measurable_rate(n)
    if not (isinstance(level, int | float) and 0 < level <= 1):
        raise InvalidInputError(f"The operating point must be a rate in (0, 1], got {level!r}.")
    if not (isinstance(value, int | float) and 0 <= value <= 1):
        raise InvalidInputError(f"A rate must be in [0, 1], got {value!r}.")
    return MeasuredRate(value=float(value), level=float(level), n=int(n))
