"""CLI command for the security scan: `scan MODEL_ID [--preset quick|thorough] [--seed N] [--input-transform NAME
[--transform-bits N ...]] [--output-policy NAME [--policy-decimals N ...]] [--detach]`.

The scan's own flags are generated from `ScanStudyConfig`'s metadata; the transform's and the policy's settings from
theirs (`cli_flags.ConfigFlags`), so a setting the chosen transform or policy lacks is an error naming it.

Progress goes to stderr; one line per finding (severity, id, the sentence with its number) to stdout, or the
whole typed result as JSON with `--json` (the same JSON a stored scan run holds).
"""

from __future__ import annotations

import argparse
import json
import sys

from dlsec_core.cli_flags import ConfigFlags
from dlsec_core.cli_runs import AddCommand, submit_detached
from dlsec_core.defenses.transforms import TRANSFORMS
from dlsec_core.store import Store
from dlsec_core.studies.base import StudyEvent, run_study
from dlsec_core.studies.scan import NO_TRANSFORM, ScanResult, ScanStudy, ScanStudyConfig
from dlsec_core.theft.api import OUTPUT_POLICIES


def cmd_scan(args: argparse.Namespace, store: Store) -> None:
    transform = args.input_transform
    config = ScanStudyConfig(
        model_id=args.model, preset=args.preset, seed=args.seed, input_transform=transform,
        transform_params=args.transform_flags.given(args, None if transform == NO_TRANSFORM else transform),
        output_policy=args.output_policy, policy_params=args.policy_flags.given(args, args.output_policy),
    )  # fmt: skip
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
    served = config.transform_config()
    if served is not None:
        print(f"served behind: {served.describe()}")
    if result.preset == "thorough":
        print(f"API output policy: {config.policy_config().describe()}")
    for f in result.findings:
        atlas = f" [{', '.join(f.atlas_ids)}]" if f.atlas_ids else ""
        print(f"{f.severity.upper():<6}  {f.id}: {f.summary}{atlas}")
    print(f"worst: {result.worst}; {result.seconds:.1f} s")


def add_commands(add: AddCommand) -> None:
    sc = add("scan", "security scan of a stored model: graded, ATLAS-tagged findings")
    sc.add_argument("model", metavar="MODEL_ID", help="the model to scan (a stored model)")
    # --preset, --seed, --input-transform, --output-policy: generated from the scan's config (its options and help)
    ConfigFlags(sc, {"scan": ScanStudyConfig}, skip=("model_id",), what="scan")
    sc.set_defaults(preset="quick", seed=0, input_transform=NO_TRANSFORM, output_policy="full")
    transform = sc.add_argument_group(
        "input-transform parameters", "Generated from the transforms' settings (with --input-transform)."
    )
    policy = sc.add_argument_group(
        "output-policy parameters", "Generated from the policies' settings (with --output-policy)."
    )
    sc.set_defaults(
        transform_flags=ConfigFlags(transform, TRANSFORMS, prefix="transform-", what="input transform"),
        policy_flags=ConfigFlags(policy, OUTPUT_POLICIES, prefix="policy-", what="output policy"),
    )
    sc.add_argument("--detach", action="store_true", help="queue as a run for the workers; print its id")
    sc.set_defaults(func=cmd_scan)
