"""Gradient inversion against a federated client's update (DLG, iDLG, Inverting Gradients) and its metrics.

Oracles: PSNR of a known pair in closed form; SSIM of constant images in closed form and of random images against
an independent NumPy/SciPy implementation of Wang et al.'s formula; one local step's pseudo-gradient against
`backward()`; the secure-aggregation observation against the plain mean; DLG and iDLG against the paper's claims
(an undefended single image is recovered, PSNR >= 25 dB; client DP at the lab's default noise defeats it).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.signal import correlate2d

from dlsec_core.data.builtin import load_dataset
from dlsec_core.errors import InvalidInputError
from dlsec_core.federated.inversion import (
    LAB_NOISE,
    GradLeakConfig,
    gaussian_window,
    gradient_leakage,
    match_images,
    observe,
    psnr,
    recover_labels,
    simulate_update,
    ssim,
)
from dlsec_core.models.spec import build_model
from dlsec_core.privacy.dp_sgd import DPSGDRecipe
from dlsec_core.training.loop import run_to_end
from dlsec_core.workflows import spec_for


@pytest.fixture(scope="module")
def digits_model() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = build_model(spec_for(data, "lenet-sigmoid"))
    return model, data.x_train[:16], data.y_train[:16]


# -- metrics --------------------------------------------------------------------------------------------------
def test_identical_images_have_infinite_psnr_and_ssim_one() -> None:
    x = torch.rand(3, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    assert psnr(x, x).tolist() == [math.inf] * 3
    assert ssim(x, x).tolist() == pytest.approx([1.0] * 3, abs=1e-12)


def test_psnr_of_a_known_pair() -> None:
    zeros = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    assert float(psnr(zeros, zeros + 0.1)[0]) == pytest.approx(20.0, abs=1e-9)  # MSE 0.01
    half = zeros.clone()
    half[..., :4] = 1.0  # MSE 0.5: 10·log10(2)
    assert float(psnr(zeros, half)[0]) == pytest.approx(10 * math.log10(2), abs=1e-9)


def test_ssim_of_constant_images_in_closed_form() -> None:
    """Constant images: no variance, no covariance, so SSIM = (2ab + C1) / (a² + b² + C1)."""
    a, b = 0.3, 0.7
    c1 = 0.01**2
    f64 = torch.float64
    value = float(ssim(torch.full((1, 1, 16, 16), a, dtype=f64), torch.full((1, 1, 16, 16), b, dtype=f64))[0])
    assert value == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-12)


def _reference_ssim(x: np.ndarray, y: np.ndarray, size: int) -> float:
    """Wang et al. 2004 written out with SciPy: Gaussian σ = 1.5 window, valid region, K1 = 0.01, K2 = 0.03."""
    r = np.arange(size) - (size - 1) / 2
    g = np.exp(-(r**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()

    def f(a: np.ndarray) -> np.ndarray:
        return correlate2d(a, w, mode="valid")

    mx, my = f(x), f(y)
    sxx, syy, sxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return float(np.mean((2 * mx * my + c1) * (2 * sxy + c2) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))))


@pytest.mark.parametrize(("side", "size"), [(28, 11), (8, 7), (14, 11)])
def test_ssim_matches_an_independent_implementation(side: int, size: int) -> None:
    rng = np.random.default_rng(side)
    x = rng.random((side, side))
    y = np.clip(x + 0.2 * rng.standard_normal((side, side)), 0, 1)
    ours = float(ssim(torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None])[0])
    assert ours == pytest.approx(_reference_ssim(x, y, size), abs=1e-12)
    assert 0.0 < ours < 1.0
    assert gaussian_window(size).sum().item() == pytest.approx(1.0)


def test_reconstructions_are_paired_with_their_originals() -> None:
    x = torch.rand(5, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    shuffled = x[torch.tensor([3, 0, 4, 1, 2])] + 0.01
    assert torch.equal(match_images(x, shuffled), x + 0.01)


# -- what the server observes ----------------------------------------------------------------------------------
def test_one_local_step_is_the_gradient(
    digits_model: tuple[torch.nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    model, x, y = digits_model
    reference = build_model(spec_for(load_dataset("digits"), "lenet-sigmoid"))
    reference.load_state_dict(model.state_dict())
    F.cross_entropy(reference(x[:3]), y[:3]).backward()
    expected = torch.cat([p.grad.reshape(-1) for p in reference.parameters()])
    assert torch.allclose(simulate_update(model, x[:3], y[:3], steps=1, lr=0.1), expected, atol=1e-6)
    assert all(p.grad is None for p in model.parameters())  # the global model is untouched


def test_secure_aggregation_shows_only_the_mean(
    digits_model: tuple[torch.nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    model, x, y = digits_model
    batches = [(x[2 * i : 2 * i + 2], y[2 * i : 2 * i + 2]) for i in range(3)]
    plain = GradLeakConfig(batch_size=2)
    mean = torch.stack([observe(model, bx, by, plain).gradient for bx, by in batches]).mean(0)
    secure = GradLeakConfig(batch_size=2, defense="secure-aggregation", clients=3)
    seen = observe(model, *batches[0], secure, others=batches[1:])
    assert torch.allclose(seen.gradient, mean, atol=1e-5)
    with pytest.raises(InvalidInputError, match="needs 2 other batches"):
        observe(model, *batches[0], secure)


def test_top_k_sends_the_largest_entries(
    digits_model: tuple[torch.nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    model, x, y = digits_model
    full = observe(model, x[:1], y[:1], GradLeakConfig()).gradient
    seen = observe(model, x[:1], y[:1], GradLeakConfig(defense="topk", keep=0.05))
    assert seen.mask is not None and int(seen.mask.sum()) == math.ceil(0.05 * full.numel())
    assert torch.equal(seen.gradient[seen.mask], full[seen.mask])
    assert float(seen.gradient[~seen.mask].abs().max()) == 0.0
    assert float(full[~seen.mask].abs().max()) <= float(full[seen.mask].abs().min())


def test_idlg_reads_the_label_off_the_last_layer(
    digits_model: tuple[torch.nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    model, x, y = digits_model
    for i in range(8):
        seen = observe(model, x[i : i + 1], y[i : i + 1], GradLeakConfig())
        assert recover_labels(model, seen).tolist() == [int(y[i])]


# -- the attacks, undefended and defended ----------------------------------------------------------------------
@pytest.mark.parametrize("attack", ["dlg", "idlg"])
def test_an_undefended_image_is_recovered(
    attack: str, digits_model: tuple[torch.nn.Module, torch.Tensor, torch.Tensor]
) -> None:
    model, x, y = digits_model
    result = run_to_end(gradient_leakage(model, x[:1], y[:1], GradLeakConfig(attack=attack, steps=30)))
    assert result.psnr[0] >= 25.0 and result.ssim[0] > 0.9
    assert result.recovered_labels == [int(y[0])] and result.labels_recovered


def test_client_dp_at_the_lab_default_noise_defeats_dlg(
    digits_model: tuple[torch.nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    model, x, y = digits_model
    assert DPSGDRecipe().noise_multiplier == LAB_NOISE  # "the lab's default noise" is DP-SGD's
    config = GradLeakConfig(attack="dlg", steps=30, defense="dp")
    assert config.noise_multiplier == LAB_NOISE
    result = run_to_end(gradient_leakage(model, x[:1], y[:1], config))
    assert result.psnr[0] <= 15.0


def test_secure_aggregation_leaves_only_a_mixture(
    digits_model: tuple[torch.nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    """The image iDLG recovers alone (PSNR >= 25 dB above) is lost in the mean of 4 clients' updates."""
    model, x, y = digits_model
    others = [(x[i : i + 1], y[i : i + 1]) for i in (1, 2, 3)]
    config = GradLeakConfig(attack="idlg", steps=30, defense="secure-aggregation", clients=4)
    result = run_to_end(gradient_leakage(model, x[:1], y[:1], config, others=others))
    assert result.psnr[0] <= 15.0


def test_several_local_steps_are_unrolled_by_the_attacker(
    digits_model: tuple[torch.nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    """A 5-step update is no gradient, but the attacker simulates the same 5 steps and still recovers the image."""
    model, x, y = digits_model
    config = GradLeakConfig(attack="idlg", steps=30, local_steps=5)
    seen = observe(model, x[:1], y[:1], config)
    one_step = observe(model, x[:1], y[:1], GradLeakConfig())
    assert not torch.allclose(seen.gradient, one_step.gradient, atol=1e-4)
    result = run_to_end(gradient_leakage(model, x[:1], y[:1], config))
    assert result.psnr[0] >= 25.0


def test_inverting_gradients_recovers_an_image(
    digits_model: tuple[torch.nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    model, x, y = digits_model
    events = []
    work = gradient_leakage(model, x[1:2], y[1:2], GradLeakConfig(attack="ig", steps=400, events=4))
    result = run_to_end(work, events.append)
    assert [e.step for e in events] == [100, 200, 300, 400]
    assert all(e.images.shape == (1, 1, 8, 8) and 0 <= e.images.min() <= e.images.max() <= 1 for e in events)
    assert result.psnr[0] >= 25.0


def test_a_bad_batch_is_refused(digits_model: tuple[torch.nn.Module, torch.Tensor, torch.Tensor]) -> None:
    model, x, y = digits_model
    with pytest.raises(InvalidInputError, match="batch of 2"):
        run_to_end(gradient_leakage(model, x[:1], y[:1], GradLeakConfig(batch_size=2)))
    with pytest.raises(InvalidInputError, match="Client batch size"):
        GradLeakConfig(batch_size=9)
