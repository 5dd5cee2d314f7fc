"""CLI command for federated learning: `federate [--dataset digits] [--clients 10] [--malicious 2 --attack
backdoor --aggregator median] [--local-dp] [--detach]`.

Every flag comes from the federated study's config metadata (`cli_flags.ConfigFlags`), so the CLI, the page's
form and the validator agree. Progress (one line per round) goes to stderr; a table of rounds to stdout, or the
study's JSON result with `--json`.
"""

from __future__ import annotations

import argparse
import json
import sys

from dlsec_core.cli_flags import ConfigFlags
from dlsec_core.cli_runs import AddCommand, submit_detached
from dlsec_core.store import Store
from dlsec_core.studies.base import StudyEvent, run_study
from dlsec_core.studies.federated import FederatedStudy, FederatedStudyConfig


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def cmd_federate(args: argparse.Namespace, store: Store) -> None:
    config = FederatedStudyConfig(**args.federation_flags.given(args, "federated"))
    if args.detach:
        submit_detached(store, "federated", config, as_json=args.json)
        return

    def show(event: StudyEvent) -> None:
        print(event.message, file=sys.stderr)

    outcome = run_study(FederatedStudy(), store, config, None if args.quiet else show)
    result = outcome.result
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(result["description"])
    print(f"{'round':>5}  {'test acc.':>9}  {'clients min-max':>15}  {'backdoor':>8}  malicious")
    for r in result["rounds"]:
        spread = f"{_pct(r['client_min'])}-{_pct(r['client_max'])}"
        print(
            f"{r['round']:>5}  {_pct(r['test_accuracy']):>9}  {spread:>15}  {_pct(r['backdoor_success']):>8}  "
            f"{','.join(map(str, r['malicious'])) or '-'}"
        )
    if result.get("privacy"):
        p = result["privacy"]
        print(f"client-level ε = {p['epsilon']:.3g} at δ = {p['delta']:g} ({p['accountant_label']})")
    if result.get("local_privacy"):
        lp = result["local_privacy"]
        print(
            f"local DP-SGD: example-level ε up to {lp['max_epsilon']:.3g} per client ({lp['accountant_label']})"
        )
    for note in result.get("notes", []):
        print(f"note: {note}")
    if "model_id" in result:
        print(f"stored as model {result['model_id']}")
    print(f"{result['seconds']:.1f} s")


def add_commands(add: AddCommand) -> None:
    fe = add(
        "federate",
        "federated learning over simulated clients: FedAvg or a robust aggregator, client-level DP, local DP-SGD, "
        "secure aggregation, malicious clients (label flipping, backdoor)",
    )
    fe.add_argument("--detach", action="store_true", help="queue as a run for the workers; print its id")
    fe.set_defaults(
        func=cmd_federate,
        federation_flags=ConfigFlags(fe, {"federated": FederatedStudyConfig}, what="federation"),
    )
