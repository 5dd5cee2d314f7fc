"""What an attack is measured against: labels or the model's own prediction, a target that is the true class,
inputs the model already gets wrong, scoring adversarial inputs on another model (a defended pipeline as
deployed), and minimal-perturbation attacks without a budget.

Oracles: ART's FGSM without labels (it attacks the model's predictions), the closed-form logistic regression, and
`robust_accuracy_under` (the other code path that scores on a deployed defended pipeline).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from dlsec_core.attacks import CW, FGSM, PGD, DeepFool, get_attack
from dlsec_core.attacks.base import Reference
from dlsec_core.data.builtin import load_dataset
from dlsec_core.defenses.transforms import defend, robust_accuracy_under
from dlsec_core.errors import InvalidInputError
from dlsec_core.models import ModelSpec
from dlsec_core.training.loop import TrainConfig, run_to_end, train


@pytest.fixture(scope="module")
def logreg() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Softmax regression on digits (about 0.93 test accuracy, under a second), with 120 test images."""
    ds = load_dataset("digits")
    mean, std = ds.channel_stats()
    spec = ModelSpec(arch="logreg", input_shape=(1, 8, 8), num_classes=10, mean=mean, std=std)
    result = run_to_end(train(spec, ds, TrainConfig(epochs=3, lr=0.05, shift=0, seed=0)))
    model = result.model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, ds.x_test[:120], ds.y_test[:120]


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- no labels: the model's own prediction is the reference ------------------------------------------------


def test_without_labels_fgsm_matches_art(logreg):
    """ART's FGSM without `y` attacks the classifier's own predictions: ours with `y=None` gives the same image."""
    from art.attacks.evasion import FastGradientMethod
    from art.estimators.classification import PyTorchClassifier

    model, x, _ = logreg
    art_model = PyTorchClassifier(
        model, loss=nn.CrossEntropyLoss(), input_shape=(1, 8, 8), nb_classes=10, clip_values=(0.0, 1.0)
    )
    theirs = FastGradientMethod(art_model, eps=0.1, norm=np.inf).generate(x.numpy())
    ours = FGSM(eps=0.1)(model, x)
    assert ours.reference is Reference.PREDICTION
    same = np.isclose(ours.x_adv.numpy(), theirs, atol=1e-5)
    assert same.mean() > 0.999, same.mean()  # a sign may differ where a gradient is ~0 in float32


def test_without_labels_success_means_the_prediction_changed(logreg):
    model, x, y = logreg
    pred = model(x).argmax(dim=1)
    assert bool((pred != y).any()), "the oracle needs some images the model gets wrong"
    free = PGD(eps=0.1, steps=10)(model, x, generator=seeded())
    given = PGD(eps=0.1, steps=10)(model, x, pred, generator=seeded())
    assert torch.equal(free.y, pred) and torch.equal(free.pred_clean, pred)
    assert torch.equal(free.x_adv, given.x_adv)  # attacking away from the prediction = labelling with it
    assert torch.equal(free.success, free.pred_adv != pred)
    assert not bool(free.already_wrong.any())
    assert torch.equal(free.fooled, free.success)
    assert given.reference is Reference.LABEL
    assert {r["reference"] for r in free.to_records()} == {"prediction"}


def test_a_given_label_the_model_already_gets_wrong_is_not_fooled_by_the_attack(logreg):
    model, x, y = logreg
    given = y.clone()
    given[::2] = (y[::2] + 1) % 10  # every other image gets a "true class" the model does not predict
    result = PGD(eps=0.0, steps=1)(model, x, given, generator=seeded())  # ε = 0: nothing changes
    assert result.l0.sum() == 0
    assert torch.equal(result.already_wrong, result.pred_clean != given)
    assert float(result.already_wrong[::2].float().mean()) > 0.9
    assert float(result.already_wrong[1::2].float().mean()) < 0.2
    # Robust-accuracy sense: an input that is already wrong counts as a success, but the attack fooled nothing.
    assert torch.equal(result.success, result.already_wrong)
    assert not bool(result.fooled.any())


# -- a targeted attack at the reference class ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["fgsm", "pgd"])
def test_target_equal_to_the_true_class_changes_and_fools_nothing(logreg, name):
    model, x, y = logreg
    attack = get_attack(name, eps=0.2)
    result = attack(model, x, y, target=y, generator=seeded())
    assert bool(result.target_is_reference.all())
    assert torch.equal(result.x_adv, result.x) and int(result.l0.sum()) == 0
    assert not bool(result.success.any()) and not bool(result.fooled.any())
    # Other targets are attacked as before, in the same batch.
    mixed = y.clone()
    mixed[::2] = (y[::2] + 3) % 10
    both = attack(model, x, y, target=mixed, generator=seeded())
    assert torch.equal(both.target_is_reference, mixed == y)
    assert int(both.l0[1::2].sum()) == 0 and bool((both.l0[::2] > 0).all())
    assert bool(both.success[::2].any())


def test_fgsm_slider_path_keeps_a_target_equal_to_the_reference_unchanged(logreg):
    model, x, y = logreg
    attack = FGSM(eps=0.2)
    direction = attack.direction(model, x, y, y)
    result = attack.apply_direction(model, x, None, direction, target=model(x).argmax(dim=1))
    assert result.reference is Reference.PREDICTION
    assert int(result.l0.sum()) == 0 and not bool(result.success.any())


# -- score: adversarial inputs found on one model, classified by another ------------------------------------


def test_score_is_the_closed_form_softmax_of_the_projected_inputs(logreg):
    model, x, y = logreg
    far = (x + 0.5 * torch.randn(x.shape, generator=seeded())).clamp(-1, 2)  # outside the ball and the box
    attack = PGD(eps=0.1)
    scored = attack.score(model, x, far, y)
    projected = torch.minimum(torch.maximum(far, x - 0.1), x + 0.1).clamp(0, 1)
    assert torch.allclose(scored.x_adv, projected)
    normalize, linear = model[0], model[1][1]  # Normalize, then Flatten + Linear: logits = W (x - m) / s + b
    z = ((projected - normalize.mean) / normalize.std).flatten(1)  # (N, 1, 8, 8) -> (N, 64)
    logits = z @ linear.weight.T + linear.bias
    assert torch.allclose(scored.probs_adv, logits.softmax(dim=1), atol=1e-6)
    assert torch.equal(scored.success, logits.argmax(dim=1) != y)
    assert scored.reference is Reference.LABEL and scored.eps == 0.1


@pytest.mark.parametrize("defense", ["bit-depth", "median"])
@pytest.mark.parametrize("mode", ["adaptive", "naive"])
def test_score_on_the_deployed_pipeline_agrees_with_robust_accuracy_under(logreg, defense, mode):
    model, x, y = logreg
    defended = defend(model, defense, mode=mode)
    attack = PGD(eps=0.15, steps=10)
    found = attack(defended.attack_view(), x, y, generator=seeded(3))
    scored = attack.score(defended, x, found.x_adv, y)
    evaluation = robust_accuracy_under(defended, attack, x, y, generator=seeded(3))
    assert torch.allclose(scored.x_adv, evaluation.x_adv)
    assert 1 - scored.success_rate == pytest.approx(evaluation.robust_accuracy)
    assert float((scored.pred_clean == y).float().mean()) == pytest.approx(evaluation.clean_accuracy)
    with torch.no_grad():
        assert torch.equal(scored.pred_adv, defended(scored.x_adv).argmax(dim=1))


def test_score_without_labels_uses_the_scoring_models_prediction(logreg):
    model, x, _ = logreg
    defended = defend(model, "bit-depth", bits=1)  # a harsh squeeze: its predictions differ from the model's
    with torch.no_grad():
        deployed = defended(x).argmax(dim=1)
    scored = PGD(eps=0.1).score(defended, x, x.clone())
    assert scored.reference is Reference.PREDICTION and torch.equal(scored.y, deployed)
    assert not bool(scored.success.any())  # nothing changed, so no prediction changed


def test_score_refuses_mismatched_or_broken_inputs(logreg):
    model, x, y = logreg
    with pytest.raises(InvalidInputError):
        PGD().score(model, x, x[:-1], y)
    with pytest.raises(InvalidInputError):
        PGD().score(model, x, torch.full_like(x, float("nan")), y)


# -- minimal-perturbation attacks: no budget unless one is asked for ----------------------------------------


def test_only_minimal_attacks_run_without_a_budget():
    assert DeepFool().eps == math.inf and CW().eps == math.inf
    assert "no budget" in DeepFool().describe()
    for name in ("fgsm", "pgd", "square"):
        with pytest.raises(InvalidInputError):
            get_attack(name, eps=math.inf)
    assert DeepFool(norm="linf").unbounded


@pytest.mark.parametrize("cls", [DeepFool, CW])
def test_minimal_attacks_find_their_size_and_a_cap_cuts_it_back(logreg, cls):
    model, x, y = logreg
    right = model(x).argmax(dim=1) == y
    x, y = x[right][:20], y[right][:20]
    free = cls()(model, x, y)
    assert free.success_rate == 1.0  # a softmax regression is fooled by every minimal attack
    sizes = free.l2
    capped = cls(eps=float(sizes.min()) / 2)(model, x, y)
    assert bool((capped.l2 <= float(sizes.min()) / 2 + 1e-5).all())
    assert capped.success_rate < 1.0
