"""The Ray executor against a local Ray head on the loopback interface: a training and a sweep run as Ray tasks,
and their stored results equal the local executor's for the same seed (the oracle). Cluster nodes never write the
store: the models the task makes come back and are adopted with their ids."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from dlsec_core.execution.ray_executor import connect, on_ray
from dlsec_core.execution.worker import in_process, serve
from dlsec_core.runs import RunStatus, RunStore
from dlsec_core.store import ModelCard, Store
from dlsec_core.studies.sweep import SweepStudyConfig
from dlsec_core.studies.train import TrainStudyConfig
from tests.core.test_runs import FAST, comparable, submit


@pytest.fixture(scope="module")
def ray_head() -> Iterator[None]:
    connect(
        None,
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        object_store_memory=80 * 2**20,
    )
    yield
    ray.shutdown()


def test_ray_runs_equal_local_runs(ray_head: None, tmp_path: Path, stored_model: ModelCard) -> None:
    results = {}
    for engine in (in_process, on_ray):
        store = Store(tmp_path / engine.__name__)
        store.adopt(stored_model, Store().weights_bytes(stored_model.id))  # the same model in both stores
        runs = RunStore(store)
        train = submit(runs, "train", TrainStudyConfig(dataset="digits", arch="logreg", name="t", train=FAST))
        sweep = submit(
            runs, "sweep",
            SweepStudyConfig(model_ids=[stored_model.id], attack="pgd", attack_params={"steps": 5},
                             eps=[0.0, 0.1], n_images=32, seed=2, sanity_checks=False),
        )  # fmt: skip
        assert serve(runs, max_runs=2, lower_priority=False, engine=engine) == 2
        done = [runs.get(train), runs.get(sweep)]
        assert [r.status for r in done] == [RunStatus.DONE, RunStatus.DONE], [r.error for r in done]
        trained = done[0].result
        assert trained is not None
        card = store.get_card(trained["model_id"])  # the model made on Ray is in the submitting store
        model, _ = store.load_model(card.id)
        results[engine.__name__] = (
            [comparable(r.result) for r in done],
            [e for e in runs.events(sweep) if e["type"] == "point"],
            card.clean_accuracy,
        )
    local, remote = results["in_process"], results["on_ray"]
    assert local[0] == remote[0]
    assert [(p["eps"], p["accuracy"]) for p in local[1]] == [(p["eps"], p["accuracy"]) for p in remote[1]]
    assert local[2] == remote[2]


def test_ray_cancel_and_errors(ray_head: None, tmp_home: Path) -> None:
    store = Store(tmp_home)
    runs = RunStore(store)
    missing = submit(runs, "sweep", SweepStudyConfig(model_ids=["0123456789ab"], eps=[0.1], n_images=8))
    remote = submit(runs, "train", TrainStudyConfig(dataset="nope", arch="logreg", train=FAST))
    serve(runs, max_runs=2, lower_priority=False, engine=on_ray)
    assert runs.get(missing).status == RunStatus.FAILED
    failed = runs.get(remote)  # raised inside the Ray task: the user sees the study's own sentence
    assert failed.status == RunStatus.FAILED and failed.error == "There is no dataset named 'nope'."

    slow = submit(
        runs, "train", TrainStudyConfig(dataset="digits", arch="mlp", train={**FAST, "epochs": 300})
    )
    worker = threading.Thread(
        target=serve, args=(runs,), kwargs={"max_runs": 1, "lower_priority": False, "engine": on_ray}
    )
    worker.start()
    deadline = time.monotonic() + 120
    while not runs.events(slow) and time.monotonic() < deadline:
        time.sleep(0.1)
    runs.cancel(slow)
    worker.join(60)
    assert runs.get(slow).status == RunStatus.CANCELLED
    assert store.list_models() == []
