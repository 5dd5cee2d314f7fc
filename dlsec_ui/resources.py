"""Cached, process-wide resources. Every `st.cache_*` of the app lives here.

Cached objects are shared by every session: models returned here are for inference and attacks only (eval mode,
never trained or Opacus-wrapped; training builds fresh models).
"""

from __future__ import annotations

import gc
import hashlib
import threading
from typing import Any

import streamlit as st
import torch
from torch import nn

from dlsec_core.attacks.base import Attack, AttackResult, get_attack, predict
from dlsec_core.data.builtin import Dataset
from dlsec_core.defenses.detection import CalibratedDetector, FeatureSqueezingDetector
from dlsec_core.defenses.transforms import InputTransform, Mode, defend
from dlsec_core.device import configure_threads
from dlsec_core.privacy.accounting import (
    AccountingError,
    AccountingFailure,
    AccountingOutcome,
    epsilon_curve,
    noise_by_accountant,
)
from dlsec_core.room import AttemptLimiter
from dlsec_core.store import ModelCard, Store
from dlsec_core.workflows import resolve_dataset


@st.cache_resource(show_spinner=False)
def get_store() -> Store:
    return Store()


_heap_frozen = threading.Lock()


def freeze_startup_heap() -> bool:
    """Once per server process, after its first full page: move every object alive now (torch, plotly, Streamlit
    and their module state, a few hundred thousand objects) into Python's permanent GC generation.

    Streamlit ran a full `gc.collect(2)` after every script run (`runner.postScriptGC`, now off in
    .streamlit/config.toml); with those objects in the heap each collection cost ~0.18 s of CPU, two thirds of a
    slider rerun's server CPU (measured with py-spy, benchmarks/README.md), and Python's own full collections still
    walk them. Frozen objects are still freed when their reference count drops; only cycles among them stay (a
    one-off, bounded cost). Returns True for the call that froze the heap.
    """
    if not _heap_frozen.acquire(blocking=False):
        return False
    gc.collect()
    gc.freeze()
    return True


@st.cache_resource(show_spinner=False)
def get_login_limiter() -> AttemptLimiter:
    """Wrong room passcodes per session and per name, in this server's memory (why: `room.AttemptLimiter`)."""
    return AttemptLimiter()


@st.cache_resource(show_spinner=False)
def configure_server() -> int:
    """Once per server: one torch thread per job or session (see `configure_threads`); returns the count."""
    return configure_threads(default=1)


@st.cache_resource(show_spinner=False, max_entries=16)
def get_dataset(name: str) -> Dataset:
    """A built-in or uploaded dataset (uploaded names are never reused, so caching by name is safe)."""
    return resolve_dataset(get_store(), name)


@st.cache_resource(show_spinner=False, max_entries=16)
def _load_model(model_id: str, created_at: str) -> tuple[nn.Module, ModelCard]:
    model, card = get_store().load_model(model_id)
    for p in model.parameters():
        p.requires_grad_(False)  # input gradients only: shared weights are never trained here
    return model, card


def get_model(model_id: str) -> tuple[nn.Module, ModelCard]:
    """A stored model in eval mode (cached by id and creation time, so a re-used id never serves stale weights)."""
    card = get_store().get_card(model_id)
    return _load_model(model_id, card.created_at)


def model_of(card: ModelCard) -> nn.Module:
    """The card's model in eval mode, with no store read: the Attack Lab's ε steps (fragment runs that have the
    card from the page's full run) touch no SQLite. A worker writes its progress at SCHED_IDLE, and while a room
    keeps the cores busy it can be descheduled holding a lock that a new reader's connection waits for: reads of
    0.4-0.8 s, twice in 8 s, measured with two busy cores and one training (benchmarks/README.md, run 13)."""
    return _load_model(card.id, card.created_at)[0]


def tensor_digest(x: torch.Tensor) -> str:
    return hashlib.sha1(x.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


@st.cache_resource(show_spinner=False, max_entries=64)
def _direction(
    model_id: str,
    created_at: str,
    attack: str,
    norm: str,
    digest: str,
    _x: torch.Tensor,
    y: int | None,
    target: int | None,
) -> torch.Tensor:
    model, _ = _load_model(model_id, created_at)
    t = None if target is None else torch.tensor([target])
    labels = predict(model, _x) if y is None else torch.tensor([y])
    with torch.enable_grad():
        return get_attack(attack, norm=norm).direction(model, _x, labels, t).detach()


def attack_direction(
    card: ModelCard, attack: Attack, x: torch.Tensor, y: int | None, target: int | None
) -> torch.Tensor:
    """The eps-independent direction of a linear-in-eps attack (FGSM), computed once per image and reused for
    every slider position, so moving ε costs one forward pass. `y=None`: away from the model's prediction."""
    return _direction(card.id, card.created_at, attack.name, attack.norm, tensor_digest(x), x, y, target)


def _attack_defended(
    model: nn.Module,
    attack: Attack,
    x: torch.Tensor,
    y: torch.Tensor | None,
    target: torch.Tensor | None,
    seed: int,
    defense: InputTransform,
    mode: Mode,
) -> AttackResult:
    """Craft on the defended pipeline's attack view (adaptive: BPDA/EOT; naive: the transform's own gradient),
    score on the pipeline as deployed. The defended model is built per call: cheap, never shared."""
    defended = defend(model, defense, mode=mode)
    with defended.drawing_from(torch.Generator().manual_seed(seed)):
        found = attack(
            defended.attack_view(), x, y, target=target, generator=torch.Generator().manual_seed(seed)
        )
        return attack.score(defended, x, found.x_adv, y, target=target)


def attack_one(
    card: ModelCard,
    attack: Attack,
    x: torch.Tensor,
    y: int | None,
    target: int | None,
    seed: int,
    defense: InputTransform | None = None,
    mode: Mode = Mode.ADAPTIVE,
) -> AttackResult:
    """Attack one image; `y=None` (a drawn or uploaded image nobody labelled) attacks away from the model's own
    prediction. Without a defense, FGSM reuses its cached direction (one forward pass per ε)."""
    model = model_of(card)
    t = None if target is None else torch.tensor([target])
    labels = None if y is None else torch.tensor([y])
    if defense is not None:
        return _attack_defended(model, attack, x, labels, t, seed, defense, mode)
    if attack.linear_in_eps:
        d = attack_direction(card, attack, x, y, target)
        return attack.apply_direction(model, x, labels, d, target=t)
    return attack(model, x, labels, target=t, generator=torch.Generator().manual_seed(seed))


@st.cache_resource(show_spinner=False, max_entries=16)
def _attack_batch(
    model_id: str,
    created_at: str,
    key: str,
    _attack: Attack,
    n: int,
    seed: int,
    _defense: InputTransform | None,
    mode: Mode,
) -> AttackResult:
    model, card = _load_model(model_id, created_at)
    data = get_dataset(card.dataset)
    x, y = data.x_test[:n], data.y_test[:n]
    if _defense is None:
        return _attack(model, x, y, generator=torch.Generator().manual_seed(seed))
    return _attack_defended(model, _attack, x, y, None, seed, _defense, mode)


def attack_batch(
    card: ModelCard,
    attack: Attack,
    n: int,
    seed: int,
    defense: InputTransform | None = None,
    mode: Mode = Mode.ADAPTIVE,
) -> AttackResult:
    """Attack the first `n` test images of the model's dataset (cached per model, settings, defense and seed)."""
    # Transfer's surrogate is left out of its repr: key on the (cached, stable) surrogate module's identity.
    key = f"{attack!r}|{id(getattr(attack, 'surrogate', None))}|{defense!r}"
    return _attack_batch(card.id, card.created_at, key, attack, n, seed, defense, mode)


@st.cache_resource(show_spinner=False, max_entries=16)
def _detector(model_id: str, created_at: str) -> CalibratedDetector:
    model, card = _load_model(model_id, created_at)
    data = get_dataset(card.dataset)
    return FeatureSqueezingDetector().calibrate(model, data.x_test[: data.x_test.shape[0] // 2])


def get_detector(card: ModelCard) -> CalibratedDetector:
    """The paper's MNIST feature-squeezing detector, calibrated once per model to a 5 % false-positive rate."""
    return _detector(card.id, card.created_at)


@st.cache_data(show_spinner=False, max_entries=256)
def privacy_curve(
    accountant: str, noise_multiplier: float, sample_rate: float, steps: int, delta: float
) -> list[dict[str, Any]] | AccountingFailure:
    """ε over the steps of a planned run (the calculator's chart), as records, or why this accountant cannot say;
    cached per setting.

    RDP and GDP cost ~2 ms per point; PRV ~0.3 s per point (a numerical composition each), so it gets 8 points.
    """
    points = 8 if accountant == "prv" else 40
    try:
        curve = epsilon_curve(
            noise_multiplier, sample_rate, steps, delta, accountant=accountant, points=points
        )
    except AccountingError as err:
        return err.failure
    return [s.to_record() for s in curve]


@st.cache_data(show_spinner=False, max_entries=256)
def noise_needed(
    accountants: tuple[str, ...], target_epsilon: float, sample_rate: float, steps: int, delta: float
) -> dict[str, AccountingOutcome]:
    """Per accountant, the σ that keeps ε at or below the target after `steps` steps, or why none does."""
    return noise_by_accountant(target_epsilon, sample_rate, steps, delta, accountants)
