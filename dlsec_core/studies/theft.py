"""The extraction study: steal a stored model through a prediction API, one curve point per query budget.

The victim is served behind a `PredictionAPI` with the chosen output policy; the attacker is a registered client
whose budget is the largest budget point, and reaches the model only through that API. Each budget point is one
run event (queries, accuracy, fidelity), so a page draws the curve while the run goes on. The honest users' view
is measured too: the accuracy of the API's answers (after the policy) on the test split, asked by a separate
client. Optionally the last surrogate is stored as a model (recipe "extraction"), e.g. as a transfer-attack source.

The defender's view: PRADA (Juuti et al. 2019) runs over the attacker's query stream as the API logged it (inputs
and the labels it answered), and over a benign client that sends as many ordinary test images, in a seeded random
order, through the same API, so each run reports whether the attack was caught and whether an honest client would
have raised a false alarm.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from dlsec_core.config import param
from dlsec_core.errors import DlsecError
from dlsec_core.store import Store
from dlsec_core.studies.base import Study, StudyConfig, StudyEvent, StudyOutcome, built, check_name
from dlsec_core.text import plural
from dlsec_core.theft.api import (
    OUTPUT_POLICIES,
    Oracle,
    OutputPolicy,
    PredictionAPI,
    RateLimit,
    SimulatedClock,
    get_policy,
)
from dlsec_core.theft.extraction import (
    EXTRACTION_ATTACKS,
    ExtractionAttack,
    ExtractionPoint,
    Judge,
    PoolKind,
    check_budgets,
    get_extraction,
    query_pool,
)
from dlsec_core.theft.prada import PradaConfig, PradaResult, prada
from dlsec_core.training.loop import relay
from dlsec_core.workflows import resolve_dataset

ATTACKER = "attacker"
HONEST = "honest-user"  # the lab's client measuring what the policy costs ordinary users
BENIGN = "benign-user"  # a client sending ordinary test images, PRADA's false-alarm check
MAX_BUDGET = 100_000


@dataclass(frozen=True, kw_only=True)
class ExtractionStudyConfig(StudyConfig):
    """Which stored model to steal, behind which output policy, with which attack, pool and budgets.

    `policy_params`, `attack_params` and `prada_params` hold the policy's, the attack's and the PRADA detector's
    settings (the ones left out take their defaults); `budgets` are the curve's query counts, increasing; the
    attacker's API budget is the largest.
    """

    model_id: str = param(dataclasses.MISSING, "Victim (a stored model id)")
    policy: str = param("full", "API output policy", options=tuple(OUTPUT_POLICIES))
    policy_params: dict[str, Any] = field(default_factory=dict)
    attack: str = param("knockoff", "Extraction attack", options=tuple(EXTRACTION_ATTACKS))
    attack_params: dict[str, Any] = field(default_factory=dict)
    pool: PoolKind = param(PoolKind.SAME, "Query pool", help="Where the attacker's queries come from.")
    pool_dataset: str = param(
        "",
        "Uploaded dataset (the 'uploaded' pool)",
        help="The name of a dataset you uploaded on the Models page.",
    )
    budgets: list[int] = field(default_factory=lambda: [250, 500, 1000, 2000, 4000])
    seed: int = param(0, "Seed", min=0, max=2**31 - 1, step=1)
    rate_limit: int = param(
        0, "Rate limit: queries per window (0 = none)", min=0, max=10**9, step=1,
        help="The attacker's client may get at most this many answers in any window; it waits out the rest.",
    )  # fmt: skip
    rate_window_s: float = param(60.0, "Rate-limit window (seconds)", min=0.0, min_open=True, max=86_400.0)
    store_surrogate: bool = param(False, "Store the stolen model", help="Keep the last surrogate as a model.")
    # PRADA's settings (a PradaConfig's fields; the ones left out take their defaults)
    prada_params: dict[str, Any] = field(default_factory=dict)

    def check_plain(self, problems: list[str]) -> None:
        super().check_plain(problems)
        check_name(self.model_id, "The victim", "model_id", problems)
        try:
            check_budgets(self.budgets)
            if self.budgets[-1] > MAX_BUDGET:
                problems.append(
                    f"the largest budget (`budgets`) is {MAX_BUDGET:,} queries, got {self.budgets[-1]:,}"
                )
        except (DlsecError, TypeError) as err:
            problems.append(f"budgets: {str(err).rstrip('.')}")

    def cross_check(self, problems: list[str]) -> None:
        super().cross_check(problems)
        if isinstance(self.pool, PoolKind) and isinstance(self.pool_dataset, str):  # else named already
            uploaded = self.pool is PoolKind.UPLOADED
            if uploaded and not self.pool_dataset:
                problems.append("the 'uploaded' pool needs the name of an uploaded dataset (`pool_dataset`)")
            if self.pool_dataset and not uploaded:
                problems.append(
                    f"`pool_dataset` ({self.pool_dataset!r}) is read only by the 'uploaded' pool, not {self.pool.value!r}"
                )
        if self.policy in OUTPUT_POLICIES:
            built(problems, "policy_params", lambda **p: get_policy(self.policy, **p), self.policy_params)
        if self.attack in EXTRACTION_ATTACKS:
            built(problems, "attack_params", lambda **p: get_extraction(self.attack, **p), self.attack_params)
        built(problems, "prada_params", PradaConfig, self.prada_params)

    def policy_config(self) -> OutputPolicy:
        return get_policy(self.policy, **self.policy_params)

    def attack_config(self) -> ExtractionAttack:
        return get_extraction(self.attack, **self.attack_params)

    def prada_config(self) -> PradaConfig:
        return PradaConfig(**self.prada_params)

    def rate_limit_config(self) -> RateLimit | None:
        """The attacker's rate limit at the API (None: no limit)."""
        return RateLimit(queries=self.rate_limit, per_seconds=self.rate_window_s) if self.rate_limit else None


@dataclass(frozen=True, kw_only=True)
class ExtractionStudyResult:
    """The victim, the API, the attack and its curve; `surrogate_model_id` when the stolen model was stored.

    `prada` and `prada_benign` are PRADA's traces (`PradaResult.to_json()`: one record per query with its distance,
    W where a test ran, and the alarm state) over the attacker's and a benign client's streams; the first-alarm
    fields are 0-based query indexes, None when the alarm never fired. Runs made before detection existed lack
    them (None).
    """

    victim_id: str
    victim_name: str
    victim_accuracy: float  # the victim's own top-1 accuracy on the test split
    api_accuracy: float  # the accuracy of the API's answers (after the policy) for an honest user
    policy: str
    policy_description: str
    attack: str
    attack_description: str  # paper, settings, the attacker's knowledge
    pool: str
    pool_description: str
    points: list[ExtractionPoint]
    answered: int  # the attacker's answers, from the API's log
    surrogate_model_id: str | None = None
    prada: dict[str, Any] | None = None
    prada_first_alarm: int | None = None
    prada_benign: dict[str, Any] | None = None
    prada_benign_first_alarm: int | None = None
    # the attacker's rate limit ("" = none) and what it cost: seconds waited on the API's (simulated) clock, the
    # answers that came only after a wait, and the batches the API refused before answering them
    rate_limit: str = ""
    throttled_s: float = 0.0
    throttled_queries: int = 0
    rate_limit_refusals: int = 0

    def prada_results(self) -> tuple[PradaResult, PradaResult] | None:
        """PRADA's traces (attacker, benign client), or None for a run made before detection existed."""
        if self.prada is None or self.prada_benign is None:
            return None
        return PradaResult.from_json(self.prada), PradaResult.from_json(self.prada_benign)

    def to_json(self) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in self.__dataclass_fields__ if k != "points"},
                "points": [p.to_record() for p in self.points]}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExtractionStudyResult:
        return cls(**{**data, "points": [ExtractionPoint(**p) for p in data["points"]]})


class ExtractionStudy(Study[ExtractionStudyConfig]):
    name = "extraction"
    title = "Model extraction"
    config_type = ExtractionStudyConfig
    atlas_ids: ClassVar[tuple[str, ...]] = (
        "AML.T0024.002",
    )  # Exfiltration via AI Inference API: Extract AI Model

    def title_for(self, config: ExtractionStudyConfig) -> str:
        return (f"Steal model {config.model_id} ({config.attack}, {config.policy} answers, {config.pool} pool, "
                f"up to {plural(config.budgets[-1], 'query', 'queries')})")  # fmt: skip

    def model_ids(self, config: ExtractionStudyConfig) -> list[str]:
        return [config.model_id]

    def execute(
        self, store: Store, config: ExtractionStudyConfig
    ) -> Generator[StudyEvent, None, StudyOutcome]:
        attack, policy = config.attack_config(), config.policy_config()
        budgets = check_budgets(config.budgets)
        model, card = store.load_model(config.model_id)
        model = model.cpu()
        data = resolve_dataset(store, card.dataset)
        judge = Judge.of(model, data.x_test, data.y_test)
        clock = SimulatedClock()
        api = PredictionAPI(model, card.spec, policy, seed=config.seed, clock=clock)
        limit = config.rate_limit_config()
        api.register(ATTACKER, budget=budgets[-1], rate_limit=limit)
        api.register(HONEST, budget=data.x_test.shape[0])
        honest = api.query(HONEST, data.x_test).argmax(1)
        api_accuracy = float((honest == data.y_test).float().mean())
        pool, pool_description = None, "none: the attack makes its own queries"
        if attack.uses_pool:
            uploaded = None
            pool_description = PoolKind(config.pool).describe()
            if config.pool == PoolKind.UPLOADED:
                uploaded = store.load_dataset(config.pool_dataset)
                pool_description = (
                    f"your uploaded dataset {uploaded.name!r} ({plural(len(uploaded.y_train) + len(uploaded.y_test), 'image')}, "
                    f"{'x'.join(map(str, uploaded.input_shape))}, labels withheld), resized to the victim's input"
                )
            pool = query_pool(
                config.pool, data, attack.pool_size(budgets), torch.Generator().manual_seed(config.seed),
                uploaded=uploaded, up_to=attack.pool_choice(budgets),
            )  # fmt: skip
        yield StudyEvent(0.0, f"serving {card.name} ({policy.describe()}); attacking with {attack.title}")
        oracle = Oracle(api, ATTACKER, sleep=clock.sleep)
        result = yield from relay(
            attack.run(oracle, judge, budgets, pool=pool, seed=config.seed),
            lambda event: StudyEvent(
                min(event.progress, 1.0) * 0.99, event.message,
                None if event.point is None else {"type": "point", **event.point.to_record()},
            ),
        )  # fmt: skip
        yield StudyEvent(0.99, "PRADA on the attacker's and a benign client's query streams")
        attacker_trace, benign_trace = detect(api, data.x_test, config)
        surrogate_model_id = None
        if config.store_surrogate:
            last = result.points[-1]
            stolen = store.save_model(
                result.surrogate, result.spec, name=f"stolen-{card.name}-{attack.name}-{last.queries}q"[:80],
                dataset=card.dataset, recipe="extraction",
                recipe_params={"victim": card.id, "attack": attack.name, **attack.to_json(), "policy": policy.name,
                               "pool": PoolKind(config.pool).value, "queries": last.queries},
                seed=config.seed, clean_accuracy=last.accuracy, history=[p.to_record() for p in result.points],
            )  # fmt: skip
            surrogate_model_id = stolen.id
        summary = ExtractionStudyResult(
            victim_id=card.id, victim_name=card.name, victim_accuracy=judge.victim_accuracy, api_accuracy=api_accuracy,
            policy=policy.name, policy_description=policy.describe(), attack=attack.name,
            attack_description=result.description, pool=PoolKind(config.pool).value,
            pool_description=pool_description,
            points=result.points, answered=api.log(ATTACKER).answered, surrogate_model_id=surrogate_model_id,
            prada=attacker_trace.to_json(), prada_first_alarm=attacker_trace.first_alarm,
            prada_benign=benign_trace.to_json(), prada_benign_first_alarm=benign_trace.first_alarm,
            rate_limit=describe_limit(limit), throttled_s=oracle.waited, throttled_queries=oracle.throttled,
            rate_limit_refusals=oracle.refusals,
        )  # fmt: skip
        return StudyOutcome(
            result=summary.to_json(), model_ids=[surrogate_model_id] if surrogate_model_id else []
        )


def describe_limit(limit: RateLimit | None) -> str:
    """'100 queries per 60 s', or '' for no limit."""
    return "" if limit is None else f"{plural(limit.queries, 'query', 'queries')} per {limit.per_seconds:g} s"


def detect(
    api: PredictionAPI, x_test: torch.Tensor, config: ExtractionStudyConfig
) -> tuple[PradaResult, PradaResult]:
    """PRADA over the attacker's logged stream, and over a benign client that sends as many test images (at most the
    whole test split) in a seeded random order through the same API, after the attack."""
    detector = config.prada_config()
    log = api.log(ATTACKER)
    attacker = prada(log.inputs, log.labels, detector)
    n = min(log.answered, int(x_test.shape[0]))
    order = torch.randperm(int(x_test.shape[0]), generator=torch.Generator().manual_seed(config.seed + 1))[:n]
    api.register(BENIGN, budget=n)
    if n:
        api.query(BENIGN, x_test[order])
    benign_log = api.log(BENIGN)
    return attacker, prada(benign_log.inputs, benign_log.labels, detector)
