"""CLI command for the security scan: `scan MODEL_ID [--preset quick] [--seed N] [--detach]`.

Progress goes to stderr; one line per finding (severity, id, the sentence with its number) to stdout, or the
whole typed result as JSON with `--json` (the same JSON a stored scan run holds).
"""

from __future__ import annotations

import argparse
import json
import sys

from dlsec_core.cli_runs import AddCommand, submit_detached
from dlsec_core.store import Store
from dlsec_core.studies.base import StudyEvent, run_study
from dlsec_core.studies.scan import PRESETS, ScanResult, ScanStudy, ScanStudyConfig


def cmd_scan(args: argparse.Namespace, store: Store) -> None:
    config = ScanStudyConfig(model_id=args.model, preset=args.preset, seed=args.seed)
    if args.detach:
        submit_detached(store, "scan", config, as_json=args.json)
        return

    def show(event: StudyEvent) -> None:
        print(event.message, file=sys.stderr)

    outcome = run_study(ScanStudy(), store, config, None if args.quiet else show)
    if args.json:
        print(json.dumps(outcome.result, indent=2))
        return
    result = ScanResult.from_json(outcome.result)
    print(
        f"{result.model_name} ({result.model_id}) on {result.dataset}, {result.preset} scan, seed {result.seed}"
    )
    print(f"budgets: {result.eps_note}")
    for f in result.findings:
        atlas = f" [{', '.join(f.atlas_ids)}]" if f.atlas_ids else ""
        print(f"{f.severity.upper():<6}  {f.id}: {f.summary}{atlas}")
    print(f"worst: {result.worst}; {result.seconds:.1f} s")


def add_commands(add: AddCommand) -> None:
    sc = add("scan", "security scan of a stored model: graded, ATLAS-tagged findings")
    sc.add_argument("model", metavar="MODEL_ID", help="the model to scan (a stored model)")
    sc.add_argument(
        "--preset", default="quick", choices=list(PRESETS), help="quick: about a minute on 2 cores"
    )
    sc.add_argument("--seed", type=int, default=0, help="random starts of PGD and Square (default 0)")
    sc.add_argument("--detach", action="store_true", help="queue as a run for the workers; print its id")
    sc.set_defaults(func=cmd_scan)
