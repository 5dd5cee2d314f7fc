"""CW, DeepFool, Square and Transfer on a trained digits model: strength, minimality, black-box-ness, transfer.

The base-class contract (ball, box, untouched parameters, seeds) is tested for them in test_attacks.py, which is
parametrized over the registry; here each attack does what its paper says it does.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dlsec_core.attacks import CW, FGSM, PGD, DeepFool, Square, Transfer, get_attack
from dlsec_core.attacks.cw import fooling_margin
from dlsec_core.data.builtin import load_dataset
from dlsec_core.errors import InvalidInputError
from dlsec_core.models import ModelSpec
from dlsec_core.training.loop import TrainConfig, TrainResult, run_to_end, train

CPU = torch.device("cpu")
N = 100  # correctly classified test images per check


@pytest.fixture(scope="module")
def digits_cnn() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A cnn trained on digits (about 0.97 test accuracy in a second or two), with N test images it gets right."""
    ds = load_dataset("digits")
    mean, std = ds.channel_stats()
    spec = ModelSpec(arch="cnn", input_shape=(1, 8, 8), num_classes=10, mean=mean, std=std)
    result = run_to_end(train(spec, ds, TrainConfig(epochs=3, lr=5e-3, shift=0, seed=0), device=CPU))
    model = result.model.eval()
    with torch.no_grad():
        right = model(ds.x_test).argmax(dim=1) == ds.y_test
    return model, ds.x_test[right][:N], ds.y_test[right][:N]


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def median_l2(result) -> float:
    return float(result.l2[result.success].median())


# -- CW and DeepFool: minimal perturbations ------------------------------------------------------------------------


@pytest.mark.parametrize("attack", [CW(), DeepFool()], ids=["cw", "deepfool"])
def test_minimal_attacks_succeed_with_smaller_perturbations_than_fgsm(digits_cnn, attack):
    model, x, y = digits_cnn
    result = attack(model, x, y)
    assert result.success_rate >= 0.97
    # FGSM-L2 at the smallest ε (on a grid) where it fools as many images: its perturbations are larger.
    direction = FGSM(norm="l2").direction(model, x, y)
    for eps in torch.linspace(0.25, 6.0, 24).tolist():
        fgsm = FGSM(eps=eps, norm="l2").apply_direction(model, x, y, direction)
        if fgsm.success_rate >= result.success_rate:
            break
    assert median_l2(result) < 0.6 * median_l2(fgsm)


def test_deepfool_is_near_minimal(digits_cnn):
    model, x, y = digits_cnn
    result = DeepFool()(model, x, y)
    assert result.success_rate == 1.0
    with torch.no_grad():
        half = model(x + 0.5 * result.perturbation).argmax(dim=1) != y
    # Half of DeepFool's step (which overshoots the boundary by only 2 %) almost never fools the model.
    assert float(half.float().mean()) < 0.1


def test_deepfool_linf_steps_are_sign_like(digits_cnn):
    model, x, y = digits_cnn
    linf = DeepFool(norm="linf", eps=1.0)(model, x, y)
    l2 = DeepFool(norm="l2")(model, x, y)
    assert linf.success_rate >= 0.97
    # Each version is smaller in its own norm.
    assert float(linf.linf[linf.success].median()) < float(l2.linf[l2.success].median())
    assert median_l2(l2) < median_l2(linf)


@pytest.mark.parametrize("attack", [CW(), DeepFool()], ids=["cw", "deepfool"])
def test_targeted_minimal_attacks_reach_the_target(digits_cnn, attack):
    model, x, y = digits_cnn
    target = (y + 3) % 10
    result = attack(model, x, y, target=target)
    assert result.success_rate >= 0.95
    assert torch.equal(result.pred_adv[result.success], target[result.success])


def test_cw_respects_a_small_budget_and_keeps_the_smallest_success(digits_cnn):
    model, x, y = digits_cnn
    free = CW()(model, x, y)
    tight = CW(eps=0.5)(model, x, y)
    assert float(tight.l2.max()) <= 0.5 + 1e-6
    # Whatever fooled within 0.5 was already found by the unconstrained run (it keeps the smallest success).
    small = free.success & (free.l2 <= 0.5)
    assert bool(tight.success[small].all())
    assert tight.success_rate < free.success_rate


def test_cw_linf_optimises_inside_the_box(digits_cnn):
    model, x, y = digits_cnn
    result = CW(norm="linf", eps=0.2)(model, x, y)
    assert float(result.linf.max()) <= 0.2 + 1e-6
    assert result.success_rate > 0.8


def test_cw_kappa_buys_confidence(digits_cnn):
    model, x, y = digits_cnn
    plain = CW()(model, x, y)
    confident = CW(kappa=5.0, c=10.0)(model, x, y)
    margins = fooling_margin(confident.probs_adv.log(), y, targeted=False)[confident.success]
    assert (
        float(margins.median()) > 0.9 * 5.0
    )  # log-probabilities differ from logits by a constant per sample
    assert median_l2(confident) > median_l2(plain)


def test_fooling_margin():
    logits = torch.tensor([[3.0, 1.0, 0.5], [0.0, 2.0, 1.0]])
    labels = torch.tensor([0, 0])
    torch.testing.assert_close(fooling_margin(logits, labels, targeted=False), torch.tensor([-2.0, 2.0]))
    torch.testing.assert_close(fooling_margin(logits, labels, targeted=True), torch.tensor([2.0, -2.0]))


# -- Square: black-box ------------------------------------------------------------------------------------------------


class NoGradients(nn.Module):
    """Wraps a model and refuses any forward pass while autograd is recording: a score-only oracle."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.queries = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            raise AssertionError("a black-box attack asked for a differentiable forward pass")
        self.queries += x.shape[0]
        return self.model(x)


@pytest.mark.parametrize(("norm", "eps", "least"), [("linf", 0.3, 0.95), ("l2", 2.0, 0.9)])
def test_square_fools_without_gradients(digits_cnn, norm: str, eps: float, least: float):
    model, x, y = digits_cnn
    oracle = NoGradients(model)
    attack = Square(eps=eps, norm=norm, n_queries=500)
    result = attack(oracle, x, y, generator=seeded())
    assert result.success_rate >= least
    # At most n_queries per image, plus the base's two classifications (clean and adversarial).
    assert oracle.queries <= (attack.n_queries + 2) * x.shape[0]


def test_square_targeted_and_seeds(digits_cnn):
    model, x, y = digits_cnn
    target = (y + 3) % 10
    a = Square(eps=0.3, n_queries=500)(model, x, y, target=target, generator=seeded(1))
    assert a.success_rate >= 0.8
    assert torch.equal(a.pred_adv[a.success], target[a.success])
    b = Square(eps=0.3, n_queries=500)(model, x, y, target=target, generator=seeded(2))
    assert not torch.equal(a.x_adv, b.x_adv)


def test_square_is_weaker_than_white_box_at_a_small_query_budget(digits_cnn):
    model, x, y = digits_cnn
    pgd = PGD(eps=0.15, steps=20)(model, x, y, generator=seeded())
    square = Square(eps=0.15, n_queries=20)(model, x, y, generator=seeded())
    assert square.success_rate <= pgd.success_rate


# -- Transfer -----------------------------------------------------------------------------------------------------------


class Counting(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.model(x)


def test_transfer_from_a_different_surrogate(digits_cnn, trained_digits: TrainResult):
    model, x, y = digits_cnn
    surrogate = trained_digits.model  # softmax regression: a different architecture, trained separately
    target_model = Counting(model)
    transfer = Transfer(eps=0.2, steps=20, surrogate=surrogate)
    result = transfer(target_model, x, y, generator=seeded())
    assert target_model.calls == 1  # only the base's final classification: crafting never queried the target
    white_box = PGD(eps=0.2, steps=20)(model, x, y, generator=seeded())
    assert 0.0 < result.success_rate <= white_box.success_rate
    assert "surrogate" in transfer.describe()


def test_transfer_leaves_the_surrogate_untouched(digits_cnn, trained_digits: TrainResult):
    model, x, y = digits_cnn
    surrogate = trained_digits.model
    was_training = surrogate.training
    surrogate.train(True)
    before = {k: v.clone() for k, v in surrogate.state_dict().items()}
    grads = [None if p.grad is None else p.grad.clone() for p in surrogate.parameters()]
    try:
        Transfer(eps=0.1, steps=3, surrogate=surrogate)(model, x[:8], y[:8], target=(y[:8] + 1) % 10)
        assert surrogate.training
        for p, g in zip(surrogate.parameters(), grads, strict=True):
            assert (p.grad is None) if g is None else torch.equal(p.grad, g)
        assert all(torch.equal(v, surrogate.state_dict()[k]) for k, v in before.items())
    finally:
        surrogate.train(was_training)


def test_transfer_without_surrogate_is_white_box_pgd(digits_cnn):
    model, x, y = digits_cnn
    transfer = Transfer(eps=0.1, steps=10)(model, x, y, generator=seeded(3))
    pgd = PGD(eps=0.1, steps=10)(model, x, y, generator=seeded(3))
    assert torch.equal(transfer.x_adv, pgd.x_adv)
    assert "white-box" in Transfer(eps=0.1).describe()


def test_transfer_fgsm_inner_and_config_identity(trained_digits: TrainResult):
    surrogate = trained_digits.model
    a = Transfer(eps=0.1, inner="fgsm", surrogate=surrogate)
    assert a == Transfer(eps=0.1, inner="fgsm")  # the surrogate is data, not part of the config
    assert hash(a) == hash(Transfer(eps=0.1, inner="fgsm"))
    assert "Module" not in repr(a)
    assert get_attack("transfer", eps=0.1, inner="fgsm", surrogate=surrogate).surrogate is surrogate


# -- bad hyperparameters ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "params"),
    [
        (CW, {"steps": 0}),
        (CW, {"binary_search_steps": 0}),
        (CW, {"c": 0.0}),
        (CW, {"lr": -1.0}),
        (CW, {"kappa": -1.0}),
        (DeepFool, {"steps": 2.5}),
        (DeepFool, {"candidates": 1}),
        (DeepFool, {"overshoot": -0.1}),
        (Square, {"n_queries": 1}),
        (Square, {"p_init": 0.0}),
        (Square, {"p_init": 1.5}),
        (Transfer, {"inner": "cw"}),
        (Transfer, {"steps": 0}),
        (Transfer, {"surrogate": "my model"}),
    ],
)
def test_bad_hyperparameters_are_refused(cls, params: dict):
    with pytest.raises(InvalidInputError):
        cls(**params)
