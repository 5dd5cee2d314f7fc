"""Stored runs and their executor: the study registry's contract, cancel, a killed worker, the schema migration.

Oracles: a study executed by a worker gives the same result as the same study run in this process with the same
seed; SQLite's own `PRAGMA integrity_check` after a worker is killed mid-write; a home written by the previous
schema (tests/fixtures/home_schema1, made by the code of commit 20ceb9e) opens with its model intact.
"""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dlsec_core.errors import InvalidInputError, NotFoundError
from dlsec_core.execution.local import ensure_workers, live_workers
from dlsec_core.execution.worker import execute, serve
from dlsec_core.runs import RunStatus, RunStore
from dlsec_core.store import SCHEMA_VERSION, ModelCard, Store
from dlsec_core.studies import catalog
from dlsec_core.studies.audit import AuditStudyConfig
from dlsec_core.studies.base import Study, StudyConfig, StudyEvent, StudyOutcome, run_study
from dlsec_core.studies.catalog import STUDIES, get_study
from dlsec_core.studies.certification import CertificationStudyConfig
from dlsec_core.studies.detection import DetectionStudyConfig
from dlsec_core.studies.federated import FederatedStudyConfig
from dlsec_core.studies.frontier import FrontierStudyConfig
from dlsec_core.studies.gradleak import GradLeakStudyConfig
from dlsec_core.studies.inversion import InversionStudyConfig
from dlsec_core.studies.membership import MembershipStudyConfig
from dlsec_core.studies.ownership import OwnershipStudyConfig
from dlsec_core.studies.scan import ScanStudyConfig
from dlsec_core.studies.sweep import SweepStudyConfig
from dlsec_core.studies.theft import ExtractionStudyConfig
from dlsec_core.studies.train import TrainStudyConfig

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_HOME = ROOT / "tests" / "fixtures" / "home_schema1"
FAST = {"epochs": 2, "lr": 0.05, "shift": 0, "seed": 3}


@dataclass(frozen=True, kw_only=True)
class _NoConfig(StudyConfig):
    pass


def _watermarked_owner() -> ModelCard:
    """A tiny watermarked model (20 keys) in the test's store (`DLSEC_HOME`), the owner of the ownership example."""
    from dlsec_core.theft.watermark import WatermarkRecipe
    from dlsec_core.training.loop import TrainConfig, run_to_end
    from dlsec_core.workflows import train_and_store

    recipe = WatermarkRecipe(keys=20)
    config = TrainConfig(**FAST)
    return run_to_end(train_and_store(Store(), dataset="digits", arch="logreg", config=config, recipe=recipe))


def example_config(study: str, card: ModelCard) -> StudyConfig:
    """A tiny config per registered study (a study without one here fails `test_every_study_has_an_example`)."""
    examples: dict[str, StudyConfig] = {
        "train": TrainStudyConfig(dataset="digits", arch="logreg", name="tiny", train=FAST),
        "sweep": SweepStudyConfig(
            model_ids=[card.id], attack="fgsm", eps=[0.0, 0.1, 0.3], n_images=64, seed=1, sanity_checks=False
        ),
        "detection": DetectionStudyConfig(
            model_id=card.id,
            squeezers=[{"kind": "bit_depth", "size": 4}],
            attack="fgsm",
            eps=[0.0, 0.2],
            n_images=40,
            adaptive_images=20,
            plain_steps=5,
            adaptive_steps=5,
            adaptive_restarts=1,
            seed=1,
        ),
        "certification": CertificationStudyConfig(
            model_id=card.id, sigma=0.25, n_images=4, n0=10, n=40, pgd_steps=2, eot_samples=2, draws=2, seed=1
        ),
        "membership": MembershipStudyConfig(model_ids=[card.id], attack="loss", n=50),
        "inversion": InversionStudyConfig(model_ids=[card.id], classes=[0, 3], inversion={"steps": 10}),
        "audit": AuditStudyConfig(
            dataset="digits",
            arch="logreg",
            recipe_params={"target_epsilon": 4.0},
            train={**FAST, "epochs": 1},
            audit={"canaries": 40},
            control=True,
        ),
        "frontier": FrontierStudyConfig(
            dataset="digits", arch="logreg", targets=[4.0], train={**FAST, "epochs": 1}
        ),
        "extraction": ExtractionStudyConfig(
            model_id=card.id,
            attack="copycat",
            attack_params={"arch": "logreg", "epochs": 2},
            budgets=[30, 60],
            store_surrogate=True,
            rate_limit=40,
            seed=2,
        ),
        # the stored (standard) model as the suspect of a tiny watermarked owner: the watermark is not found
        "ownership": OwnershipStudyConfig(
            owner_id=_watermarked_owner().id,
            suspect_id=card.id,
            null_models=2,
            null_epochs=1,
            fine_tune_epochs=1,
            prune=[0.5],
            steal=["copycat"],
            steal_queries=60,
            steal_epochs=1,
            seed=1,
        ),
        "federated": FederatedStudyConfig(
            dataset="digits",
            arch="logreg",
            clients=4,
            rounds=2,
            fraction=0.5,
            secure_aggregation=True,
            malicious=1,
            attack="backdoor",
            trigger=2,
            clip=1.0,
            noise_multiplier=1.0,
            store_model=True,
            seed=1,
        ),
        "gradleak": GradLeakStudyConfig(
            dataset="digits", attack="idlg", batch_size=2, steps=3, events=2, seed=1
        ),
        "scan": ScanStudyConfig(model_id=card.id, preset="quick", seed=1),
    }
    return examples[study]


def comparable(result: dict[str, Any]) -> Any:
    """A result without what legitimately differs between two runs (timings, new model ids)."""
    if isinstance(result, dict):
        return {
            k: comparable(v)
            for k, v in result.items()
            if not (any(t in k for t in ("seconds", "elapsed", "model_id")) or k.endswith("_s"))
        }
    if isinstance(result, list):
        return [comparable(v) for v in result]
    return result


def stop_workers(home: Path) -> None:
    """Stop the worker processes started for one store (their command line names its home)."""
    subprocess.run(["pkill", "-f", f"dlsec_core --home {home} worker"], check=False)


def submit(runs: RunStore, study: str, config: StudyConfig) -> str:
    return catalog.submit(runs, study, config).id


def test_every_study_has_an_example(stored_model: ModelCard) -> None:
    for name in STUDIES:
        example_config(name, stored_model)


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_study_contract(name: str, tmp_home: Path, stored_model: ModelCard) -> None:
    """Config round-trips through JSON; a worker's result equals an in-process run's with the same seed; the
    run records its events, versions and models."""
    store = Store(tmp_home)
    runs = RunStore(store)
    study = get_study(name)
    config = example_config(name, stored_model)
    assert study.config_type.from_json(config.to_json()) == config

    run_id = submit(runs, name, config)
    claimed = runs.claim("test:1")
    assert claimed is not None and claimed.id == run_id and claimed.status == RunStatus.RUNNING
    done = execute(runs, claimed)
    assert done.status == RunStatus.DONE, done.error
    assert done.progress == 1.0 and done.result is not None and done.finished_at is not None
    assert {"torch", "opacus", "python"} <= set(done.versions)
    assert runs.events(run_id), "a study reports at least one event"

    again = run_study(study, store, study.config_type.from_json(done.config))
    assert comparable(again.result) == comparable(done.result)
    for model_id in again.model_ids:
        assert model_id in {c.id for c in store.list_models()}
    assert set(done.model_ids) >= set(study.model_ids(config))
    stored = {p.name: p.read_bytes() for p in runs.artifacts(run_id)}
    assert stored.keys() == again.artifacts.keys(), "the worker writes every artifact the study returns"


class _ArtifactStudy(Study[_NoConfig]):
    name, title, config_type = "artifact-test", "Artifact test", _NoConfig

    def execute(self, store: Store, config: _NoConfig) -> Generator[StudyEvent, None, StudyOutcome]:
        yield StudyEvent(0.5, "half")
        return StudyOutcome(result={"ok": True}, artifacts={"a.bin": b"\x00\x01", "b.json": b"{}"})


def test_artifacts_are_written_before_the_run_is_done(
    tmp_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(STUDIES, _ArtifactStudy.name, _ArtifactStudy())
    runs = RunStore(Store(tmp_home))
    run_id = submit(runs, _ArtifactStudy.name, _NoConfig())
    claimed = runs.claim("test:1")
    assert claimed is not None
    assert execute(runs, claimed).status == RunStatus.DONE
    assert {p.name: p.read_bytes() for p in runs.artifacts(run_id)} == {"a.bin": b"\x00\x01", "b.json": b"{}"}


def test_train_run_links_its_new_model(tmp_home: Path) -> None:
    runs = RunStore(Store(tmp_home))
    run_id = submit(
        runs, "train", TrainStudyConfig(dataset="digits", arch="logreg", name="linked", train=FAST)
    )
    done = serve(runs, max_runs=1, lower_priority=False)
    assert done == 1
    run = runs.get(run_id)
    (model_id,) = run.model_ids
    assert run.result is not None and run.result["model_id"] == model_id
    assert [r.id for r in runs.list_runs(model_id=model_id)] == [run_id]
    assert runs.latest("train", model_id=model_id) == run
    epochs = [e for e in runs.events(run_id) if e["type"] == "train" and e["kind"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2]


def test_bad_configs_fail_at_submission_with_every_problem_named() -> None:
    with pytest.raises(InvalidInputError, match="bogus, wrong"):
        TrainStudyConfig.from_json({"dataset": "digits", "bogus": 1, "wrong": 2})
    with pytest.raises(InvalidInputError):
        SweepStudyConfig(model_ids=[], eps=[0.1])
    with pytest.raises(InvalidInputError):
        SweepStudyConfig(model_ids=["abc"], eps=[float("nan")])
    with pytest.raises(NotFoundError):
        get_study("nope")


def test_cancel_queued_and_running(tmp_home: Path) -> None:
    """A queued run cancelled never starts; a running one stops at its next event and stores nothing."""
    store = Store(tmp_home)
    runs = RunStore(store)
    slow = TrainStudyConfig(dataset="digits", arch="mlp", name="never", train={**FAST, "epochs": 60})
    queued = submit(runs, "train", slow)
    assert runs.cancel(queued).status == RunStatus.CANCELLED
    assert runs.claim("test:1") is None

    run_id = submit(runs, "train", slow)
    claimed = runs.claim("test:1")
    assert claimed is not None
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(execute(runs, claimed, beat_every_s=0.1)))
    t.start()
    deadline = time.monotonic() + 60
    while not runs.events(run_id) and time.monotonic() < deadline:  # wait for the first epoch
        time.sleep(0.05)
    runs.cancel(run_id)
    t.join(60)
    assert out and out[0].status == RunStatus.CANCELLED
    assert store.list_models() == [], "a cancelled training stores no model"
    assert runs.list_runs(status=RunStatus.DONE) == []
    with pytest.raises(InvalidInputError):
        runs.retry(submit(runs, "train", slow))  # queued: nothing to retry
    assert runs.retry(run_id).status == RunStatus.QUEUED


def _wait_for(predicate: Any, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


def test_killed_worker_interrupts_the_run_and_retry_finishes_it(tmp_home: Path) -> None:
    store = Store(tmp_home)
    runs = RunStore(store)
    run_id = submit(
        runs,
        "train",
        TrainStudyConfig(dataset="digits", arch="mlp", name="killed", train={**FAST, "epochs": 200}),
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "dlsec_core", "--home", str(tmp_home), "worker", "--once", "--quiet"], cwd=ROOT
    )
    try:
        _wait_for(lambda: runs.get(run_id).progress > 0.01)
        worker.send_signal(signal.SIGKILL)
        worker.wait(30)
    finally:
        worker.kill()
    assert runs.get(run_id).status == RunStatus.RUNNING  # nobody has looked yet
    assert runs.reap() == [run_id]
    interrupted = runs.get(run_id)
    assert interrupted.status == RunStatus.INTERRUPTED and interrupted.error
    assert store.list_models() == []
    with sqlite3.connect(store.db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    retry = runs.retry(run_id)
    assert retry.retry_of == run_id and retry.config == interrupted.config
    # the retry, shortened: same study, a config a test can afford
    runs.cancel(retry.id)
    quick = submit(runs, "train", TrainStudyConfig(dataset="digits", arch="mlp", name="retried", train=FAST))
    serve(runs, max_runs=1, lower_priority=False)
    assert runs.get(quick).status == RunStatus.DONE
    with pytest.raises(InvalidInputError):
        runs.delete(submit(runs, "train", TrainStudyConfig(dataset="digits", arch="logreg", train=FAST)))
    runs.delete(run_id)
    with pytest.raises(NotFoundError):
        runs.get(run_id)


def test_stale_heartbeat_is_interrupted(tmp_home: Path) -> None:
    runs = RunStore(Store(tmp_home))
    run_id = submit(runs, "train", TrainStudyConfig(dataset="digits", arch="logreg", train=FAST))
    assert runs.claim("elsewhere:123") is not None  # a worker on another machine
    assert runs.reap(stale_after_s=60) == []
    time.sleep(0.05)
    assert runs.reap(stale_after_s=0.01) == [run_id]
    # a worker that comes back late cannot overwrite the verdict
    assert runs.finish(run_id, RunStatus.DONE, result={}).status == RunStatus.INTERRUPTED


def test_local_workers_start_once_per_slot_and_execute(
    tmp_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DLSEC_WORKERS", "1")
    store = Store(tmp_home)
    runs = RunStore(store)
    run_id = submit(runs, "train", TrainStudyConfig(dataset="digits", arch="logreg", train=FAST))
    assert ensure_workers(store, idle_exit_s=20) == [0]
    try:
        _wait_for(lambda: live_workers(store) == 1, 60)
        assert ensure_workers(store, idle_exit_s=20) == [], "a live worker holds its slot"
        _wait_for(lambda: not runs.get(run_id).is_active)
        assert runs.get(run_id).status == RunStatus.DONE
    finally:
        stop_workers(tmp_home)


def test_cli_detach_then_wait(tmp_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dlsec_core.cli import main

    assert main(["--home", str(tmp_home), "train", "--dataset", "digits", "--arch", "logreg", "--epochs", "2",
                 "--detach", "--quiet"]) == 0  # fmt: skip
    run_id = capsys.readouterr().out.strip()
    try:
        assert main(["--home", str(tmp_home), "runs", "wait", run_id, "--timeout", "120", "--json"]) == 0
        assert '"status": "done"' in capsys.readouterr().out
        assert main(["--home", str(tmp_home), "runs", "list", "--study", "train"]) == 0
        assert run_id in capsys.readouterr().out
        assert main(["--home", str(tmp_home), "runs", "export", run_id, "--out", str(tmp_home / "out")]) == 0
        assert (tmp_home / "out" / f"run-{run_id}.json").exists()
        assert main(["--home", str(tmp_home), "runs", "show", "000000000000"]) == 2
    finally:
        stop_workers(tmp_home)


def test_a_home_written_by_schema_1_is_upgraded(tmp_path: Path) -> None:
    home = tmp_path / "old_home"
    shutil.copytree(FIXTURE_HOME, home)
    with sqlite3.connect(home / "dlsec.sqlite3") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    store = Store(home)
    with sqlite3.connect(store.db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    (card,) = store.list_models()
    assert card.name == "made-by-schema-1"
    model, _ = store.load_model(card.id)
    assert sum(p.numel() for p in model.parameters()) == card.num_parameters
    runs = RunStore(store)
    assert runs.list_runs() == []
    run = submit(
        runs, "sweep", SweepStudyConfig(model_ids=[card.id], eps=[0.0, 0.1], n_images=16, sanity_checks=False)
    )
    assert [r.id for r in runs.list_runs(model_id=card.id)] == [run]
    Store(home)  # opening again is a no-op


def test_sweep_study_takes_a_transfer_surrogate_by_id(tmp_home: Path, stored_model: ModelCard) -> None:
    """Oracle: a transfer attack whose surrogate is the target itself is white-box FGSM."""
    from dlsec_core.attacks.base import get_attack
    from dlsec_core.studies.sweep import attack_params

    store = Store(tmp_home)
    common = {"model_ids": [stored_model.id], "eps": [0.0, 0.1, 0.2], "n_images": 64, "sanity_checks": False}
    transfer = get_attack("transfer", inner="fgsm", surrogate=store.load_model(stored_model.id)[0])
    params = attack_params(transfer)
    assert "surrogate" not in params and "eps" not in params
    via_surrogate = SweepStudyConfig(
        attack="transfer", attack_params=params, surrogate_id=stored_model.id, **common
    )
    assert get_study("sweep").model_ids(via_surrogate) == [stored_model.id, stored_model.id]
    white_box = SweepStudyConfig(attack="fgsm", **common)
    accuracies = [
        [r["accuracy"] for r in run_study(get_study("sweep"), store, c).result["records"]]
        for c in (via_surrogate, white_box)
    ]
    assert accuracies[0] == accuracies[1]
    assert accuracies[0][0] > accuracies[0][-1]
