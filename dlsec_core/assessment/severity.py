"""Severities and the scales that grade a measured number into one, each threshold with its reason and citation.

A scale is ordered from the most severe level down; a value gets the first level it crosses, and `info` when it
crosses none. At a threshold exactly, the milder level applies (robust accuracy of exactly 10 % is `medium`,
not `high`; a TPR of exactly 2 % is `info`). The levels are the lab's own choice: the citations say which
measure the literature asks for and where published models sit, so that a reader can judge the cut.

>>> ROBUST_ACCURACY.grade(0.05), ROBUST_ACCURACY.grade(0.10), ROBUST_ACCURACY.grade(0.95)
(<Severity.HIGH: 'high'>, <Severity.MEDIUM: 'medium'>, <Severity.INFO: 'info'>)
>>> MEMBERSHIP_TPR_AT_1PCT_FPR.grade(0.02), MEMBERSHIP_TPR_AT_1PCT_FPR.grade(0.021)
(<Severity.INFO: 'info'>, <Severity.LOW: 'low'>)
>>> DP_EPSILON.grade(1.0), DP_EPSILON.grade(8.0), DP_EPSILON.grade(11.0)
(<Severity.INFO: 'info'>, <Severity.LOW: 'low'>, <Severity.MEDIUM: 'medium'>)
>>> INPUT_DEFENSE_GAP.grade(0.02), INPUT_DEFENSE_GAP.grade(0.05), INPUT_DEFENSE_GAP.grade(0.4)
(<Severity.INFO: 'info'>, <Severity.LOW: 'low'>, <Severity.MEDIUM: 'medium'>)
>>> EXTRACTION_FIDELITY.grade(0.5), EXTRACTION_FIDELITY.grade(0.8), EXTRACTION_FIDELITY.grade(0.95)
(<Severity.INFO: 'info'>, <Severity.MEDIUM: 'medium'>, <Severity.HIGH: 'high'>)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from dlsec_core.errors import InvalidInputError


class Severity(StrEnum):
    """How much a finding should worry its reader, mildest first."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


@dataclass(frozen=True)
class Level:
    """One threshold of a scale: values beyond `bound` (below it for a lower-is-worse scale) get `severity`."""

    severity: Severity
    bound: float
    reason: str
    citation: str

    def to_json(self) -> dict[str, Any]:
        return {
            "severity": str(self.severity), "bound": self.bound, "reason": self.reason, "citation": self.citation,
        }  # fmt: skip


@dataclass(frozen=True)
class Scale:
    """A documented grading of one measure. `worse` says which direction is bad; `levels` go most severe first."""

    name: str
    measure: str
    worse: Literal["lower", "higher"]
    levels: tuple[Level, ...]
    otherwise: str  # why a value that crosses no threshold is `info`

    def __post_init__(self) -> None:
        bounds = [lv.bound for lv in self.levels]
        ordered = sorted(bounds) if self.worse == "lower" else sorted(bounds, reverse=True)
        if bounds != ordered or len(set(bounds)) != len(bounds):
            raise InvalidInputError(
                f"Scale {self.name!r}: thresholds must run from the most severe, got {bounds}."
            )

    def crossed(self, value: float) -> Level | None:
        """The most severe level `value` crosses (strictly: at a bound, the milder level), None for `info`."""
        if not isinstance(value, int | float) or math.isnan(value):
            raise InvalidInputError(f"Scale {self.name!r} grades a number, got {value!r}.")
        for level in self.levels:
            if (value < level.bound) if self.worse == "lower" else (value > level.bound):
                return level
        return None

    def grade(self, value: float) -> Severity:
        level = self.crossed(value)
        return Severity.INFO if level is None else level.severity

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "measure": self.measure, "worse": self.worse,
            "levels": [lv.to_json() for lv in self.levels], "otherwise": self.otherwise,
        }  # fmt: skip


MADRY = "Madry et al. 2018, Towards Deep Learning Models Resistant to Adversarial Attacks (ICLR)"
ROBUSTBENCH = "Croce et al. 2021, RobustBench: a standardized adversarial robustness benchmark (NeurIPS D&B)"
CARLINI_MIA = "Carlini et al. 2022, Membership Inference Attacks From First Principles (IEEE S&P)"
DPFY = "Ponomareva et al. 2023, How to DP-fy ML: A Practical Guide to Machine Learning with Differential Privacy (JAIR)"
DWORK_ROTH = "Dwork and Roth 2014, The Algorithmic Foundations of Differential Privacy, section 2.3"
ATHALYE = "Athalye, Carlini, Wagner 2018, Obfuscated Gradients Give a False Sense of Security (ICML)"
TRAMER_ADAPTIVE = (
    "Tramèr, Carlini, Brendel, Madry 2020, On Adaptive Attacks to Adversarial Example Defenses (NeurIPS)"
)
JAGIELSKI = (
    "Jagielski et al. 2020, High Accuracy and High Fidelity Extraction of Neural Networks (USENIX Security)"
)
KNOCKOFF = "Orekondy, Schiele, Fritz 2019, Knockoff Nets: Stealing Functionality of Black-Box Models (CVPR)"
PAPERNOT_BB = "Papernot et al. 2017, Practical Black-Box Attacks against Machine Learning (AsiaCCS)"
STEINKE = "Steinke, Nasr, Jagielski 2023, Privacy Auditing with One (1) Training Run (NeurIPS)"
ADI = (
    "Adi et al. 2018, Turning Your Weakness Into a Strength: Watermarking Deep Neural Networks by Backdooring "
    "(USENIX Security)"
)

#: Robust accuracy (fraction of test images still classified correctly) under an attack at a standard ε.
ROBUST_ACCURACY = Scale(
    name="robust-accuracy",
    measure="robust accuracy at a standard ε (fraction of test images the attack cannot flip)",
    worse="lower",
    levels=(
        Level(
            Severity.HIGH,
            0.10,
            "Below 10 %: the attack flips nearly every image, as it does for a network without a defense "
            "(a naturally trained MNIST network falls to about 0 % under PGD at L∞ ε = 0.3).",
            MADRY,
        ),
        Level(
            Severity.MEDIUM,
            0.50,
            "Below 50 %: the attacker wins on most images. Robust accuracy under the strongest attack is the one "
            "number robustness leaderboards rank by.",
            ROBUSTBENCH,
        ),
        Level(
            Severity.LOW,
            0.80,
            "Below 80 %: short of published adversarially trained MNIST models, which keep about 89 % under PGD "
            "with restarts at L∞ ε = 0.3.",
            MADRY,
        ),
    ),
    otherwise="80 % or more: in the range of published adversarially trained models at this ε (for this attack).",
)

#: TPR at 1 % FPR of a membership attack; chance is TPR = FPR = 1 %.
MEMBERSHIP_TPR_AT_1PCT_FPR = Scale(
    name="membership-tpr-at-1pct-fpr",
    measure="true-positive rate of a membership attack at 1 % false-positive rate (chance: 1 %)",
    worse="higher",
    levels=(
        Level(
            Severity.HIGH,
            0.20,
            "Above 20 % (20 times chance): one training example in five is identified confidently, with 1 % of "
            "non-members wrongly accused.",
            CARLINI_MIA,
        ),
        Level(
            Severity.MEDIUM,
            0.05,
            "Above 5 % (5 times chance): the attack singles out members far more often than it errs; judge an "
            "attack by its TPR at low FPR, not by its AUC or accuracy.",
            CARLINI_MIA,
        ),
        Level(
            Severity.LOW,
            0.02,
            "Above 2 % (twice chance): some members are identifiable at a low error rate.",
            CARLINI_MIA,
        ),
    ),
    otherwise="2 % or less: within twice chance at 1 % FPR for this attack (a stronger attack may find more).",
)

#: The ε of a model's (ε, δ)-DP claim.
DP_EPSILON = Scale(
    name="dp-epsilon",
    measure="ε of the model's differential-privacy guarantee (from its accountant)",
    worse="higher",
    levels=(
        Level(
            Severity.MEDIUM,
            10.0,
            "ε above 10: a weak formal guarantee (tier 3 of the guide's three).",
            DPFY,
        ),
        Level(
            Severity.LOW,
            1.0,
            "ε from 1 to 10: a reasonable guarantee (tier 2), weaker than ε ≤ 1.",
            DPFY,
        ),
    ),
    otherwise="ε ≤ 1: a strong formal guarantee (tier 1).",
)

#: A model without a DP claim has no formal bound on what it reveals about one training example.
NO_DP_CLAIM = Level(
    Severity.MEDIUM,
    math.inf,
    "No differential-privacy claim: nothing bounds what the model reveals about one training example; only "
    "measured attacks (the membership finding) speak to it.",
    DPFY,
)

#: δ at least 1/N allows a mechanism that publishes whole training records: the claim is void.
DELTA_TOO_LARGE = Level(
    Severity.MEDIUM,
    1.0,
    "δ ≥ 1/N (N training examples): an (ε, δ) guarantee this loose allows publishing a whole record outright; "
    "δ should be well below 1/N.",
    DWORK_ROTH,
)

#: How much a naive evaluation of an input defense overstates it: naive minus adaptive robust accuracy (the naive
#: attack uses torch's own gradient through the transform and one random draw; the adaptive one BPDA and EOT).
INPUT_DEFENSE_GAP = Scale(
    name="input-defense-gap",
    measure="naive minus adaptive robust accuracy of the served model (the share a naive evaluation overstates)",
    worse="higher",
    levels=(
        Level(
            Severity.MEDIUM,
            0.10,
            "Above 10 points: the defense masks gradients (obfuscated gradients); a naive evaluation reports "
            "robustness an adaptive attacker (BPDA, EOT) does not find. Trust only the adaptive number.",
            ATHALYE,
        ),
        Level(
            Severity.LOW,
            0.02,
            "Above 2 points: the naive attack misses images the adaptive one flips; a defense must be evaluated "
            "with an attack adapted to it.",
            TRAMER_ADAPTIVE,
        ),
    ),
    otherwise="2 points or less: the naive and the adaptive attack agree (the robust accuracy itself is graded "
    "on the robust-accuracy scale).",
)

#: Fidelity (top-1 agreement with the victim on the test split) a retraining attacker reaches at 1,000 queries.
EXTRACTION_FIDELITY = Scale(
    name="extraction-fidelity",
    measure="fidelity of a surrogate trained on 1,000 answers of the model's API (agreement with its top-1 label)",
    worse="higher",
    levels=(
        Level(
            Severity.HIGH,
            0.90,
            "Above 90 %: from 1,000 queries the attacker holds a copy that answers like the model on nine inputs "
            "in ten; fidelity (agreement with the victim) is the measure of a functional copy.",
            JAGIELSKI,
        ),
        Level(
            Severity.MEDIUM,
            0.70,
            "Above 70 %: a usable substitute, enough to craft adversarial examples that transfer to the model "
            "(Papernot et al.'s MNIST substitutes, about 80 % accurate, crafted examples that fooled the remote model "
            "most of the time).",
            PAPERNOT_BB,
        ),
        Level(
            Severity.LOW,
            0.50,
            "Above 50 %: a partial copy; Knockoff Nets show the agreement keeps rising with more queries.",
            KNOCKOFF,
        ),
    ),
    otherwise="50 % or less: 1,000 queries do not buy a useful copy with this attack (more queries or a stronger "
    "attack may).",
)

SCALES: dict[str, Scale] = {
    s.name: s
    for s in (ROBUST_ACCURACY, MEMBERSHIP_TPR_AT_1PCT_FPR, DP_EPSILON, INPUT_DEFENSE_GAP, EXTRACTION_FIDELITY)
}

#: A one-run audit whose lower bound on ε exceeds the claimed ε: the claim is false (with the audit's confidence).
DP_CLAIM_REFUTED = Level(
    Severity.HIGH,
    math.inf,
    "The audit's lower bound on ε exceeds the claimed ε (at its confidence): the DP training or its accounting is "
    "wrong, and the claim does not hold.",
    STEINKE,
)

#: A one-run audit that stays below the claim: consistent with it (it cannot confirm it).
DP_CLAIM_CONSISTENT = Level(
    Severity.INFO,
    math.inf,
    "The audit's lower bound stays at or below the claimed ε: consistent with the claim. A one-run audit is a "
    "lower bound, far below realistic claims; it can refute a broken implementation, never prove a correct one.",
    STEINKE,
)

#: The model carries its owner's trigger-set watermark and it verifies: a stolen copy can be claimed.
WATERMARK_VERIFIED = Level(
    Severity.INFO,
    math.inf,
    "Watermark verified: the keys' agreement is improbable by chance (binomial p below α) and beats every null "
    "model: ownership of an exact copy can be shown.",
    ADI,
)

#: Trained with a watermark whose keys no longer verify: an ownership claim would fail.
WATERMARK_NOT_VERIFIED = Level(
    Severity.LOW,
    math.inf,
    "Trained with a watermark that does not verify (p at or above α, or a null model did as well): an ownership "
    "claim over a stolen copy would fail.",
    ADI,
)

#: No watermark: nothing to prove ownership of a stolen copy with (not a weakness of the model itself).
NO_WATERMARK = Level(
    Severity.INFO,
    math.inf,
    "No watermark: the model was not trained with the watermark recipe, so ownership of a stolen copy cannot be "
    "shown by its keys. Informational: a watermark deters and proves theft, it does not prevent it.",
    ADI,
)
