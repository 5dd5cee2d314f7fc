"""The federated study: train a model by FedAvg (or client-level DP-FedAvg, with or without secure aggregation)
over simulated clients on a built-in or uploaded dataset; one payload event per round; optionally store the
global model (recipe "fedavg", its federation settings and any client-level ε on its card).

See `dlsec_core.federated` for the algorithms and why the clients run in-process rather than on Flower.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, ClassVar

from dlsec_core.config import param
from dlsec_core.federated.fedavg import (
    FedAvgConfig,
    FedAvgResult,
    RoundEvent,
    federated_averaging,
    federation_problems,
)
from dlsec_core.models.architectures import ARCHITECTURES
from dlsec_core.store import PRIVACY_PARAM, Store
from dlsec_core.studies.base import Study, StudyConfig, StudyEvent, StudyOutcome, check_name, param_like
from dlsec_core.training.loop import relay
from dlsec_core.workflows import resolve_dataset, spec_for

RECIPE = "fedavg"  # the recipe name on a stored global model's card


@dataclass(frozen=True, kw_only=True)
class FederatedStudyConfig(StudyConfig):
    """Which data and model, and the federation (the fields of `FedAvgConfig`, declared there)."""

    title: ClassVar[str] = "Federated learning"

    dataset: str = param(
        "mnist5k", "Dataset", help="A built-in or added dataset (its existence is checked on run)."
    )
    arch: str = param("cnn", "Architecture", options=tuple(ARCHITECTURES))
    clients: int = param_like(FedAvgConfig, "clients")
    split: str = param_like(FedAvgConfig, "split")
    alpha: float = param_like(FedAvgConfig, "alpha")
    rounds: int = param_like(FedAvgConfig, "rounds")
    fraction: float = param_like(FedAvgConfig, "fraction")
    local_epochs: int = param_like(FedAvgConfig, "local_epochs")
    lr: float = param_like(FedAvgConfig, "lr")
    batch_size: int = param_like(FedAvgConfig, "batch_size")
    secure_aggregation: bool = param_like(FedAvgConfig, "secure_aggregation")
    clip: float | None = param_like(FedAvgConfig, "clip")
    noise_multiplier: float = param_like(FedAvgConfig, "noise_multiplier")
    delta: float = param_like(FedAvgConfig, "delta")
    local_dp: bool = param_like(FedAvgConfig, "local_dp")
    local_noise_multiplier: float = param_like(FedAvgConfig, "local_noise_multiplier")
    local_clip: float = param_like(FedAvgConfig, "local_clip")
    local_delta: float = param_like(FedAvgConfig, "local_delta")
    local_accountant: str = param_like(FedAvgConfig, "local_accountant")
    aggregator: str = param_like(FedAvgConfig, "aggregator")
    trim: float = param_like(FedAvgConfig, "trim")
    krum_f: int = param_like(FedAvgConfig, "krum_f")
    malicious: int = param_like(FedAvgConfig, "malicious")
    attack: str = param_like(FedAvgConfig, "attack")
    trigger: int = param_like(FedAvgConfig, "trigger")
    target: int = param_like(FedAvgConfig, "target")
    poison_fraction: float = param_like(FedAvgConfig, "poison_fraction")
    seed: int = param_like(FedAvgConfig, "seed")
    store_model: bool = param(
        False, "Store the global model", help="Add the final global model to the model list."
    )
    name: str | None = param(None, "Name of the stored model (empty = one from the settings)")

    def check_plain(self, problems: list[str]) -> None:
        super().check_plain(problems)
        check_name(self.dataset, "Dataset", "dataset", problems)

    def cross_check(self, problems: list[str]) -> None:
        super().cross_check(problems)
        federation_problems(self, problems)  # the same fields, the same rules

    def federation(self) -> FedAvgConfig:
        """The `FedAvgConfig` these settings name."""
        names = {f for f in FedAvgConfig.__dataclass_fields__ if FedAvgConfig.__dataclass_fields__[f].init}
        return FedAvgConfig(**{k: v for k, v in self.to_json().items() if k in names})


def _payload(event: RoundEvent) -> dict[str, Any]:
    return {"type": "round", **event.to_record()}


class FederatedStudy(Study[FederatedStudyConfig]):
    name = "federated"
    title = "Federated learning"
    #: malicious clients poison their training data (AML.T0020); ATLAS has no entry for federated training, secure
    #: aggregation, differential privacy or robust aggregation: local tags
    atlas_ids = (
        "DLSEC.federated-learning", "DLSEC.secure-aggregation", "DLSEC.differential-privacy", "AML.T0020",
        "DLSEC.robust-aggregation",
    )  # fmt: skip
    config_type = FederatedStudyConfig

    def title_for(self, config: FederatedStudyConfig) -> str:
        dp = f", DP σ {config.noise_multiplier:g}" if config.clip is not None else ""
        secure = ", secure agg." if config.secure_aggregation else ""
        split = "IID" if config.split == "iid" else f"Dirichlet α {config.alpha:g}"
        local = f", local DP-SGD σ {config.local_noise_multiplier:g}" if config.local_dp else ""
        attack = (
            f", {config.malicious} {'label-flipping' if config.attack == 'label_flip' else 'backdoor'} clients"
            if config.malicious
            else ""
        )
        rule = "FedAvg" if config.aggregator == "fedavg" else f"FL ({config.aggregator.replace('_', ' ')})"
        return (
            f"{rule} {config.arch} on {config.dataset} ({config.clients} clients, {split}, {config.rounds} rounds"
            f"{dp}{local}{secure}{attack}, seed {config.seed})"
        )

    def execute(
        self, store: Store, config: FederatedStudyConfig
    ) -> Generator[StudyEvent, None, StudyOutcome]:
        federation = config.federation()
        data = resolve_dataset(store, config.dataset)
        spec = spec_for(data, config.arch)

        def said(event: RoundEvent) -> StudyEvent:
            spent = f" · client-level ε = {event.epsilon:.3g} (RDP)" if event.epsilon is not None else ""
            if event.local_epsilon is not None:
                spent += f" · local example-level ε ≤ {event.local_epsilon:.3g} ({config.local_accountant.upper()})"
            if event.backdoor_success is not None:
                spent += f" · backdoor success {event.backdoor_success:.1%}"
            return StudyEvent(
                event.progress,
                f"round {event.round}/{event.rounds}: test accuracy {event.test_accuracy:.1%}{spent}",
                _payload(event),
            )

        result: FedAvgResult = yield from relay(federated_averaging(spec, data, federation), said)
        outcome = result.to_json()
        model_ids: list[str] = []
        if config.store_model:
            recipe_params: dict[str, Any] = {"federation": federation.to_json()}
            if result.privacy is not None:  # client-level DP bounds what any one example changes as well
                recipe_params[PRIVACY_PARAM] = result.privacy.to_record()
            card = store.save_model(
                result.model, spec,
                name=config.name or f"fedavg-{config.arch}-{config.dataset}-k{config.clients}-s{config.seed}",
                dataset=config.dataset, recipe=RECIPE, recipe_params=recipe_params, seed=config.seed,
                clean_accuracy=result.test_accuracy, train_seconds=result.seconds,
                history=[e.to_record() for e in result.history],
            )  # fmt: skip
            model_ids = [card.id]
            outcome["model_id"] = card.id
        return StudyOutcome(result=outcome, model_ids=model_ids)
