"""CLI command for gradient inversion: `gradleak [--dataset digits] [--attack idlg] [--defense dp] ... [--detach]`.

Every setting of the experiment is a flag generated from `GradLeakStudyConfig`. Progress goes to stderr; one line
per image (true and recovered label, PSNR, SSIM) to stdout, or the stored result as JSON with `--json`. `--out DIR`
writes originals.npy and reconstructions.npy ((B, C, H, W) float32 in [0, 1]), as a stored run keeps them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dlsec_core.cli_flags import ConfigFlags
from dlsec_core.cli_runs import AddCommand, submit_detached
from dlsec_core.errors import InvalidInputError
from dlsec_core.store import Store
from dlsec_core.studies.base import StudyEvent, run_study
from dlsec_core.studies.gradleak import GradLeakStudy, GradLeakStudyConfig


def cmd_gradleak(args: argparse.Namespace, store: Store) -> None:
    config = GradLeakStudyConfig(**args.gradleak_flags.given(args, "gradleak"))
    if args.detach:
        if args.out:
            raise InvalidInputError(
                "--out writes the images of a run done here; a detached run keeps them itself."
            )
        submit_detached(store, "gradleak", config, as_json=args.json)
        return

    def show(event: StudyEvent) -> None:
        print(event.message, file=sys.stderr)

    outcome = run_study(GradLeakStudy(), store, config, None if args.quiet else show)
    if args.out:
        folder = Path(args.out)
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in outcome.artifacts.items():
            (folder / name).write_bytes(data)
    result = outcome.result
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"# {result['description']}")
    print("image  label  recovered  PSNR_dB  SSIM")
    for i, (label, psnr, ssim) in enumerate(
        zip(result["true_labels"], result["psnr"], result["ssim"], strict=True)
    ):
        recovered = result["recovered_labels"][i] if i < len(result["recovered_labels"]) else "-"
        print(f"{i:>5}  {label:>5}  {recovered!s:>9}  {float(psnr):>7.2f}  {ssim:.3f}")
    print(f"# labels recovered (as a multiset): {result['labels_recovered']}; {result['seconds']:.1f} s")


def add_commands(add: AddCommand) -> None:
    gl = add(
        "gradleak", "gradient inversion (DLG, iDLG, Inverting Gradients) of one federated client's update"
    )
    group = gl.add_argument_group("experiment settings", "Generated from the study's settings.")
    gl.set_defaults(gradleak_flags=ConfigFlags(group, {"gradleak": GradLeakStudyConfig}, what="gradleak"))
    gl.add_argument("--out", help="folder for originals.npy and reconstructions.npy")
    gl.add_argument("--detach", action="store_true", help="queue as a run for the workers; print its id")
    gl.set_defaults(func=cmd_gradleak)
