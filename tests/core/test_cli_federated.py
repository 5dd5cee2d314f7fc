"""`federate`: the federated study from the command line, in process and detached, with flags generated from the
study config's metadata. Oracle: the detached run's stored result equals the in-process one for the same seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dlsec_core.cli import main
from dlsec_core.execution.worker import in_process, serve
from dlsec_core.runs import RunStatus, RunStore
from dlsec_core.store import Store

ARGS = ("federate", "--dataset", "digits", "--arch", "logreg", "--clients", "5", "--rounds", "2",
        "--malicious", "1", "--attack", "backdoor", "--trigger", "2", "--aggregator", "median", "--seed", "3")  # fmt: skip


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_federate_prints_each_round_with_its_backdoor_success(
    tmp_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, *ARGS)
    assert code == 0, err
    assert "coordinate-wise median" in out and "1 of 5 clients malicious (backdoor" in out
    lines = [row for line in out.splitlines() if len(row := line.split()) == 5 and row[0].isdigit()]
    assert [int(line[0]) for line in lines] == [1, 2] and all(line[3].endswith("%") for line in lines)
    assert "round 2/2" in err and "backdoor success" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--malicious", "11"), "11 malicious clients but only 10 clients"),
        (("--aggregator", "krum", "--secure-aggregation"), "secure aggregation shows only their sum"),
        (("--trim", "0.5"), "Trimmed share"),
    ],
)
def test_federate_refuses_bad_settings(
    tmp_home: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    code, out, err = run(capsys, "federate", *args)
    assert code == 2 and message in err and not out


def test_detached_federate_is_a_run_with_the_in_process_result(
    tmp_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DLSEC_WORKERS", "0")  # no worker processes: this test executes the run itself
    code, out, err = run(capsys, *ARGS, "--detach")
    assert code == 0, err
    runs = RunStore(Store(tmp_home))
    run_id = out.strip()
    assert runs.get(run_id).status == RunStatus.QUEUED and runs.get(run_id).study == "federated"
    assert serve(runs, max_runs=1, idle_exit_s=0, lower_priority=False, engine=in_process) == 1
    done = runs.get(run_id)
    assert done.status == RunStatus.DONE and done.result is not None
    code, out, err = run(capsys, *ARGS, "--json", "--quiet")
    assert code == 0 and not err
    mine = json.loads(out)
    assert [r["test_accuracy"] for r in mine["rounds"]] == [r["test_accuracy"] for r in done.result["rounds"]]
    assert mine["backdoor_success"] == done.result["backdoor_success"]
