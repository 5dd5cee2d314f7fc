"""`gradleak`: gradient inversion from the command line, in process (a table and the .npy images) and detached.
Oracles: iDLG recovers an undefended digit (PSNR >= 25 dB, the true label) and the written images are the ones the
PSNR was computed on; client DP at the default noise defeats it; the detached run's result equals the in-process one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dlsec_core.cli import main
from dlsec_core.execution.worker import in_process, serve
from dlsec_core.federated.inversion import psnr
from dlsec_core.runs import RunStatus, RunStore
from dlsec_core.store import Store


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_gradleak_prints_a_table_and_writes_the_images(
    tmp_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "gradleak", "--steps", "20", "--seed", "2", "--out", str(tmp_path))
    assert code == 0, err
    assert "step 20/20" in err and "iDLG (Zhao et al. 2020" in out
    row = out.splitlines()[2].split()
    assert row[1] == row[2]  # the label, recovered
    originals = np.load(tmp_path / "originals.npy")
    reconstructions = np.load(tmp_path / "reconstructions.npy")
    measured = float(psnr(torch.from_numpy(originals), torch.from_numpy(reconstructions))[0])
    assert float(row[3]) == pytest.approx(measured, abs=0.01) and measured >= 25.0

    code, out, err = run(
        capsys, "gradleak", "--steps", "20", "--seed", "2", "--defense", "dp", "--json", "--quiet"
    )
    assert code == 0 and err == ""
    result = json.loads(out)
    assert float(result["psnr"][0]) <= 15.0 and "client DP" in result["description"]


def test_gradleak_detached_equals_in_process(
    tmp_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DLSEC_WORKERS", "0")  # no worker processes: this test executes the run itself
    args = ("gradleak", "--batch-size", "2", "--steps", "3", "--quiet")
    code, out, err = run(capsys, *args, "--detach")
    assert code == 0, err
    run_id = out.strip()
    runs = RunStore(Store(tmp_home))
    assert runs.get(run_id).study == "gradleak"
    assert serve(runs, max_runs=1, idle_exit_s=0, lower_priority=False, engine=in_process) == 1
    code, out, err = run(capsys, *args, "--json")
    here = json.loads(out)
    done = runs.get(run_id)
    assert done.status == RunStatus.DONE and done.result is not None
    assert done.result["psnr"] == here["psnr"] and done.result["recovered_labels"] == here["recovered_labels"]


def test_gradleak_refuses_bad_settings(tmp_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "gradleak", "--batch-size", "9")
    assert code != 0 and "Client batch size" in err
