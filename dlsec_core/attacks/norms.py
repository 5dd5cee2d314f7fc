"""The norms an attack's budget is measured in (RobustBench's `ThreatModel` is an enum too).

`Norm` is a `StrEnum`: `Norm.LINF == "linf"`, so stored JSON and old calls with plain strings keep working, and
JSON written from a config holds the plain string.
"""

from __future__ import annotations

import math
from enum import StrEnum


class Norm(StrEnum):
    LINF = "linf"
    L2 = "l2"

    @property
    def symbol(self) -> str:
        """ "L∞" or "L2", for labels and descriptions."""
        return "L∞" if self is Norm.LINF else "L2"

    @property
    def max_eps(self) -> float:
        """The largest meaningful budget for pixels in [0, 1]: 1 for L∞ (one pixel's whole range), none for L2."""
        return 1.0 if self is Norm.LINF else math.inf


NORMS: tuple[Norm, ...] = tuple(Norm)
