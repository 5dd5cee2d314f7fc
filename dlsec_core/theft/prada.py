"""PRADA: detecting model extraction from one client's query stream (Juuti, Szyller, Marchal, Asokan, "PRADA:
Protecting against DNN Model Stealing Attacks", EuroS&P 2019, Algorithm 1).

Benign clients send natural images, whose distances to each other are roughly normally distributed; extraction
attacks that synthesise queries (Jacobian-based augmentation, Papernot et al. 2017) send small steps away from
earlier queries, so their distances pile up near a few values and the distribution is far from normal.

For every query x with predicted class c (the label the API answered):
- d = min over the growing set G_c of ||x - y||_2 (L2 in pixel units, on the flattened input); the first query
  of a class has no distance and starts G_c;
- d joins the client's distance set D; if d > T_c, x joins G_c and d joins D_Gc, and the class threshold becomes
  T_c = max(T_c, mean(D_Gc) - std(D_Gc)) (so it never decreases; T_c starts at 0);
- every `test_every` queries, the distances of the classes holding at least `min_class_distances` of them are
  pooled, values farther than `outlier_sigma` standard deviations from their mean are dropped, and once
  `min_distances` remain, the Shapiro-Wilk statistic W of what is left is computed (`scipy.stats.shapiro`);
  W < δ raises the alarm (the paper's "attack detected"); a later test with W ≥ δ clears it again.

The paper tunes δ per dataset on benign traffic; the default δ = 0.9 here comes from our own measurement
(tests/core/test_prada.py, softmax regression on mnist5k, 400 queries per client): benign clients sending held-out
digits had a lowest W of 0.947-0.989 (0 of 12 alarmed), Jacobian-augmentation clients (20 seed images, λ = 0.1)
0.81-0.89 at the first test (6 of 6 caught). On the 8x8 `digits` the margin is thinner (3 of 6 caught): a λ step
over 64 pixels is not small next to the distance between two natural digits.

`PradaDetector` is the streaming form (one `observe` per query, no model inside: it is given the class the API
answered); `prada` runs it over a whole stream and returns a `PradaResult` with one `PradaStep` per query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from scipy import stats

from dlsec_core.config import Config, param
from dlsec_core.errors import InvalidInputError


@dataclass(frozen=True, kw_only=True)
class PradaConfig(Config):
    """PRADA's settings: the alarm threshold δ on the Shapiro-Wilk W, and when the test runs."""

    title: ClassVar[str] = "PRADA detector"

    delta: float = param(
        0.9,
        "Alarm threshold δ on the Shapiro-Wilk W",
        help="The alarm fires when W of the client's minimum distances falls below δ (W = 1: perfectly normal). "
        "Higher catches more attacks and raises more false alarms on benign clients.",
        min=0.0,
        min_open=True,
        max=1.0,
        max_open=True,
        step=0.01,
    )
    test_every: int = param(10, "Test every (queries)", min=1, max=10_000, step=1)
    min_distances: int = param(
        100,
        "Distances needed before the first test",
        help="The pooled distances (after outliers are dropped) a test needs; fewer and W is too noisy.",
        min=3,
        max=100_000,
        step=10,
    )
    min_class_distances: int = param(10, "Distances a class needs to be pooled", min=1, max=10_000, step=1)
    outlier_sigma: float = param(
        3.0, "Outliers dropped beyond (standard deviations)", min=0.0, min_open=True, max=100.0, step=0.5
    )


@dataclass(frozen=True, kw_only=True)
class PradaStep:
    """What the detector saw at one query (0-based `index`)."""

    index: int
    label: int  # the class the API answered
    distance: float | None  # min L2 distance to the class's growing set; None for a class's first query
    grew: bool  # the query joined its class's growing set
    w: float | None  # Shapiro-Wilk W when a test ran at this query
    tested: int  # distances the test used (after outliers were dropped); 0 when no test ran
    alarm: bool  # the alarm state after this query

    def to_record(self) -> dict[str, Any]:
        return {
            "index": self.index, "label": self.label, "distance": self.distance, "grew": self.grew, "w": self.w,
            "tested": self.tested, "alarm": self.alarm,
        }  # fmt: skip

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> PradaStep:
        return cls(**data)


@dataclass(frozen=True, kw_only=True)
class PradaResult:
    """The detector's trace over one client's stream."""

    delta: float
    steps: list[PradaStep] = field(default_factory=list)

    @property
    def first_alarm(self) -> int | None:
        """The 0-based index of the query at which the alarm first fired; None if it never did."""
        return next((s.index for s in self.steps if s.alarm), None)

    @property
    def alarmed(self) -> bool:
        return self.first_alarm is not None

    @property
    def distances(self) -> list[float | None]:
        return [s.distance for s in self.steps]

    @property
    def tests(self) -> list[tuple[int, float]]:
        """(query index, W) of every test that ran."""
        return [(s.index, s.w) for s in self.steps if s.w is not None]

    def to_json(self) -> dict[str, Any]:
        return {"delta": self.delta, "steps": [s.to_record() for s in self.steps]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PradaResult:
        return cls(delta=data["delta"], steps=[PradaStep.from_record(s) for s in data["steps"]])


class PradaDetector:
    """PRADA over one client's stream, one query at a time (the module docstring gives the algorithm)."""

    def __init__(self, config: PradaConfig | None = None) -> None:
        self.config = config or PradaConfig()
        self._growing: dict[int, list[np.ndarray]] = {}  # class -> its growing set G_c, flattened queries
        self._growing_distances: dict[int, list[float]] = {}  # D_Gc
        self._threshold: dict[int, float] = {}  # T_c
        self._distances: dict[int, list[float]] = {}  # every minimum distance, by class
        self._alarm = False
        self._count = 0

    @property
    def queries(self) -> int:
        return self._count

    def observe(self, x: torch.Tensor | np.ndarray, label: int) -> PradaStep:
        """Take one query `x` (any shape, e.g. (C, H, W)) that the API answered with class `label`."""
        point = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64).ravel()
        label = int(label)
        distance: float | None = None
        grew = True
        if label not in self._growing:
            self._growing[label] = [point]
            self._growing_distances[label] = []
            self._threshold[label] = 0.0
        else:
            members = np.stack(self._growing[label])  # (|G_c|, D)
            distance = float(np.sqrt(((members - point) ** 2).sum(axis=1)).min())
            self._distances.setdefault(label, []).append(distance)
            grew = distance > self._threshold[label]
            if grew:
                self._growing[label].append(point)
                grown = self._growing_distances[label]
                grown.append(distance)
                self._threshold[label] = max(self._threshold[label], float(np.mean(grown) - np.std(grown)))
        index = self._count
        self._count += 1
        w, tested = None, 0
        if self._count % self.config.test_every == 0:
            w, tested = self._test()
            if w is not None:
                self._alarm = w < self.config.delta
        return PradaStep(
            index=index, label=label, distance=distance, grew=grew, w=w, tested=tested, alarm=self._alarm
        )

    def _test(self) -> tuple[float | None, int]:
        pooled = [
            d for ds in self._distances.values() if len(ds) >= self.config.min_class_distances for d in ds
        ]
        values = np.asarray(pooled, dtype=np.float64)
        if values.size == 0:
            return None, 0
        values = kept_after_outliers(values, self.config.outlier_sigma)
        if values.size < self.config.min_distances:
            return None, 0
        if np.ptp(values) == 0.0:  # all equal: W is undefined, and a constant step is as unnatural as it gets
            return 0.0, int(values.size)
        return float(stats.shapiro(values).statistic), int(values.size)


def kept_after_outliers(values: np.ndarray, sigma: float) -> np.ndarray:
    """The values within `sigma` standard deviations of their mean (all of them when the deviation is 0)."""
    std = float(values.std())
    if std == 0.0:
        return values
    return values[np.abs(values - values.mean()) <= sigma * std]


def prada(
    queries: torch.Tensor | np.ndarray,
    labels: Sequence[int] | torch.Tensor | np.ndarray,
    config: PradaConfig | None = None,
) -> PradaResult:
    """Run PRADA over one client's whole stream: `queries` (N, ...) in the order sent, `labels` (N,) the classes
    the API answered."""
    config = config or PradaConfig()
    labels_list = [int(v) for v in (labels.tolist() if hasattr(labels, "tolist") else labels)]
    if len(labels_list) != len(queries):
        raise InvalidInputError(f"{len(queries)} queries but {len(labels_list)} labels.")
    detector = PradaDetector(config)
    steps = [detector.observe(q, c) for q, c in zip(queries, labels_list, strict=True)]
    return PradaResult(delta=config.delta, steps=steps)


def false_alarm_rate(results: Sequence[PradaResult]) -> float:
    """The fraction of (benign) clients whose stream raised the alarm at least once."""
    if not results:
        raise InvalidInputError("No client streams to measure false alarms on.")
    return sum(r.alarmed for r in results) / len(results)
