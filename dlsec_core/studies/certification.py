"""The certification study: randomized smoothing's certified accuracy vs. L2 radius (Cohen, Rosenfeld, Kolter 2019)
beside the empirical accuracy under L2 PGD with expectation over the same Gaussian noise, on a stored model.

Certified accuracy is a guarantee (a lower bound); the empirical curve is what one attack achieved (an upper bound).
Each empirical accuracy averages `draws` noise draws per adversarial image: with one draw, a curve on 20 images
rises and falls with the noise (0.80 at r = 0.3, 0.95 at r = 0.5). A curve that still rises is flagged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from dlsec_core.attacks.norms import Norm
from dlsec_core.attacks.pgd import PGD
from dlsec_core.config import param
from dlsec_core.defenses.smoothing import MAX_SAMPLES, certified_accuracy_curve, default_radii
from dlsec_core.defenses.transforms import MAX_EOT_SAMPLES, GaussianNoise, Mode, defend
from dlsec_core.evaluation.checks import Finding, check_curve
from dlsec_core.evaluation.sweep import sweep
from dlsec_core.store import Store
from dlsec_core.studies.base import Study, StudyConfig, StudyEvent, StudyOutcome, check_name, seed_param
from dlsec_core.training.loop import relay
from dlsec_core.workflows import resolve_dataset

MAX_IMAGES = 10_000
MAX_STEPS = 1_000
MAX_DRAWS = 256
CERTIFY_SHARE = 0.8  # of the progress: certifying every image; the empirical curve comes after


@dataclass(frozen=True, kw_only=True)
class CertificationStudyConfig(StudyConfig):
    """A certification study: CERTIFY's σ, n0, n, α on the first `n_images` test images, then L2 PGD (+EOT over
    `eot_samples` noise draws per step) at the same radii, each accuracy averaged over `draws` noise draws."""

    title: ClassVar[str] = "Certification study"

    model_id: str = param(dataclasses.MISSING, "Model (a stored model id)")
    sigma: float = param(
        0.25, "Noise σ", min=0.0, min_open=True, max=10.0, step=0.01,
        help="The smoothing noise's standard deviation (pixel units): larger certifies larger radii, less accurately.",
    )  # fmt: skip
    n_images: int = param(50, "Test images", min=1, max=MAX_IMAGES)
    n0: int = param(
        100, "Selection samples n0", min=1, max=MAX_SAMPLES, help="Noise draws that pick the class."
    )
    n: int = param(
        500, "Noise samples per image (n)", min=1, max=MAX_SAMPLES,
        help="Noise draws that bound the class's probability: more samples certify larger radii.",
    )  # fmt: skip
    alpha: float = param(
        0.001, "Failure probability α", min=0.0, max=0.5, min_open=True, max_open=True, step=0.001
    )
    pgd_steps: int = param(20, "PGD steps", min=1, max=MAX_STEPS)
    eot_samples: int = param(8, "EOT samples per step", min=1, max=MAX_EOT_SAMPLES)
    draws: int = param(16, "Noise draws per image", min=1, max=MAX_DRAWS)
    seed: int = seed_param()

    def check_plain(self, problems: list[str]) -> None:
        super().check_plain(problems)
        check_name(self.model_id, "Model", "model_id", problems)

    @property
    def radii(self) -> tuple[float, ...]:
        return default_radii(self.sigma)


@dataclass(frozen=True, kw_only=True)
class CertificationStudyResult:
    """What a certification study found. `certified` and `empirical` are chart records; the rest typed fields."""

    model_id: str
    sigma: float
    n0: int
    n: int
    alpha: float
    n_images: int
    certify: str  # how the certificates were computed (a description)
    abstain_rate: float
    certified: list[dict[str, float]]  # radius, certified_accuracy
    empirical: list[dict[str, Any]]  # sweep records: eps (= radius), accuracy, correct, n, attack, ...
    empirical_attack: str  # the registered attack's name ("pgd")
    empirical_attack_title: str  # its title ("PGD")
    pgd_steps: int
    eot_samples: int
    draws: int  # noise draws per image behind each empirical accuracy
    findings: list[Finding]  # honesty checks of the empirical curve (one that rises with the radius)

    def to_json(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["findings"] = [f.to_record() for f in self.findings]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CertificationStudyResult:
        return cls(**{**data, "findings": [Finding(**f) for f in data["findings"]]})


class CertificationStudy(Study[CertificationStudyConfig]):
    name = "certification"
    title = "Certification"
    #: a certified model hardening (randomized smoothing) beside the empirical white-box attack
    atlas_ids = ("AML.M0003", "AML.T0043.000")
    config_type = CertificationStudyConfig

    def title_for(self, config: CertificationStudyConfig) -> str:
        return f"Certify {config.model_id} (σ={config.sigma:g}, {config.n_images} images, n={config.n})"

    def model_ids(self, config: CertificationStudyConfig) -> list[str]:
        return [config.model_id]

    def execute(
        self, store: Store, config: CertificationStudyConfig
    ) -> Generator[StudyEvent, None, StudyOutcome]:
        model, card = store.load_model(config.model_id)
        data = resolve_dataset(store, card.dataset)
        x, y = data.x_test[: config.n_images], data.y_test[: config.n_images]
        radii = config.radii
        work = certified_accuracy_curve(
            model, x, y, config.sigma, radii, n0=config.n0, n=config.n, alpha=config.alpha,
            generator=torch.Generator().manual_seed(config.seed),
        )  # fmt: skip
        certified = yield from relay(
            work,
            lambda event: StudyEvent(
                CERTIFY_SHARE * event.progress, f"certified {event.done}/{event.total} images",
                {"type": "certify", **event.to_record()},
            ),
        )  # fmt: skip
        yield StudyEvent(
            CERTIFY_SHARE, f"certified {len(y)} images; empirical attack next",
            {"type": "certified", "certified": certified.to_records(), "abstain_rate": certified.abstain_rate},
        )  # fmt: skip
        attack = PGD(norm=Norm.L2, steps=config.pgd_steps)
        noisy = defend(
            model, GaussianNoise(sigma=config.sigma), mode=Mode.ADAPTIVE, eot_samples=config.eot_samples
        )
        empirical: list[dict[str, Any]] = []
        with noisy.drawing_from(torch.Generator().manual_seed(config.seed)):
            points = sweep(
                noisy, x, y, attack, list(radii), seed=config.seed, attack_model=noisy.attack_view(),
                draws=config.draws,
            )  # fmt: skip
            for point in points:
                empirical.append(point.to_record())
                yield StudyEvent(
                    CERTIFY_SHARE + (1 - CERTIFY_SHARE) * len(empirical) / len(radii),
                    f"empirical attack at radius {point.eps:g}", {"type": "point", **empirical[-1]},
                )  # fmt: skip
        result = CertificationStudyResult(
            model_id=config.model_id,
            sigma=certified.sigma,
            n0=config.n0,
            n=config.n,
            alpha=config.alpha,
            n_images=int(y.shape[0]),
            certify=certified.describe(),
            abstain_rate=certified.abstain_rate,
            certified=certified.to_records(),
            empirical=empirical,
            empirical_attack=attack.name,
            empirical_attack_title=attack.title,
            pgd_steps=config.pgd_steps,
            eot_samples=config.eot_samples,
            draws=config.draws,
            findings=check_curve(
                [r["eps"] for r in empirical], [r["accuracy"] for r in empirical], n=int(y.shape[0])
            ),
        )
        return StudyOutcome(result=result.to_json())  # no model stored: `model_ids` are read
