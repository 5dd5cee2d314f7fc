"""The scan study: every finding's numbers equal the underlying evaluations run directly with the same seed, the
severities follow the documented scales, the result round-trips through JSON, one event per finding, and an
adversarially trained twin scores higher robust accuracy than its standard twin.

Oracles: the attacks (PGD, Square), the loss-threshold attack and the model card's privacy spend called directly,
outside the scan, with the scan's seed; the scales' own `grade`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dlsec_core.assessment.severity import MEMBERSHIP_TPR_AT_1PCT_FPR, ROBUST_ACCURACY, Severity
from dlsec_core.atlas import table
from dlsec_core.attacks.norms import Norm
from dlsec_core.attacks.pgd import PGD
from dlsec_core.attacks.square import Square
from dlsec_core.data.builtin import load_dataset
from dlsec_core.errors import InvalidInputError
from dlsec_core.evaluation.restarts import robust_under_restarts
from dlsec_core.privacy.membership import loss_threshold_attack
from dlsec_core.store import ModelCard, Store
from dlsec_core.studies.base import StudyEvent, run_study
from dlsec_core.studies.scan import PRESETS, ScanResult, ScanStudy, ScanStudyConfig, standard_eps
from dlsec_core.training.loop import TrainConfig, run_to_end
from dlsec_core.workflows import train_and_store

SEED = 7


def _scan(store: Store, model_id: str, events: list[StudyEvent] | None = None) -> ScanResult:
    outcome = run_study(
        ScanStudy(),
        store,
        ScanStudyConfig(model_id=model_id, seed=SEED),
        None if events is None else events.append,
    )
    return ScanResult.from_json(json.loads(json.dumps(outcome.result)))


@torch.no_grad()
def _robust_directly(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, attack: object, restarts: int
) -> float:
    """The oracle: every image attacked `restarts` times from one generator seeded with the scan's seed."""
    generator = torch.Generator().manual_seed(SEED)
    robust = model(x).argmax(1) == y
    for _ in range(restarts):
        with torch.enable_grad():
            x_adv = attack.perturb(model, x, y, generator=generator)  # type: ignore[attr-defined]
        robust &= model(x_adv).argmax(1) == y
    return float(robust.float().mean())


def test_findings_equal_the_evaluations_run_directly(tmp_home: Path, stored_model: ModelCard) -> None:
    store = Store(tmp_home)
    events: list[StudyEvent] = []
    result = _scan(store, stored_model.id, events)
    model, card = store.load_model(stored_model.id)
    data = load_dataset("digits")
    p = PRESETS["quick"]
    x, y = data.x_test[: p.images], data.y_test[: p.images]
    (low, high), note = standard_eps(tuple(data.input_shape))
    assert (low, high) == (0.1, 0.3) and "MNIST-like" in note  # 8x8 grey digits: the MNIST budgets

    clean = result.finding("clean-accuracy")
    assert clean.evidence["accuracy"] == pytest.approx(float((model(x).argmax(1) == y).float().mean()))
    assert clean.severity is Severity.INFO

    for eps in (low, high):
        f = result.finding(f"evasion-pgd-linf-{eps:g}")
        attack = PGD(eps=eps, norm=Norm.LINF, steps=p.pgd_steps)
        expected = _robust_directly(model, x, y, attack, p.pgd_restarts)
        assert f.evidence["accuracy"] == pytest.approx(expected)
        assert f.severity is ROBUST_ACCURACY.grade(expected)
        assert f"{p.pgd_restarts} random restarts" in f.evidence["attack"] and f.evidence["seed"] == SEED
        assert f.grade.citation or f.severity is Severity.INFO
    m = p.square_images
    square = Square(eps=high, norm=Norm.LINF, n_queries=p.square_queries)
    black = result.finding(f"evasion-square-linf-{high:g}")
    assert black.evidence["accuracy"] == pytest.approx(_robust_directly(model, x[:m], y[:m], square, 1))
    assert black.evidence["n"] == m and "Square" in black.evidence["attack"]
    # the honesty checks travel with every robust-accuracy number
    assert result.finding(f"evasion-pgd-linf-{high:g}").checks == black.checks

    n = min(p.membership_n, len(data.y_train), len(data.y_test))
    mia = loss_threshold_attack(model, data.x_train[:n], data.y_train[:n], data.x_test[:n], data.y_test[:n])
    leak = result.finding("membership-loss")
    assert leak.evidence["tpr_at_1pct_fpr"] == pytest.approx(mia.tpr_at_1pct)  # n >= 100: measurable
    assert leak.evidence["auc"] == pytest.approx(mia.auc)
    assert leak.severity is MEMBERSHIP_TPR_AT_1PCT_FPR.grade(mia.tpr_at_1pct)

    dp = result.finding("dp-claim")
    assert card.privacy is None and dp.severity is Severity.MEDIUM and dp.evidence["epsilon"] is None

    # one event per finished finding, carrying that finding; every ATLAS id in the lab's table
    payloads = [e.payload["finding"] for e in events if e.payload and e.payload.get("type") == "finding"]
    assert [f["id"] for f in payloads] == [f.id for f in result.findings]
    assert payloads == [f.to_json() for f in result.findings]
    assert {i for f in result.findings for i in f.atlas_ids} <= set(table())
    assert result.worst is max((f.severity for f in result.findings), key=lambda s: s.rank)


def test_scan_reads_a_dp_claim(tmp_home: Path) -> None:
    from dlsec_core.catalog import get_recipe

    store = Store(tmp_home)
    recipe = get_recipe("dp-sgd", target_epsilon=4.0)
    card = run_to_end(train_and_store(
        store, dataset="digits", arch="logreg", config=TrainConfig(epochs=1, lr=0.5, shift=0, batch_size=256),
        recipe=recipe,
    ))  # fmt: skip
    assert card.privacy is not None
    dp = _scan(store, card.id).finding("dp-claim")
    assert dp.evidence["epsilon"] == pytest.approx(card.privacy.epsilon)
    assert dp.evidence["accountant"] == card.privacy.accountant
    assert dp.severity is Severity.LOW  # 1 < ε ≤ 10 (δ far below 1/N)


def test_adversarial_training_raises_robust_accuracy_in_the_scan(tmp_home: Path) -> None:
    from dlsec_core.catalog import get_recipe

    store = Store(tmp_home)
    config = TrainConfig(epochs=3, lr=0.05, shift=0, seed=1)
    twins = {
        name: run_to_end(
            train_and_store(store, dataset="digits", arch="logreg", config=config, recipe=recipe)
        )
        for name, recipe in (
            ("standard", get_recipe("standard")),
            ("adversarial", get_recipe("pgd", eps=0.1, steps=5, robust_eval_images=0)),
        )
    }
    robust = {
        name: _scan(store, card.id).finding("evasion-pgd-linf-0.1").evidence["accuracy"]
        for name, card in twins.items()
    }
    assert robust["adversarial"] > robust["standard"] + 0.05, robust  # seeded: 0.67 vs 0.555


def test_scan_config_names_every_problem() -> None:
    with pytest.raises(InvalidInputError) as err:
        ScanStudyConfig(model_id="", preset="exhaustive", seed=-1).validate()
    for name in ("model_id", "preset", "seed"):
        assert name in str(err.value)


def test_more_restarts_never_raise_robust_accuracy(trained_digits: object) -> None:
    """Restart 1 draws the same random starts whatever follows it, so 3 restarts keep a subset of 1's robust images."""
    model = trained_digits.model  # type: ignore[attr-defined]
    data = load_dataset("digits")
    x, y = data.x_test[:100], data.y_test[:100]
    attack = PGD(eps=0.1, norm=Norm.LINF, steps=5)
    one = robust_under_restarts(model, x, y, attack, restarts=1, seed=SEED)
    three = robust_under_restarts(model, x, y, attack, restarts=3, seed=SEED)
    assert bool((three <= one).all()) and one.float().mean() == _robust_directly(model, x, y, attack, 1)
    with pytest.raises(InvalidInputError, match="Restarts"):
        robust_under_restarts(model, x, y, attack, restarts=0)


def test_cli_scan_prints_the_stored_result(
    tmp_home: Path, stored_model: ModelCard, capsys: pytest.CaptureFixture[str]
) -> None:
    from dlsec_core.cli import main

    assert (
        main(["--home", str(tmp_home), "scan", stored_model.id, "--seed", str(SEED), "--quiet", "--json"])
        == 0
    )
    printed = ScanResult.from_json(json.loads(capsys.readouterr().out))
    direct = _scan(Store(tmp_home), stored_model.id)
    assert [f.to_json() for f in printed.findings] == [f.to_json() for f in direct.findings]
    assert main(["--home", str(tmp_home), "scan", stored_model.id, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "evasion-pgd-linf-0.3" in out and "AML.T0043.000" in out and "MEDIUM  dp-claim" in out
    assert main(["--home", str(tmp_home), "scan", "no-such-model", "--quiet"]) == 2
