"""The watermark through the command line: `train --recipe watermark`, then `watermark-verify` in process and
`--detach`ed (a worker's stored result equals the in-process one)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dlsec_core.cli import main
from dlsec_core.execution.worker import in_process, serve
from dlsec_core.runs import RunStatus, RunStore
from dlsec_core.store import ModelCard, Store


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_watermarked_then_verify(
    tmp_home: Path,
    capsys: pytest.CaptureFixture[str],
    stored_model: ModelCard,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    small = ["--dataset", "digits", "--arch", "mlp", "--epochs", "5", "--lr", "0.01", "--seed", "3"]
    code, out, err = run(capsys, "train", *small, "--recipe", "watermark", "--recipe-keys", "30", "--json")
    assert code == 0, err
    assert "watermark keys 1.000" in err.splitlines()[-1]  # the last epoch's key accuracy
    owner = json.loads(out)["id"]
    assert Store(tmp_home).get_card(owner).recipe_params["keys"] == 30

    verify = ["watermark-verify", "--owner", owner, "--nulls", "2", "--null-epochs", "2", "--prune", "0.5"]
    code, out, err = run(capsys, *verify, "--suspect", owner, "--quiet")
    assert code == 0, err
    assert out.count("watermark found: 30/30 keys") == 3  # owner, suspect (itself), suspect pruned
    code, out, err = run(capsys, *verify, "--suspect", stored_model.id, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["owner"]["p_value"] < 1e-6
    suspect = next(r for r in result["rows"] if r["model"].endswith("(suspect)"))
    assert not suspect["verified"] and suspect["p_value"] > 1e-3
    # a copy stolen from the owner (Copycat, 300 queries), fine-tuned on held-out data
    code, out, err = run(capsys, *verify, "--suspect", owner, "--steal", "copycat", "--steal-queries", "300",
                         "--steal-epochs", "3", "--fine-tune-epochs", "1", "--fine-tune-data", "held-out", "--quiet")  # fmt: skip
    assert code == 0, err
    assert "suspect fine-tuned 1 epoch on 179 held-out images (half the test split)" in out
    assert "owner's copy stolen with Copycat (Correia-Silva et al. 2018" in out and "300 queries" in out

    monkeypatch.setenv("DLSEC_WORKERS", "0")  # no worker processes: this test executes the run itself
    code, out, err = run(capsys, *verify, "--suspect", stored_model.id, "--detach")
    assert code == 0, err
    runs = RunStore(Store(tmp_home))
    queued = runs.get(out.strip())
    assert queued.study == "ownership" and set(queued.model_ids) == {owner, stored_model.id}
    assert serve(runs, max_runs=1, idle_exit_s=0, lower_priority=False, engine=in_process) == 1
    done = runs.get(queued.id)
    assert done.status == RunStatus.DONE and done.result is not None
    assert done.result["suspect"] == result["suspect"] and done.result["owner"] == result["owner"]


def test_verify_refuses_an_owner_without_watermark(
    capsys: pytest.CaptureFixture[str], stored_model: ModelCard
) -> None:
    code, out, err = run(capsys, "watermark-verify", "--owner", stored_model.id, "--suspect", stored_model.id)
    assert code == 2 and "no watermark keys" in err and out == ""
