"""How long a Robustness sweep takes to draw its curves, and how long until its honesty checks are in.

The Robustness page's work item is `dlsec_core.workflows.sweep_models`: curves point by point, then the honesty
checks (model checks, a black-box Square attack at the largest ε, the attack at a huge budget). This script runs
the scenarios of issue 13 item 10 on the default `cnn` trained on `mnist5k` and prints, for each, the seconds
until the last curve point arrived and until the whole run (checks included) ended, with the load average (other
work on the machine inflates every figure).

    python benchmarks/bench_sweep.py [--home DIR] [--repeats N] [--threads N] [--json PATH]

`--home` reuses (or fills, on the first run) a DLSEC_HOME holding the two trained models, so repeated runs skip
training. One torch thread by default, as the app's job workers use.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _common import cpu_model, load_average, write_report  # noqa: E402

EPS = [0.0, 0.1, 0.2, 0.3]
IMAGES = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--home", type=Path, default=None, help="DLSEC_HOME to reuse (default: a fresh temp one)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    os.environ["DLSEC_HOME"] = str(args.home or Path(tempfile.mkdtemp()) / "dlsec_home")

    import torch

    from dlsec_core.attacks import FGSM, PGD
    from dlsec_core.store import Store
    from dlsec_core.training.loop import TrainConfig, run_to_end
    from dlsec_core.workflows import ModelSweepPoint, sweep_models, train_and_store

    torch.set_num_threads(args.threads)
    store = Store()
    cards = sorted(store.list_models(), key=lambda c: c.name)
    if len(cards) < 2:
        for seed in (0, 1):
            run_to_end(
                train_and_store(
                    store, dataset="mnist5k", arch="cnn", name=f"cnn-s{seed}", config=TrainConfig(seed=seed)
                )
            )
        cards = sorted(store.list_models(), key=lambda c: c.name)
    ids = [c.id for c in cards[:2]]

    def once(model_ids: list[str], attack: object) -> tuple[float, float]:
        start = time.perf_counter()
        last = 0.0
        for event in sweep_models(store, model_ids, attack, EPS, n_images=IMAGES):  # type: ignore[arg-type]
            if isinstance(event, ModelSweepPoint):
                last = time.perf_counter() - start
        return last, time.perf_counter() - start

    report: dict[str, object] = {"cpu": cpu_model(), "threads": args.threads, "eps": EPS, "images": IMAGES}
    rows = []
    for label, model_ids, attack in (
        ("FGSM, 1 model", ids[:1], FGSM()),
        ("FGSM, 2 models", ids, FGSM()),
        ("PGD-40, 2 models", ids, PGD(steps=40)),
    ):
        load_before = load_average()
        runs = [once(model_ids, attack) for _ in range(args.repeats)]
        curves = statistics.median(r[0] for r in runs)
        total = statistics.median(r[1] for r in runs)
        rows.append(
            {
                "scenario": label,
                "curves_s": curves,
                "total_s": total,
                "runs": runs,
                "load_before": load_before,
            }
        )
        print(
            f"{label:18s} curves drawn after {curves:6.2f} s, run ended after {total:6.2f} s  (load {load_before})"
        )
    report["scenarios"] = rows
    report["load_after"] = load_average()
    if args.json:
        write_report(args.json, report)


if __name__ == "__main__":
    main()
