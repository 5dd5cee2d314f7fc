"""Attacks: the base-class contract for every registered attack, closed-form FGSM, FGSM == one-step PGD, strength.

The contract tests are parametrized over `ATTACKS`, so an attack is tested the moment it is registered.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlsec_core.attacks import ATTACKS, FGSM, PGD, Attack, AttackResult, get_attack
from dlsec_core.data.builtin import load_dataset
from dlsec_core.errors import InvalidInputError, NotFoundError
from dlsec_core.models import ModelSpec, build_model
from dlsec_core.training.loop import TrainConfig, run_to_end, train

CPU = torch.device("cpu")
NORMS = ("linf", "l2")
EPS = {"linf": 0.1, "l2": 0.5}  # a budget of comparable strength for each norm on 8x8 images
MEAN, STD = 0.3, 0.38  # close to digits' pixel statistics; std != 1 so the Normalize layer matters
SMALL = {
    "logreg": {},
    "cnn": {"channels1": 4, "channels2": 8, "hidden": 16},
}


def small_model(arch: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    spec = ModelSpec(
        arch=arch, input_shape=(1, 8, 8), num_classes=10, hparams=SMALL[arch], mean=(MEAN,), std=(STD,)
    )
    return build_model(spec).eval()


def make_attack(name: str, norm: str, eps: float | None = None) -> Attack:
    """A registered attack with its default hyperparameters, at this norm and budget."""
    return ATTACKS[name](eps=EPS[norm] if eps is None else eps, norm=norm)


def batch(n: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return x, y, (y + 1) % 10


@pytest.fixture(scope="module")
def digits_model() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A cnn trained on digits (about 0.97 test accuracy, well under a second), with 200 test samples."""
    ds = load_dataset("digits")
    mean, std = ds.channel_stats()
    spec = ModelSpec(arch="cnn", input_shape=(1, 8, 8), num_classes=10, mean=mean, std=std)
    config = TrainConfig(epochs=3, lr=5e-3, shift=0, seed=0)
    result = run_to_end(train(spec, ds, config, device=CPU))
    assert result.test_accuracy > 0.85
    return result.model, ds.x_test[:200], ds.y_test[:200]


# -- the contract, for every registered attack ---------------------------------------------------------------

contract = pytest.mark.parametrize(
    ("name", "norm", "targeted", "arch"),
    [
        (name, norm, targeted, arch)
        for name in sorted(ATTACKS)
        for norm in NORMS
        for targeted in (False, True)
        for arch in SMALL
    ],
)


@contract
def test_result_is_in_the_ball_and_the_box_detached_on_cpu(name: str, norm: str, targeted: bool, arch: str):
    model = small_model(arch)
    x, y, t = batch()
    attack = make_attack(name, norm)
    result = attack(model, x.clone().requires_grad_(True), y, target=t if targeted else None)

    assert result.x_adv.shape == x.shape
    dist = (result.x_adv - x).flatten(1).norm(p=math.inf if norm == "linf" else 2, dim=1)
    assert float(dist.max()) <= attack.eps + 1e-6
    assert float(result.x_adv.min()) >= 0.0 and float(result.x_adv.max()) <= 1.0
    assert torch.equal(result.x, x)
    assert torch.equal(result.y, y)
    assert result.targeted is targeted
    if targeted:
        assert torch.equal(result.target, t)
    for tensor in (result.x, result.x_adv, result.y, result.probs_clean, result.probs_adv):
        assert tensor.device == CPU
        assert not tensor.requires_grad
    assert (result.attack, result.eps, result.norm) == (name, attack.eps, norm)
    assert result.probs_clean.shape == result.probs_adv.shape == (x.shape[0], 10)
    torch.testing.assert_close(result.probs_adv.sum(1), torch.ones(x.shape[0]))


@contract
@pytest.mark.parametrize("grads", ["none", "set"])
def test_parameters_and_their_grads_are_untouched(
    name: str, norm: str, targeted: bool, arch: str, grads: str
):
    model = small_model(arch)
    if grads == "set":
        for i, p in enumerate(model.parameters()):
            p.grad = torch.full_like(p, 0.25 + i)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads_before = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    x, y, t = batch()

    make_attack(name, norm)(model, x, y, target=t if targeted else None)

    after = model.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key
    for p, g in zip(model.parameters(), grads_before, strict=True):
        if g is None:
            assert p.grad is None
        else:
            assert torch.equal(p.grad, g)


@contract
@pytest.mark.parametrize("training", [True, False])
def test_train_eval_mode_is_restored(name: str, norm: str, targeted: bool, arch: str, training: bool):
    model = small_model(arch).train(training)
    x, y, t = batch()
    make_attack(name, norm)(model, x, y, target=t if targeted else None)
    assert all(m.training is training for m in model.modules())


@contract
def test_same_seed_same_result(name: str, norm: str, targeted: bool, arch: str):
    model = small_model(arch)
    x, y, t = batch()
    attack = make_attack(name, norm)
    target = t if targeted else None
    first = attack(model, x, y, target=target, generator=torch.Generator().manual_seed(7))
    second = attack(model, x, y, target=target, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first.x_adv, second.x_adv)
    assert torch.equal(first.probs_adv, second.probs_adv)


@contract
def test_zero_budget_returns_the_inputs(name: str, norm: str, targeted: bool, arch: str):
    model = small_model(arch)
    x, y, t = batch()
    result = make_attack(name, norm, eps=0.0)(model, x, y, target=t if targeted else None)
    assert torch.equal(result.x_adv, x)
    assert torch.equal(result.probs_adv, result.probs_clean)


# -- bad inputs ----------------------------------------------------------------------------------------------


def _nan_input() -> torch.Tensor:
    x = torch.rand(4, 1, 8, 8)
    x[1, 0, 2, 3] = float("nan")
    return x


BAD_INPUTS = {
    "nan": (_nan_input(), torch.zeros(4, dtype=torch.long), None),
    "above one": (torch.rand(4, 1, 8, 8) + 1.0, torch.zeros(4, dtype=torch.long), None),
    "below zero": (torch.rand(4, 1, 8, 8) - 1.0, torch.zeros(4, dtype=torch.long), None),
    "3 dims": (torch.rand(4, 8, 8), torch.zeros(4, dtype=torch.long), None),
    "5 dims": (torch.rand(4, 1, 1, 8, 8), torch.zeros(4, dtype=torch.long), None),
    "empty": (torch.rand(0, 1, 8, 8), torch.zeros(0, dtype=torch.long), None),
    "label count": (torch.rand(4, 1, 8, 8), torch.zeros(3, dtype=torch.long), None),
    "negative label": (torch.rand(4, 1, 8, 8), torch.tensor([0, 1, -1, 2]), None),
    "label too large": (torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 10, 2]), None),
    "target count": (
        torch.rand(4, 1, 8, 8),
        torch.zeros(4, dtype=torch.long),
        torch.zeros(3, dtype=torch.long),
    ),
    "target too large": (torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), torch.tensor([12])),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_are_refused(name: str, case: str):
    x, y, target = BAD_INPUTS[case]
    model = small_model("logreg")
    with pytest.raises(InvalidInputError):
        make_attack(name, "linf")(model, x, y, target=target)


@pytest.mark.parametrize("name", sorted(ATTACKS))
@pytest.mark.parametrize(
    "params",
    [
        {"eps": -0.1},
        {"eps": float("nan")},
        {"eps": "0.1"},
        {"eps": 1.5, "norm": "linf"},
        {"norm": "l1"},
        {"norm": "Linf"},
    ],
)
def test_bad_budgets_are_refused(name: str, params: dict):
    with pytest.raises(InvalidInputError):
        ATTACKS[name](**params)


def test_l2_budget_may_exceed_one():
    assert get_attack("fgsm", eps=3.0, norm="l2").eps == 3.0


@pytest.mark.parametrize(
    "params",
    [{"steps": 0}, {"steps": -3}, {"steps": 2.5}, {"steps": True}, {"alpha": -0.01}, {"alpha": 0.0}],
)
def test_bad_pgd_parameters_are_refused(params: dict):
    with pytest.raises(InvalidInputError):
        PGD(eps=0.1, **params)


def test_get_attack():
    assert get_attack("pgd", eps=0.2, steps=3) == PGD(eps=0.2, steps=3)
    with pytest.raises(NotFoundError):
        get_attack("nope")
    with pytest.raises(InvalidInputError):
        get_attack("pgd", bogus=1)


def test_with_params_validates_again():
    with pytest.raises(InvalidInputError):
        FGSM(eps=0.1).with_params(eps=-1.0)


# -- FGSM against its closed form on a linear model ----------------------------------------------------------


def logreg_gradient(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """d CE(W (x - mean) / std + b, labels) / dx = W^T (softmax(z) - onehot(labels)) / std, in float64."""
    linear = model[1][1]
    w, b = linear.weight.detach().double(), linear.bias.detach().double()  # (K, D), (K,)
    z = ((x.double() - MEAN) / STD).flatten(1) @ w.T + b  # (N, C, H, W) -> (N, D) -> (N, K)
    p = z.softmax(dim=1)
    g = (p - F.one_hot(labels, 10).double()) @ w / STD  # (N, D)
    return g.view(x.shape)


def closed_form_fgsm(x: torch.Tensor, g: torch.Tensor, eps: float, norm: str, sign: float) -> torch.Tensor:
    # L-inf: sign(g); L2: g / ||g||_2 per sample, (N, 1, 1, 1) broadcast over (N, C, H, W)
    step = g.sign() if norm == "linf" else g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    return (x.double() + sign * eps * step).clamp(0, 1).float()


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("targeted", [False, True])
def test_fgsm_matches_the_closed_form_on_logistic_regression(norm: str, targeted: bool):
    model = small_model("logreg", seed=3)
    ds = load_dataset("digits")
    x, y = ds.x_test[:64], ds.y_test[:64]
    t = (y + 3) % 10
    eps = EPS[norm]

    # Untargeted ascends CE(y); targeted descends CE(target).
    g = logreg_gradient(model, x, t if targeted else y)
    assert float(g.abs().min()) > 1e-6  # no sign is a coin flip, so the comparison below is exact
    expected = closed_form_fgsm(x, g, eps, norm, -1.0 if targeted else 1.0)

    result = FGSM(eps=eps, norm=norm)(model, x, y, target=t if targeted else None)
    torch.testing.assert_close(result.x_adv, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("arch", sorted(SMALL))
def test_fgsm_is_one_pgd_step_without_random_start(norm: str, targeted: bool, arch: str):
    model = small_model(arch, seed=1)
    x, y, t = batch(32, seed=1)
    eps = EPS[norm]
    target = t if targeted else None
    fgsm = FGSM(eps=eps, norm=norm)(model, x, y, target=target)
    pgd = PGD(eps=eps, norm=norm, steps=1, alpha=eps, random_start=False, stop_when_fooled=False)(
        model, x, y, target=target
    )
    assert torch.equal(fgsm.x_adv, pgd.x_adv)


@pytest.mark.parametrize("norm", NORMS)
def test_fgsm_direction_reused_at_any_eps_equals_recomputation(norm: str):
    model = small_model("cnn", seed=2)
    x, y, _ = batch(16, seed=2)
    direction = FGSM(norm=norm).direction(model, x, y)
    for eps in (0.0, 0.05, 0.3):
        fresh = FGSM(eps=eps, norm=norm)(model, x, y)
        reused = FGSM(eps=eps, norm=norm).apply_direction(model, x, y, direction)
        assert torch.equal(fresh.x_adv, reused.x_adv)
        assert torch.equal(fresh.probs_adv, reused.probs_adv)
    with pytest.raises(InvalidInputError):
        PGD(eps=0.1).apply_direction(model, x, y, direction)
    with pytest.raises(InvalidInputError):
        FGSM(eps=0.1).apply_direction(model, x, y, direction[:3])


# -- strength on a trained model -----------------------------------------------------------------------------


@pytest.mark.parametrize("norm", NORMS)
def test_pgd_is_at_least_as_strong_as_fgsm(digits_model, norm: str):
    model, x, y = digits_model
    eps = {"linf": 0.1, "l2": 0.75}[norm]
    fgsm = FGSM(eps=eps, norm=norm)(model, x, y)
    pgd = PGD(eps=eps, norm=norm, steps=20)(model, x, y, generator=torch.Generator().manual_seed(0))
    assert pgd.success_rate >= fgsm.success_rate
    assert pgd.success_rate > 0.1  # the budget is large enough for the comparison to mean something


def test_stopping_once_fooled_never_weakens_pgd(digits_model):
    model, x, y = digits_model
    rates = {}
    for stop in (False, True):
        attack = PGD(eps=0.08, steps=15, stop_when_fooled=stop)
        rates[stop] = attack(model, x, y, generator=torch.Generator().manual_seed(5)).success_rate
    assert rates[True] >= rates[False]


def test_fgsm_sanity_on_a_trained_model(digits_model):
    model, x, y = digits_model
    strong = FGSM(eps=0.3)(model, x, y)
    assert strong.success_rate > 0.5
    none = FGSM(eps=0.0)(model, x, y)
    correct = none.pred_clean == y
    assert correct.float().mean() > 0.85
    assert not none.success[correct].any()
    assert torch.equal(none.success, ~correct)


# -- AttackResult's derived properties -----------------------------------------------------------------------


def make_result(target: torch.Tensor | None) -> AttackResult:
    x = torch.full((3, 1, 2, 2), 0.5)
    delta = torch.tensor(
        [
            [[[0.0, 0.0], [0.0, 0.0]]],
            [[[0.1, -0.2], [0.0, 0.0]]],
            [[[0.3, 0.3], [-0.3, 0.3]]],
        ]
    )
    probs_clean = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    probs_adv = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1]])
    return AttackResult(
        attack="fgsm",
        eps=0.3,
        norm="linf",
        x=x,
        x_adv=x + delta,
        y=torch.tensor([0, 1, 2]),
        target=target,
        probs_clean=probs_clean,
        probs_adv=probs_adv,
    )


def test_attack_result_norms_against_direct_computation():
    r = make_result(None)
    d = r.x_adv - r.x
    torch.testing.assert_close(r.perturbation, d)
    torch.testing.assert_close(r.linf, d.flatten(1).abs().max(dim=1).values)
    torch.testing.assert_close(r.l2, d.flatten(1).pow(2).sum(dim=1).sqrt())
    assert r.l0.tolist() == [0, 2, 4]
    torch.testing.assert_close(r.linf, torch.tensor([0.0, 0.2, 0.3]))
    torch.testing.assert_close(r.l2, torch.tensor([0.0, math.sqrt(0.05), 0.6]))


def test_attack_result_success_untargeted_vs_targeted():
    untargeted = make_result(None)
    assert untargeted.pred_clean.tolist() == [0, 1, 2]
    assert untargeted.pred_adv.tolist() == [0, 2, 0]
    assert not untargeted.targeted
    assert untargeted.success.tolist() == [False, True, True]
    assert untargeted.success_rate == pytest.approx(2 / 3)

    # Fooled is not enough for a targeted attack: the prediction must be the target.
    targeted = make_result(torch.tensor([1, 2, 1]))
    assert targeted.targeted
    assert targeted.success.tolist() == [False, True, False]
    assert targeted.success_rate == pytest.approx(1 / 3)


def test_attack_result_records():
    r = make_result(torch.tensor([1, 2, 1]))
    rows = r.to_records()
    assert len(rows) == 3
    assert rows[1] == {
        "label": 1,
        "reference": "label",
        "target": 2,
        "pred_clean": 1,
        "conf_clean": pytest.approx(0.8),
        "pred_adv": 2,
        "conf_adv": pytest.approx(0.6),
        "success": True,
        "fooled": True,
        "linf": pytest.approx(0.2),
        "l2": pytest.approx(math.sqrt(0.05)),
        "l0": 2,
    }
    assert [row["target"] for row in make_result(None).to_records()] == [None, None, None]


def test_describe_names_the_attack_and_budget():
    assert FGSM(eps=0.1).describe() == "FGSM (L∞ ε=0.1)"
    text = PGD(eps=0.5, norm="l2", steps=10).describe()
    assert text.startswith("PGD (L2 ε=0.5, 10 steps")
