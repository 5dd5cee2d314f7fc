"""The Ray executor: studies run as Ray tasks on a cluster; only the submitting side touches the store.

`DLSEC_EXECUTOR=ray` (and `RAY_ADDRESS=<head>:<port>`) makes every worker a dispatcher: it claims a run from the
store as a local worker would, then ships the study to Ray: the config as JSON, the cards and weights of the models
it reads and any uploaded dataset it needs, through Ray's object store. The task executes the very same study code
on a throw-away store in a temporary folder and streams its events back (a Ray streaming generator); at the end it
returns the cards and weights of the models it made, which the dispatcher adopts into the real store with the same
ids. So cluster nodes need no shared disk and never write the store; the store stays behind the web servers.

Each task declares `num_cpus=1` (Ray then gives torch one thread). Cancelling the run cancels the Ray task.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

from dlsec_core.data.builtin import DATASETS, Dataset
from dlsec_core.errors import DlsecError
from dlsec_core.store import ModelCard, Store
from dlsec_core.studies.base import Study, StudyConfig, StudyEvent, StudyOutcome

TASK_CPUS = 1.0
_PACKAGE_DIR = Path(__file__).resolve().parents[1]
_remote: Any = None


def connect(address: str | None = None, **init_kwargs: Any) -> None:
    """Connect this process to Ray once (`address` or `$RAY_ADDRESS`; None starts a local Ray), shipping the
    `dlsec_core` package to the cluster's workers so they need no install of their own."""
    import ray

    if ray.is_initialized():
        return
    ray.init(
        address=address or os.environ.get("RAY_ADDRESS") or None,
        runtime_env={"py_modules": [str(_PACKAGE_DIR)]},
        log_to_driver=False,
        **init_kwargs,
    )


def _execute_remote(
    study_name: str,
    config_json: dict[str, Any],
    models: list[tuple[ModelCard, bytes]],
    datasets: list[Dataset],
) -> Iterator[tuple[Any, ...]]:
    """The Ray task (a streaming generator): ("event", StudyEvent)..., then ("outcome", StudyOutcome, new models)."""
    from dlsec_core.studies.catalog import get_study

    with tempfile.TemporaryDirectory(prefix="dlsec-ray-") as home:
        store = Store(home)
        for card, weights in models:
            store.adopt(card, weights)
        for dataset in datasets:
            store.save_dataset(dataset)
        study = get_study(study_name)
        work = study.execute(store, study.config_type.from_json(config_json))
        while True:
            try:
                event = next(work)
            except StopIteration as stop:
                outcome: StudyOutcome = stop.value
                break
            yield ("event", event)
        shipped = {card.id for card, _ in models}
        made = [(store.get_card(i), store.weights_bytes(i)) for i in outcome.model_ids if i not in shipped]
        yield ("outcome", outcome, made)


def _remote_function() -> Any:
    global _remote
    if _remote is None:
        import ray

        _remote = ray.remote(num_cpus=TASK_CPUS, max_retries=0)(_execute_remote)
    return _remote


def _shipment(
    store: Store, study: Study[Any], config: StudyConfig
) -> tuple[list[tuple[ModelCard, bytes]], list[Dataset]]:
    """The models a study reads (cards and checksum-verified weights) and the uploaded datasets it needs."""
    models = [(store.get_card(i), store.weights_bytes(i)) for i in study.model_ids(config)]
    names = {card.dataset for card, _ in models} | {getattr(config, "dataset", None)}
    uploaded = set(store.list_datasets())
    datasets = [
        store.load_dataset(n) for n in sorted(n for n in names if n and n not in DATASETS and n in uploaded)
    ]
    return models, datasets


def on_ray(study: Study[Any], store: Store, config: StudyConfig) -> Generator[StudyEvent, None, StudyOutcome]:
    """An execution engine (see `worker.Engine`): the study runs as a Ray task, its events stream back here."""
    import ray

    connect()
    models, datasets = _shipment(store, study, config)
    stream = _remote_function().remote(study.name, config.to_json(), models, datasets)
    finished = False
    try:
        for ref in stream:
            try:
                item = ray.get(ref)
            except (
                ray.exceptions.RayTaskError
            ) as err:  # the study's own error, with its sentence for the user
                if isinstance(err.cause, DlsecError):
                    raise err.cause from None
                raise
            if item[0] == "event":
                yield item[1]
                continue
            _, outcome, made = item
            for card, weights in made:
                store.adopt(card, weights)
            finished = True
            return outcome
        raise RuntimeError("the Ray task ended without an outcome")
    finally:
        if not finished:  # cancelled or failed here: stop the task on the cluster too
            ray.cancel(stream, force=True)
