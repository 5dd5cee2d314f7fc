"""DP-SGD through Opacus: ghost clipping equals clipping one example at a time, the noise and the sample rate are
what was configured, the budget is counted and respected, and models Opacus refuses get a fix."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from opacus.validators import ModuleValidator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlsec_core.data.builtin import load_dataset
from dlsec_core.errors import InvalidInputError
from dlsec_core.models.spec import build_model
from dlsec_core.privacy.accounting import epsilon_after
from dlsec_core.privacy.dp_sgd import DPSGDRecipe, dp_fixed_spec, dp_problems, privatize
from dlsec_core.training import TrainConfig, get_recipe, train
from dlsec_core.training.loop import init_model, run_to_end
from dlsec_core.workflows import spec_for

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist5k")


def _private_step(model, x, y, *, sigma, clip, seed=0):
    """One DP-SGD step (plain SGD, lr 1) on exactly the batch (x, y); returns the parameter change."""
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    loader = DataLoader(TensorDataset(x, y), batch_size=len(y))  # expected batch = this batch
    parts = privatize(
        model, opt, loader, noise_multiplier=sigma, max_grad_norm=clip, accountant="rdp",
        generator=torch.Generator().manual_seed(seed), noise_seed=seed,
    )  # fmt: skip
    parts.optimizer.zero_grad()
    parts.criterion(parts.module(x), y).backward()
    parts.optimizer.step()
    parts.module.cleanup()
    return [p.detach() - b for p, b in zip(model.parameters(), before, strict=True)]


def _one_at_a_time(model, x, y, clip):
    """The DP-SGD update computed naively: each example's gradient alone, clipped, averaged, negated."""
    total = [torch.zeros_like(p) for p in model.parameters()]
    for i in range(len(y)):
        grads = torch.autograd.grad(
            F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]), list(model.parameters())
        )
        norm = torch.sqrt(sum((g**2).sum() for g in grads))
        scale = min(1.0, clip / (float(norm) + 1e-6))
        for t, g in zip(total, grads, strict=True):
            t += g * scale
    return [-t / len(y) for t in total]


@pytest.mark.parametrize("arch", ["logreg", "mlp", "cnn", "cnn-gn"])
@pytest.mark.parametrize("clip", [0.05, 1e6])
def test_ghost_clipping_equals_clipping_each_example_alone(digits, arch, clip):
    spec = spec_for(digits, arch)
    x, y = digits.x_train[:24], digits.y_train[:24]
    expected = _one_at_a_time(init_model(spec, 3), x, y, clip)
    got = _private_step(init_model(spec, 3), x, y, sigma=0.0, clip=clip)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, atol=1e-6, rtol=1e-4)


def test_no_noise_no_clipping_is_plain_sgd(digits):
    spec = spec_for(digits, "cnn")
    x, y = digits.x_train[:32], digits.y_train[:32]
    plain = init_model(spec, 1)
    before = [p.detach().clone() for p in plain.parameters()]
    opt = torch.optim.SGD(plain.parameters(), lr=1.0)
    F.cross_entropy(plain(x), y).backward()
    opt.step()
    expected = [p.detach() - b for p, b in zip(plain.parameters(), before, strict=True)]
    got = _private_step(init_model(spec, 1), x, y, sigma=0.0, clip=1e9)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, atol=1e-6, rtol=1e-5)


def test_noise_has_the_configured_scale(mnist):
    """Δθ(σ) - Δθ(0) on the same batch is Gaussian noise of std σ·C / B (lr 1), on 400k weights."""
    spec = spec_for(mnist, "cnn")
    x, y = mnist.x_train[:50], mnist.y_train[:50]
    sigma, clip = 2.0, 0.5
    noisy = _private_step(init_model(spec, 0), x, y, sigma=sigma, clip=clip, seed=5)
    clean = _private_step(init_model(spec, 0), x, y, sigma=0.0, clip=clip, seed=5)
    noise = torch.cat([(a - b).flatten() for a, b in zip(noisy, clean, strict=True)])
    assert noise.numel() > 400_000
    assert float(noise.std()) == pytest.approx(sigma * clip / 50, rel=0.01)
    assert abs(float(noise.mean())) < 0.01 * sigma * clip / 50


def test_sample_rate_is_batch_size_over_dataset_size(digits):
    model = init_model(spec_for(digits, "mlp"), 0)
    n = len(digits.y_train)
    loader = DataLoader(TensorDataset(digits.x_train, digits.y_train), batch_size=100)
    parts = privatize(
        model, torch.optim.SGD(model.parameters(), lr=0.1), loader, noise_multiplier=1.0, max_grad_norm=1.0,
        accountant="prv", generator=torch.Generator().manual_seed(0), noise_seed=0,
    )  # fmt: skip
    assert parts.sample_rate == 100 / n  # Opacus's make_private would use 1 / len(loader) = 1 / 15
    assert parts.loader.sample_rate == 100 / n
    sizes = [len(yb) for _, yb in parts.loader]
    assert len(sizes) == int(n / 100)
    assert 60 < sum(sizes) / len(sizes) < 140  # Poisson batches around the expected size
    assert len(set(sizes)) > 1


def _dp_train(data, epochs=2, **recipe):
    config = TrainConfig(epochs=epochs, batch_size=128, lr=1e-2, seed=0, shift=0)
    return run_to_end(
        train(spec_for(data, "mlp", hidden=32, depth=1), data, config, get_recipe("dp-sgd", **recipe))
    )


def test_training_reports_the_accountants_epsilon_every_epoch(digits):
    result = _dp_train(digits, epochs=3, noise_multiplier=1.1, accountant="rdp")
    n = len(digits.y_train)
    steps_per_epoch = int(n / 128)
    eps = [h["epsilon"] for h in result.history]
    assert eps == sorted(eps) and eps[0] > 0  # ε only grows
    for epoch, h in enumerate(result.history, start=1):
        assert h["accountant"] == "rdp" and h["delta"] == 1e-5
        assert h["dp_steps"] == epoch * steps_per_epoch
        assert h["sample_rate"] == 128 / n
        expected = epsilon_after(1.1, 128 / n, h["dp_steps"], 1e-5, accountant="rdp").epsilon
        assert h["epsilon"] == pytest.approx(expected, rel=1e-9)
    assert result.test_accuracy > 0.5  # it still learns
    # the returned model is plain: Opacus's hooks are gone
    assert all(not m._forward_hooks and not m._backward_hooks for m in result.model.modules())
    assert not any(hasattr(p, "grad_sample") for p in result.model.parameters())


def test_target_epsilon_calibrates_noise_and_is_not_exceeded(digits):
    result = _dp_train(digits, epochs=3, target_epsilon=2.0, accountant="prv")
    last = result.history[-1]
    assert last["accountant"] == "prv"
    assert last["epsilon"] <= 2.0
    assert last["epsilon"] > 1.8  # the calibration is tight, not wildly conservative


def test_budget_stops_training_before_it_is_exceeded(digits):
    per_epoch = [epsilon_after(0.8, 128 / len(digits.y_train), k * 11, 1e-5).epsilon for k in (1, 2, 3)]
    budget = (per_epoch[1] + per_epoch[2]) / 2  # two epochs fit, the third would not
    result = _dp_train(digits, epochs=6, noise_multiplier=0.8, max_epsilon=budget)
    assert len(result.history) == 2
    assert result.history[-1]["epsilon"] <= budget
    assert result.stopped_early and "privacy budget" in result.stopped_early


def test_budget_below_one_epoch_is_refused(digits):
    with pytest.raises(InvalidInputError, match="One epoch alone"):
        _dp_train(digits, noise_multiplier=0.5, max_epsilon=0.01)


def test_delta_must_be_below_one_over_n(digits):
    with pytest.raises(InvalidInputError, match="1/N"):
        _dp_train(digits, delta=0.005)


def test_same_seed_same_weights(digits):
    a, b = _dp_train(digits, epochs=1), _dp_train(digits, epochs=1)
    for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True):
        assert torch.equal(p, q)


def test_dp_combines_with_adversarial_training(digits):
    result = _dp_train(digits, epochs=2, adv_eps=0.1)
    last = result.history[-1]
    assert last["epsilon"] > 0 and last["accountant"] == "rdp"
    assert 0 <= last["robust_accuracy"] <= 1 and "PGD" in last["robust_attack"]


def test_batchnorm_model_gets_its_problems_and_a_fix(digits):
    spec = spec_for(digits, "cnn-bn")
    problems = dp_problems(spec)
    assert problems and any("BatchNorm" in p for p in problems)
    with pytest.raises(InvalidInputError, match="Opacus cannot train this model"):
        run_to_end(train(spec, digits, TrainConfig(epochs=1, batch_size=128), get_recipe("dp-sgd")))
    fixed = dp_fixed_spec(spec)
    assert fixed.arch == "cnn-gn" and dp_problems(fixed) == []
    # the fix is exactly Opacus's own: BatchNorm2d(C) -> GroupNorm(min(32, C), C)
    opacus_fixed = ModuleValidator.fix(build_model(spec))
    ours = build_model(fixed)
    assert [type(m) for m in opacus_fixed.modules()] == [type(m) for m in ours.modules()]
    for a, b in zip(opacus_fixed.modules(), ours.modules(), strict=True):
        if isinstance(a, nn.GroupNorm):
            assert (a.num_groups, a.num_channels) == (b.num_groups, b.num_channels)
    assert dp_fixed_spec(spec_for(digits, "cnn")).arch == "cnn"  # nothing to fix


@pytest.mark.parametrize(
    "params",
    [
        {"noise_multiplier": 0}, {"noise_multiplier": math.nan}, {"max_grad_norm": -1}, {"delta": 0},
        {"accountant": "gdp"}, {"target_epsilon": -1}, {"target_epsilon": 4, "max_epsilon": 2},
        {"adv_eps": 2}, {"noise_multiplier": True},
    ],
)  # fmt: skip
def test_bad_parameters_are_refused(params):
    with pytest.raises(InvalidInputError):
        DPSGDRecipe(**params)
