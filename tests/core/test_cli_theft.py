"""`steal`: the extraction study from the command line, in process and detached, with flags generated from the
policies' and attacks' settings. Oracle: equation solving steals the digits logreg exactly from d+1 = 65 answers
and fails behind 1-decimal rounding; the detached run's stored result equals the in-process one."""

from __future__ import annotations

import dataclasses
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


def test_steal_a_logreg_by_equation_solving(
    tmp_home: Path, capsys: pytest.CaptureFixture[str], stored_model: ModelCard
) -> None:
    code, out, err = run(
        capsys, "steal", stored_model.id, "--attack", "equation-solving", "--budgets", "65", "--json"
    )
    assert code == 0, err
    (point,) = json.loads(out)["points"]
    assert point["queries"] == 65 and point["fidelity"] >= 0.999
    code, out, err = run(capsys, "steal", stored_model.id, "--attack", "equation-solving", "--budgets", "65",
                         "--policy", "rounded", "--decimals", "1")  # fmt: skip
    assert code == 0, err
    assert "Rounded probabilities (decimals = 1)" in out and "Tramèr et al. 2016" in out
    fidelity = float(out.split("fidelity=")[1].split()[0])
    assert fidelity < 0.9


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--decimals", "2"), "--decimals is not a parameter of the policy full"),
        (("--attack", "equation-solving", "--epochs", "3"), "--epochs is not a parameter of the attack"),
        (("--budgets", "100,50"), "must increase"),
        (("--policy", "rounded", "--decimals", "99"), "Decimals kept"),
    ],
)
def test_steal_refuses_bad_settings(
    tmp_home: Path,
    capsys: pytest.CaptureFixture[str],
    stored_model: ModelCard,
    args: tuple[str, ...],
    message: str,
) -> None:
    code, out, err = run(capsys, "steal", stored_model.id, *args)
    assert code == 2 and message in err and not out


def test_detached_steal_is_a_run_with_the_in_process_result(
    tmp_home: Path,
    capsys: pytest.CaptureFixture[str],
    stored_model: ModelCard,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DLSEC_WORKERS", "0")  # no worker processes: this test executes the run itself
    args = ("steal", stored_model.id, "--attack", "copycat", "--arch", "logreg", "--epochs", "2", "--budgets",
            "40,80", "--pool", "noise", "--seed", "3")  # fmt: skip
    code, out, err = run(capsys, *args, "--detach")
    assert code == 0, err
    run_id = out.strip()
    runs = RunStore(Store(tmp_home))
    queued = runs.get(run_id)
    assert queued.status == RunStatus.QUEUED and queued.study == "extraction"
    assert list(queued.model_ids) == [stored_model.id]
    assert serve(runs, max_runs=1, idle_exit_s=0, lower_priority=False, engine=in_process) == 1
    done = runs.get(run_id)
    assert done.status == RunStatus.DONE and done.result is not None
    assert [e["queries"] for e in runs.events(run_id) if e.get("type") == "point"] == [40, 80]
    code, out, err = run(capsys, *args, "--json")
    assert json.loads(out)["points"][-1]["fidelity"] == done.result["points"][-1]["fidelity"]


def test_steal_behind_a_rate_limit_from_an_uploaded_pool(
    tmp_home: Path, capsys: pytest.CaptureFixture[str], stored_model: ModelCard
) -> None:
    """200 queries at 100 per 60 s: one 60 s wait on the API's clock; the pool is the user's uploaded digits."""
    from dlsec_core.data.builtin import load_dataset

    digits = load_dataset("digits")
    Store().save_dataset(dataclasses.replace(digits, name="mine"))
    code, out, err = run(capsys, "steal", stored_model.id, "--attack", "copycat", "--arch", "logreg", "--epochs",
                         "1", "--budgets", "200", "--pool", "uploaded", "--pool-dataset", "mine",
                         "--rate-limit", "100", "--rate-window", "60")  # fmt: skip
    assert code == 0, err
    assert "your uploaded dataset 'mine'" in out
    assert (
        "rate limit: 100 queries per 60 s; waited 60 s (API clock), 100 answers came only after a wait" in out
    )
    code, out, err = run(capsys, "steal", stored_model.id, "--pool", "uploaded")
    assert code == 2 and "needs the name of an uploaded dataset" in err
