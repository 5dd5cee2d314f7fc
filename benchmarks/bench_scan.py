"""Security-scan benchmark: wall time of the quick and thorough scans of the default cnn (issue "Automated security
assessment": quick <= 60 s on 2 cores).

The model is the default `cnn` trained on `mnist5k` with the default `TrainConfig` (10 epochs, seed 0), stored in a
temporary store; each preset scans it once, in process (`run_study`, as a worker does), with the given torch
threads. Besides the total, the time between one finding's event and the next says what each part costs (a
finding's time is the work done since the previous finding: the evasion findings are emitted together after
every attack ran, so the first one carries the time of both PGD budgets, Square and the checks). Times are wall clock on this machine with whatever
else was running: the 1/5/15-minute load averages before and after are recorded next to them.

    python benchmarks/bench_scan.py [--presets quick,thorough] [--threads 2] [--transform bit-depth] [--json PATH]

The script always exits 0; a missed target is printed as "TARGET MISSED".
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/bench_scan.py` puts benchmarks/, not the root, on the path
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from _common import cpu_model, load_average, write_report  # noqa: E402

from dlsec_core.store import Store  # noqa: E402
from dlsec_core.studies.base import StudyEvent, run_study  # noqa: E402
from dlsec_core.studies.scan import NO_TRANSFORM, PRESETS, ScanResult, ScanStudy, ScanStudyConfig  # noqa: E402
from dlsec_core.training.loop import TrainConfig, run_to_end  # noqa: E402
from dlsec_core.workflows import train_and_store  # noqa: E402

QUICK_TARGET_S = 60.0


def time_scan(store: Store, model_id: str, preset: str, transform: str) -> dict[str, Any]:
    """One scan, timed in total and per finding (time since the previous finding's event)."""
    marks: list[tuple[str, float]] = []
    start = time.perf_counter()

    def on_event(event: StudyEvent) -> None:
        if event.payload and event.payload.get("type") == "finding":
            marks.append((event.payload["finding"]["id"], time.perf_counter() - start))

    config = ScanStudyConfig(model_id=model_id, preset=preset, seed=0, input_transform=transform)
    outcome = run_study(ScanStudy(), store, config, on_event)
    total = time.perf_counter() - start
    result = ScanResult.from_json(outcome.result)
    steps, previous = [], 0.0
    for finding_id, at in marks:
        steps.append({"finding": finding_id, "seconds": round(at - previous, 2)})
        previous = at
    return {
        "preset": preset,
        "input_transform": transform,
        "seconds": round(total, 2),
        "per_finding": steps,
        "severities": {f.id: str(f.severity) for f in result.findings},
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--presets", default="quick,thorough", help="comma-separated presets to time")
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads (default 2: the target's cores)"
    )
    parser.add_argument(
        "--transform", default=NO_TRANSFORM, help="serve the model behind this input transform (default none)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    presets = [p for p in args.presets.split(",") if p]
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        print(f"unknown preset(s) {', '.join(unknown)}; choose from {', '.join(PRESETS)}")
        return 0
    load_before = load_average()
    with tempfile.TemporaryDirectory() as home:
        store = Store(Path(home))
        t0 = time.perf_counter()
        card = run_to_end(train_and_store(store, dataset="mnist5k", arch="cnn", config=TrainConfig(seed=0)))
        train_s = time.perf_counter() - t0
        print(
            f"model: cnn on mnist5k, default training, test accuracy {card.clean_accuracy:.3f} ({train_s:.1f} s)"
        )
        sys.stdout.flush()
        rows: list[dict[str, Any]] = []
        for preset in presets:
            row = time_scan(store, card.id, preset, args.transform)
            row["load_average_after"] = load_average()
            rows.append(row)
            print(f"{preset} scan: {row['seconds']:.1f} s (load average after: {row['load_average_after']})")
            for step in row["per_finding"]:
                print(
                    f"  {step['finding']:<28} {step['seconds']:7.1f} s  {row['severities'][step['finding']]}"
                )
            sys.stdout.flush()
            if args.json:  # after each preset, so a long thorough scan does not hold back the quick figure
                write_report(args.json, {
                    "cpu": cpu_model(), "threads": args.threads, "load_average_before": load_before,
                    "model_clean_accuracy": card.clean_accuracy, "train_seconds": train_s, "rows": rows,
                })  # fmt: skip
    missed = [
        f"quick scan {r['seconds']:.1f} s > {QUICK_TARGET_S:g} s"
        for r in rows
        if r["preset"] == "quick" and r["seconds"] > QUICK_TARGET_S
    ]
    for m in missed:
        print(f"TARGET MISSED: {m}")
    load_after = load_average()
    print(
        f"load average before {load_before}, after {load_after} (figures above 2 mean other work shared the cores)"
    )
    if args.json:
        write_report(args.json, {
            "cpu": cpu_model(), "threads": args.threads, "load_average_before": load_before,
            "load_average_after": load_after, "model_clean_accuracy": card.clean_accuracy, "train_seconds": train_s,
            "rows": rows, "missed": missed,
        })  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
