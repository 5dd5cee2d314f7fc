"""The detection study: a feature-squeezing detector (Xu, Evans, Qi 2018) against an attack, and against one that
knows about it (Carlini & Wagner 2017; He et al. 2017), on a stored model.

The detector is calibrated on the first half of the test split for the chosen false-positive rate; on the other
half: detection rate vs. ε for the attack (one point per ε, drawn live), the ROC at the largest ε, and at that
budget plain PGD beside the detector-aware attack on the same images, so the honest number stands next to the
flattering one, with a finding when the detector-aware attack is not clearly the stronger.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from dlsec_core.attacks.base import ATTACKS, Attack, get_attack
from dlsec_core.attacks.pgd import PGD
from dlsec_core.config import param
from dlsec_core.defenses.detection import (
    DetectionPoint,
    DetectionResult,
    FeatureSqueezingDetector,
    Squeezer,
    adaptive_attack,
    detect,
    detection_rate_vs_eps,
)
from dlsec_core.errors import DlsecError, InvalidInputError
from dlsec_core.evaluation.checks import Finding, check_detector_attack
from dlsec_core.evaluation.sweep import check_eps_values
from dlsec_core.store import Store
from dlsec_core.studies.base import (
    Study,
    StudyConfig,
    StudyEvent,
    StudyOutcome,
    built,
    check_name,
    seed_param,
)
from dlsec_core.workflows import resolve_dataset

MAX_IMAGES = 100_000
MAX_STEPS = 1_000
MAX_RESTARTS = 20


def json_float(value: float) -> float | None:
    """A rate as JSON: NaN (e.g. a detection rate when no attack succeeded) becomes None (null, a gap in a chart)."""
    return None if math.isnan(value) else float(value)


@dataclass(frozen=True, kw_only=True)
class DetectionStudyConfig(StudyConfig):
    """A detection study. `squeezers` are `{"kind": "bit_depth" | "median", "size": int}`; `attack` and
    `attack_params` name a registered attack and its hyperparameters (ε comes from `eps`)."""

    title: ClassVar[str] = "Detection study"

    model_id: str = param(dataclasses.MISSING, "Model (a stored model id)")
    squeezers: list[dict[str, Any]] = field(
        default_factory=lambda: [{"kind": "bit_depth", "size": 1}, {"kind": "median", "size": 2}]
    )
    fpr: float = param(
        0.05, "False-positive rate to allow", min=0.0, max=1.0, min_open=True, max_open=True, step=0.01,
        help="The threshold flags this share of clean held-out images (set on the calibration half).",
    )  # fmt: skip
    attack: str = param("fgsm", "Attack", options=tuple(ATTACKS))
    attack_params: dict[str, Any] = field(default_factory=dict)
    eps: list[float] = field(default_factory=lambda: [0.0, 0.06, 0.12, 0.18, 0.24, 0.3])
    n_images: int = param(
        500, "Test images", min=1, max=MAX_IMAGES, help="Half calibrate, half are attacked."
    )
    adaptive_images: int = param(200, "Images for the detector-aware attack", min=1, max=MAX_IMAGES)
    plain_steps: int = param(40, "Plain PGD steps", min=1, max=MAX_STEPS)
    adaptive_steps: int = param(100, "Detector-aware steps", min=1, max=MAX_STEPS)
    adaptive_restarts: int = param(3, "Detector-aware restarts", min=1, max=MAX_RESTARTS)
    seed: int = seed_param()
    #: a transfer attack's surrogate: a stored model (the attack's `surrogate` field holds a module, not JSON)
    surrogate_id: str | None = param(None, "Surrogate model (a transfer attack's; a stored model id)")

    def check_plain(self, problems: list[str]) -> None:
        super().check_plain(problems)
        check_name(self.model_id, "Model", "model_id", problems)
        if not isinstance(self.squeezers, list) or not self.squeezers:
            problems.append(f"squeezers: a list of {{kind, size}} objects, got {self.squeezers!r}")
            return
        for i, squeezer in enumerate(self.squeezers):
            built(problems, f"squeezers[{i}]", Squeezer, squeezer)

    def cross_check(self, problems: list[str]) -> None:
        super().cross_check(problems)
        if self.attack not in ATTACKS:
            return  # named by its field check
        attack = built(
            problems, "attack_params", lambda **kw: get_attack(self.attack, **kw), self.attack_params
        )
        if attack is not None:
            try:
                object.__setattr__(self, "eps", check_eps_values(self.eps, attack.norm))
            except (DlsecError, TypeError, ValueError) as err:
                problems.append(f"eps: {str(err).rstrip('.')}")

    def detector(self) -> FeatureSqueezingDetector:
        """The detector these (validated) settings describe."""
        return FeatureSqueezingDetector(squeezers=tuple(Squeezer(**s) for s in self.squeezers), fpr=self.fpr)

    def build_attack(self) -> Attack:
        return get_attack(self.attack, **self.attack_params)


@dataclass(frozen=True, kw_only=True)
class AttackSummary:
    """One attack against the detector at one budget: what ran (its full description) and the rates it got."""

    attack: str  # the attack's description, with every hyperparameter
    eps: float
    n: int
    success_rate: float
    detection_rate: float | None  # among the successful adversarial inputs; None when none succeeded
    flag_rate: float
    evaded_rate: float  # fooled and not flagged, among all: the number that matters
    false_positive_rate: float

    @classmethod
    def of(cls, result: DetectionResult, attack: str | None = None) -> AttackSummary:
        """`attack`: the description to keep when `result.attack` is only a short name (as `detect` gives)."""
        return cls(
            attack=attack or result.attack, eps=result.eps, n=result.n, success_rate=result.success_rate,
            detection_rate=json_float(result.detection_rate), flag_rate=result.flag_rate,
            evaded_rate=result.evaded_rate, false_positive_rate=result.false_positive_rate,
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AttackSummary:
        return cls(**data)


def point_record(point: DetectionPoint) -> dict[str, Any]:
    """A detection point as JSON (rates that are undefined, NaN, become None)."""
    return {k: json_float(v) if isinstance(v, float) else v for k, v in point.to_record().items()}


@dataclass(frozen=True, kw_only=True)
class DetectionStudyResult:
    """What a detection study found. `points` and `roc` are chart records; everything else is a typed field."""

    model_id: str
    attack: str  # the registered attack's name ("fgsm")
    attack_title: str  # its title ("FGSM")
    detector: str  # the calibrated detector's description
    threshold: float
    calibration_fpr: float  # realised on the calibration images (<= the target)
    n_calibration: int
    n_images: int  # held-out images behind the curve
    points: list[dict[str, Any]]  # one `DetectionPoint` record per ε
    roc: list[dict[str, float]]  # at the largest ε; empty when no adversarial image succeeded there
    roc_auc: float | None  # None then
    roc_attack: str  # the attack at the largest ε (its description)
    roc_clean: int  # clean images behind the ROC: false-positive rates below 1 / roc_clean are not resolved
    roc_adversarial: int  # successful adversarial images behind it: the same for true-positive rates
    plain: AttackSummary  # plain PGD at the largest ε, on the detector-aware attack's images
    adaptive: AttackSummary  # the detector-aware attack, same budget and images
    findings: list[
        Finding
    ]  # honesty checks: is the detector-aware attack clearly stronger than the plain one?

    def to_json(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data.update(
            plain=self.plain.to_json(), adaptive=self.adaptive.to_json(),
            findings=[f.to_record() for f in self.findings],
        )  # fmt: skip
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DetectionStudyResult:
        return cls(**{
            **data, "plain": AttackSummary.from_json(data["plain"]),
            "adaptive": AttackSummary.from_json(data["adaptive"]),
            "findings": [Finding(**f) for f in data["findings"]],
        })  # fmt: skip


class DetectionStudy(Study[DetectionStudyConfig]):
    name = "detection"
    title = "Detection study"
    #: the detector (adversarial input detection) against white-box attacks, plain and detector-aware (evasion)
    atlas_ids = ("AML.M0015", "AML.T0015", "AML.T0043.000")
    config_type = DetectionStudyConfig

    def title_for(self, config: DetectionStudyConfig) -> str:
        return f"Detection on {config.model_id}: feature squeezing vs {config.build_attack().title}"

    def model_ids(self, config: DetectionStudyConfig) -> list[str]:
        return [config.model_id] + ([config.surrogate_id] if config.surrogate_id else [])

    def execute(
        self, store: Store, config: DetectionStudyConfig
    ) -> Generator[StudyEvent, None, StudyOutcome]:
        attack = config.build_attack()
        if config.surrogate_id:
            attack = attack.with_params(surrogate=store.load_model(config.surrogate_id)[0])
        model, card = store.load_model(config.model_id)
        data = resolve_dataset(store, card.dataset)
        half = data.x_test.shape[0] // 2
        if half < 20:
            raise InvalidInputError(
                "The test split is too small to calibrate a detector and evaluate it apart."
            )
        yield StudyEvent(0.0, f"calibrating on {half} clean images")
        calibrated = config.detector().calibrate(model, data.x_test[:half])
        x, y = data.x_test[half : half + config.n_images], data.y_test[half : half + config.n_images]
        steps = len(config.eps) + 3  # the curve's points, then the ROC, plain PGD, the detector-aware attack
        points: list[dict[str, Any]] = []
        curve = detection_rate_vs_eps(model, calibrated, attack, x, y, config.eps, seed=config.seed)
        for point in curve:
            points.append(point_record(point))
            yield StudyEvent(len(points) / steps, f"ε {point.eps:g}", {"type": "point", **points[-1]})
        eps = max(config.eps)
        at_largest = attack.with_params(eps=eps)
        yield StudyEvent(len(config.eps) / steps, f"ROC at ε {eps:g}")
        largest = detect(
            model, calibrated, at_largest(model, x, y, generator=torch.Generator().manual_seed(config.seed))
        )
        roc = largest.roc() if bool(largest.success.any()) else None  # no successful image: no ROC to draw
        xa, ya = x[: config.adaptive_images], y[: config.adaptive_images]
        plain_attack = PGD(eps=eps, norm=attack.norm, steps=config.plain_steps)
        yield StudyEvent((len(config.eps) + 1) / steps, f"plain PGD at ε {eps:g}")
        plain = detect(
            model,
            calibrated,
            plain_attack(model, xa, ya, generator=torch.Generator().manual_seed(config.seed)),
        )
        yield StudyEvent((len(config.eps) + 2) / steps, f"detector-aware attack at ε {eps:g}")
        adaptive = adaptive_attack(
            model, calibrated, xa, ya, eps=eps, norm=attack.norm, steps=config.adaptive_steps,
            restarts=config.adaptive_restarts, generator=torch.Generator().manual_seed(config.seed),
        )  # fmt: skip
        result = DetectionStudyResult(
            model_id=config.model_id,
            attack=attack.name,
            attack_title=attack.title,
            detector=calibrated.describe(),
            threshold=calibrated.threshold,
            calibration_fpr=calibrated.calibration_fpr,
            n_calibration=calibrated.n_calibration,
            n_images=int(x.shape[0]),
            points=points,
            roc=[] if roc is None else roc.to_records(),
            roc_auc=None if roc is None else json_float(roc.auc),
            roc_attack=at_largest.describe(),
            roc_clean=largest.n,
            roc_adversarial=int(largest.success.sum()),
            plain=AttackSummary.of(plain, plain_attack.describe()),
            adaptive=AttackSummary.of(adaptive),
            findings=check_detector_attack(
                plain.evaded_rate, adaptive.evaded_rate, n=adaptive.n, adaptive="the detector-aware attack"
            ),
        )
        return StudyOutcome(result=result.to_json())  # no model stored: `model_ids` are read
