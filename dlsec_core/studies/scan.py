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

The thorough preset adds, on top of a stronger quick battery (more images, restarts and queries):

- membership leakage by LiRA (Carlini et al. 2022), 8 shadows trained like the model (its settings and recipe),
  as TPR at 1 % FPR: each shadow costs about half the model's own training (it trains on half of train ∪ test),
  so LiRA is most of a thorough scan's time, and an adversarially trained or DP model's shadows cost what its
  recipe costs;
- for a model that claims differential privacy, the one-run privacy audit (Steinke, Nasr, Jagielski 2023) of the
  recipe that trained it: a measured lower bound on ε that the claim must respect;
- theft exposure: the fidelity a Knockoff-Nets attacker (Orekondy et al. 2019; the answers as soft labels, so a
  label-only API makes it Copycat) reaches with 1,000 queries of the model's training distribution through a
  `PredictionAPI` with the model's output policy (`output_policy`, default: full probabilities);
- watermark presence: a model trained with the watermark recipe is verified against null models (Adi et al.
  2018), an informational finding with its p-value; any other model gets an informational "no watermark".

Any preset, when the model is served with an input transform (`input_transform`: the lab has no per-model notion
of serving, so the scan is told), measures the input-defense gap at both budgets: robust accuracy of the served
pipeline under PGD made naively (torch's own gradient through the transform, one random draw) and adaptively
(BPDA through non-differentiable transforms, EOT over randomized ones; `defenses.transforms`).

Severities come from the scales in `dlsec_core.assessment.severity` (every threshold with its citation). One
event per finished finding (payload `{"type": "finding", "finding": ...}`) lets a page fill a scorecard live.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

import torch

from dlsec_core.assessment.findings import Finding, Grade
from dlsec_core.assessment.severity import (
    DELTA_TOO_LARGE,
    DP_CLAIM_CONSISTENT,
    DP_CLAIM_REFUTED,
    DP_EPSILON,
    EXTRACTION_FIDELITY,
    INPUT_DEFENSE_GAP,
    MEMBERSHIP_TPR_AT_1PCT_FPR,
    NO_DP_CLAIM,
    NO_WATERMARK,
    ROBUST_ACCURACY,
    WATERMARK_NOT_VERIFIED,
    WATERMARK_VERIFIED,
    Severity,
)
from dlsec_core.attacks.norms import Norm
from dlsec_core.attacks.pgd import PGD
from dlsec_core.attacks.square import Square
from dlsec_core.config import param
from dlsec_core.data.builtin import Dataset
from dlsec_core.defenses.transforms import (
    TRANSFORMS,
    InputTransform,
    Mode,
    defend,
    get_transform,
    robust_accuracy_under,
)
from dlsec_core.evaluation.checks import run_checks
from dlsec_core.evaluation.restarts import correct_mask, robust_under_restarts
from dlsec_core.evaluation.sweep import SweepPoint
from dlsec_core.privacy.audit import AuditConfig, audit_privacy
from dlsec_core.privacy.membership import LiraConfig, lira_attack, loss_threshold_attack
from dlsec_core.privacy_spend import PrivacySpend
from dlsec_core.store import ModelCard, Store
from dlsec_core.studies.base import (
    Study,
    StudyConfig,
    StudyEvent,
    StudyOutcome,
    built,
    check_name,
    seed_param,
)
from dlsec_core.studies.membership import _training_of
from dlsec_core.studies.ownership import OwnershipStudyConfig, train_null_models
from dlsec_core.theft.api import (
    OUTPUT_POLICIES,
    Oracle,
    OutputPolicy,
    PredictionAPI,
    SimulatedClock,
    get_policy,
)
from dlsec_core.theft.extraction import Judge, Knockoff, PoolKind, query_pool
from dlsec_core.theft.watermark import WATERMARK_TAG, WatermarkRecipe, verify
from dlsec_core.training.loop import TrainConfig, relay
from dlsec_core.workflows import resolve_dataset

MEMBERSHIP_FPR = 0.01
NO_TRANSFORM = "none"
THEFT_QUERIES = 1000  # the fixed budget: what a retraining attacker reaches with 1,000 queries
ATTACKER = "scan-attacker"
HONEST = "scan-honest-user"


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
    eot_samples: int = 8  # draws the adaptive attack averages over a randomized input transform
    # thorough only (0 = not run)
    lira_shadows: int = 0
    audit_canaries: int = 0  # canaries of the one-run audit (DP models only), capped by the test split
    theft_queries: int = 0
    watermark_null_models: int = 0

    @property
    def thorough(self) -> bool:
        return self.lira_shadows > 0


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
    "thorough": Preset(
        name="thorough",
        images=500,
        pgd_steps=40,
        pgd_restarts=5,
        square_images=200,
        square_queries=1000,
        membership_n=500,
        lira_shadows=8,
        audit_canaries=600,
        theft_queries=THEFT_QUERIES,
        watermark_null_models=2,
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
        "quick", "Preset", options=tuple(PRESETS),
        help="quick: about a minute on 2 CPU cores; thorough: a stronger battery plus LiRA, the DP audit, theft "
        "exposure and the watermark (a few minutes).",
    )  # fmt: skip
    seed: int = seed_param(help="Random starts of PGD and Square's random squares, shadows, surrogates.")
    input_transform: str = param(
        NO_TRANSFORM, "Served behind an input transform", options=(NO_TRANSFORM, *TRANSFORMS),
        help="The transform the model is served with, if any: the scan measures the input-defense gap (naive vs "
        "adaptive attack) of the served pipeline.",
    )  # fmt: skip
    transform_params: dict[str, Any] = field(default_factory=dict)
    output_policy: str = param(
        "full", "API output policy", options=tuple(OUTPUT_POLICIES),
        help="What the model's prediction API returns (thorough: the theft-exposure finding attacks through it).",
    )  # fmt: skip
    policy_params: dict[str, Any] = field(default_factory=dict)

    def check_plain(self, problems: list[str]) -> None:
        super().check_plain(problems)
        check_name(self.model_id, "the model", "model_id", problems)

    def cross_check(self, problems: list[str]) -> None:
        super().cross_check(problems)
        if self.input_transform == NO_TRANSFORM:
            if self.transform_params:
                problems.append("`transform_params` need an `input_transform` to apply to")
        elif self.input_transform in TRANSFORMS:
            built(
                problems, "transform_params", lambda **p: get_transform(self.input_transform, **p),
                self.transform_params,
            )  # fmt: skip
        if self.output_policy in OUTPUT_POLICIES:
            built(
                problems, "policy_params", lambda **p: get_policy(self.output_policy, **p), self.policy_params
            )

    def transform_config(self) -> InputTransform | None:
        if self.input_transform == NO_TRANSFORM:
            return None
        return get_transform(self.input_transform, **self.transform_params)

    def policy_config(self) -> OutputPolicy:
        return get_policy(self.output_policy, **self.policy_params)


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


# -- the stages beyond the quick battery: each yields its progress within its span and returns its finding ------


@dataclass(frozen=True)
class Span:
    """The share of the scan's progress bar one stage fills."""

    start: float
    end: float

    def of(self, fraction: float) -> float:
        return self.start + (self.end - self.start) * min(max(fraction, 0.0), 1.0)


class _Progress(Protocol):
    @property
    def progress(self) -> float: ...


E = TypeVar("E", bound=_Progress)
R = TypeVar("R")


def _relay(
    work: Generator[E, None, R], span: Span, message: Callable[[E], str]
) -> Generator[StudyEvent, None, R]:
    """Relay a generator of progress events (training, shadows, extraction) as scan progress within `span`."""
    return relay(work, lambda item: StudyEvent(span.of(item.progress), message(item)))


def _gap_finding(
    span: Span, model: torch.nn.Module, transform: InputTransform, x: torch.Tensor, y: torch.Tensor, eps: float,
    p: Preset, seed: int,
) -> Generator[StudyEvent, None, Finding]:  # fmt: skip
    """Robust accuracy of the served pipeline (model behind `transform`) under PGD made naively and adaptively."""
    attack = PGD(eps=eps, norm=Norm.LINF, steps=p.pgd_steps)
    runs = {}
    for i, mode in enumerate((Mode.NAIVE, Mode.ADAPTIVE)):
        defended = defend(model, transform, mode=mode, eot_samples=p.eot_samples)
        yield StudyEvent(span.of(i / 2), f"input-defense gap at L∞ ε = {eps:g}: {defended.describe()}")
        runs[mode] = robust_accuracy_under(
            defended, attack, x, y, generator=torch.Generator().manual_seed(seed)
        )
    naive, adaptive = runs[Mode.NAIVE], runs[Mode.ADAPTIVE]
    gap = naive.robust_accuracy - adaptive.robust_accuracy
    gap_grade = Grade.on(INPUT_DEFENSE_GAP, gap)
    robust_grade = Grade.on(ROBUST_ACCURACY, adaptive.robust_accuracy)
    grade = gap_grade if gap_grade.severity.rank >= robust_grade.severity.rank else robust_grade
    return Finding(
        id=f"input-defense-gap-linf-{eps:g}", title=f"Input-defense gap, L∞ ε = {eps:g}", grade=grade,
        summary=(
            f"Served behind {transform.describe()}, the model keeps {_pct(adaptive.robust_accuracy)} of {adaptive.n} "
            f"test images under the adaptive attack; a naive evaluation reports {_pct(naive.robust_accuracy)} "
            f"(gap {100 * gap:+.1f} points)."
        ),
        evidence={
            "eps": eps, "norm": str(Norm.LINF), "attack": attack.describe(), "n": adaptive.n, "seed": seed,
            "transform": transform.to_dict(), "naive": naive.to_record(), "adaptive": adaptive.to_record(),
            "naive_robust_accuracy": naive.robust_accuracy, "adaptive_robust_accuracy": adaptive.robust_accuracy,
            "gap": gap, "clean_accuracy": adaptive.clean_accuracy, "gap_severity": str(gap_grade.severity),
            "robust_severity": str(robust_grade.severity),
        },
        atlas_ids=("AML.T0015", "AML.T0043.000", "AML.M0010", "AML.M0003"),
        reduce=(
            "Report only the adaptive number (BPDA through non-differentiable transforms, EOT over random ones). "
            "Input restoration (AML.M0010) alone does not stop an adaptive attacker: combine it with model "
            "hardening (AML.M0003, adversarial training) or a certified defense (randomized smoothing)."
        ),
    )  # fmt: skip


def _lira_finding(
    span: Span, model: torch.nn.Module, card: ModelCard, data: Dataset, p: Preset, seed: int
) -> Generator[StudyEvent, None, Finding]:
    """LiRA with shadows trained like the model (its stored settings and recipe), as TPR at 1 % FPR."""
    n = min(p.membership_n, len(data.y_train), len(data.y_test))
    config, recipe, note = _training_of(card)
    lira = LiraConfig(shadows=p.lira_shadows, seed=seed)
    work = lira_attack(
        model, card.spec, data, config=config, recipe=recipe, lira=lira, n_members=n, n_nonmembers=n
    )
    mia = yield from _relay(work, span, lambda e: f"LiRA: shadow {e.index}/{e.shadows}")
    rate = mia.roc.tpr_at_low_fpr[MEMBERSHIP_FPR]
    grade = (
        Grade.on(MEMBERSHIP_TPR_AT_1PCT_FPR, rate.value) if rate.measurable
        else Grade.context(f"TPR at 1 % FPR is {rate.describe()}: this scan cannot grade it.")
    )  # fmt: skip
    return Finding(
        id="membership-lira", title="Membership leakage (LiRA)", grade=grade,
        summary=(
            f"LiRA ({lira.shadows} shadow models trained like this one) finds {rate.describe()} of {n} training "
            f"images at 1 % false positives (chance: 1 %); AUC {mia.auc:.3f}."
        ),
        evidence={"tpr_at_1pct_fpr": rate.reading, "tpr_raw": rate.value, "fpr": MEMBERSHIP_FPR, "auc": mia.auc,
                  "advantage": mia.advantage, "n_members": n, "n_nonmembers": n, "attack": mia.description + note,
                  "member_accuracy": mia.member_accuracy, "nonmember_accuracy": mia.nonmember_accuracy,
                  "seed": seed, **{f"lira_{k}": v for k, v in mia.details.items()}},
        atlas_ids=("AML.T0024.000", "AML.T0040", "AML.M0002", "DLSEC.differential-privacy"),
        reduce=(
            "Train with DP-SGD (a DLSEC local tag): the bound holds against any attack, LiRA included; regularise "
            "or stop earlier; return labels only (AML.M0002 Passive AI Output Obfuscation) and limit queries "
            "(AML.M0004): LiRA needs the model's confidence on each candidate."
        ),
    )  # fmt: skip


def _audit_finding(
    span: Span, card: ModelCard, data: Dataset, p: Preset, seed: int
) -> Generator[StudyEvent, None, Finding]:
    """The one-run audit of the recipe that trained the model (retrained once with canaries, same settings)."""
    config, recipe, _ = _training_of(card)
    keep = min(200, len(data.y_test) // 2)
    canaries = min(p.audit_canaries, len(data.y_test) - keep)
    audit = AuditConfig(canaries=canaries, keep_test=keep, seed=seed)
    result = yield from _relay(
        audit_privacy(card.spec, data, config, recipe, config=audit), span,
        lambda e: f"privacy audit: training with {canaries} canaries, epoch {e.epoch}/{e.epochs}",
    )  # fmt: skip
    grade = Grade.by(DP_CLAIM_REFUTED if result.claim_refuted else DP_CLAIM_CONSISTENT)
    return Finding(
        id="dp-audit", title="Privacy audit (one run)", grade=grade,
        summary=f"Retrained once like this model with {result.m} canaries: {result.describe()}.",
        evidence={**result.bound.to_record(), "seed": seed, "model_epsilon": card.privacy.epsilon if card.privacy else None,
                  "note": "the recipe and settings that trained the model, retrained once with the canaries added "
                          "(its claimed ε is that run's, close to the model's); the model itself is not audited"},
        atlas_ids=("AML.T0024.000", "DLSEC.differential-privacy"),
        reduce=(
            "If refuted: fix the DP-SGD implementation or its accounting (per-example clipping, noise, sampling "
            "rate) before relying on the claim. If consistent: a larger audit (more canaries, several runs) "
            "tightens the bound."
        ),
    )  # fmt: skip


def _theft_finding(
    span: Span,
    model: torch.nn.Module,
    card: ModelCard,
    data: Dataset,
    policy: OutputPolicy,
    p: Preset,
    seed: int,
) -> Generator[StudyEvent, None, Finding]:
    """Fidelity a Knockoff attacker reaches with `p.theft_queries` queries through the model's API."""
    model = model.cpu()
    budget = min(p.theft_queries, len(data.y_train))
    judge = Judge.of(model, data.x_test, data.y_test)
    clock = SimulatedClock()
    api = PredictionAPI(model, card.spec, policy, seed=seed, clock=clock)
    api.register(ATTACKER, budget=budget)
    api.register(HONEST, budget=len(data.y_test))
    api_accuracy = float((api.query(HONEST, data.x_test).argmax(1) == data.y_test).float().mean())
    attack = Knockoff(arch=card.spec.arch)
    pool = query_pool(PoolKind.SAME, data, budget, torch.Generator().manual_seed(seed))
    work = attack.run(Oracle(api, ATTACKER, sleep=clock.sleep), judge, [budget], pool=pool, seed=seed)
    result = yield from _relay(work, span, lambda e: f"theft exposure: {e.message}")
    point = result.points[-1]
    return Finding(
        id="theft-exposure", title="Theft exposure (model extraction)",
        grade=Grade.on(EXTRACTION_FIDELITY, point.fidelity),
        summary=(
            f"With {point.queries:,} queries through its API ({policy.describe()}), a Knockoff-Nets attacker "
            f"trains a copy that agrees with the model on {_pct(point.fidelity)} of the test images "
            f"(the copy's own accuracy {_pct(point.accuracy)})"
            + (": the answers are labels, so its soft labels are Copycat's hard ones." if policy.name == "label" else ".")
        ),
        evidence={**point.to_record(), "victim_accuracy": judge.victim_accuracy, "api_accuracy": api_accuracy,
                  "policy": policy.name, "policy_description": policy.describe(), "attack": result.description,
                  "pool": PoolKind.SAME.describe(), "answered": api.log(ATTACKER).answered, "seed": seed,
                  "n_judged": len(data.y_test)},
        atlas_ids=("AML.T0024.002", "AML.T0040", "AML.M0002", "AML.M0004", "AML.M0024", WATERMARK_TAG),
        reduce=(
            "Return less: top-1 labels or rounded scores (AML.M0002 Passive AI Output Obfuscation; see the theft "
            "page for what each policy costs honest users); cap each client's queries (AML.M0004); log queries and "
            "watch for extraction patterns such as PRADA (AML.M0024); watermark the model to prove theft (a DLSEC "
            "local tag)."
        ),
    )  # fmt: skip


def _watermark_finding(
    span: Span, model: torch.nn.Module, card: ModelCard, data: Dataset, p: Preset, seed: int
) -> Generator[StudyEvent, None, Finding]:
    """Verify the owner's trigger-set watermark against null models (trained like it, without the watermark)."""
    reduce = (
        "Train with the watermark recipe (a DLSEC local tag: ATLAS has no entry for watermarking) to be able to "
        "prove that a stolen copy is yours; check that it survives fine-tuning and pruning on the ownership page."
    )
    if card.recipe != WatermarkRecipe.name:
        yield StudyEvent(span.start, "watermark: none (not trained with the watermark recipe)")
        return Finding(
            id="watermark", title="Watermark", grade=Grade.by(NO_WATERMARK),
            summary=f"No watermark: the model was trained with the {card.recipe!r} recipe.",
            evidence={"recipe": card.recipe, "watermarked": False}, atlas_ids=(WATERMARK_TAG,), reduce=reduce,
        )  # fmt: skip
    recipe = WatermarkRecipe(**card.recipe_params)
    spec = card.spec
    triggers = recipe.trigger_set(spec.input_shape, spec.num_classes)
    base = TrainConfig(**card.train_config) if card.train_config else TrainConfig()
    ownership = OwnershipStudyConfig(
        owner_id=card.id, suspect_id=card.id, null_models=p.watermark_null_models, seed=seed
    )
    seeds = ownership.null_seeds(card.seed)
    work = train_null_models(spec, data, base, ownership, seeds, triggers, len(seeds))
    nulls = yield from _relay(work, span, lambda e: f"watermark: {e.message}")
    verdict = verify(model, triggers, [n.key_accuracy for n in nulls], num_classes=spec.num_classes)
    return Finding(
        id="watermark", title="Watermark", grade=Grade.by(WATERMARK_VERIFIED if verdict.verified else WATERMARK_NOT_VERIFIED),
        summary=f"Trigger-set watermark ({len(triggers)} keys): {verdict.describe()}.",
        evidence={**verdict.to_record(), "watermarked": True, "key_kind": str(recipe.key_kind),
                  "null_models": [n.to_json() for n in nulls], "seed": seed},
        atlas_ids=(WATERMARK_TAG,), reduce=reduce,
    )  # fmt: skip


def scan(
    store: Store,
    model_id: str,
    *,
    preset: str = "quick",
    seed: int = 0,
    transform: InputTransform | None = None,
    policy: OutputPolicy | None = None,
) -> Generator[StudyEvent, None, ScanResult]:
    """Run a preset battery on a stored model; yield progress and one event per finished finding.

    `transform`: the input transform the model is served with (adds the input-defense gap at both budgets);
    `policy`: its API's output policy (default full probabilities; thorough's theft exposure attacks through it).
    """
    began = time.perf_counter()
    p = PRESETS[preset]
    policy = policy or get_policy("full")
    model, card = store.load_model(model_id)
    data = resolve_dataset(store, card.dataset)
    x, y = data.x_test[: p.images], data.y_test[: p.images]
    (eps_low, eps_high), eps_note = standard_eps(tuple(data.input_shape))
    findings: list[Finding] = []
    share = 1.0 if not (p.thorough or transform) else 0.3 if p.thorough else 0.6  # the quick battery's share

    def at(progress: float) -> float:
        return progress * share

    def event(progress: float, finding: Finding) -> StudyEvent:
        findings.append(finding)
        return StudyEvent(
            progress,
            f"{finding.title}: {finding.severity}",
            {"type": "finding", "finding": finding.to_json()},
        )

    # clean accuracy (context)
    clean = _point(0.0, correct_mask(model, x, y), "no attack", Norm.LINF)
    yield event(at(0.02), Finding(
        id="clean-accuracy", title="Clean accuracy", grade=Grade.context("Context for the robust accuracies."),
        summary=f"{_pct(clean.accuracy)} of the first {clean.n} test images of {card.dataset} are classified correctly.",
        evidence={"accuracy": clean.accuracy, "correct": clean.correct, "n": clean.n,
                  "card_clean_accuracy": card.clean_accuracy},
    ))  # fmt: skip

    # white-box: PGD with restarts at the two standard budgets
    points: list[SweepPoint] = []
    masks: list[torch.Tensor] = []
    for i, eps in enumerate((eps_low, eps_high)):
        yield StudyEvent(at(0.05 + 0.3 * i), f"PGD with {p.pgd_restarts} restarts at L∞ ε = {eps:g}")
        attack = PGD(eps=eps, norm=Norm.LINF, steps=p.pgd_steps)
        mask = robust_under_restarts(model, x, y, attack, restarts=p.pgd_restarts, seed=seed)
        masks.append(mask)
        points.append(_point(eps, mask, f"{attack.describe()}, {p.pgd_restarts} random restarts", Norm.LINF))

    # black-box: Square at the larger budget on the first images, and the honesty checks of every number
    yield StudyEvent(at(0.65), f"Square ({p.square_queries} queries) at L∞ ε = {eps_high:g}")
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
        yield event(at(0.75), _evasion_finding(
            f"evasion-pgd-linf-{point.eps:g}", f"White-box evasion, L∞ ε = {point.eps:g}", point,
            {**common, "eps_note": eps_note},
            ("AML.T0015", "AML.T0043.000", "AML.T0044", "AML.M0003"), HARDENING, checks,
        ))  # fmt: skip
    yield event(at(0.8), _evasion_finding(
        f"evasion-square-linf-{eps_high:g}", f"Black-box evasion, L∞ ε = {eps_high:g}", black,
        {"seed": seed, "queries": p.square_queries, "white_box_accuracy_same_images": white_on_m},
        ("AML.T0015", "AML.T0043.001", "AML.T0040", "AML.M0003", "AML.M0004"),
        HARDENING + " Query limits (AML.M0004) make score-based black-box attacks such as Square slower.", checks,
    ))  # fmt: skip

    # membership leakage: the loss attack, TPR at 1 % FPR
    yield StudyEvent(at(0.85), "membership inference (loss threshold)")
    n = min(p.membership_n, len(data.y_train), len(data.y_test))
    mia = loss_threshold_attack(model, data.x_train[:n], data.y_train[:n], data.x_test[:n], data.y_test[:n])
    rate = mia.roc.tpr_at_low_fpr[MEMBERSHIP_FPR]
    grade = (
        Grade.on(MEMBERSHIP_TPR_AT_1PCT_FPR, rate.value) if rate.measurable
        else Grade.context(f"TPR at 1 % FPR is {rate.describe()}: this scan cannot grade it.")
    )  # fmt: skip
    yield event(at(0.95), Finding(
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

    yield event(at(0.99), _privacy_finding(card.privacy, len(data.y_train), card.source == "uploaded"))

    stages: list[Callable[[Span], Generator[StudyEvent, None, Finding]]] = []
    if transform is not None:
        served = transform
        stages += [functools.partial(_gap_finding, model=model, transform=served, x=x, y=y, eps=e, p=p, seed=seed)
                   for e in (eps_low, eps_high)]  # fmt: skip
    if p.thorough:
        stages.append(lambda span: _lira_finding(span, model, card, data, p, seed))
        if card.privacy is not None and card.source != "uploaded":
            stages.append(lambda span: _audit_finding(span, card, data, p, seed))
        stages.append(lambda span: _theft_finding(span, model, card, data, policy, p, seed))
        stages.append(lambda span: _watermark_finding(span, model, card, data, p, seed))
    for i, stage in enumerate(stages):
        span = Span(share + (1 - share) * i / len(stages), share + (1 - share) * (i + 1) / len(stages))
        finding = yield from stage(span)
        yield event(span.end, finding)
    return ScanResult(
        model_id=card.id, model_name=card.name, dataset=card.dataset, preset=p.name, seed=seed, eps_note=eps_note,
        findings=findings, seconds=time.perf_counter() - began,
    )  # fmt: skip


class ScanStudy(Study[ScanStudyConfig]):
    name = "scan"
    title = "Security scan"
    #: evasion (white-box PGD, black-box Square), membership inference, the model's DP claim and its audit, the
    #: input-defense gap, theft exposure through the API, the watermark
    atlas_ids = (
        "AML.T0015", "AML.T0043.000", "AML.T0043.001", "AML.T0044", "AML.T0040", "AML.T0024.000",
        "AML.T0024.002", "DLSEC.differential-privacy", WATERMARK_TAG,
    )  # fmt: skip
    config_type = ScanStudyConfig

    def title_for(self, config: ScanStudyConfig) -> str:
        served = [] if config.input_transform == NO_TRANSFORM else [f"behind {config.input_transform}"]
        if config.preset == "thorough" and config.output_policy != "full":
            served.append(f"{config.output_policy} answers")
        return f"Security scan ({config.preset}) of {config.model_id}" + (
            f", {', '.join(served)}" if served else ""
        )

    def model_ids(self, config: ScanStudyConfig) -> list[str]:
        return [config.model_id]

    def execute(self, store: Store, config: ScanStudyConfig) -> Generator[StudyEvent, None, StudyOutcome]:
        result = yield from scan(
            store, config.model_id, preset=config.preset, seed=config.seed, transform=config.transform_config(),
            policy=config.policy_config(),
        )  # fmt: skip
        return StudyOutcome(result=result.to_json())
