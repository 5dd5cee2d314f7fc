"""The CLI end to end, in-process: train, list, sweep (--json), export, import, delete, and clear errors."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dlsec_core.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_round_trip(tmp_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "train", "--dataset", "digits", "--arch", "logreg", "--epochs", "2", "--lr", "0.05",
                         "--name", "cli", "--json")  # fmt: skip
    assert code == 0, err
    card = json.loads(out)
    assert card["name"] == "cli" and card["accuracy"] > 0.5
    assert "epoch 2/2" in err
    code, out, _ = run(capsys, "list", "--json")
    assert [c["id"] for c in json.loads(out)] == [card["id"]]
    code, out, _ = run(
        capsys, "sweep", "--model", card["id"], "--eps", "0,0.1,0.3", "--n", "100", "--json", "--quiet"
    )
    report = json.loads(out)
    points = report["points"]
    assert isinstance(report["findings"], list)
    assert [p["eps"] for p in points] == [0.0, 0.1, 0.3]
    assert points[0]["accuracy"] >= points[-1]["accuracy"]
    assert all(p["attack"].startswith("FGSM") for p in points)
    code, out, _ = run(capsys, "sweep", "--model", card["id"], "--attack", "pgd", "--steps", "5", "--points", "3",
                       "--eps-max", "0.2", "--n", "50", "--quiet")  # fmt: skip
    assert code == 0 and out.startswith("# PGD")
    code, out, err = run(capsys, "sweep", "--model", card["id"], "--attack", "pgd", "--steps", "10", "--eps", "0.2",
                         "--n", "100", "--defense", "bit-depth", "--defense-param", "bits=2", "--json", "--quiet")  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    naive = [p for p in report["points"] if p["model"].endswith("(naive)")]
    adaptive = [p for p in report["points"] if p["model"].endswith("(adaptive)")]
    assert naive[0]["accuracy"] > adaptive[0]["accuracy"]  # the gap gradient masking creates
    assert {"naive-overestimates", "zero-gradients"} <= {f["code"] for f in report["findings"]}
    code, out, _ = run(capsys, "export", card["id"], str(tmp_path / "out"), "--json")
    files = json.loads(out)
    code, out, err = run(
        capsys, "import", files["weights"], "--dataset", "digits", "--name", "back", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["accuracy"] == pytest.approx(card["accuracy"])
    code, out, _ = run(capsys, "delete", card["id"])
    assert code == 0
    code, out, _ = run(capsys, "list", "--json")
    assert [c["name"] for c in json.loads(out)] == ["back"]


def test_cli_datasets_and_add_dataset(
    tmp_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x = (np.random.default_rng(0).random((30, 8, 8)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    np.savez(buf, x=x, y=np.repeat(np.arange(3), 10))
    path = tmp_path / "mine.npz"
    path.write_bytes(buf.getvalue())
    code, out, err = run(capsys, "add-dataset", str(path), "--name", "mine", "--json")
    assert code == 0, err
    assert json.loads(out)["classes"] == 3
    code, out, _ = run(capsys, "datasets", "--json")
    assert [d["name"] for d in json.loads(out)] == ["mnist5k", "digits", "mine"]


@pytest.mark.parametrize(
    "args",
    [
        ("sweep", "--model", "000000000000"),
        ("delete", "000000000000"),
        ("train", "--dataset", "nope"),
        ("train", "--dataset", "digits", "--epochs", "0"),
        ("sweep", "--model", "000000000000", "--eps", "-1"),
        ("import", "/definitely/missing.safetensors"),
    ],
)
def test_cli_errors_are_one_sentence(
    tmp_home: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    code, out, err = run(capsys, *args)
    assert code == 2
    assert err.startswith("error: ") and "Traceback" not in err
    assert out == ""


def test_cli_refuses_pickle(tmp_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"\x80\x04\x95" + b"\x00" * 20)
    code, _, err = run(capsys, "import", str(path))
    assert code == 2 and "unpickling" in err and "save_file" in err


def test_cli_defenses(tmp_home: Path, capsys: pytest.CaptureFixture[str], stored_model) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(capsys, "detect", "--model", stored_model.id, "--n", "100", "--points", "3", "--bits", "1",
                         "--median", "0", "--json", "--quiet")  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert len(report["points"]) == 3 and 0.0 <= report["roc_auc"] <= 1.0
    assert report["adaptive"]["attack"].startswith("Detector-aware PGD")
    code, out, err = run(capsys, "certify", "--model", stored_model.id, "--n", "5", "--samples", "100", "--json",
                         "--quiet")  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    accs = [r["certified_accuracy"] for r in report["certified"]]
    assert accs == sorted(accs, reverse=True) and "Randomized smoothing" in report["certify"]
    code, out, err = run(capsys, "train", "--dataset", "digits", "--arch", "logreg", "--epochs", "1", "--recipe",
                         "fgsm-rs", "--recipe-param", "eps=0.05", "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["recipe"] == "fgsm-rs" and "robust" in err
    code, _, err = run(capsys, "train", "--recipe", "fgsm-rs", "--recipe-param", "eps=5")
    assert code == 2 and err.startswith("error: ")


@pytest.mark.parametrize("command", ["detect", "certify"])
def test_cli_defense_studies_detach(
    command: str,
    tmp_home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stored_model: Any,
) -> None:
    """`--detach` queues the study as a run of this model and prints its id; a worker's result is the in-process
    command's result (the same seed)."""
    from dlsec_core.execution.worker import in_process, serve
    from dlsec_core.runs import RunStatus, RunStore
    from dlsec_core.store import Store

    monkeypatch.setenv("DLSEC_WORKERS", "0")  # no worker processes: this test executes the run itself
    small = {"detect": "--n 60 --points 2 --bits 4 --median 0", "certify": "--n 3 --samples 40"}[command]
    small += " --seed 2"
    code, out, err = run(capsys, command, "--model", stored_model.id, *small.split(), "--detach")
    assert code == 0, err
    run_id = out.strip()
    runs = RunStore(Store(tmp_home))
    queued = runs.get(run_id)
    study = {"detect": "detection", "certify": "certification"}[command]
    assert (queued.study, queued.status, queued.config["seed"]) == (study, RunStatus.QUEUED, 2)
    assert [r.id for r in runs.list_runs(model_id=stored_model.id)] == [run_id]
    assert runs.latest(study, model_id=stored_model.id) is None  # not finished yet
    assert serve(runs, max_runs=1, idle_exit_s=0, lower_priority=False, engine=in_process) == 1
    done = runs.get(run_id)
    assert done.status == RunStatus.DONE, done.error
    assert runs.latest(study, model_id=stored_model.id) == done
    code, out, err = run(capsys, command, "--model", stored_model.id, *small.split(), "--json", "--quiet")
    assert code == 0, err
    in_process_result = json.loads(out)
    timing = ("elapsed", "point_s", "curve_elapsed_s")
    strip = lambda rs: [{k: v for k, v in r.items() if k not in timing} for r in rs]  # noqa: E731
    key = "points" if command == "detect" else "empirical"
    assert strip(in_process_result.pop(key)) == strip(done.result.pop(key))
    assert in_process_result == done.result
