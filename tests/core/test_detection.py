"""Feature-squeezing detection: squeezers vs scipy, held-out false-positive rate, detection of FGSM/PGD,
ROC vs sklearn, and the detector-aware attack evading far more often than plain PGD."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn.metrics import roc_auc_score, roc_curve
from torch import nn

from dlsec_core.attacks import FGSM, PGD
from dlsec_core.data.builtin import load_dataset
from dlsec_core.defenses.detection import (
    DEFAULT_SQUEEZERS,
    AdaptiveAttackConfig,
    CalibratedDetector,
    DetectionCurve,
    DetectionPoint,
    FeatureSqueezingDetector,
    Squeezer,
    adaptive_attack,
    detect,
    detection_rate_vs_eps,
    roc,
)
from dlsec_core.errors import InvalidInputError
from dlsec_core.models import ModelSpec
from dlsec_core.training.loop import TrainConfig, run_to_end, train

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def mnist_cnn() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small cnn on the 5,000 MNIST digits (about 95 % test accuracy), with its 1,000 test images."""
    ds = load_dataset("mnist5k")
    mean, std = ds.channel_stats()
    spec = ModelSpec(
        arch="cnn",
        input_shape=(1, 28, 28),
        num_classes=10,
        hparams={"channels1": 8, "channels2": 16, "hidden": 64},
        mean=mean,
        std=std,
    )
    result = run_to_end(train(spec, ds, TrainConfig(epochs=3, lr=5e-3, shift=0, seed=0), device=CPU))
    assert result.test_accuracy > 0.9
    return result.model, ds.x_test, ds.y_test


@pytest.fixture(scope="module")
def calibrated(mnist_cnn: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> CalibratedDetector:
    """The paper's MNIST detector (bit depth 1, median 2x2) calibrated on the first half of the test split."""
    model, x, _ = mnist_cnn
    return FeatureSqueezingDetector().calibrate(model, x[:500])


# -- squeezers -----------------------------------------------------------------------------------------------
def test_bit_depth_rounds_to_the_grid():
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for bits in (1, 3, 8):
        levels = 2**bits - 1
        expected = np.round(x.numpy() * levels) / levels
        np.testing.assert_allclose(Squeezer("bit_depth", bits)(x).numpy(), expected, atol=1e-7)
    assert set(Squeezer("bit_depth", 1)(x).unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("size", [2, 3, 4, 5])
def test_median_matches_scipy_median_filter(size: int):
    """The paper's code calls scipy.ndimage.median_filter(mode="reflect"); ours must agree pixel for pixel."""
    x = torch.rand(2, 3, 9, 7, generator=torch.Generator().manual_seed(size))
    expected = ndimage.median_filter(x.numpy(), size=(1, 1, size, size), mode="reflect")
    np.testing.assert_array_equal(Squeezer("median", size)(x).numpy(), expected)


def test_straight_through_passes_gradients_and_keeps_values():
    x = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    for squeezer in DEFAULT_SQUEEZERS:
        out = squeezer.straight_through(x)
        torch.testing.assert_close(out.detach(), squeezer(x.detach()))
        (grad,) = torch.autograd.grad(out.sum(), x)
        assert float(grad.abs().sum()) > 0
    (grad,) = torch.autograd.grad(Squeezer("bit_depth", 1).straight_through(x).sum(), x)
    torch.testing.assert_close(grad, torch.ones_like(x))  # the identity's gradient


# -- calibration ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fpr", [0.05, 0.1])
def test_false_positive_rate_on_held_out_clean_data_is_near_the_target(
    mnist_cnn: tuple[nn.Module, torch.Tensor, torch.Tensor], fpr: float
):
    model, x, _ = mnist_cnn
    detector = FeatureSqueezingDetector(fpr=fpr).calibrate(model, x[:500])
    assert detector.calibration_fpr <= fpr  # the conservative quantile
    assert detector.fpr_target == fpr and detector.n_calibration == 500
    held_out = float(detector.flag(model, x[500:]).float().mean())
    assert abs(held_out - fpr) <= 0.04, held_out


def test_calibrated_detector_contract(
    mnist_cnn: tuple[nn.Module, torch.Tensor, torch.Tensor], calibrated: CalibratedDetector
):
    model, x, _ = mnist_cnn
    model.train()
    try:
        scores = calibrated.scores(model, x[:50])
        assert model.training  # mode restored
    finally:
        model.eval()
    assert scores.shape == (50,) and scores.device == CPU and not scores.requires_grad
    assert float(scores.min()) >= 0.0 and float(scores.max()) <= 2.0 + 1e-6
    assert torch.equal(calibrated.flag(model, x[:50]), scores > calibrated.threshold)
    torch.testing.assert_close(calibrated.scores(model, x[:50], batch_size=7), scores)
    assert calibrated.calibration_scores.device == CPU
    text = calibrated.describe()
    assert "bit depth 1" in text and "median 2x2" in text and "500" in text


def test_threshold_is_the_conformal_quantile():
    """A model whose squeezed output moves by a known amount puts the threshold where expected."""

    class Known(nn.Module):
        # Class-0 probability = mean pixel; bit depth 1 of a constant image c < 0.5 gives 0, so score = 2c.
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            p = x.mean(dim=(1, 2, 3)).clamp(1e-6, 1 - 1e-6)
            return torch.stack([p.log(), (1 - p).log()], dim=1)

    n = 100
    values = torch.arange(n, dtype=torch.float32) / (2 * n)  # constant images with value i / 200 < 0.5
    x = values.view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
    detector = FeatureSqueezingDetector(squeezers=(Squeezer("bit_depth", 1),), fpr=0.05).calibrate(Known(), x)
    # k = ceil(0.95 * 101) = 96th smallest score = 2 * 95 / 200
    assert detector.threshold == pytest.approx(2 * 95 / 200, abs=1e-5)
    assert detector.calibration_fpr == pytest.approx(4 / 100)
    tiny = FeatureSqueezingDetector(squeezers=(Squeezer("bit_depth", 1),), fpr=0.05).calibrate(
        Known(), x[:10]
    )
    assert tiny.calibration_fpr == 0.0  # too few samples for a 5 % quantile: nothing flagged


# -- detection of plain attacks ------------------------------------------------------------------------------
def test_fgsm_and_pgd_are_detected_far_more_often_than_clean_inputs(
    mnist_cnn: tuple[nn.Module, torch.Tensor, torch.Tensor], calibrated: CalibratedDetector
):
    model, x, y = mnist_cnn
    xh, yh = x[500:700], y[500:700]
    events = detection_rate_vs_eps(model, calibrated, FGSM(), xh, yh, [0.0, 0.1, 0.2])
    points = []
    while True:
        try:
            points.append(next(events))
        except StopIteration as stop:
            curve = stop.value
            break
    assert isinstance(curve, DetectionCurve) and curve.points == tuple(points)
    assert all(isinstance(p, DetectionPoint) for p in points)
    assert [p.eps for p in points] == [0.0, 0.1, 0.2]
    assert [r["eps"] for r in curve.to_records()] == [0.0, 0.1, 0.2]
    fpr = points[0].false_positive_rate
    assert fpr <= 0.1
    assert points[0].flag_rate == pytest.approx(fpr)  # eps 0: the "adversarial" inputs are the clean ones
    at_02 = points[2]
    assert at_02.success_rate > 0.4
    assert at_02.detection_rate >= max(0.6, 5 * fpr), at_02
    assert at_02.auc > 0.9
    assert at_02.evaded_rate < 0.2

    pgd = detect(
        model, calibrated, PGD(eps=0.2, steps=20)(model, xh, yh, generator=torch.Generator().manual_seed(0))
    )
    assert pgd.success_rate > 0.8
    assert pgd.detection_rate >= max(0.7, 5 * pgd.false_positive_rate), pgd.summary()
    assert pgd.roc().auc > 0.9
    assert pgd.x_adv is not None and pgd.x_adv.shape == xh.shape
    records = pgd.to_records()
    assert len(records) == 200 and sum(r["evaded"] for r in records) == int(pgd.evaded.sum())


def test_detection_rate_vs_eps_validates_eagerly(
    mnist_cnn: tuple[nn.Module, torch.Tensor, torch.Tensor], calibrated: CalibratedDetector
):
    model, x, y = mnist_cnn
    with pytest.raises(InvalidInputError):
        detection_rate_vs_eps(model, calibrated, FGSM(), x[:5], y[:5], [])
    with pytest.raises(InvalidInputError):
        detection_rate_vs_eps(model, calibrated, FGSM(), x[:5] * 2, y[:5], [0.1])


# -- ROC -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ties", [False, True])
def test_roc_matches_sklearn(ties: bool):
    rng = np.random.default_rng(0)
    clean = rng.normal(0.0, 1.0, 300)
    adv = rng.normal(1.0, 1.0, 200)
    if ties:
        clean, adv = np.round(clean, 1), np.round(adv, 1)
    fpr, tpr, auc = roc(torch.from_numpy(clean), adv)
    labels = np.r_[np.zeros(clean.size), np.ones(adv.size)]
    scores = np.r_[clean, adv]
    assert auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    fpr_sk, tpr_sk, _ = roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, fpr_sk)
    np.testing.assert_allclose(tpr, tpr_sk)


def test_roc_edge_cases():
    perfect = roc([0.0, 0.1], [0.5, 0.9])
    assert perfect.auc == 1.0 and perfect.tpr_at(0.0) == 1.0
    assert roc([0.5, 0.5], [0.5]).auc == 0.5  # all tied: chance
    assert roc([1.0], [0.0]).auc == 0.0
    assert perfect.to_records()[0] == {"fpr": 0.0, "tpr": 0.0}
    with pytest.raises(InvalidInputError):
        roc([], [0.1])
    with pytest.raises(InvalidInputError):
        roc([float("nan")], [0.1])


def test_roc_of_a_detection_result_matches_sklearn(
    mnist_cnn: tuple[nn.Module, torch.Tensor, torch.Tensor], calibrated: CalibratedDetector
):
    model, x, y = mnist_cnn
    result = detect(model, calibrated, FGSM(eps=0.15)(model, x[500:600], y[500:600]))
    adv = result.scores_adv[result.success].numpy()
    clean = result.scores_clean.numpy()
    expected = roc_auc_score(np.r_[np.zeros(clean.size), np.ones(adv.size)], np.r_[clean, adv])
    assert result.roc().auc == pytest.approx(expected, abs=1e-12)


# -- the adaptive attack -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.3), ("l2", 3.0)])
def test_detector_aware_attack_evades_far_more_often_than_plain_pgd(
    mnist_cnn: tuple[nn.Module, torch.Tensor, torch.Tensor],
    calibrated: CalibratedDetector,
    norm: str,
    eps: float,
):
    model, x, y = mnist_cnn
    xh, yh = x[500:600], y[500:600]
    plain = detect(
        model,
        calibrated,
        PGD(eps=eps, norm=norm, steps=30)(model, xh, yh, generator=torch.Generator().manual_seed(0)),
    )
    adaptive = adaptive_attack(
        model, calibrated, xh, yh, eps=eps, norm=norm, steps=30, generator=torch.Generator().manual_seed(0)
    )
    assert plain.evaded_rate < 0.15, plain.summary()
    assert adaptive.evaded_rate >= plain.evaded_rate + (0.1 if norm == "linf" else 0.3), (
        plain.summary(),
        adaptive.summary(),
    )
    # Evading inputs really are misclassified and below the threshold, inside the budget.
    assert bool((adaptive.scores_adv[adaptive.evaded] <= calibrated.threshold).all())
    assert adaptive.x_adv is not None
    delta = (adaptive.x_adv - xh).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert float(size.max()) <= eps + 1e-5
    assert float(adaptive.x_adv.min()) >= 0.0 and float(adaptive.x_adv.max()) <= 1.0
    assert adaptive.attack.startswith("Detector-aware PGD")


def test_adaptive_attack_is_seeded_and_leaves_the_model_alone(
    mnist_cnn: tuple[nn.Module, torch.Tensor, torch.Tensor], calibrated: CalibratedDetector
):
    model, x, y = mnist_cnn
    params = list(model.parameters())
    for i, p in enumerate(params):
        p.grad = torch.full_like(p, float(i))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    try:
        runs = [
            adaptive_attack(
                model,
                calibrated,
                x[600:620],
                y[600:620],
                eps=0.2,
                steps=5,
                generator=torch.Generator().manual_seed(3),
            )
            for _ in range(2)
        ]
        assert model.training
    finally:
        model.eval()
        grads = [p.grad for p in params]
        for p in params:
            p.grad = None
    assert runs[0].x_adv is not None and runs[1].x_adv is not None
    assert torch.equal(runs[0].x_adv, runs[1].x_adv)
    for i, g in enumerate(grads):
        assert g is not None and torch.equal(g, torch.full_like(g, float(i)))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


# -- bad parameters ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fpr", [0.0, 1.0, -0.1, 1.5, float("nan"), True, "0.05"])
def test_fpr_outside_the_open_unit_interval_is_refused(fpr: object):
    with pytest.raises(InvalidInputError):
        FeatureSqueezingDetector(fpr=fpr)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "squeezers",
    [(), [], (("bit_depth", 1),), None],
    ids=["empty-tuple", "empty-list", "not-squeezers", "none"],
)
def test_detector_without_squeezers_is_refused(squeezers: object):
    with pytest.raises(InvalidInputError):
        FeatureSqueezingDetector(squeezers=squeezers)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "size"), [("blur", 2), ("bit_depth", 0), ("bit_depth", 9), ("median", 1), ("median", 2.0)]
)
def test_bad_squeezers_are_refused(kind: str, size: object):
    with pytest.raises(InvalidInputError):
        Squeezer(kind, size)  # type: ignore[arg-type]


def test_empty_or_bad_calibration_data_is_refused(mnist_cnn: tuple[nn.Module, torch.Tensor, torch.Tensor]):
    model, x, _ = mnist_cnn
    detector = FeatureSqueezingDetector()
    with pytest.raises(InvalidInputError):
        detector.calibrate(model, x[:0])
    with pytest.raises(InvalidInputError):
        detector.calibrate(model, x[0])  # (C, H, W), not a batch
    with pytest.raises(InvalidInputError):
        detector.calibrate(model, x[:10] + 2.0)  # not pixels in [0, 1]


def test_median_window_larger_than_the_image_is_refused():
    with pytest.raises(InvalidInputError):
        Squeezer("median", 5)(torch.rand(1, 1, 4, 4))


@pytest.mark.parametrize(
    "changes",
    [{"eps": -0.1}, {"eps": 1.5}, {"norm": "l1"}, {"steps": 0}, {"alpha": 0.0}, {"score_weight": -1.0}],
)
def test_bad_adaptive_attack_parameters_are_refused(changes: dict[str, object]):
    with pytest.raises(InvalidInputError):
        AdaptiveAttackConfig(**changes)  # type: ignore[arg-type]


# -- issue 13 item 9: a strong detector-aware attack, and a flag when it is not clearly stronger ---------------
def test_median_squeezer_passes_the_identity_gradient_too():
    """Straight-through through both squeezers: the median's own gradient reaches one pixel per window."""
    x = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    (grad,) = torch.autograd.grad(Squeezer("median", 2).straight_through(x).sum(), x)
    torch.testing.assert_close(grad, torch.ones_like(x))


def test_restarts_with_a_lambda_search_evade_more_than_one_run(
    mnist_cnn: tuple[nn.Module, torch.Tensor, torch.Tensor], calibrated: CalibratedDetector
):
    model, x, y = mnist_cnn
    xh, yh = x[600:700], y[600:700]
    runs = {
        restarts: adaptive_attack(
            model, calibrated, xh, yh, eps=0.3, steps=20, restarts=restarts,
            generator=torch.Generator().manual_seed(0),
        )
        for restarts in (1, 3)
    }  # fmt: skip
    # the first restart is the single run (same start, same λ); later ones only add evaders
    assert bool((runs[3].evaded | ~runs[1].evaded).all())
    assert runs[3].evaded_rate > runs[1].evaded_rate, (runs[1].summary(), runs[3].summary())
    assert "λ searched from 1 over 3 restarts" in runs[3].attack and "straight-through" in runs[3].attack


def test_the_detection_study_flags_a_detector_aware_attack_that_is_not_stronger(tmp_home, stored_model):  # type: ignore[no-untyped-def]
    """At a budget too small for any attack, the detector 'holds' only because the attack failed: say so."""
    from dlsec_core.store import Store
    from dlsec_core.studies.base import run_study
    from dlsec_core.studies.detection import DetectionStudy, DetectionStudyConfig, DetectionStudyResult

    def study(eps: float, norm: str) -> DetectionStudyResult:
        config = DetectionStudyConfig(
            model_id=stored_model.id, squeezers=[{"kind": "bit_depth", "size": 4}], attack="fgsm",
            attack_params={"norm": norm}, eps=[0.0, eps], n_images=100, adaptive_images=60, adaptive_steps=20,
            adaptive_restarts=2,
        )  # fmt: skip
        outcome = run_study(DetectionStudy(), Store(), config)
        result = DetectionStudyResult.from_json(outcome.result)
        assert result.to_json() == outcome.result  # the typed result round-trips, findings included
        return result

    tiny = study(0.002, "linf")
    assert [f.code for f in tiny.findings] == ["adaptive-attack-not-stronger"]
    assert tiny.adaptive.evaded_rate <= tiny.plain.evaded_rate + 0.1
    assert (tiny.attack, tiny.attack_title, tiny.n_images) == ("fgsm", "FGSM", 100)
    assert [p["eps"] for p in tiny.points] == [0.0, 0.002] and tiny.points[-1]["attack"].startswith("FGSM")
    strong = study(2.0, "l2")
    assert strong.adaptive.evaded_rate > strong.plain.evaded_rate + 0.2, (strong.plain, strong.adaptive)
    assert strong.findings == []
    assert strong.adaptive.attack.startswith("Detector-aware PGD") and strong.plain.attack.startswith("PGD")


def test_the_detection_study_config_names_every_problem_at_once() -> None:
    from dlsec_core.studies.detection import DetectionStudyConfig

    with pytest.raises(InvalidInputError) as err:
        DetectionStudyConfig(
            model_id="", squeezers=[{"kind": "blur", "size": 1}], attack="fgsm", eps=[0.0, 2.0], n_images=0,
            adaptive_restarts=0,
        )  # fmt: skip
    text = str(err.value)
    for part in ("`model_id`", "`kind`", "L∞ ε above 1", "`n_images`", "`adaptive_restarts`"):
        assert part in text, text
    assert text.startswith("Detection study: 5 settings are invalid")
    with pytest.raises(InvalidInputError, match="`attack`"):
        DetectionStudyConfig(model_id="m", attack="nope")
    config = DetectionStudyConfig(model_id="m", eps=[0, 0.1])
    assert config.eps == [0.0, 0.1] and type(config).from_json(config.to_json()) == config
