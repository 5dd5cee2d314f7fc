"""Model inversion (MI-Face): reconstructions the model recognises, a closed-form step on a linear model, the
weight-row oracle, batch = one at a time, determinism, the smoothness prior, the model left untouched, bad input."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlsec_core.data.builtin import Dataset, load_dataset
from dlsec_core.errors import InvalidInputError
from dlsec_core.privacy import InversionConfig, InversionResult, invert, total_variation
from dlsec_core.training.loop import TrainConfig, TrainResult, run_to_end, train
from dlsec_core.workflows import spec_for

CLASSES = list(range(10))
SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def mlp(digits: Dataset) -> nn.Module:
    spec = spec_for(digits, "mlp", hidden=64)
    return run_to_end(train(spec, digits, TrainConfig(epochs=5, lr=0.01, shift=0))).model


def linear_layer(model: nn.Module) -> nn.Linear:
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(layers) == 1
    return layers[0]


@pytest.mark.parametrize("which", ["logreg", "mlp"])
def test_reconstructions_are_recognised_as_their_targets(
    which: str, trained_digits: TrainResult, mlp: nn.Module
) -> None:
    model = trained_digits.model if which == "logreg" else mlp
    result = invert(model, CLASSES, SHAPE)
    assert isinstance(result, InversionResult)
    assert result.images.shape == (10, *SHAPE) and result.images.device.type == "cpu"
    assert float(result.images.min()) >= 0.0 and float(result.images.max()) <= 1.0
    assert bool(result.success.all())
    assert float(result.target_probability.min()) > 0.9
    # The reported probabilities are the model's own on the returned images.
    with torch.no_grad():
        assert torch.allclose(result.probabilities, F.softmax(model(result.images), 1), atol=1e-6)
    assert result.steps.tolist() == [result.config.steps] * 10


def test_one_signed_step_on_a_linear_model_is_the_closed_form(trained_digits: TrainResult) -> None:
    # For logits z = W (x - μ)/σ + b, ∇_x(-log p_c) = -(w_c - Σ_j p_j w_j)/σ, so one signed step from grey g is
    # clamp(g + lr · sign(w_c - pᵀW)) (σ > 0 does not change the sign).
    model = trained_digits.model
    layer = linear_layer(model)
    g, lr = 0.5, 0.1
    cfg = InversionConfig(steps=1, lr=lr, optimizer="sign", tv_weight=0.0, l2_weight=0.0, start=g)
    result = invert(model, CLASSES, SHAPE, config=cfg)
    with torch.no_grad():
        p = F.softmax(model(torch.full((1, *SHAPE), g)), 1)[0]  # (K,)
        direction = layer.weight - p @ layer.weight  # (K, 64): row c is w_c - pᵀW
    expected = (g + lr * direction.sign()).clamp(0, 1).view(10, *SHAPE)
    assert torch.allclose(result.images, expected, atol=1e-6)


def test_linear_model_reconstruction_follows_the_class_weight_row(trained_digits: TrainResult) -> None:
    # The input gradient of a linear logit is its weight row: each reconstruction correlates with its own row,
    # and more with it than with any other class's row.
    weight = linear_layer(trained_digits.model).weight.detach()  # (K, 64)
    images = invert(trained_digits.model, CLASSES, SHAPE).images.view(10, -1)  # (K, 1, 8, 8) -> (K, 64)
    corr = torch.corrcoef(torch.cat([images, weight]))[:10, 10:]  # (image k, weight row c)
    assert bool((corr.diagonal() > 0.5).all()), corr.diagonal()  # measured 0.65 to 0.87
    assert corr.argmax(dim=1).tolist() == CLASSES


def test_batch_is_the_same_as_one_class_at_a_time(mlp: nn.Module) -> None:
    # Without the TV prior: |a - b| has no derivative at a tie, and after Adam's first ±lr step from a flat grey
    # start many neighbours tie, so float rounding (batched vs single matmul) would decide the TV subgradient.
    cfg = InversionConfig(steps=100, tv_weight=0.0)
    batch = invert(mlp, CLASSES, SHAPE, config=cfg)
    for c in (0, 3, 9):
        alone = invert(mlp, [c], SHAPE, config=cfg)
        assert torch.allclose(batch.images[c], alone.images[0], atol=1e-5)


def test_same_seed_same_images_other_seed_other_start(mlp: nn.Module) -> None:
    cfg = InversionConfig(steps=20, init_noise=0.1, seed=7)
    a, b = invert(mlp, [1, 1, 4], SHAPE, config=cfg), invert(mlp, [1, 1, 4], SHAPE, config=cfg)
    assert torch.equal(a.images, b.images) and torch.equal(a.probabilities, b.probabilities)
    assert not torch.equal(a.images[0], a.images[1])  # the same class from two noisy starts
    other = invert(mlp, [1, 1, 4], SHAPE, config=InversionConfig(steps=20, init_noise=0.1, seed=8))
    assert not torch.equal(a.images, other.images)


def test_more_total_variation_weight_gives_smoother_images(mlp: nn.Module) -> None:
    tv = [
        float(total_variation(invert(mlp, CLASSES, SHAPE, config=InversionConfig(tv_weight=w)).images).mean())
        for w in (0.0, 0.3, 1.0)
    ]
    assert tv[0] > tv[1] > tv[2], tv


def test_total_variation_of_known_images() -> None:
    flat = torch.full((1, 1, 4, 4), 0.3)
    stripes = torch.zeros(1, 1, 4, 4)
    stripes[..., 1::2] = 1.0  # every horizontal neighbour pair differs by 1: 4 rows x 3 pairs
    assert total_variation(flat).tolist() == [0.0]
    assert total_variation(stripes).tolist() == [pytest.approx(12 / 16)]


def test_early_stop_keeps_the_first_iterate_past_the_threshold(mlp: nn.Module) -> None:
    base = {"tv_weight": 0.0}  # see the batch test: keeps batched and single runs equal to float rounding
    result = invert(mlp, CLASSES, SHAPE, config=InversionConfig(steps=200, stop_at=0.95, **base))
    assert bool((result.steps < 200).all())
    assert float(result.target_probability.min()) > 0.95
    # The same number of steps without the stop gives the same image; one step fewer stays below the threshold.
    k = int(result.steps.argmax())
    s = int(result.steps[k])
    assert s >= 2
    exact = invert(mlp, [k], SHAPE, config=InversionConfig(steps=s, **base))
    assert torch.allclose(exact.images[0], result.images[k], atol=1e-5)
    shorter = invert(mlp, [k], SHAPE, config=InversionConfig(steps=s - 1, **base))
    assert float(shorter.target_probability[0]) <= 0.95


def test_model_mode_and_parameter_gradients_are_untouched(digits: Dataset) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    model.train()
    invert(model, [0, 5], SHAPE, config=InversionConfig(steps=3))
    assert model.training and all(p.grad is None for p in model.parameters())


def test_description_names_the_method_and_its_settings() -> None:
    text = InversionConfig(steps=50, tv_weight=0.2, objective="1-p", stop_at=0.99).describe()
    for part in ("MI-Face", "Fredrikson", "1 - p_c", "0.2·TV", "50 steps", "0.99"):
        assert part in text, text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"steps": 0},
        {"steps": 10_001},
        {"steps": 2.5},
        {"steps": True},
        {"lr": 0.0},
        {"lr": float("nan")},
        {"tv_weight": float("nan")},
        {"tv_weight": -0.1},
        {"l2_weight": float("inf")},
        {"optimizer": "sgd"},
        {"objective": "hinge"},
        {"start": 1.5},
        {"init_noise": -0.1},
        {"stop_at": 1.0},
        {"seed": -1},
    ],
)
def test_bad_config_is_refused_with_a_sentence(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError, match=r"\.$"):
        InversionConfig(**kwargs)


@pytest.mark.parametrize(
    ("classes", "shape"),
    [
        ([10], SHAPE),  # out of range for 10 classes
        ([-1], SHAPE),
        ([], SHAPE),
        ([True], SHAPE),
        ([1.0], SHAPE),
        ("3", SHAPE),
        ([1], (8, 8)),
        ([1], (1, 0, 8)),
        ([1], (1, 28, 28)),  # not the shape the model takes
    ],
)
def test_bad_targets_and_shapes_are_refused(trained_digits: TrainResult, classes: Any, shape: Any) -> None:
    with pytest.raises(InvalidInputError):
        invert(trained_digits.model, classes, shape, config=InversionConfig(steps=2))
