"""CLI command for model theft: `steal MODEL_ID` runs the extraction study (in process, or `--detach`).

The policy's and the attack's flags are generated from their configs (`--decimals`, `--sigma`, `--labels`,
`--arch`, `--epochs`, ...); a flag the chosen policy or attack does not have is an error naming it.
Progress goes to stderr; the curve (queries, accuracy, fidelity) to stdout, or JSON with `--json`.
"""

from __future__ import annotations

import argparse
import json
import sys

from dlsec_core.cli_flags import ConfigFlags
from dlsec_core.cli_runs import AddCommand, submit_detached
from dlsec_core.errors import InvalidInputError
from dlsec_core.store import Store
from dlsec_core.studies.base import StudyEvent, run_study
from dlsec_core.studies.theft import ExtractionStudy, ExtractionStudyConfig, ExtractionStudyResult
from dlsec_core.theft.api import OUTPUT_POLICIES
from dlsec_core.theft.extraction import EXTRACTION_ATTACKS, PoolKind


def _budgets(text: str) -> list[int]:
    try:
        return [int(t.replace("_", "")) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InvalidInputError(
            f"Give the budgets as whole numbers separated by commas, got {text!r}."
        ) from None


def cmd_steal(args: argparse.Namespace, store: Store) -> None:
    config = ExtractionStudyConfig(
        model_id=args.model, policy=args.policy, policy_params=args.policy_flags.given(args, args.policy),
        attack=args.attack, attack_params=args.attack_flags.given(args, args.attack), pool=args.pool,
        pool_dataset=args.pool_dataset, budgets=_budgets(args.budgets), seed=args.seed, store_surrogate=args.store,
        rate_limit=args.rate_limit, rate_window_s=args.rate_window,
    )  # fmt: skip
    if args.detach:
        submit_detached(store, "extraction", config, as_json=args.json)
        return
    quiet = args.quiet

    def show(event: StudyEvent) -> None:
        if not quiet and (event.payload is not None or "epoch" not in event.message):
            print(event.message, file=sys.stderr)

    outcome = run_study(ExtractionStudy(), store, config, show)
    result = ExtractionStudyResult.from_json(outcome.result)
    if args.json:
        print(json.dumps(outcome.result, indent=2))
        return
    print(f"victim: {result.victim_name} ({result.victim_id}), accuracy {result.victim_accuracy:.4f}")
    print(f"API: {result.policy_description}; honest users' accuracy through it {result.api_accuracy:.4f}")
    print(f"attack: {result.attack_description}")
    print(f"pool: {result.pool_description}")
    for p in result.points:
        print(
            f"queries={p.queries}  accuracy={p.accuracy:.4f}  fidelity={p.fidelity:.4f}  seconds={p.seconds:.1f}"
        )
    if result.rate_limit:
        print(
            f"rate limit: {result.rate_limit}; waited {result.throttled_s:,.0f} s (API clock), "
            f"{result.throttled_queries:,} answers came only after a wait, {result.rate_limit_refusals:,} batches refused"
        )
    if result.surrogate_model_id:
        print(f"stolen model stored as {result.surrogate_model_id}")


def add_commands(add: AddCommand) -> None:
    st = add("steal", "model extraction through a prediction API: accuracy and fidelity vs. queries")
    st.add_argument("model", metavar="MODEL_ID", help="the victim (a stored model)")
    st.add_argument("--policy", default="full", choices=list(OUTPUT_POLICIES), help="what the API answers")
    st.add_argument("--attack", default="knockoff", choices=list(EXTRACTION_ATTACKS))
    st.add_argument(
        "--pool", default="same", choices=[p.value for p in PoolKind], help="the attacker's queries"
    )
    st.add_argument(
        "--pool-dataset", default="", metavar="NAME", help="an uploaded dataset (with --pool uploaded)"
    )
    st.add_argument(
        "--rate-limit", type=int, default=0, metavar="N", help="at most N answers per window (0 = none)"
    )
    st.add_argument(
        "--rate-window", type=float, default=60.0, metavar="SECONDS", help="the rate-limit window"
    )
    st.add_argument(
        "--budgets", default="250,500,1000,2000,4000", help="comma-separated query counts, increasing"
    )
    st.add_argument("--seed", type=int, default=0)
    st.add_argument("--store", action="store_true", help="store the last surrogate as a model")
    st.add_argument("--detach", action="store_true", help="queue as a run for the workers; print its id")
    policy = st.add_argument_group("output-policy parameters", "Generated from the policies' settings.")
    attack = st.add_argument_group("attack parameters", "Generated from the attacks' settings.")
    st.set_defaults(
        func=cmd_steal,
        policy_flags=ConfigFlags(policy, OUTPUT_POLICIES, what="policy"),
        attack_flags=ConfigFlags(attack, EXTRACTION_ATTACKS, what="attack"),
    )
