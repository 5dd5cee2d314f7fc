"""End-to-end work items shared by the UI's background jobs, the CLI and notebooks.

Each is a generator of events whose return value is the result, so a worker can show progress and cancel it
(by closing the generator), and a script can simply iterate. Nothing here is stored unless it finished: a
cancelled or crashed training run never appears as a model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import torch
from torch import nn

from dlsec_core.attacks.base import Attack, get_attack
from dlsec_core.attacks.norms import Norm
from dlsec_core.attacks.pgd import PGD
from dlsec_core.data.builtin import DATASETS, Dataset, load_dataset
from dlsec_core.data.user import load_image_folder_zip, load_npz
from dlsec_core.defenses.transforms import DefendedModel, InputTransform, Mode, defend
from dlsec_core.errors import InvalidInputError
from dlsec_core.evaluation.checks import (
    Finding,
    check_black_box_vs_white_box,
    check_large_eps,
    check_naive_vs_adaptive,
    is_one_step,
    run_checks,
)
from dlsec_core.evaluation.metrics import accuracy
from dlsec_core.evaluation.sweep import SweepPoint, check_eps_values, sweep
from dlsec_core.models.modes import device_of, eval_mode
from dlsec_core.models.spec import ModelSpec, build_model
from dlsec_core.safe_load import load_upload
from dlsec_core.store import ModelCard, Store
from dlsec_core.training.loop import TrainConfig, TrainEvent, TrainResult, train
from dlsec_core.training.recipes import Recipe, StandardRecipe


def resolve_dataset(store: Store, name: str) -> Dataset:
    """A built-in dataset, or one the user uploaded into the store."""
    return load_dataset(name) if name in DATASETS else store.load_dataset(name)


def dataset_names(store: Store) -> list[str]:
    """Built-in datasets first, then the user's."""
    return [*DATASETS, *store.list_datasets()]


def store_uploaded_dataset(store: Store, data: bytes, filename: str, name: str) -> Dataset:
    """Validate an uploaded .npz or image-folder .zip (see `data.user`) and store it under `name`."""
    lower = filename.lower()
    if lower.endswith(".npz"):
        dataset = load_npz(data, name=name)
    elif lower.endswith(".zip"):
        dataset = load_image_folder_zip(data, name=name)
    else:
        raise InvalidInputError(f"Upload an .npz file or a .zip of class folders, not {filename!r}.")
    store.save_dataset(dataset)
    return dataset


def spec_for(dataset: Dataset, arch: str = "cnn", **hparams: Any) -> ModelSpec:
    """A spec fitted to a dataset: its input shape, classes and per-channel normalization."""
    mean, std = dataset.channel_stats()
    return ModelSpec(
        arch=arch,
        input_shape=dataset.input_shape,
        num_classes=dataset.num_classes,
        hparams=hparams,
        mean=mean,
        std=std,
    )


def train_and_store(
    store: Store,
    *,
    dataset: str = "mnist5k",
    arch: str = "cnn",
    name: str | None = None,
    config: TrainConfig | None = None,
    recipe: Recipe | None = None,
    hparams: dict[str, Any] | None = None,
) -> Generator[TrainEvent, None, ModelCard]:
    """Train a model on a built-in or uploaded dataset, yielding events; store it only when training completes."""
    data = resolve_dataset(store, dataset)
    recipe = recipe or StandardRecipe()
    config = config or TrainConfig.suggested(recipe)  # DP-SGD: its larger batch and learning rate
    spec = spec_for(data, arch, **(hparams or {}))
    result: TrainResult = yield from train(spec, data, config, recipe)
    return store.save_model(
        result.model,
        spec,
        name=name or f"{arch}-{dataset}-{recipe.name}-s{config.seed}",
        dataset=dataset,
        recipe=recipe.name,
        recipe_params=recipe.params(),
        train_config=config.to_dict(),
        seed=config.seed,
        clean_accuracy=result.test_accuracy,
        train_seconds=result.seconds,
        history=result.history,
    )


class CurveMode(StrEnum):
    """Which curve of a model a sweep point is on: the model alone, or behind a defense attacked in a `Mode`."""

    UNDEFENDED = "undefended"
    ADAPTIVE = Mode.ADAPTIVE.value
    NAIVE = Mode.NAIVE.value


@dataclass(frozen=True, kw_only=True)
class ModelSweepPoint:
    """A sweep point tagged with the curve it belongs to (several models and defenses share one chart)."""

    model_id: str
    model_name: str  # the curve's label: the model's name, plus the defense and attack mode if any
    point: SweepPoint
    defense: str = ""
    mode: CurveMode = CurveMode.UNDEFENDED  # with a defense: attacked adaptively (BPDA/EOT) or naively

    def to_record(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "model": self.model_name,
            "defense": self.defense,
            "mode": self.mode,
            **self.point.to_record(),
        }


@dataclass(frozen=True, kw_only=True)
class CurveFindings:
    """The honesty checks of one finished curve (emitted once every curve of the sweep is drawn)."""

    model_name: str
    findings: list[Finding]

    def to_records(self) -> list[dict[str, Any]]:
        return [{"curve": self.model_name, **f.to_record()} for f in self.findings]


@dataclass(frozen=True, kw_only=True)
class SweepReport:
    records: list[dict[str, Any]]
    findings: list[dict[str, Any]]


SANITY_IMAGES = 100  # images for the extra sanity attacks (black-box comparison, huge budget)
SQUARE_QUERIES = 300  # queries per image for the black-box comparison
#: the iterative attack that decides whether a one-step attack lost to masking or to its own weakness
STRONG_PGD_STEPS = 50
STRONG_PGD_RESTARTS = 3  # an image counts as robust only if it survives every restart


@dataclass(frozen=True)
class _Curve:
    label: str
    mode: CurveMode
    deployed: nn.Module
    view: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    points: list[SweepPoint]


def sweep_models(
    store: Store,
    model_ids: Sequence[str],
    attack: Attack,
    eps_values: Sequence[float],
    *,
    n_images: int = 500,
    seed: int = 0,
    defense: InputTransform | None = None,
    sanity_checks: bool = True,
) -> Generator[ModelSweepPoint | CurveFindings, None, SweepReport]:
    """Accuracy vs. epsilon for stored models on their datasets' test images, one point at a time.

    With a `defense`, each model gets three curves: undefended, the defense under the adaptive attack (BPDA/EOT,
    the number to report) and under the naive one (the transform's own gradients), so both what the defense buys
    and the gap that gradient masking creates are visible. Every curve is drawn first; then come the honesty
    checks of each curve (`CurveFindings`), so the chart never waits on them: zero gradients, a curve that rises
    with epsilon, naive vs. adaptive, and, with `sanity_checks`, a black-box attack (Square) at the largest epsilon
    (for a one-step attack also a strong PGD, to tell masking from a weak attack) and the attack at a huge budget,
    which must win.
    """
    eps_list = check_eps_values(eps_values, attack.norm)
    records: list[dict[str, Any]] = []
    findings: list[dict[str, Any]] = []
    drawn: list[_Curve] = []
    for model_id in model_ids:
        model, card = store.load_model(model_id)
        data = resolve_dataset(store, card.dataset)
        x, y = data.x_test[:n_images], data.y_test[:n_images]
        curves: list[tuple[str, CurveMode, nn.Module, nn.Module]] = [
            (card.name, CurveMode.UNDEFENDED, model, model)
        ]
        if defense is not None:  # adaptive first: the naive curve's check compares with the curve before it
            for how in Mode:
                defended = defend(model, defense, mode=how)
                label = f"{card.name} + {defense.describe()} ({how})"
                curves.append((label, CurveMode(how), defended, defended.attack_view()))
        for label, mode, deployed, view in curves:
            with _seeded(deployed, seed):  # random transforms draw from the sweep's seed
                points = []
                for point in sweep(deployed, x, y, attack, eps_list, seed=seed, attack_model=view):
                    item = ModelSweepPoint(
                        model_id=card.id,
                        model_name=label,
                        point=point,
                        defense="" if defense is None or mode == CurveMode.UNDEFENDED else defense.describe(),
                        mode=mode,
                    )
                    records.append(item.to_record())
                    points.append(point)
                    yield item
            drawn.append(_Curve(label, mode, deployed, view, x, y, points))
    for i, curve in enumerate(drawn):
        with _seeded(curve.deployed, seed):
            found = run_checks(curve.view, curve.x, curve.y, curve=curve.points)
            if sanity_checks:
                found += _sanity(curve, attack, seed)
        if curve.mode == CurveMode.NAIVE:  # compare with the same model's adaptive curve, drawn before it
            found += check_naive_vs_adaptive(
                curve.points[-1].accuracy, drawn[i - 1].points[-1].accuracy, n=len(curve.y)
            )
        result = CurveFindings(
            model_name=curve.label, findings=sorted(found, key=lambda f: f.severity != "warning")
        )
        findings.extend(result.to_records())
        yield result
    return SweepReport(records=records, findings=findings)


def _seeded(model: nn.Module, seed: int) -> contextlib.AbstractContextManager[None]:
    """For a defended model, make its random transform draw from `seed` (same seed, same curve)."""
    if isinstance(model, DefendedModel):
        return model.drawing_from(torch.Generator().manual_seed(seed))
    return contextlib.nullcontext()


def _sanity(curve: _Curve, attack: Attack, seed: int) -> list[Finding]:
    """Extra attacks that an honest evaluation must pass: black-box no better than white-box; a huge budget wins.

    The white-box accuracy is the curve's own last point when it was measured on these very images. A one-step
    attack that loses to the black-box one is compared with a strong PGD before anybody says "gradient masking".
    """
    deployed, view = curve.deployed, curve.view
    last = max(curve.points, key=lambda p: p.eps)  # the largest budget, whatever order the ε came in
    eps = last.eps
    xs, ys = curve.x[:SANITY_IMAGES], curve.y[:SANITY_IMAGES]
    dims = int(curve.x[0].numel())
    out: list[Finding] = []

    def accuracy_under(at: Attack, budget: float, *, white: bool = True) -> float:
        view_model = view if white else None
        return next(iter(sweep(deployed, xs, ys, at, [budget], seed=seed, attack_model=view_model))).accuracy

    if attack.name != "square" and eps > 0:
        white = last.accuracy if last.n == len(ys) else accuracy_under(attack, eps)
        black_attack = get_attack("square", eps=eps, norm=attack.norm, n_queries=SQUARE_QUERIES)
        black = accuracy_under(black_attack, eps, white=False)
        found = check_black_box_vs_white_box(white, black, n=len(ys))
        if found and is_one_step(attack):
            strong = _strong_accuracy(deployed, view, xs, ys, eps, attack.norm, seed)
            found = check_black_box_vs_white_box(
                white, black, n=len(ys), strong_accuracy=strong, white_box=attack.title,
                black_box=f"Square ({SQUARE_QUERIES} queries)",
                strong=f"PGD ({STRONG_PGD_STEPS} steps, {STRONG_PGD_RESTARTS} random restarts)",
            )  # fmt: skip
        elif found:
            found = check_black_box_vs_white_box(
                white,
                black,
                n=len(ys),
                white_box=attack.title,
                black_box=f"Square ({SQUARE_QUERIES} queries)",
            )
        out += found
    huge = 0.5 if attack.norm == "linf" else 0.5 * float(dims) ** 0.5
    if eps < huge:
        # A one-step attack is no judge of "a huge budget must win": use the strong iterative one there.
        judge = PGD(norm=attack.norm, steps=STRONG_PGD_STEPS) if is_one_step(attack) else attack
        out += check_large_eps(huge, accuracy_under(judge, huge), attack.norm, dims=dims)
    return out


def _strong_accuracy(
    deployed: nn.Module, view: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str, seed: int
) -> float:
    """Accuracy under PGD with random restarts: an image counts as robust only if no restart fools `deployed`."""
    attack = PGD(eps=eps, norm=Norm(norm), steps=STRONG_PGD_STEPS)
    generator = torch.Generator().manual_seed(seed)
    device = device_of(deployed)
    robust = torch.ones(len(y), dtype=torch.bool)
    for _ in range(STRONG_PGD_RESTARTS):
        x_adv = attack.perturb(view, x.to(device), y.to(device), generator=generator)
        with torch.no_grad(), eval_mode(deployed):
            robust &= (deployed(x_adv).argmax(1) == y.to(device)).cpu()
    return float(robust.float().mean())


def import_and_evaluate(
    store: Store,
    data: bytes,
    spec: ModelSpec | None,
    *,
    name: str,
    dataset: str,
    filename: str = "model.safetensors",
    owner: str | None = None,
) -> ModelCard:
    """Validate an uploaded model, measure its clean accuracy on `dataset`'s test split, and store it (as
    `owner`'s, a workshop room's participant; None outside a room)."""
    spec, state = load_upload(data, spec, filename=filename)
    data_set = resolve_dataset(store, dataset)
    if tuple(data_set.input_shape) != spec.input_shape or data_set.num_classes != spec.num_classes:
        raise InvalidInputError(
            f"The model expects {spec.input_shape} inputs and {spec.num_classes} classes, but {dataset} has "
            f"{data_set.input_shape} and {data_set.num_classes}; pick the dataset it was trained for."
        )
    model = build_model(spec)
    model.load_state_dict(state, strict=True)
    acc = accuracy(model, data_set.x_test, data_set.y_test)
    return store.import_model(
        data, spec, name=name, dataset=dataset, filename=filename, clean_accuracy=acc, owner=owner
    )
