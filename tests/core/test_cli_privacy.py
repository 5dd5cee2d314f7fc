"""The privacy commands of the CLI, in-process: privacy-budget against the accountants, DP training with ε on the
progress line, membership, invert (PNGs), audit with its positive control, frontier, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from dlsec_core.cli import main
from dlsec_core.execution.worker import in_process, serve
from dlsec_core.privacy.accounting import epsilon_after, noise_for_target
from dlsec_core.privacy.dp_sgd import DPSGDRecipe
from dlsec_core.runs import RunStatus, RunStore
from dlsec_core.store import ModelCard, Store
from dlsec_core.studies.frontier import frontier_points

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Opacus's GDP / backward-hook warnings


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_privacy_budget_equals_the_accountants(tmp_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "privacy-budget", "--n", "1000", "--batch-size", "100", "--epochs", "3", "--sigma",
                         "1.1", "--accountant", "rdp,prv", "--accountant", "gdp", "--target-epsilon", "2", "--json")  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["steps"] == 30 and report["sample_rate"] == pytest.approx(0.1)  # int(1/q) steps per epoch
    assert [r["accountant"] for r in report["epsilon"]] == ["rdp", "prv", "gdp"]
    for rec in report["epsilon"]:
        expected = epsilon_after(1.1, 0.1, 30, 1e-5, accountant=rec["accountant"])
        assert rec["epsilon"] == pytest.approx(expected.epsilon)
    # the inverse, never calibrated on GDP's approximation
    assert [r["accountant"] for r in report["noise_for_target"]] == ["rdp", "prv"]
    rdp = report["noise_for_target"][0]
    assert rdp["noise_multiplier"] == pytest.approx(noise_for_target(2, 0.1, 30, 1e-5).noise_multiplier)
    assert rdp["epsilon"] <= 2
    code, out, err = run(capsys, "privacy-budget", "--dataset", "digits", "--sigma", "1")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("# q = 256/1438") and "RDP" in lines[1] and "PRV" in lines[2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--n", "1000", "--delta", "0.001"), "not below 1/N"),
        (("--n", "100", "--batch-size", "256"), "batch size must be from 1 to the 100"),
        (("--n", "1000", "--accountant", "nope"), "Unknown accountant"),
    ],
)
def test_privacy_budget_refuses(
    tmp_home: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    code, out, err = run(capsys, "privacy-budget", *args)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_dp_training_then_membership(
    tmp_home: Path, capsys: pytest.CaptureFixture[str], stored_model: ModelCard
) -> None:
    code, out, err = run(capsys, "train", "--dataset", "digits", "--arch", "logreg", "--recipe", "dp-sgd",
                         "--recipe-param", "noise_multiplier=1.2", "--epochs", "2", "--lr", "0.05", "--name", "dp",
                         "--json")  # fmt: skip
    assert code == 0, err
    dp_id = json.loads(out)["id"]
    card = Store(tmp_home).get_card(dp_id)
    assert card.recipe == "dp-sgd"
    assert card.train_config["batch_size"] == DPSGDRecipe.suggested["batch_size"]  # not given: the recipe's
    assert card.train_config["lr"] == 0.05  # given
    last = card.history[-1]
    assert last["epsilon"] > 0 and last["accountant"] == "rdp"
    assert "Planned:" in err and "epoch 2/2" in err and f"ε={last['epsilon']:.3g} (rdp)" in err

    code, out, err = run(capsys, "membership", stored_model.id, dp_id, "--n", "100", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["model_id"] for r in rows] == [stored_model.id, dp_id]
    for r in rows:
        assert 0 <= r["auc"] <= 1 and r["attack"] == "loss"
        assert len(r["fpr"]) == len(r["tpr"]) > 2 and r["fpr"][0] == 0 and r["fpr"][-1] == 1
    assert rows[0]["privacy"] == "no DP" and rows[1]["epsilon"] == pytest.approx(last["epsilon"])
    assert "model 2/2 (dp): done, AUC" in err

    code, out, err = run(capsys, "membership", stored_model.id, "--attack", "lira", "--shadows", "2", "--n", "50",
                         "--variant", "offline")  # fmt: skip
    assert code == 0, err
    assert "shadow model 2/2 trained" in err
    assert "privacy=no DP" in out and "LiRA offline, 2 shadow models" in out and "tpr_at_0_1pct=" in out


def test_invert_writes_pngs(
    tmp_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], stored_model: ModelCard
) -> None:
    out_dir = tmp_path / "inv"
    code, out, err = run(capsys, "invert", stored_model.id, "--classes", "0,3,7", "--steps", "20", "--out",
                         str(out_dir), "--json")  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["description"].startswith("MI-Face") and "up to 20 steps" in report["description"]
    assert [c["target"] for c in report["classes"]] == [0, 3, 7]
    for rec in report["classes"]:
        assert 0 <= rec["p_target"] <= 1
        with Image.open(rec["file"]) as img:
            img.verify()
        with Image.open(rec["file"]) as img:
            assert img.format == "PNG" and img.mode == "L" and img.size == (112, 112)  # 8x8 upscaled x14
    code, out, err = run(capsys, "invert", stored_model.id, "--steps", "5", "--out", str(out_dir / "all"))
    assert code == 0, err
    assert sorted(p.name for p in (out_dir / "all").iterdir()) == [f"class_{c}.png" for c in range(10)]
    assert out.startswith("# MI-Face") and "p_target=" in out


def test_audit_with_control(tmp_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "audit", "--dataset", "digits", "--arch", "logreg", "--recipe-param",
                         "target_epsilon=2", "--epochs", "2", "--lr", "0.05", "--canaries", "100", "--control")  # fmt: skip
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("dp-sgd: claimed ε ≤ ") and "(RDP)" in lines[0] and "measured ε ≥ " in lines[0]
    assert lines[1].startswith("standard (control): no claim") and "measured ε ≥ " in lines[1]
    assert "100 canaries" in lines[0] and "run 2/2 (positive control: standard training" in err
    assert "epoch 2/2" in err
    assert Store(tmp_home).list_models() == []  # nothing is stored


def test_frontier_adds_one_dp_point(
    tmp_home: Path, capsys: pytest.CaptureFixture[str], stored_model: ModelCard
) -> None:
    store = Store(tmp_home)
    assert [p.private for p in frontier_points(store, "digits", "logreg")] == [False]  # the baseline
    code, out, err = run(capsys, "frontier", "--dataset", "digits", "--arch", "logreg", "--targets", "2",
                         "--epochs", "1", "--lr", "0.05", "--json")  # fmt: skip
    assert code == 0, err
    (point,) = json.loads(out)
    assert point["epsilon"] <= 2 and point["accountant"] == "rdp"
    assert [p.private for p in frontier_points(store, "digits", "logreg")] == [True, False]
    code, out, err = run(capsys, "frontier", "--dataset", "digits", "--arch", "logreg")
    assert code == 0, err
    assert "(rdp, δ=1e-05)" in out.splitlines()[0] and "no DP" in out.splitlines()[1]


def test_detached_membership_is_a_run_with_the_in_process_result(
    tmp_home: Path,
    capsys: pytest.CaptureFixture[str],
    stored_model: ModelCard,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`membership --detach` queues a run and prints its id; executed (here, as a worker would), its stored result
    is the one the in-process command prints."""
    monkeypatch.setenv("DLSEC_WORKERS", "0")  # no worker processes: this test executes the run itself
    code, out, err = run(capsys, "membership", stored_model.id, "--n", "40", "--detach")
    assert code == 0, err
    run_id = out.strip()
    assert f"runs wait {run_id}" in err
    runs = RunStore(Store(tmp_home))
    queued = runs.get(run_id)
    assert queued.status == RunStatus.QUEUED and queued.study == "membership"
    assert list(queued.model_ids) == [stored_model.id]  # "this model's runs" finds it
    assert serve(runs, max_runs=1, idle_exit_s=0, lower_priority=False, engine=in_process) == 1
    done = runs.get(run_id)
    assert done.status == RunStatus.DONE and done.result is not None
    assert [p.name for p in runs.artifacts(run_id)] == ["scores-0.npy"]
    code, out, err = run(capsys, "membership", stored_model.id, "--n", "40", "--json")
    (row,) = json.loads(out)
    (stored,) = done.result["models"]
    assert stored["roc"]["auc"] == row["auc"] and stored["roc"]["fpr"] == row["fpr"]


@pytest.mark.parametrize(
    "args",
    [
        ("membership", "000000000000", "--n", "50"),
        ("membership", "not-an-id"),
        ("invert", "000000000000", "--out", "unused"),
        ("invert", "000000000000"),
        ("privacy-budget", "--dataset", "nope"),
        ("audit", "--dataset", "digits", "--canaries", "1000"),
        ("frontier", "--dataset", "digits", "--arch", "logreg", "--targets", "x"),
    ],
)
def test_privacy_errors_are_one_sentence(
    tmp_home: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    code, out, err = run(capsys, *args)
    assert code == 2
    assert err.startswith("error: ") and "Traceback" not in err
    assert out == ""


def test_privacy_budget_reports_each_accountant_even_when_one_cannot_answer(
    tmp_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # σ 0.1 on the default run: RDP answers (a huge ε), PRV cannot; ε 0.05 after 100 epochs: PRV answers, RDP not.
    code, out, err = run(capsys, "privacy-budget", "--n", "4000", "--batch-size", "512", "--epochs", "15", "--sigma",
                         "0.1", "--json")  # fmt: skip
    assert code == 0, err
    rdp, prv = json.loads(out)["epsilon"]
    assert rdp["accountant"] == "rdp" and rdp["epsilon"] > 1000
    assert prv["accountant"] == "prv" and prv["epsilon"] is None and "RDP's bound" in prv["failure"]
    code, out, err = run(capsys, "privacy-budget", "--n", "4000", "--batch-size", "512", "--epochs", "100",
                         "--target-epsilon", "0.05")  # fmt: skip
    assert code == 0, err
    assert "no σ keeps ε ≤ 0.05 by RDP" in out and "cannot certify any ε below 0.103" in out
    assert "σ ≥ 240 keeps ε ≤ 0.05 (PRV" in out
