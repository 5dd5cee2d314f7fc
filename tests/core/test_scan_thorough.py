"""The thorough scan and the input-defense gap: every new finding's numbers equal the underlying evaluation run
directly with the same seed, severities follow the documented scales, and the CLI takes the new options.

Oracles: `robust_accuracy_under` on the model behind the transform (naive and adaptive), `lira_attack` with the
model's own training settings, a Knockoff attack through a `PredictionAPI` with the same policy, pool and seed,
`audit_privacy` of the DP recipe, and `verify`/`binomial_tail` on the watermark keys, all called outside the scan.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dlsec_core.assessment.severity import (
    EXTRACTION_FIDELITY,
    INPUT_DEFENSE_GAP,
    MEMBERSHIP_TPR_AT_1PCT_FPR,
    ROBUST_ACCURACY,
    Severity,
)
from dlsec_core.atlas import table
from dlsec_core.attacks.norms import Norm
from dlsec_core.attacks.pgd import PGD
from dlsec_core.catalog import get_recipe
from dlsec_core.data.builtin import load_dataset
from dlsec_core.defenses.transforms import Mode, defend, get_transform, robust_accuracy_under
from dlsec_core.errors import InvalidInputError
from dlsec_core.privacy.audit import AuditConfig, audit_privacy
from dlsec_core.privacy.membership import LiraConfig, lira_attack
from dlsec_core.store import ModelCard, Store
from dlsec_core.studies.base import run_study
from dlsec_core.studies.scan import (
    PRESETS,
    ScanResult,
    ScanStudy,
    ScanStudyConfig,
    Span,
    _audit_finding,
    _theft_finding,
    _watermark_finding,
)
from dlsec_core.theft.api import Oracle, PredictionAPI, get_policy
from dlsec_core.theft.extraction import Judge, Knockoff, PoolKind, query_pool
from dlsec_core.theft.watermark import WatermarkRecipe, binomial_tail, key_hits
from dlsec_core.training.loop import TrainConfig, run_to_end
from dlsec_core.workflows import train_and_store

SEED = 5
SPAN = Span(0.0, 1.0)


def _scan(store: Store, config: ScanStudyConfig) -> ScanResult:
    outcome = run_study(ScanStudy(), store, config, None)
    return ScanResult.from_json(json.loads(json.dumps(outcome.result)))


def test_thorough_scan_equals_the_evaluations_run_directly(tmp_home: Path, stored_model: ModelCard) -> None:
    store = Store(tmp_home)
    config = ScanStudyConfig(
        model_id=stored_model.id, preset="thorough", seed=SEED, input_transform="bit-depth",
        transform_params={"bits": 2},
    )  # fmt: skip
    result = _scan(store, config)
    model, card = store.load_model(stored_model.id)
    data = load_dataset("digits")
    p = PRESETS["thorough"]
    x, y = data.x_test[: p.images], data.y_test[: p.images]
    ids = [f.id for f in result.findings]
    assert ids[:6] == [
        "clean-accuracy", "evasion-pgd-linf-0.1", "evasion-pgd-linf-0.3", "evasion-square-linf-0.3",
        "membership-loss", "dp-claim",
    ]  # fmt: skip
    assert ids[6:] == [
        "input-defense-gap-linf-0.1",
        "input-defense-gap-linf-0.3",
        "membership-lira",
        "theft-exposure",
        "watermark",
    ]  # fmt: skip  (no dp-audit: the model claims no DP)

    # input-defense gap: naive and adaptive PGD on the served pipeline, each from a generator seeded like the scan's
    transform = get_transform("bit-depth", bits=2)
    for eps in (0.1, 0.3):
        gap = result.finding(f"input-defense-gap-linf-{eps:g}")
        direct = {
            mode: robust_accuracy_under(
                defend(model, transform, mode=mode), PGD(eps=eps, norm=Norm.LINF, steps=p.pgd_steps), x, y,
                generator=torch.Generator().manual_seed(SEED),
            ).robust_accuracy
            for mode in (Mode.NAIVE, Mode.ADAPTIVE)
        }  # fmt: skip
        assert gap.evidence["naive_robust_accuracy"] == pytest.approx(direct[Mode.NAIVE])
        assert gap.evidence["adaptive_robust_accuracy"] == pytest.approx(direct[Mode.ADAPTIVE])
        assert gap.evidence["gap"] == pytest.approx(direct[Mode.NAIVE] - direct[Mode.ADAPTIVE])
        worse = max(
            INPUT_DEFENSE_GAP.grade(gap.evidence["gap"]), ROBUST_ACCURACY.grade(direct[Mode.ADAPTIVE]),
            key=lambda s: s.rank,
        )  # fmt: skip
        assert gap.severity is worse
    # bit-depth reduction masks gradients: the naive attack (zero gradient) overstates robustness a lot (Athalye)
    at_03 = result.finding("input-defense-gap-linf-0.3").evidence
    assert at_03["gap"] > 0.3 and "BPDA" in at_03["adaptive"]["defense"], at_03

    # LiRA with shadows trained like the model (its stored settings and the standard recipe)
    n = min(p.membership_n, len(data.y_train), len(data.y_test))
    lira = run_to_end(lira_attack(
        model, card.spec, data, config=TrainConfig(**card.train_config), recipe=get_recipe("standard"),
        lira=LiraConfig(shadows=p.lira_shadows, seed=SEED), n_members=n, n_nonmembers=n,
    ))  # fmt: skip
    leak = result.finding("membership-lira")
    assert leak.evidence["tpr_raw"] == pytest.approx(lira.tpr_at_1pct)
    assert leak.evidence["auc"] == pytest.approx(lira.auc)
    assert leak.severity is MEMBERSHIP_TPR_AT_1PCT_FPR.grade(lira.tpr_at_1pct)

    # theft exposure: Knockoff through a full-probability API, 1,000 queries of the training split, same seed
    api = PredictionAPI(model.cpu(), card.spec, get_policy("full"), seed=SEED)
    api.register("thief", budget=1000)
    pool = query_pool(PoolKind.SAME, data, 1000, torch.Generator().manual_seed(SEED))
    stolen = run_to_end(
        Knockoff(arch=card.spec.arch).run(
            Oracle(api, "thief"), Judge.of(model, data.x_test, data.y_test), [1000], pool=pool, seed=SEED
        )
    )
    theft = result.finding("theft-exposure")
    assert theft.evidence["fidelity"] == pytest.approx(stolen.points[-1].fidelity)
    assert theft.evidence["queries"] == theft.evidence["answered"] == 1000
    assert theft.severity is EXTRACTION_FIDELITY.grade(stolen.points[-1].fidelity)

    mark = result.finding("watermark")
    assert mark.severity is Severity.INFO and mark.evidence["watermarked"] is False

    for f in result.findings[6:]:  # the new findings (clean accuracy, context, has no ATLAS id)
        assert f.atlas_ids and set(f.atlas_ids) <= set(table()), f.id
        assert f.reduce and (f.grade.citation or f.severity is Severity.INFO), f.id
    assert result.preset == "thorough"


def test_theft_exposure_attacks_through_the_output_policy(tmp_home: Path, stored_model: ModelCard) -> None:
    store = Store(tmp_home)
    model, card = store.load_model(stored_model.id)
    data = load_dataset("digits")
    label = run_to_end(
        _theft_finding(SPAN, model, card, data, get_policy("label"), PRESETS["thorough"], SEED)
    )
    full = run_to_end(_theft_finding(SPAN, model, card, data, get_policy("full"), PRESETS["thorough"], SEED))
    assert label.evidence["policy"] == "label" and "Copycat" in label.summary
    # a label-only API returns less than probabilities: the copy cannot agree more with it (here: it agrees less)
    assert label.evidence["fidelity"] < full.evidence["fidelity"], (label.evidence, full.evidence)
    assert label.evidence["api_accuracy"] == pytest.approx(full.evidence["victim_accuracy"])


def test_dp_audit_and_watermark_findings(tmp_home: Path) -> None:
    store = Store(tmp_home)
    p = PRESETS["thorough"]
    data = load_dataset("digits")
    dp = run_to_end(train_and_store(
        store, dataset="digits", arch="logreg", config=TrainConfig(epochs=1, lr=0.5, shift=0, batch_size=256),
        recipe=get_recipe("dp-sgd", target_epsilon=2.0),
    ))  # fmt: skip
    audit = run_to_end(_audit_finding(SPAN, dp, data, p, SEED))
    keep = min(200, len(data.y_test) // 2)
    direct = run_to_end(audit_privacy(
        dp.spec, data, TrainConfig(**dp.train_config), get_recipe(dp.recipe, **dp.recipe_params),
        config=AuditConfig(canaries=min(p.audit_canaries, len(data.y_test) - keep), keep_test=keep, seed=SEED),
    ))  # fmt: skip
    assert audit.evidence["v"] == direct.v and audit.evidence["eps_lower_bound"] == direct.eps_lower_bound
    # the audited run trains on the canaries too (a slightly larger set: its calibrated ε differs a little)
    assert audit.evidence["model_epsilon"] == dp.privacy.epsilon  # type: ignore[union-attr]
    assert audit.evidence["claimed_epsilon"] == pytest.approx(dp.privacy.epsilon, rel=0.01)  # type: ignore[union-attr]
    assert not direct.claim_refuted and audit.severity is Severity.INFO  # a correct DP-SGD is never refuted

    recipe = get_recipe("watermark", keys=20)
    owner = run_to_end(train_and_store(
        store, dataset="digits", arch="logreg", config=TrainConfig(epochs=5, lr=0.05, shift=0, seed=1), recipe=recipe,
    ))  # fmt: skip
    model, _ = store.load_model(owner.id)
    mark = run_to_end(_watermark_finding(SPAN, model, owner, data, p, SEED))
    assert isinstance(recipe, WatermarkRecipe)
    hits = key_hits(model, recipe.trigger_set(owner.spec.input_shape, owner.spec.num_classes))
    assert mark.evidence["hits"] == hits and len(mark.evidence["null_models"]) == p.watermark_null_models
    assert mark.evidence["p_value"] == pytest.approx(binomial_tail(hits, 20, mark.evidence["p0"]))
    assert mark.evidence["verified"] and mark.evidence["p_value"] < 1e-3 and mark.severity is Severity.INFO


def test_scan_config_checks_the_transform_and_policy_settings() -> None:
    with pytest.raises(InvalidInputError) as err:
        ScanStudyConfig(model_id="m", transform_params={"bits": 3}).validate()
    assert "transform_params" in str(err.value)
    with pytest.raises(InvalidInputError) as err:
        ScanStudyConfig(
            model_id="m", input_transform="bit-depth", transform_params={"bits": 0}, output_policy="rounded",
            policy_params={"k": 2},
        ).validate()  # fmt: skip
    assert "bits" in str(err.value) and "policy_params" in str(err.value)
    with pytest.raises(InvalidInputError, match="input_transform"):
        ScanStudyConfig(model_id="m", input_transform="blur").validate()
    config = ScanStudyConfig(model_id="m", input_transform="jpeg", transform_params={"quality": 50})
    assert ScanStudyConfig.from_json(config.to_json()) == config
    assert ScanStudy().title_for(config) == "Security scan (quick) of m, behind jpeg"


def test_cli_scan_takes_the_thorough_options(
    tmp_home: Path, stored_model: ModelCard, capsys: pytest.CaptureFixture[str]
) -> None:
    from dlsec_core.cli import main

    home = ["--home", str(tmp_home), "scan", stored_model.id, "--quiet"]
    args = [
        "--preset",
        "thorough",
        "--seed",
        str(SEED),
        "--input-transform",
        "bit-depth",
        "--transform-bits",
        "2",
    ]
    assert main([*home, *args, "--output-policy", "rounded", "--policy-decimals", "1", "--json"]) == 0
    printed = ScanResult.from_json(json.loads(capsys.readouterr().out))
    assert printed.preset == "thorough"
    assert printed.finding("input-defense-gap-linf-0.1").evidence["transform"]["params"] == {"bits": 2}
    theft = printed.finding("theft-exposure").evidence
    assert theft["policy"] == "rounded" and "decimals = 1" in theft["policy_description"]
    # any preset measures the gap of a served model; the text output says what it was served behind
    assert main([*home, "--input-transform", "median"]) == 0
    out = capsys.readouterr().out
    assert (
        "served behind: median" in out and "input-defense-gap-linf-0.3" in out and "theft-exposure" not in out
    )
    # a setting of a transform or policy that was not chosen is an error naming it
    assert main([*home, "--transform-bits", "2"]) == 2
    assert "--transform-bits" in capsys.readouterr().err
    assert main([*home, "--output-policy", "rounded", "--policy-k", "2"]) == 2
    assert "--policy-k" in capsys.readouterr().err
