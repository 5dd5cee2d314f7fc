"""How retraining attacks train their surrogates: the batch loader, the answers recipe, distillation's temperature.

Oracles: `batch_loader` yields exactly the batches (and leaves the generator in exactly the state) of PyTorch's
shuffling DataLoader with the same generator; `soften` is softmax(log p / T) computed by hand; the recipe's
soft-label loss is T² · cross-entropy(z / T, targets) and its trained model comes back in the ordinary memory
format; with full probabilities, distillation at the default T = 4 agrees with the victim more than T = 1.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from dlsec_core.data.builtin import load_dataset
from dlsec_core.models.spec import ModelSpec
from dlsec_core.theft.api import Oracle, PredictionAPI
from dlsec_core.theft.extraction import (
    AnswersRecipe,
    Judge,
    PoolKind,
    batch_loader,
    get_extraction,
    query_pool,
    soften,
)
from dlsec_core.training.loop import TrainResult, init_model, run_to_end
from dlsec_core.training.recipes import TrainingSetup


def test_batch_loader_yields_the_shuffling_loaders_batches_in_its_order() -> None:
    x, y = torch.rand(130, 1, 4, 4), torch.arange(130)
    g_ref, g_new = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    ref = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=g_ref)
    new = batch_loader(x, y, 32, g_new)
    assert len(new) == len(ref) == 5
    for _ in range(3):  # epochs: each draws from the generator, as the training loop's shifts do in between
        for (xa, ya), (xb, yb) in zip(ref, new, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
        torch.rand(2, generator=g_ref), torch.rand(2, generator=g_new)
    assert torch.equal(g_ref.get_state(), g_new.get_state())


def test_soften_is_softmax_of_log_p_over_t() -> None:
    p = torch.tensor([[0.64, 0.32, 0.04], [0.5, 0.5, 0.0]], dtype=torch.float64)
    assert torch.allclose(soften(p, 1.0), p.float().clamp_min(1e-30) / p.float().sum(1, keepdim=True))
    root = torch.tensor([0.8, 0.32**0.5, 0.2])  # T = 2: square roots, renormalised
    assert torch.allclose(soften(p, 2.0)[0], root / root.sum())
    assert float(soften(p, 2.0)[1, 2]) < 1e-14  # a zero stays (almost) zero
    one_hot = soften(torch.eye(10, dtype=torch.float64)[:1], 4.0)
    assert float(one_hot[0, 0]) > 1 - 1e-6


def test_answers_recipe_trains_channels_last_fused_and_returns_an_ordinary_model() -> None:
    spec = ModelSpec(arch="cnn", input_shape=(1, 8, 8), num_classes=3)
    model = init_model(spec, 0)
    x, targets = torch.rand(40, 1, 8, 8), torch.softmax(torch.randn(40, 3), 1)
    gen = torch.Generator().manual_seed(0)
    loader = DataLoader(TensorDataset(x, targets.argmax(1)), batch_size=16, shuffle=True, generator=gen)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    recipe = AnswersRecipe(targets=targets, temperature=4.0)
    setup = recipe.prepare(TrainingSetup(model, optimizer, loader, 1, gen))
    conv = next(w for w in setup.model.parameters() if w.ndim == 4 and w.shape[1] > 1)  # 32 in-channels
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    opt = setup.optimizer
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["fused"]
    assert opt.defaults["lr"] == 3e-3 and opt.defaults["weight_decay"] == 1e-4
    xb, yb = next(iter(setup.loader))
    assert xb.shape == (16, 1, 8, 8) and yb.shape == (16, 3)  # the soft targets, not the loader's labels
    loss, logits = recipe.loss(setup.model, xb, yb, gen)
    assert torch.allclose(loss, 16 * F.cross_entropy(logits / 4, yb))
    hard_loss, logits = recipe.loss(setup.model, xb, yb.argmax(1), gen)  # hard labels ignore T
    assert torch.allclose(hard_loss, F.cross_entropy(logits, yb.argmax(1)))
    final = recipe.finalize(setup)
    assert all(p.is_contiguous() for p in final.parameters())


@pytest.fixture(scope="module")
def judge(trained_digits: TrainResult) -> Judge:
    data = load_dataset("digits")
    return Judge.of(trained_digits.model, data.x_test, data.y_test)


def test_distillation_at_the_default_temperature_agrees_more_than_t1(
    trained_digits: TrainResult, judge: Judge
) -> None:
    pool = query_pool(PoolKind.SAME, load_dataset("digits"), 150, torch.Generator().manual_seed(0))
    fidelity = {}
    for t in (None, 1.0):
        api = PredictionAPI(trained_digits.model, trained_digits.spec)
        api.register("thief", budget=150)
        params = {} if t is None else {"temperature": t}
        attack = get_extraction("knockoff", arch="mlp", epochs=20, **params)
        result = run_to_end(attack.run(Oracle(api, "thief"), judge, [150], pool=pool, seed=0))
        fidelity[t] = result.points[0].fidelity
    assert get_extraction("knockoff").temperature == 4.0 and get_extraction("copycat").shift == 2
    assert fidelity[None] > fidelity[1.0] + 0.01, fidelity


def _fit(attack: object, x: torch.Tensor, answers: torch.Tensor) -> torch.nn.Module:
    model, _ = run_to_end(attack.fit(x, answers, seed=0))  # type: ignore[attr-defined]
    return model


def test_the_shift_augments_only_below_shift_below_answers() -> None:
    """Copycat's shift (28x28 images: up to 2 pixels) changes the surrogate while it has fewer answers than
    `shift_below`, and from there on it trains exactly as without the shift."""
    x = torch.rand(64, 1, 28, 28)
    answers = torch.softmax(torch.randn(64, 3), 1)
    settings = {"arch": "logreg", "epochs": 1, "batch_size": 32}
    plain = _fit(get_extraction("copycat", shift=0, **settings), x, answers)
    below = _fit(get_extraction("copycat", shift=2, shift_below=65, **settings), x, answers)
    above = _fit(get_extraction("copycat", shift=2, shift_below=64, **settings), x, answers)
    weights = [torch.cat([p.flatten() for p in m.parameters()]) for m in (plain, below, above)]
    assert not torch.equal(weights[0], weights[1])  # 64 < 65: shifted
    assert torch.equal(weights[0], weights[2])  # 64 answers, not below 64: no shift
