"""The scan study: a standard battery on one stored model, each result a graded, cited, ATLAS-tagged finding.

The quick preset (about a minute on 2 CPU cores for the default cnn on mnist5k):

- clean accuracy on the first test images (context, always `info`);
- robust accuracy under PGD with random restarts at two standard L∞ budgets (an image is robust only if every
  restart fails, `evaluation.restarts`): ε = 0.1 and 0.3 for MNIST-like data (one channel: the budgets of
  Madry et al. 2018's MNIST challenge), 4/255 and 8/255 for colour images (RobustBench's ImageNet and CIFAR-10
  budgets); plus a black-box Square check at the larger ε, and the honesty checks (`evaluation.checks`:
  zero gradients, probability outputs, accuracy rising with ε, black-box beating white-box);
- membership leakage: the loss-threshold attack (Yeom et al. 2018) as TPR at 1 % FPR, with whether the
  number of non-members can measure that rate (`evaluation.rates`);
- the model's differential-privacy claim, from its typed privacy spend and accountant.

Severities come from the scales in `dlsec_core.assessment.severity` (every threshold with its citation). One
event per finished finding (payload `{"type": "finding", "finding": ...}`) lets a page fill a scorecard live.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from dlsec_core.assessment.findings import Finding, Grade
from dlsec_core.assessment.severity import (
    DELTA_TOO_LARGE,
    DP_EPSILON,
    MEMBERSHIP_TPR_AT_1PCT_FPR,
    NO_DP_CLAIM,
    ROBUST_ACCURACY,
    Severity,
)
from dlsec_core.attacks.norms import Norm
from dlsec_core.attacks.pgd import PGD
from dlsec_core.attacks.square import Square
from dlsec_core.config import param
from dlsec_core.evaluation.checks import run_checks
from dlsec_core.evaluation.restarts import correct_mask, robust_under_restarts
from dlsec_core.evaluation.sweep import SweepPoint
from dlsec_core.privacy.membership import loss_threshold_attack
from dlsec_core.privacy_spend import PrivacySpend
from dlsec_core.store import Store
from dlsec_core.studies.base import Study, StudyConfig, StudyEvent, StudyOutcome, check_name, seed_param
from dlsec_core.workflows import resolve_dataset

MEMBERSHIP_FPR = 0.01


@dataclass(frozen=True, kw_only=True)
class Preset:
    """How much work a scan does: images, attack strength, candidates."""

    name: str
    images: int  # first test images for clean and robust accuracy
    pgd_steps: int
    pgd_restarts: int
    square_images: int  # the first of those images for the black-box check
    square_queries: int
    membership_n: int  # members (first train images) and non-members (first test images), at most each split


PRESETS: dict[str, Preset] = {
    "quick": Preset(
        name="quick",
        images=200,
        pgd_steps=40,
        pgd_restarts=3,
        square_images=100,
        square_queries=300,
        membership_n=500,
    ),  # fmt: skip
}


def standard_eps(input_shape: tuple[int, ...]) -> tuple[tuple[float, float], str]:
    """The two standard L∞ budgets for images of this shape, and a sentence that says where they come from."""
    if input_shape[0] == 1:
        return (0.1, 0.3), (
            "L∞ ε = 0.1 and 0.3: the standard budgets for MNIST-like (one-channel) images (Madry et al. 2018)"
        )
    return (4 / 255, 8 / 255), (
        "L∞ ε = 4/255 and 8/255: the standard budgets for colour images (RobustBench: ImageNet and CIFAR-10)"
    )


@dataclass(frozen=True, kw_only=True)
class ScanStudyConfig(StudyConfig):
    """Scan one stored model with a preset battery."""

    title: ClassVar[str] = "Security scan"

    model_id: str = param("", "Model (a stored model id)")
    preset: str = param(
        "quick", "Preset", options=tuple(PRESETS), help="quick: about a minute on 2 CPU cores."
    )
    seed: int = seed_param(help="Random starts of PGD and Square's random squares.")

    def check_plain(self, problems: list[str]) -> None:
        super().check_plain(problems)
        check_name(self.model_id, "the model", "model_id", problems)


@dataclass(frozen=True, kw_only=True)
class ScanResult:
    """A finished scan: which model (as it was), the preset and seed, every finding in order."""

    model_id: str
    model_name: str
    dataset: str
    preset: str
    seed: int
    eps_note: str
    findings: list[Finding]
    seconds: float

    @property
    def worst(self) -> Severity:
        return max((f.severity for f in self.findings), key=lambda s: s.rank, default=Severity.INFO)

    def finding(self, finding_id: str) -> Finding:
        return next(f for f in self.findings if f.id == finding_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id, "model_name": self.model_name, "dataset": self.dataset, "preset": self.preset,
            "seed": self.seed, "eps_note": self.eps_note, "findings": [f.to_json() for f in self.findings],
            "seconds": self.seconds,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScanResult:
        return cls(**{**data, "findings": [Finding.from_json(f) for f in data["findings"]]})


def _pct(p: float) -> str:
    return f"{100 * p:.1f} %"


def _point(eps: float, robust: torch.Tensor, attack: str, norm: Norm) -> SweepPoint:
    correct = int(robust.sum())
    return SweepPoint(
        eps=eps, accuracy=correct / len(robust), correct=correct, n=len(robust), attack=attack, norm=norm, elapsed=0.0
    )  # fmt: skip


def _evasion_finding(
    fid: str, title: str, point: SweepPoint, evidence: dict[str, Any], atlas_ids: tuple[str, ...], reduce: str,
    checks: list[dict[str, str]],
) -> Finding:  # fmt: skip
    return Finding(
        id=fid, title=title, grade=Grade.on(ROBUST_ACCURACY, point.accuracy),
        summary=f"{_pct(point.accuracy)} of {point.n} test images keep their label under {point.attack}.",
        evidence={"accuracy": point.accuracy, "correct": point.correct, "n": point.n, "eps": point.eps,
                  "norm": str(point.norm), "attack": point.attack, **evidence},
        atlas_ids=atlas_ids, reduce=reduce, checks=checks,
    )  # fmt: skip


HARDENING = (
    "Adversarial training at this ε (PGD or TRADES recipes; ATLAS AML.M0003 Model Hardening). Input "
    "restoration (AML.M0010) helps only against attackers who ignore it: evaluate it adaptively."
)


def _privacy_finding(spend: PrivacySpend | None, n_train: int, uploaded: bool) -> Finding:
    reduce = (
        "Train with DP-SGD at a target ε ≤ 1 and δ well below 1/N (the DP-SGD recipe; a DLSEC local tag: ATLAS "
        "has no entry for differential privacy)."
    )
    if spend is None:
        return Finding(
            id="dp-claim", title="Differential-privacy claim", grade=Grade.by(NO_DP_CLAIM),
            summary="The model was trained without differential privacy: no formal bound on what it reveals.",
            evidence={"epsilon": None, "delta": None, "accountant": None, "n_train": n_train},
            atlas_ids=("DLSEC.differential-privacy",), reduce=reduce,
        )  # fmt: skip
    grade = Grade.on(DP_EPSILON, spend.epsilon)
    if spend.delta >= 1 / n_train and grade.severity.rank < DELTA_TOO_LARGE.severity.rank:
        grade = Grade.by(DELTA_TOO_LARGE)
    recorded = ", as recorded in its imported file" if uploaded else ""
    return Finding(
        id="dp-claim", title="Differential-privacy claim", grade=grade,
        summary=f"The model claims (ε, δ)-DP with {spend.describe()}{recorded}.",
        evidence={**spend.to_record(), "n_train": n_train, "uploaded": uploaded},
        atlas_ids=("DLSEC.differential-privacy",), reduce=reduce,
    )  # fmt: skip


def scan(
    store: Store, model_id: str, *, preset: str = "quick", seed: int = 0
) -> Generator[StudyEvent, None, ScanResult]:
    """Run a preset battery on a stored model; yield progress and one event per finished finding."""
    began = time.perf_counter()
    p = PRESETS[preset]
    model, card = store.load_model(model_id)
    data = resolve_dataset(store, card.dataset)
    x, y = data.x_test[: p.images], data.y_test[: p.images]
    (eps_low, eps_high), eps_note = standard_eps(tuple(data.input_shape))
    findings: list[Finding] = []

    def event(progress: float, finding: Finding) -> StudyEvent:
        findings.append(finding)
        return StudyEvent(
            progress,
            f"{finding.title}: {finding.severity}",
            {"type": "finding", "finding": finding.to_json()},
        )

    # clean accuracy (context)
    clean = _point(0.0, correct_mask(model, x, y), "no attack", Norm.LINF)
    yield event(0.02, Finding(
        id="clean-accuracy", title="Clean accuracy", grade=Grade.context("Context for the robust accuracies."),
        summary=f"{_pct(clean.accuracy)} of the first {clean.n} test images of {card.dataset} are classified correctly.",
        evidence={"accuracy": clean.accuracy, "correct": clean.correct, "n": clean.n,
                  "card_clean_accuracy": card.clean_accuracy},
    ))  # fmt: skip

    # white-box: PGD with restarts at the two standard budgets
    points: list[SweepPoint] = []
    masks: list[torch.Tensor] = []
    for i, eps in enumerate((eps_low, eps_high)):
        yield StudyEvent(0.05 + 0.3 * i, f"PGD with {p.pgd_restarts} restarts at L∞ ε = {eps:g}")
        attack = PGD(eps=eps, norm=Norm.LINF, steps=p.pgd_steps)
        mask = robust_under_restarts(model, x, y, attack, restarts=p.pgd_restarts, seed=seed)
        masks.append(mask)
        points.append(_point(eps, mask, f"{attack.describe()}, {p.pgd_restarts} random restarts", Norm.LINF))

    # black-box: Square at the larger budget on the first images, and the honesty checks of every number
    yield StudyEvent(0.65, f"Square ({p.square_queries} queries) at L∞ ε = {eps_high:g}")
    m = min(p.square_images, len(y))
    square = Square(eps=eps_high, norm=Norm.LINF, n_queries=p.square_queries)
    black = _point(
        eps_high, robust_under_restarts(model, x[:m], y[:m], square, seed=seed), square.describe(), Norm.LINF
    )
    white_on_m = float(masks[1][:m].float().mean())
    checks = [f.to_record() for f in run_checks(
        model, x, y, curve=[clean, *points], white_box_accuracy=white_on_m, black_box_accuracy=black.accuracy, n=m,
    )]  # fmt: skip
    common = {
        "seed": seed,
        "restarts": p.pgd_restarts,
        "steps": p.pgd_steps,
        "clean_accuracy": clean.accuracy,
    }
    for point in points:
        yield event(0.75, _evasion_finding(
            f"evasion-pgd-linf-{point.eps:g}", f"White-box evasion, L∞ ε = {point.eps:g}", point,
            {**common, "eps_note": eps_note},
            ("AML.T0015", "AML.T0043.000", "AML.T0044", "AML.M0003"), HARDENING, checks,
        ))  # fmt: skip
    yield event(0.8, _evasion_finding(
        f"evasion-square-linf-{eps_high:g}", f"Black-box evasion, L∞ ε = {eps_high:g}", black,
        {"seed": seed, "queries": p.square_queries, "white_box_accuracy_same_images": white_on_m},
        ("AML.T0015", "AML.T0043.001", "AML.T0040", "AML.M0003", "AML.M0004"),
        HARDENING + " Query limits (AML.M0004) make score-based black-box attacks such as Square slower.", checks,
    ))  # fmt: skip

    # membership leakage: the loss attack, TPR at 1 % FPR
    yield StudyEvent(0.85, "membership inference (loss threshold)")
    n = min(p.membership_n, len(data.y_train), len(data.y_test))
    mia = loss_threshold_attack(model, data.x_train[:n], data.y_train[:n], data.x_test[:n], data.y_test[:n])
    rate = mia.roc.tpr_at_low_fpr[MEMBERSHIP_FPR]
    grade = (
        Grade.on(MEMBERSHIP_TPR_AT_1PCT_FPR, rate.value) if rate.measurable
        else Grade.context(f"TPR at 1 % FPR is {rate.describe()}: this scan cannot grade it.")
    )  # fmt: skip
    yield event(0.95, Finding(
        id="membership-loss", title="Membership leakage (loss attack)", grade=grade,
        summary=(
            f"The loss-threshold attack finds {rate.describe()} of {n} training images at 1 % false positives "
            f"(chance: 1 %); AUC {mia.auc:.3f}."
        ),
        evidence={"tpr_at_1pct_fpr": rate.reading, "tpr_raw": rate.value, "fpr": MEMBERSHIP_FPR, "auc": mia.auc,
                  "advantage": mia.advantage, "n_members": n, "n_nonmembers": n, "attack": mia.description,
                  "member_accuracy": mia.member_accuracy, "nonmember_accuracy": mia.nonmember_accuracy},
        atlas_ids=("AML.T0024.000", "AML.T0040", "AML.M0002", "DLSEC.differential-privacy"),
        reduce=(
            "Train with DP-SGD (a DLSEC local tag); regularise or stop earlier to shrink the train-test gap; "
            "return labels only, not confidences (AML.M0002 Passive AI Output Obfuscation)."
        ),
    ))  # fmt: skip

    yield event(0.99, _privacy_finding(card.privacy, len(data.y_train), card.source == "uploaded"))
    return ScanResult(
        model_id=card.id, model_name=card.name, dataset=card.dataset, preset=p.name, seed=seed, eps_note=eps_note,
        findings=findings, seconds=time.perf_counter() - began,
    )  # fmt: skip


class ScanStudy(Study[ScanStudyConfig]):
    name = "scan"
    title = "Security scan"
    #: evasion (white-box PGD, black-box Square), membership inference, and the model's DP claim
    atlas_ids = (
        "AML.T0015", "AML.T0043.000", "AML.T0043.001", "AML.T0044", "AML.T0040", "AML.T0024.000",
        "DLSEC.differential-privacy",
    )  # fmt: skip
    config_type = ScanStudyConfig

    def title_for(self, config: ScanStudyConfig) -> str:
        return f"Security scan ({config.preset}) of {config.model_id}"

    def model_ids(self, config: ScanStudyConfig) -> list[str]:
        return [config.model_id]

    def execute(self, store: Store, config: ScanStudyConfig) -> Generator[StudyEvent, None, StudyOutcome]:
        result = yield from scan(store, config.model_id, preset=config.preset, seed=config.seed)
        return StudyOutcome(result=result.to_json())
