"""CLI command for workshops: `workshop prepare FILE` trains and scans every model a class needs, ahead of time;
`workshop plan FILE` says what prepare would do, queuing nothing (see `dlsec_core.workshop` for the file format)."""

from __future__ import annotations

import argparse
import json
import sys

from dlsec_core.access import INSTRUCTOR
from dlsec_core.cli_runs import AddCommand
from dlsec_core.errors import DlsecError
from dlsec_core.store import Store
from dlsec_core.workshop import load_workshop, plan, prepare


def cmd_workshop(args: argparse.Namespace, store: Store) -> None:
    workshop = load_workshop(args.file)
    if args.action == "plan":
        items = plan(store, workshop)
    else:
        if not args.quiet:
            print(f"Preparing {workshop.title!r}: {len(workshop.models)} model(s)", file=sys.stderr)
        items = prepare(
            store, workshop, owner=args.owner, timeout_s=args.timeout,
            on_progress=None if args.quiet else (lambda line: print(line, file=sys.stderr)),
        )  # fmt: skip
    if args.json:
        print(json.dumps([p.to_record() for p in items], indent=2))
    else:
        for p in items:
            print(f"{p.name:<28} {p.model_id or '-':<12}  training {p.training}; scan {p.scan}")
    failed = [p.name for p in items if p.failed]
    if failed:
        raise DlsecError(f"{len(failed)} model(s) were not prepared: {', '.join(failed)} (see above).")


def add_commands(add: AddCommand) -> None:
    w = add("workshop", "prepare a workshop: train and scan every model it lists, ahead of class")
    w.add_argument(
        "action", choices=["prepare", "plan"], help="plan: say what prepare would do, queue nothing"
    )
    w.add_argument("file", help="the workshop file (TOML), e.g. workshops/sample.toml")
    w.add_argument(
        "--owner", default=INSTRUCTOR, help=f"owner of the runs and models (default {INSTRUCTOR!r})"
    )
    w.add_argument("--timeout", type=float, help="prepare: stop waiting after this many seconds (runs go on)")
    w.set_defaults(func=cmd_workshop)
