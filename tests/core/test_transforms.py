"""Input-transform defenses: the contract of every registered transform, oracles, and the honest-evaluation story.

Contract tests are parametrized over `TRANSFORMS`, so a transform is tested the moment it is registered. The
experiments reproduce the shape of Athalye, Carlini, Wagner 2018: the naive attack is fooled by a
non-differentiable transform, BPDA is not; EOT is at least as strong as attacking one random draw.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from dlsec_core.attacks import ATTACKS, PGD
from dlsec_core.attacks._projection import flat_norm
from dlsec_core.data.builtin import load_dataset
from dlsec_core.defenses.transforms import (
    JPEG,
    TRANSFORMS,
    BitDepth,
    DefendedModel,
    ExpectationOverTransformation,
    GaussianNoise,
    InputTransform,
    MedianSmoothing,
    Mode,
    TransformLayer,
    attack_mode,
    defend,
    get_transform,
    robust_accuracy_under,
)
from dlsec_core.errors import InvalidInputError, NotFoundError
from dlsec_core.evaluation import accuracy, sweep

if TYPE_CHECKING:
    from dlsec_core.training.loop import TrainResult

Digits = tuple[nn.Module, torch.Tensor, torch.Tensor]  # a trained model, test images, test labels

NAMES = sorted(TRANSFORMS)
NON_DIFFERENTIABLE = [n for n in NAMES if not TRANSFORMS[n].differentiable]
RANDOMIZED = [n for n in NAMES if TRANSFORMS[n].randomized]
DETERMINISTIC = [n for n in NAMES if not TRANSFORMS[n].randomized]


def images(n: int = 6, c: int = 1, side: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, side, side, generator=torch.Generator().manual_seed(seed))


def smooth_image(side: int = 32) -> torch.Tensor:
    """A slow diagonal ramp, (1, 1, side, side): JPEG keeps it almost exactly."""
    ramp = torch.linspace(0.2, 0.8, side)
    return ((ramp.view(-1, 1) + ramp.view(1, -1)) / 2).view(1, 1, side, side)


@pytest.fixture(scope="module")
def digits_test(trained_digits: TrainResult) -> Digits:
    """The session's trained logreg (never modified) and 200 test digits."""
    ds = load_dataset("digits")
    return trained_digits.model, ds.x_test[:200], ds.y_test[:200]


# -- contract, for every registered transform --------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_range_and_dtype_are_kept(name: str, channels: int) -> None:
    x = images(c=channels)
    out = get_transform(name).apply(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_transforms_repeat_themselves(name: str) -> None:
    t, x = get_transform(name), images()
    assert torch.equal(t.apply(x), t.apply(x))


@pytest.mark.parametrize("name", RANDOMIZED)
def test_randomized_transforms_draw_afresh_and_follow_a_generator(name: str) -> None:
    t, x = get_transform(name), images()
    assert not torch.equal(t.apply(x), t.apply(x))
    a = t.apply(x, torch.Generator().manual_seed(3))
    b = t.apply(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_layer_forward_is_the_transform_in_both_gradient_modes(name: str) -> None:
    t, x = get_transform(name), images()
    expected = t.apply(x, torch.Generator().manual_seed(1))
    for bpda in (True, False):
        layer = t.layer(bpda=bpda, generator=torch.Generator().manual_seed(1))
        assert torch.equal(layer(x.clone().requires_grad_(True)).detach(), expected)


def _input_grad(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(layer(x).sum(), x)
    return grad


@pytest.mark.parametrize("name", NON_DIFFERENTIABLE)
def test_bpda_gradient_is_the_identity_and_the_naive_gradient_is_zero(name: str) -> None:
    t, x = get_transform(name), images()
    assert torch.equal(_input_grad(t.layer(bpda=True), x), torch.ones_like(x))
    assert torch.equal(_input_grad(t.layer(bpda=False), x), torch.zeros_like(x))


@pytest.mark.parametrize("name", [n for n in NAMES if TRANSFORMS[n].differentiable])
def test_differentiable_transforms_keep_their_own_gradient(name: str) -> None:
    t, x = get_transform(name), images()
    grads = [
        _input_grad(t.layer(bpda=b, generator=torch.Generator().manual_seed(0)), x) for b in (True, False)
    ]
    assert torch.equal(grads[0], grads[1])
    assert grads[0].abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_metadata_forms_and_round_trip(name: str) -> None:
    cls = TRANSFORMS[name]
    assert cls.title and cls.paper and cls.gradient_note
    t = cls()
    assert t.describe() and t.describe() != cls.title
    for f in dataclasses.fields(cls):
        assert f.metadata["label"]
        assert f.metadata["min"] <= getattr(t, f.name) <= f.metadata["max"]
        for bad in (f.metadata["min"] - 1, f.metadata["max"] + 1):
            with pytest.raises(InvalidInputError):
                t.with_params(**{f.name: bad})
    record = t.to_dict()
    assert get_transform(record["transform"], **record["params"]) == t


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_every_attack_runs_on_every_attack_view(
    name: str, mode: Mode, attack: str, digits_test: Digits
) -> None:
    """Including zero gradients (naive mode) and EOT wrappers; the wrapped model's eval mode survives."""
    model, x, y = digits_test
    defended = defend(model, name, mode=mode, eot_samples=2)
    at = ATTACKS[attack](eps=0.1)
    result = at(defended.attack_view(), x[:3], y[:3], generator=torch.Generator().manual_seed(0))
    assert result.x_adv.shape == (3, 1, 8, 8) and torch.isfinite(result.x_adv).all()
    assert float(flat_norm(result.perturbation, at.norm).max()) <= 0.1 + 1e-5
    assert float(result.x_adv.min()) >= 0.0 and float(result.x_adv.max()) <= 1.0
    assert model.training is False and defended.training is False


# -- the transforms themselves -----------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 3, 8])
def test_bit_depth_output_is_on_the_grid(bits: int) -> None:
    levels = 2**bits - 1
    out = BitDepth(bits=bits).apply(images(n=20))
    scaled = out * levels
    assert torch.allclose(scaled, scaled.round(), atol=1e-5)
    assert len(torch.unique(out)) <= levels + 1


def test_eight_bits_leave_8_bit_images_unchanged() -> None:
    x = torch.randint(0, 256, (4, 1, 8, 8), generator=torch.Generator().manual_seed(0)).float() / 255
    assert torch.allclose(BitDepth(bits=8).apply(x), x, atol=1e-6)


@pytest.mark.parametrize("kernel", [2, 3, 4, 5])
def test_median_of_a_constant_image_is_the_constant(kernel: int) -> None:
    x = torch.full((2, 3, 8, 8), 0.37)
    assert torch.equal(MedianSmoothing(kernel=kernel).apply(x), x)


@pytest.mark.parametrize("kernel", [2, 3, 4, 5])
def test_median_matches_scipy_median_filter(kernel: int) -> None:
    """The oracle Xu et al. used: scipy.ndimage.median_filter with mode="reflect"."""
    x = images(n=3, c=2, side=9)
    expected = ndimage.median_filter(x.numpy(), size=(1, 1, kernel, kernel), mode="reflect")
    np.testing.assert_array_equal(MedianSmoothing(kernel=kernel).apply(x).numpy(), expected)


def test_median_gradient_selects_one_pixel_per_output() -> None:
    x = images(n=2)
    grad = _input_grad(MedianSmoothing(kernel=3).layer(), x)
    assert float(grad.sum()) == x.numel()
    assert torch.equal(grad, grad.round()) and float(grad.min()) >= 0


def test_median_removes_salt_and_pepper() -> None:
    x = torch.full((1, 1, 8, 8), 0.5)
    noisy = x.clone()
    noisy[0, 0, 3, 4] = 1.0
    noisy[0, 0, 6, 1] = 0.0
    assert torch.equal(MedianSmoothing(kernel=3).apply(noisy), x)


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_jpeg_keeps_a_smooth_image(channels: int) -> None:
    x = smooth_image().repeat(1, channels, 1, 1)
    assert float((JPEG(quality=75).apply(x) - x).abs().max()) < 0.03


def test_jpeg_quality_controls_the_loss() -> None:
    x = images(n=4, side=16)
    error = {q: float((JPEG(quality=q).apply(x) - x).abs().mean()) for q in (10, 50, 100)}
    assert error[100] < error[50] < error[10]
    assert error[100] < 0.02


def test_gaussian_noise_has_the_requested_spread() -> None:
    x = torch.full((8, 1, 28, 28), 0.5)
    out = GaussianNoise(sigma=0.1).apply(x, torch.Generator().manual_seed(0))
    assert abs(float((out - x).std()) - 0.1) < 0.005
    assert abs(float((out - x).mean())) < 0.005


def test_bad_names_and_parameters_are_refused() -> None:
    with pytest.raises(NotFoundError):
        get_transform("blur")
    with pytest.raises(InvalidInputError):
        get_transform("bit-depth", sigma=0.1)
    with pytest.raises(InvalidInputError):
        BitDepth(bits=2.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        GaussianNoise(sigma=0)


# -- EOT and the defended model ----------------------------------------------------------------------------


def test_eot_returns_log_mean_probabilities(digits_test: Digits) -> None:
    model, x, _ = digits_test
    with torch.no_grad():
        eot = ExpectationOverTransformation(model, samples=4)(x[:10])
        assert torch.allclose(eot.exp().sum(dim=1), torch.ones(10), atol=1e-5)
        # a deterministic model averaged over any number of draws is the model itself
        assert torch.allclose(eot, model(x[:10]).log_softmax(dim=1), atol=1e-5)
        noisy = nn.Sequential(
            GaussianNoise(sigma=0.3).layer(generator=torch.Generator().manual_seed(0)), model
        )
        draws = torch.stack([noisy(x[:10]).softmax(dim=1) for _ in range(3)])
        averaged = ExpectationOverTransformation(
            nn.Sequential(GaussianNoise(sigma=0.3).layer(generator=torch.Generator().manual_seed(0)), model),
            3,
        )(x[:10])
    # EOT batches its draws as (k*N, ...): the same generator gives the same three draws in the same order
    assert torch.allclose(averaged.exp(), draws.mean(dim=0), atol=1e-5)


def test_modes_are_an_enum_stored_as_their_plain_string(digits_test: Digits) -> None:
    """Item 8: a mode is `Mode`, not a bare string; JSON (runs, exports) still holds "adaptive"/"naive", and a
    stored string reads back as the member; a string that names no mode is refused with the choices."""
    model, _, _ = digits_test
    assert [m.value for m in Mode] == ["adaptive", "naive"]
    assert json.dumps({"mode": Mode.NAIVE}) == '{"mode": "naive"}'
    assert attack_mode(json.loads('"naive"')) is Mode.NAIVE and Mode.NAIVE == "naive"
    assert f"{Mode.ADAPTIVE}" == "adaptive"  # labels and legends show the plain word
    defended = defend(model, "bit-depth", mode=attack_mode("naive"))
    assert defended.mode is Mode.NAIVE and not defended.transform.straight_through
    assert defend(model, "bit-depth").mode is Mode.ADAPTIVE
    with pytest.raises(InvalidInputError, match="adaptive, naive.*'smart'"):
        defend(model, "bit-depth", mode="smart")  # type: ignore[arg-type]


def test_defended_model_views_and_descriptions(digits_test: Digits) -> None:
    model, _, _ = digits_test
    adaptive = defend(model, "bit-depth", bits=3)
    assert adaptive.describe() == "bit-depth reduction (3 bits), adaptive attack (BPDA)"
    assert adaptive.attack_view() is adaptive
    assert adaptive.transform.straight_through
    naive = defend(model, BitDepth(bits=3), mode=Mode.NAIVE)
    assert (
        naive.describe() == "bit-depth reduction (3 bits), naive attack (zero gradient through the transform)"
    )
    assert not naive.transform.straight_through
    eot = defend(model, "gaussian", sigma=0.2, eot_samples=16)
    assert eot.describe() == "Gaussian noise (σ=0.2), adaptive attack (EOT, 16 samples)"
    view = eot.attack_view()
    assert isinstance(view, ExpectationOverTransformation) and view.samples == 16 and view.model is eot
    assert defend(model, "gaussian", mode=Mode.NAIVE).attack_view().__class__ is DefendedModel
    assert defend(model, "median").describe() == "median smoothing (2x2), adaptive attack (exact gradient)"
    assert isinstance(adaptive.transform, TransformLayer) and adaptive.model is model
    assert isinstance(adaptive.config, InputTransform)


def test_defend_refuses_bad_arguments(digits_test: Digits) -> None:
    model, _, _ = digits_test
    with pytest.raises(InvalidInputError):
        defend(model, "bit-depth", mode="lazy")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        defend(model, "gaussian", eot_samples=0)
    with pytest.raises(InvalidInputError):
        defend(model, BitDepth(), bits=4)


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_robust_accuracy_without_budget_is_clean_accuracy(name: str, digits_test: Digits) -> None:
    model, x, y = digits_test
    defended = defend(model, name)
    result = robust_accuracy_under(defended, PGD(eps=0.0, steps=2), x[:50], y[:50])
    assert result.clean_accuracy == result.robust_accuracy == accuracy(defended, x[:50], y[:50])
    assert result.x_adv.shape == x[:50].shape and result.n == 50
    assert result.to_record()["defense"] == defended.describe()


def test_a_seed_reproduces_a_randomized_evaluation(digits_test: Digits) -> None:
    model, x, y = digits_test
    defended = defend(model, "gaussian", sigma=0.3, eot_samples=4)
    runs = [
        robust_accuracy_under(
            defended, PGD(eps=0.1, steps=5), x[:60], y[:60], generator=torch.Generator().manual_seed(7)
        )
        for _ in range(2)
    ]
    assert dataclasses.replace(runs[0], x_adv=torch.empty(0)).to_record() == runs[1].to_record()
    assert torch.equal(runs[0].x_adv, runs[1].x_adv)
    assert defended.transform.generator is None  # the seed was only borrowed


def test_sweep_of_a_defended_pipeline_scores_the_deployed_pipeline(digits_test: Digits) -> None:
    """`evaluation.sweep` with the adaptive view as `attack_model` gives `robust_accuracy_under`'s numbers."""
    model, x, y = digits_test
    defended = defend(model, "bit-depth", bits=3)
    attack = PGD(steps=5, random_start=False)  # deterministic: the two paths draw no random numbers
    points = list(
        sweep(defended, x[:60], y[:60], attack, [0.1, 0.0, 0.3], seed=3, attack_model=defended.attack_view())
    )
    assert [p.eps for p in points] == [0.1, 0.0, 0.3]
    for point in points:
        under = robust_accuracy_under(defended, attack.with_params(eps=point.eps), x[:60], y[:60])
        assert point.accuracy == under.robust_accuracy and point.correct == round(60 * under.robust_accuracy)
    assert points[2].accuracy < points[1].accuracy
    with pytest.raises(InvalidInputError):
        sweep(defended, x, y, attack, [], attack_model=defended.attack_view())


# -- the experiments: naive vs adaptive ---------------------------------------------------------------------

#: Measured on the session's digits logreg, PGD L∞ ε = 0.15, 20 steps, seed 0 (torch 2.13, CPU), robust accuracy
#: of the deployed pipeline. Undefended: 0.285 (200 digits).
#: bit-depth (3 bits, 200 digits): clean 0.935, naive 0.915, adaptive (BPDA) 0.295.
#: JPEG (quality 75, 100 digits): clean 0.91, naive 0.89, adaptive (BPDA) 0.29.
#: Gaussian noise (σ 0.1, 200 digits): one-draw attack 0.62, EOT attack (8 draws) 0.52.
EPS = 0.15


@pytest.mark.parametrize("name", NON_DIFFERENTIABLE)
def test_the_adaptive_attack_defeats_what_the_naive_attack_cannot(name: str, digits_test: Digits) -> None:
    model, x, y = digits_test
    n = 200 if name != "jpeg" else 100  # JPEG leaves torch once per image and step: keep it short
    attack = PGD(eps=EPS, steps=20)
    result = {
        mode: robust_accuracy_under(
            defend(model, name, mode=mode),
            attack,
            x[:n],
            y[:n],
            generator=torch.Generator().manual_seed(0),
        )
        for mode in Mode
    }
    clean = result[Mode.NAIVE].clean_accuracy
    assert clean > 0.85
    # naive: the attack steps along a zero gradient and only its random start moves the inputs
    assert result["naive"].robust_accuracy >= clean - 0.05
    # adaptive (BPDA): the same budget takes more than 30 points away
    assert result["adaptive"].robust_accuracy <= result["naive"].robust_accuracy - 0.3


def test_eot_is_at_least_as_strong_as_one_draw(digits_test: Digits) -> None:
    model, x, y = digits_test
    attack = PGD(eps=EPS, steps=20)
    robust = {
        mode: robust_accuracy_under(
            defend(model, "gaussian", mode=mode, eot_samples=8),
            attack,
            x,
            y,
            generator=torch.Generator().manual_seed(0),
        ).robust_accuracy
        for mode in Mode
    }
    assert robust["adaptive"] <= robust["naive"] + 0.02
