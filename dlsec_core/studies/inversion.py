"""The inversion study: MI-Face model inversion (`dlsec_core.privacy.inversion`) of chosen classes from stored
models, side by side, with the average training image of each class as the reference row.

The reconstructions are artifacts of the run: `images-<i>.npy` (K, C, H, W) float32 in [0, 1] per model, in the
order given, and `class-means.npy` for the reference row; the JSON result (`InversionStudyResult`) holds every
number: the model's probability for each target on its reconstruction, the steps taken, the description.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from dlsec_core.errors import InvalidInputError
from dlsec_core.privacy.inversion import MAX_TARGETS, InversionConfig, class_means, invert
from dlsec_core.privacy_spend import PrivacySpend, privacy_label
from dlsec_core.store import Store
from dlsec_core.studies.artifacts import npy_bytes, read_arrays
from dlsec_core.studies.base import Study, StudyConfig, StudyEvent, StudyOutcome, built, check_model_ids
from dlsec_core.text import plural
from dlsec_core.workflows import resolve_dataset

MAX_MODELS = 4
MEANS = "class-means"


@dataclass(frozen=True, kw_only=True)
class InversionStudyConfig(StudyConfig):
    """Which models, which classes (None = every class of the first model), and `InversionConfig` fields in
    `inversion` (the ones left out take their defaults)."""

    title: ClassVar[str] = "Inversion study"

    model_ids: list[str]
    classes: list[int] | None = None
    inversion: dict[str, Any] = field(default_factory=dict)

    def check_plain(self, problems: list[str]) -> None:
        super().check_plain(problems)
        check_model_ids(self.model_ids, problems, most=MAX_MODELS)
        if self.classes is not None and (
            not isinstance(self.classes, list)
            or not 1 <= len(self.classes) <= MAX_TARGETS
            or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in self.classes)
        ):
            problems.append(
                f"the classes (`classes`) are a list of 1 to {MAX_TARGETS} class numbers >= 0, got {self.classes!r}"
            )
        built(problems, "inversion", InversionConfig, self.inversion)

    def inversion_config(self) -> InversionConfig:
        return InversionConfig(**self.inversion)


@dataclass(frozen=True, kw_only=True)
class InvertedClass:
    target: int
    p_target: float  # the model's probability of the target class on the reconstruction
    predicted: int
    steps: int
    total_variation: float


@dataclass(frozen=True, kw_only=True)
class InvertedModel:
    """One model's reconstructions (the images are the run's `images-<index>.npy`)."""

    model_id: str
    model_name: str
    privacy: PrivacySpend | None
    uploaded: bool
    seconds: float
    classes: list[InvertedClass]

    def privacy_label(self, *, short: bool = False) -> str:
        return privacy_label(self.privacy, uploaded=self.uploaded, short=short)

    def to_json(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id, "model_name": self.model_name,
            "privacy": None if self.privacy is None else self.privacy.to_record(), "uploaded": self.uploaded,
            "seconds": self.seconds, "classes": [vars(c) for c in self.classes],
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InvertedModel:
        return cls(**{
            **data, "privacy": None if data["privacy"] is None else PrivacySpend.from_record(data["privacy"]),
            "classes": [InvertedClass(**c) for c in data["classes"]],
        })  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class InversionStudyResult:
    dataset: str
    targets: list[int]
    class_names: list[str]  # of the targets, in order
    description: str  # the method and every setting that shapes the images
    models: list[InvertedModel]

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset, "targets": self.targets, "class_names": self.class_names,
            "description": self.description, "models": [m.to_json() for m in self.models],
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InversionStudyResult:
        return cls(**{**data, "models": [InvertedModel.from_json(m) for m in data["models"]]})

    @staticmethod
    def images(paths: Iterable[Path]) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        """(the class means, one (K, C, H, W) tensor per model, in order) from the run's artifact files."""
        arrays = {k: torch.from_numpy(v) for k, v in read_arrays(paths).items()}
        per_model = sorted((int(k.split("-")[1]), v) for k, v in arrays.items() if k.startswith("images-"))
        return arrays.get(MEANS), [v for _, v in per_model]


class InversionStudy(Study[InversionStudyConfig]):
    name = "inversion"
    title = "Model inversion"
    atlas_ids = ("AML.T0024.001", "AML.T0044")  # MI-Face follows input gradients: full model access
    config_type = InversionStudyConfig

    def title_for(self, config: InversionStudyConfig) -> str:
        classes = "every class" if config.classes is None else plural(len(config.classes), "class", "classes")
        return f"Model inversion of {classes} from {plural(len(config.model_ids), 'model')}"

    def model_ids(self, config: InversionStudyConfig) -> list[str]:
        return list(config.model_ids)

    def seed(self, config: InversionStudyConfig) -> int | None:
        return config.inversion_config().seed

    def execute(
        self, store: Store, config: InversionStudyConfig
    ) -> Generator[StudyEvent, None, StudyOutcome]:
        inversion = config.inversion_config()
        cards = [
            store.get_card(i) for i in config.model_ids
        ]  # every model exists before the first is inverted
        if len({c.dataset for c in cards}) > 1:
            raise InvalidInputError(
                "Invert models of one dataset at a time (the reference row is that dataset's class means), got "
                + ", ".join(sorted({c.dataset for c in cards}))
                + "."
            )
        data = resolve_dataset(store, cards[0].dataset)
        targets = list(range(cards[0].spec.num_classes)) if config.classes is None else list(config.classes)
        artifacts = {f"{MEANS}.npy": npy_bytes(class_means(data, targets).numpy().astype(np.float32))}
        models: list[InvertedModel] = []
        for index, card in enumerate(cards):
            yield StudyEvent(index / len(cards), f"inverting {card.name} ({index + 1}/{len(cards)})")
            model, card = store.load_model(card.id)
            result = invert(model, targets, card.spec.input_shape, config=inversion)
            artifacts[f"images-{index}.npy"] = npy_bytes(result.images.numpy().astype(np.float32))
            models.append(
                InvertedModel(
                    model_id=card.id, model_name=card.name, privacy=card.privacy, uploaded=card.source == "uploaded",
                    seconds=result.seconds, classes=[InvertedClass(**r) for r in result.to_records()],
                )
            )  # fmt: skip
            yield StudyEvent(
                (index + 1) / len(cards), f"inverted {card.name}", {"type": "model", **models[-1].to_json()}
            )
        names = [data.class_names[k] if k < len(data.class_names) else str(k) for k in targets]
        result_json = InversionStudyResult(
            dataset=cards[0].dataset, targets=targets, class_names=names, description=inversion.describe(),
            models=models,
        ).to_json()  # fmt: skip
        return StudyOutcome(result=result_json, artifacts=artifacts)
