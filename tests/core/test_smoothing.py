"""Randomized smoothing: Clopper-Pearson and binomial-test values vs scipy, CERTIFY on models with known
answers (constant, random, linear), certified accuracy curves, seeding, and bad parameters."""

from __future__ import annotations

from collections.abc import Generator
from statistics import NormalDist
from typing import Any

import pytest
import torch
from scipy.stats import beta, binomtest, norm
from torch import nn

from dlsec_core.defenses.smoothing import (
    ABSTAIN,
    CertificationResult,
    CertifyEvent,
    GaussianNoiseRecipe,
    SmoothedClassifier,
    _clopper_pearson_lower_bisect,
    binomial_test_half,
    certified_accuracy_curve,
    clopper_pearson_lower,
    default_radii,
)
from dlsec_core.errors import InvalidInputError
from dlsec_core.training.recipes import RECIPES


class Constant(nn.Module):
    """Always class `c` of `k`, whatever the input."""

    def __init__(self, c: int = 3, k: int = 10) -> None:
        super().__init__()
        self.c, self.k = c, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(x.shape[0], self.k, device=x.device)
        logits[:, self.c] = 1.0
        return logits


class RandomGuess(nn.Module):
    """A uniformly random class of 10 for every input, from its own seeded generator."""

    def __init__(self) -> None:
        super().__init__()
        self.g = torch.Generator().manual_seed(123)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.rand(x.shape[0], 10, generator=self.g)


class Halfplane(nn.Module):
    """A linear two-class model: class 1 where w.x + b > 0. Its smoothed version is itself, with p_A =
    Phi(|w.x + b| / (sigma ||w||)), so the exact certified radius is the distance to the hyperplane."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.lin = nn.Linear(w.numel(), 1)
        with torch.no_grad():
            self.lin.weight.copy_(w.view(1, -1))
            self.lin.bias.fill_(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.lin(x.flatten(1))  # (N, C, H, W) -> (N, C*H*W) -> (N, 1)
        return torch.cat([-z, z], dim=1)


def images(n: int = 4, seed: int = 0, side: int = 8) -> torch.Tensor:
    return torch.rand(n, 1, side, side, generator=torch.Generator().manual_seed(seed))


def drain(events: Generator[CertifyEvent, None, CertificationResult]) -> tuple[list[CertifyEvent], Any]:
    seen = []
    while True:
        try:
            seen.append(next(events))
        except StopIteration as stop:
            return seen, stop.value


# -- statistics ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("k", "n"), [(990, 1000), (500, 1000), (51, 100), (3, 10), (99_990, 100_000), (1, 1000)]
)
def test_clopper_pearson_lower_bound_matches_the_beta_quantile(k: int, n: int):
    alpha = 0.001
    # statsmodels' proportion_confint(k, n, alpha=2 * alpha, method="beta")[0], as in Cohen et al.'s code
    expected = beta.ppf(alpha, k, n - k + 1)
    assert clopper_pearson_lower(k, n, alpha) == pytest.approx(expected, rel=1e-12)
    assert _clopper_pearson_lower_bisect(k, n, alpha) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_clopper_pearson_known_values_and_edges():
    # 990 of 1000 at alpha = 0.001: the bound the paper's code prints for this count
    assert clopper_pearson_lower(990, 1000, 0.001) == pytest.approx(0.97603618715531, abs=1e-12)
    assert clopper_pearson_lower(0, 50, 0.01) == 0.0
    assert clopper_pearson_lower(50, 50, 0.01) == 0.01 ** (1 / 50)
    assert clopper_pearson_lower(50, 50, 0.01) == pytest.approx(beta.ppf(0.01, 50, 1), rel=1e-12)


@pytest.mark.parametrize(
    ("k", "n"), [(990, 1000), (500, 1000), (520, 1000), (60, 100), (3, 10), (10, 10), (0, 7)]
)
def test_binomial_test_matches_scipy(k: int, n: int):
    assert binomial_test_half(k, n) == pytest.approx(binomtest(k, n, 0.5).pvalue, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize(
    ("k", "n", "alpha"), [(-1, 10, 0.01), (11, 10, 0.01), (5, 0, 0.01), (5, 10, 0.0), (5, 10, 0.5)]
)
def test_bad_statistics_arguments_are_refused(k: int, n: int, alpha: float):
    with pytest.raises(InvalidInputError):
        clopper_pearson_lower(k, n, alpha)


# -- CERTIFY and PREDICT on models with known answers --------------------------------------------------------
def test_constant_classifier_is_certified_at_the_closed_form_radius():
    sigma, n, alpha = 0.5, 1000, 0.001
    smoothed = SmoothedClassifier(Constant(3), sigma, 10)
    pred, radius = smoothed.certify(
        images(5), n0=50, n=n, alpha=alpha, generator=torch.Generator().manual_seed(0)
    )
    # n successes out of n: p_A = alpha^(1/n), R = sigma * Phi^-1(p_A)
    expected = sigma * NormalDist().inv_cdf(alpha ** (1 / n))
    assert pred.tolist() == [3] * 5
    assert radius.tolist() == [expected] * 5
    assert expected == pytest.approx(sigma * norm.ppf(beta.ppf(alpha, n, 1)), rel=1e-9)
    assert smoothed.predict(images(2), n=100, alpha=alpha).tolist() == [3, 3]


def test_random_classifier_abstains():
    smoothed = SmoothedClassifier(RandomGuess(), 0.25, 10)
    g = torch.Generator().manual_seed(0)
    pred, radius = smoothed.certify(images(4), n0=100, n=1000, generator=g)
    assert pred.tolist() == [ABSTAIN] * 4
    assert radius.tolist() == [0.0] * 4
    assert smoothed.predict(images(4), n=1000, generator=g).tolist() == [ABSTAIN] * 4


def test_certified_radius_never_exceeds_the_distance_to_a_linear_boundary():
    """For a linear model the exact radius is the distance to its hyperplane, which an attack reaches; the
    certificate (a lower bound) must stay below it, and come reasonably close."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, generator=g)
    w = w / w.norm()
    model = Halfplane(w, b=-float(w.sum()) * 0.5)  # the boundary passes through the grey image
    x = images(20, seed=1)
    distance = ((x.flatten(1) @ w) + model.lin.bias.detach()).abs()  # ||w|| = 1
    sigma = 0.25
    pred, radius = SmoothedClassifier(model, sigma, 2).certify(x, n0=100, n=2000, generator=g)
    certified = pred != ABSTAIN
    assert int(certified.sum()) >= 5
    side = (x.flatten(1) @ w + model.lin.bias.detach() > 0).long()
    assert torch.equal(pred[certified], side[certified])
    assert bool((radius[certified] <= distance[certified].double() + 1e-9).all())
    # with n = 2000 and alpha = 0.001 the bound is loose by at most about 0.5 sigma here
    assert bool((radius[certified] >= distance[certified].double() - 0.5 * sigma).all())


def test_same_seed_same_certificates_and_the_model_is_left_alone():
    model = Halfplane(torch.ones(64) / 8, b=-4.0)
    model.train()
    smoothed = SmoothedClassifier(model, 0.5, 2)
    x = images(6, seed=2)
    a = smoothed.certify(x, n0=20, n=300, generator=torch.Generator().manual_seed(7))
    b = smoothed.certify(x, n0=20, n=300, batch_size=64, generator=torch.Generator().manual_seed(7))
    c = smoothed.certify(x, n0=20, n=300, generator=torch.Generator().manual_seed(8))
    assert model.training  # mode restored
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # batch size does not change the noise stream
    assert not torch.equal(a[1], c[1])
    assert all(p.grad is None for p in model.parameters())


# -- certified accuracy curve --------------------------------------------------------------------------------
def test_certified_accuracy_curve_events_and_result(trained_digits: Any):
    from dlsec_core.data.builtin import load_dataset

    ds = load_dataset("digits")
    x, y = ds.x_test[:12], ds.y_test[:12]
    radii = [0.0, 0.1, 0.2, 0.3, 0.5]
    events, result = drain(
        certified_accuracy_curve(
            trained_digits.model, x, y, 0.25, radii, n0=30, n=200, generator=torch.Generator().manual_seed(0),
            images_per_event=5,
        )
    )  # fmt: skip
    assert [e.done for e in events] == [5, 10, 12]
    assert events[-1].progress == 1.0 and events[-1].total == 12
    assert isinstance(result, CertificationResult)
    assert result.radii == tuple(radii) and (result.n0, result.n, result.sigma) == (30, 200, 0.25)
    assert events[-1].correct == int(result.correct.sum())
    records = result.to_records()
    accs = [r["certified_accuracy"] for r in records]
    assert [r["radius"] for r in records] == radii
    assert accs == sorted(accs, reverse=True)  # non-increasing in the radius
    assert accs[0] > 0.5  # the smoothed logreg still gets most digits at sigma 0.25
    assert result.accuracy_at(0.0) == pytest.approx(int(result.correct.sum()) / 12)
    # no radius can exceed sigma * Phi^-1(alpha^(1/n))
    assert float(result.radius.max()) <= 0.25 * NormalDist().inv_cdf(0.001 ** (1 / 200)) + 1e-12
    assert result.accuracy_at(10.0) == 0.0
    rows = result.sample_records()
    assert len(rows) == 12 and {"label", "prediction", "radius", "correct"} <= set(rows[0])
    assert all(r["radius"] == 0.0 for r in rows if r["prediction"] == ABSTAIN)
    assert "σ=0.25" in result.describe()


def test_certified_accuracy_curve_is_seeded(trained_digits: Any):
    from dlsec_core.data.builtin import load_dataset

    ds = load_dataset("digits")
    runs = [
        drain(
            certified_accuracy_curve(
                trained_digits.model, ds.x_test[:4], ds.y_test[:4], 0.25, n0=20, n=100,
                generator=torch.Generator().manual_seed(5),
            )
        )[1]
        for _ in range(2)
    ]  # fmt: skip
    assert torch.equal(runs[0].predictions, runs[1].predictions)
    assert torch.equal(runs[0].radius, runs[1].radius)
    assert runs[0].radii == default_radii(0.25)


def test_default_radii_cover_the_largest_possible_radius():
    grid = default_radii(0.5)
    assert grid[0] == 0.0 and grid[-1] == 1.25 and len(grid) == 11
    assert 0.5 * NormalDist().inv_cdf(0.001 ** (1 / 1000)) < grid[-1]


def test_noise_trained_base_model_certifies_far_more_than_a_standard_one():
    """The paper's recipe: a base model trained with the smoothing noise keeps its accuracy under that noise."""
    from dlsec_core.data.builtin import load_dataset
    from dlsec_core.training.loop import TrainConfig, run_to_end, train
    from dlsec_core.workflows import spec_for

    assert RECIPES["gaussian-noise"] is GaussianNoiseRecipe
    ds = load_dataset("digits")
    spec = spec_for(ds, "cnn", channels1=8, channels2=16, hidden=32)
    config = TrainConfig(epochs=10, lr=5e-3, shift=0, seed=0)
    sigma = 0.5
    at_half_sigma = []
    for recipe in (None, GaussianNoiseRecipe(sigma=sigma)):
        model = run_to_end(train(spec, ds, config, recipe, device=torch.device("cpu"))).model
        _, result = drain(
            certified_accuracy_curve(
                model, ds.x_test[:60], ds.y_test[:60], sigma, [sigma / 2], n0=30, n=200,
                generator=torch.Generator().manual_seed(0),
            )
        )  # fmt: skip
        at_half_sigma.append(result.accuracy_at(sigma / 2))
    standard, noisy = at_half_sigma
    assert noisy >= standard + 0.1, at_half_sigma


@pytest.mark.parametrize("sigma", [0.0, -0.5, 1.5, True])
def test_bad_noise_recipe_sigma_is_refused(sigma: object):
    with pytest.raises(InvalidInputError):
        GaussianNoiseRecipe(sigma=sigma)  # type: ignore[arg-type]


# -- bad parameters ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sigma", [0.0, -0.1, float("nan"), 11.0, "0.25"])
def test_bad_sigma_is_refused(sigma: object):
    with pytest.raises(InvalidInputError):
        SmoothedClassifier(Constant(), sigma, 10)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [{"n": 0}, {"n0": 0}, {"n": 2_000_000}, {"alpha": 0.0}, {"alpha": 0.7}, {"n": 10.5}, {"batch_size": 0}],
)
def test_bad_certify_parameters_are_refused(kwargs: dict[str, Any]):
    smoothed = SmoothedClassifier(Constant(), 0.25, 10)
    with pytest.raises(InvalidInputError):
        smoothed.certify(images(1), **kwargs)


def test_bad_inputs_are_refused():
    smoothed = SmoothedClassifier(Constant(), 0.25, 10)
    with pytest.raises(InvalidInputError):
        smoothed.certify(images(1)[0], n=10)  # (C, H, W): one image needs x[None]
    with pytest.raises(InvalidInputError):
        smoothed.predict(images(1) + 2.0, n=10)  # not pixels in [0, 1]
    with pytest.raises(InvalidInputError):
        smoothed.predict(images(1)[:0], n=10)
    with pytest.raises(InvalidInputError):
        SmoothedClassifier(Constant(k=10), 0.25, 5).certify(
            images(1), n0=5, n=10
        )  # 10 outputs, not 5 classes


def test_certified_accuracy_curve_validates_eagerly():
    model = Constant()
    x, y = images(2), torch.tensor([3, 1])
    with pytest.raises(InvalidInputError):
        certified_accuracy_curve(model, x, y, 0.25, radii=[-0.1])
    with pytest.raises(InvalidInputError):
        certified_accuracy_curve(model, x, y, 0.25, radii=[])
    with pytest.raises(InvalidInputError):
        certified_accuracy_curve(model, x, y[:1], 0.25)
    with pytest.raises(InvalidInputError):
        certified_accuracy_curve(model, x, y, 0.0)
    with pytest.raises(InvalidInputError):
        certified_accuracy_curve(model, x, y, 0.25, n=0)
    _, result = drain(certified_accuracy_curve(model, x, y, 0.25, radii=[0.0, 0.3, 0.4], n0=10, n=100))
    assert result.to_records()[0]["certified_accuracy"] == 0.5  # label 3 right, label 1 wrong
    # n = 100 caps the radius at 0.25 * Phi^-1(0.001 ** (1 / 100)) = 0.375
    assert [r["certified_accuracy"] for r in result.to_records()] == [0.5, 0.5, 0.0]


def test_certification_study_averages_noise_draws_and_checks_its_curve(tmp_home: Any, stored_model: Any):
    """Issue 13 item 12: the empirical curve averages 16 noise draws per image and travels with its curve check."""
    from dlsec_core.evaluation.checks import check_curve
    from dlsec_core.store import Store
    from dlsec_core.studies.base import run_study
    from dlsec_core.studies.certification import (
        CertificationStudy,
        CertificationStudyConfig,
        CertificationStudyResult,
    )

    config = CertificationStudyConfig(
        model_id=stored_model.id, sigma=0.25, n_images=20, n0=20, n=100, pgd_steps=3, eot_samples=2
    )
    events = []
    outcome = run_study(CertificationStudy(), Store(), config, events.append)
    report = CertificationStudyResult.from_json(outcome.result)
    assert report.to_json() == outcome.result
    assert report.draws == 16 and report.n_images == 20
    assert (report.empirical_attack, report.empirical_attack_title) == ("pgd", "PGD")
    for r in report.empirical:
        assert r["accuracy"] == r["correct"] / (20 * 16)
    eps, acc = [r["eps"] for r in report.empirical], [r["accuracy"] for r in report.empirical]
    assert eps == list(default_radii(0.25))
    assert report.findings == check_curve(eps, acc, n=20)
    # live: the certify events, then one point per radius, in that order, with progress that never goes back
    kinds = [e.payload["type"] for e in events if e.payload]
    assert kinds == ["certify"] * kinds.count("certify") + ["certified"] + ["point"] * len(eps)
    assert kinds[0] == "certify" and kinds.count("certify") >= 1
    (certified,) = [e.payload for e in events if e.payload and e.payload["type"] == "certified"]
    assert certified["certified"] == report.certified  # drawn before the empirical curve starts
    progress = [e.progress for e in events]
    assert progress == sorted(progress) and progress[-1] == 1.0


def test_the_certification_study_config_names_every_problem_at_once() -> None:
    from dlsec_core.studies.certification import CertificationStudyConfig

    with pytest.raises(InvalidInputError) as err:
        CertificationStudyConfig(model_id="m", sigma=0.0, n=0, alpha=0.7, draws=1000)
    text = str(err.value)
    for part in ("`sigma`", "`n`", "`alpha`", "`draws`"):
        assert part in text, text
    assert text.startswith("Certification study: 4 settings are invalid")
    config = CertificationStudyConfig(model_id="m")
    assert type(config).from_json(config.to_json()) == config
