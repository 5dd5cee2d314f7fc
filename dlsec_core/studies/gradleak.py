"""The gradleak study: gradient inversion (DLG, iDLG, Inverting Gradients) against one federated client's update,
with or without a defense (client DP, top-k sparsification, secure aggregation; batch size and local steps are
settings), on a freshly initialised model of a built-in or added dataset.

Events: one `originals` payload (the client's images and labels) first, then `step` payloads with the current
reconstructions (paired with the originals) and their PSNR/SSIM, so a page draws the attack live. The result holds
every number (`GradLeakResult.to_json`); the images are the run's artifacts `originals.npy` and
`reconstructions.npy`, (B, C, H, W) float32 in [0, 1], the i-th reconstruction paired with the i-th original.

See `dlsec_core.federated.inversion` for the attacks, the threat model and the defenses.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from dlsec_core.config import param
from dlsec_core.errors import InvalidInputError
from dlsec_core.federated.inversion import (
    ATTACK_LABELS,
    DEFENSE_LABELS,
    GradLeakConfig,
    GradLeakResult,
    LeakDefense,
    LeakEvent,
    gradient_leakage,
    scores,
)
from dlsec_core.models.architectures import ARCHITECTURES
from dlsec_core.models.spec import build_model
from dlsec_core.store import Store
from dlsec_core.studies.artifacts import npy_bytes
from dlsec_core.studies.base import Study, StudyConfig, StudyEvent, StudyOutcome, check_name, param_like
from dlsec_core.text import plural
from dlsec_core.workflows import resolve_dataset, spec_for

ORIGINALS = "originals"
RECONSTRUCTIONS = "reconstructions"


@dataclass(frozen=True, kw_only=True)
class GradLeakStudyConfig(StudyConfig):
    """Which data and model, and the experiment (the fields of `GradLeakConfig`, declared there)."""

    title: ClassVar[str] = "Gradient inversion"

    dataset: str = param(
        "digits", "Dataset", help="A built-in or added dataset (its existence is checked on run)."
    )
    arch: str = param(
        "lenet-sigmoid", "Architecture", options=tuple(ARCHITECTURES),
        help="The sigmoid LeNet of the DLG papers leaks the most; ReLU networks leak less to L-BFGS.",
    )  # fmt: skip
    attack: str = param_like(GradLeakConfig, "attack")
    batch_size: int = param_like(GradLeakConfig, "batch_size")
    local_steps: int = param_like(GradLeakConfig, "local_steps")
    local_lr: float = param_like(GradLeakConfig, "local_lr")
    defense: str = param_like(GradLeakConfig, "defense")
    clip: float = param_like(GradLeakConfig, "clip")
    noise_multiplier: float = param_like(GradLeakConfig, "noise_multiplier")
    keep: float = param_like(GradLeakConfig, "keep")
    clients: int = param_like(GradLeakConfig, "clients")
    steps: int | None = param_like(GradLeakConfig, "steps")
    lr: float | None = param_like(GradLeakConfig, "lr")
    tv: float = param_like(GradLeakConfig, "tv")
    signed: bool = param_like(GradLeakConfig, "signed")
    events: int = param_like(GradLeakConfig, "events")
    seed: int = param_like(GradLeakConfig, "seed")

    def check_plain(self, problems: list[str]) -> None:
        super().check_plain(problems)
        check_name(self.dataset, "Dataset", "dataset", problems)

    def experiment(self) -> GradLeakConfig:
        """The `GradLeakConfig` these settings name."""
        names = {f for f, spec in GradLeakConfig.__dataclass_fields__.items() if spec.init}
        return GradLeakConfig(**{k: v for k, v in self.to_json().items() if k in names})


def _images(x: torch.Tensor) -> list[Any]:
    """(B, C, H, W) -> nested lists, 3 decimals (an event payload, small enough for 28x28 batches of 8)."""
    return np.round(x.numpy().astype(np.float64), 3).tolist()


def _number(v: float) -> float | str:
    return v if np.isfinite(v) else str(v)


class GradLeakStudy(Study[GradLeakStudyConfig]):
    name = "gradleak"
    title = "Gradient inversion"
    #: ATLAS has no entry for reconstructing training data from federated updates (checked against ATLAS 5.6.0)
    atlas_ids = ("DLSEC.federated-gradient-leakage", "DLSEC.federated-learning")
    config_type = GradLeakStudyConfig

    def title_for(self, config: GradLeakStudyConfig) -> str:
        """E.g. "Gradient inversion: iDLG on 1 digits image, lenet-sigmoid, client DP, seed 0" (the attack and
        the defense by name; an unknown one, which validation refuses, as given)."""
        attack = ATTACK_LABELS.get(config.attack, config.attack)  # type: ignore[call-overload]
        defense = DEFENSE_LABELS.get(config.defense, config.defense)  # type: ignore[call-overload]
        steps = f", {plural(config.local_steps, 'local step')}" if config.local_steps > 1 else ""
        return (
            f"Gradient inversion: {attack} on {plural(config.batch_size, f'{config.dataset} image')}, "
            f"{config.arch}{steps}, {defense}, seed {config.seed}"
        )

    def execute(self, store: Store, config: GradLeakStudyConfig) -> Generator[StudyEvent, None, StudyOutcome]:
        experiment = config.experiment()
        data = resolve_dataset(store, config.dataset)
        spec = spec_for(data, config.arch)
        b = experiment.batch_size
        groups = experiment.clients if experiment.defense_kind is LeakDefense.SECURE_AGGREGATION else 1
        if data.x_train.shape[0] < b * groups:
            raise InvalidInputError(
                f"The dataset {config.dataset!r} has {data.x_train.shape[0]} training images; the experiment needs "
                f"{b * groups}."
            )
        generator = torch.Generator().manual_seed(config.seed)
        chosen = torch.randperm(data.x_train.shape[0], generator=generator)[: b * groups]
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            model = build_model(spec)
        x, y = data.x_train[chosen[:b]], data.y_train[chosen[:b]]
        others = [
            (data.x_train[chosen[b * i : b * (i + 1)]], data.y_train[chosen[b * i : b * (i + 1)]])
            for i in range(1, groups)
        ]
        yield StudyEvent(
            0.0, f"client batch of {b} image(s) chosen",
            {"type": ORIGINALS, "images": _images(x), "labels": y.tolist()},
        )  # fmt: skip
        work = gradient_leakage(model, x, y, experiment, others=others)
        while True:
            try:
                event: LeakEvent = next(work)
            except StopIteration as stop:
                result: GradLeakResult = stop.value
                break
            paired, p, s = scores(x, event.images)
            yield StudyEvent(
                event.step / event.steps,
                f"step {event.step}/{event.steps}: mean PSNR {float(np.mean(p)):.1f} dB",
                {
                    "type": "step", "step": event.step, "steps": event.steps, "loss": event.loss,
                    "psnr": [_number(v) for v in p], "ssim": s, "images": _images(paired),
                },
            )  # fmt: skip
        outcome = {"dataset": config.dataset, "arch": config.arch, **result.to_json()}
        artifacts = {
            f"{ORIGINALS}.npy": npy_bytes(result.originals.numpy().astype(np.float32)),
            f"{RECONSTRUCTIONS}.npy": npy_bytes(result.reconstructions.numpy().astype(np.float32)),
        }
        return StudyOutcome(result=outcome, artifacts=artifacts)
