"""CLI commands for stored runs: `runs list/show/wait/cancel/retry/export/rm`, `worker`, and `--detach`.

A detached study is submitted as a run and executed by the local workers (started if none is alive); the command
prints the run id and returns at once. `runs wait <id>` follows it to the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from dlsec_core.errors import DlsecError, InvalidInputError
from dlsec_core.execution.local import SLOT_WAIT_S, ensure_workers, hold_slot
from dlsec_core.execution.worker import serve
from dlsec_core.runs import RunRecord, RunStatus, RunStore
from dlsec_core.store import Store
from dlsec_core.studies.base import StudyConfig
from dlsec_core.studies.catalog import submit

AddCommand = Callable[[str, str], argparse.ArgumentParser]


def submit_detached(store: Store, study_name: str, config: StudyConfig, *, as_json: bool) -> RunRecord:
    """Queue a run of a study, make sure local workers serve the store, print the run id."""
    run = submit(RunStore(store), study_name, config)
    ensure_workers(store)
    if as_json:
        print(json.dumps(run.to_record(), indent=2))
    else:
        print(run.id)
        print(f"queued {run.title}; follow it with: python -m dlsec_core runs wait {run.id}", file=sys.stderr)
    return run


def _show_run(runs: RunStore, run: RunRecord, as_json: bool) -> None:
    if as_json:
        print(json.dumps(runs.export_record(run.id), indent=2, default=str))
        return
    for k, v in run.to_record().items():
        if v is not None and v != []:
            print(f"{k}: {v}")
    print(f"config: {json.dumps(run.config, sort_keys=True)}")
    if run.result is not None:
        print(f"result: {json.dumps(run.result, sort_keys=True)[:2000]}")


def cmd_runs(args: argparse.Namespace, store: Store) -> None:
    runs = RunStore(store)
    runs.reap()
    action = args.action
    if action == "list":
        rows = [
            r.to_record() for r in runs.list_runs(study=args.study, status=args.status, model_id=args.model)
        ]
        if args.json:
            print(json.dumps(rows, indent=2))
        for row in rows if not args.json else []:
            print(
                f"{row['id']}  {row['status']:<11}  {row['progress']:>5.0%}  {row['study']:<8}  {row['title']}"
            )
        return
    if not args.run_id:
        raise InvalidInputError(f"`runs {action}` needs a run id (see `runs list`).")
    if action == "show":
        run = runs.get(args.run_id)
        _show_run(runs, run, args.json)
    elif action == "wait":
        run = _wait(runs, args.run_id, args.timeout, quiet=args.quiet)
        _show_run(runs, run, args.json)
        if run.status != RunStatus.DONE:
            raise DlsecError(f"Run {run.id} ended {run.status}: {run.error or run.message}")
    elif action == "cancel":
        run = runs.cancel(args.run_id)
        print(f"{run.id}: {'cancel requested' if run.is_active else run.status}")
    elif action == "retry":
        run = runs.retry(args.run_id)
        ensure_workers(store)
        print(run.id)
    elif action == "rm":
        runs.delete(args.run_id)
        print(f"deleted run {args.run_id}")
    elif action == "export":
        run = runs.get(args.run_id)
        dest = Path(args.out or ".").expanduser()
        dest.mkdir(parents=True, exist_ok=True)
        path = dest / f"run-{run.id}.json"
        payload = {**run.to_record(), "config": run.config, "result": run.result, "versions": run.versions,
                   "events": runs.events(run.id)}  # fmt: skip
        path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
        print(path)


def _wait(runs: RunStore, run_id: str, timeout: float | None, *, quiet: bool) -> RunRecord:
    deadline = None if timeout is None else time.monotonic() + timeout
    last = ""
    while True:
        run = runs.get(run_id)
        line = f"{run.status} {run.progress:.0%} {run.message}"
        if not quiet and line != last:
            print(line, file=sys.stderr)
            last = line
        if not run.is_active:
            return run
        if deadline is not None and time.monotonic() > deadline:
            raise DlsecError(f"Run {run_id} is still {run.status} after {timeout:g} s.")
        if run.status == RunStatus.QUEUED:  # queued by something that started no worker: start one (or none)
            ensure_workers(runs.store)
        time.sleep(0.5)
        runs.reap()


def cmd_worker(args: argparse.Namespace, store: Store) -> None:
    runs = RunStore(store)
    # Started by `ensure_workers` (`--slot-fd`): the slot's lock was taken for this process and is inherited.
    if args.slot is None or args.slot_fd is not None:
        n = serve(runs, idle_exit_s=args.idle_exit, max_runs=1 if args.once else None)
        if args.slot_fd is not None:
            os.close(args.slot_fd)  # the slot is free from here on
    else:
        with hold_slot(store, args.slot, wait_s=SLOT_WAIT_S) as mine:
            if not mine:
                return  # another worker serves this slot
            n = serve(runs, idle_exit_s=args.idle_exit, max_runs=1 if args.once else None)
    if args.slot is not None and runs.count_runs(status=RunStatus.QUEUED):
        # Queued while this worker was leaving: its submitter saw the slot taken and started nobody. A submitter
        # stores the run, then looks at the slots; this worker freed its slot, then looked at the queue: one of
        # the two sees the other, so no run is left without a worker.
        ensure_workers(store)
    if not args.quiet:
        print(f"worker executed {n} run(s)", file=sys.stderr)


def add_commands(add: AddCommand) -> None:
    r = add("runs", "stored runs: list, show, wait, cancel, retry, export, rm")
    r.add_argument("action", choices=["list", "show", "wait", "cancel", "retry", "export", "rm"])
    r.add_argument("run_id", nargs="?")
    r.add_argument("--study", help="list: only this study (train, sweep, ...)")
    r.add_argument("--status", choices=[s.value for s in RunStatus], help="list: only runs in this state")
    r.add_argument("--model", help="list: only runs that touch this model id")
    r.add_argument("--timeout", type=float, help="wait: give up after this many seconds")
    r.add_argument("--out", help="export: folder for run-<id>.json (default: here)")
    r.set_defaults(func=cmd_runs)
    w = add("worker", "execute queued runs (the app starts workers itself; use this for workers run by hand)")
    w.add_argument("--slot", type=int, help="hold this worker slot (exit if another worker keeps it)")
    w.add_argument(
        "--slot-fd", type=int, help=argparse.SUPPRESS
    )  # the slot's lock, inherited from ensure_workers
    w.add_argument("--idle-exit", type=float, help="exit after this many idle seconds (default: never)")
    w.add_argument("--once", action="store_true", help="execute one run, then exit")
    w.set_defaults(func=cmd_worker)
