"""Knockoff Nets' adaptive strategy vs its random one at equal query budgets (Orekondy et al. 2019).

The victim is bench_theft.py's (the default `cnn` trained 5 epochs on `mnist5k`, seed 0, full probabilities). For
each pool and seed, both strategies spend exactly the same budgets and train the same surrogate (a fresh `cnn`,
Adam, the same epochs) on the queries they chose; only the choice differs. Random sends the first B images of the
pool in a seeded order; adaptive chooses B of up to 4x as many candidates with its bandit over k-means clusters
(`KnockoffAdaptive`, reward "all"). Pools: `same` (mnist5k's training split, labels withheld) and `other` (the
8x8 digits resized to 28x28). The judge is the mnist5k test split (accuracy, fidelity).

    python benchmarks/bench_knockoff_adaptive.py [--budgets 250,500,1000] [--seeds 0,1] [--epochs 10] [--json PATH]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from _common import cpu_model, load_average, write_report  # noqa: E402

from dlsec_core.data.builtin import load_dataset  # noqa: E402
from dlsec_core.theft.api import Oracle, PredictionAPI  # noqa: E402
from dlsec_core.theft.extraction import Judge, get_extraction, query_pool  # noqa: E402
from dlsec_core.training.loop import TrainConfig, run_to_end, train  # noqa: E402
from dlsec_core.workflows import spec_for  # noqa: E402


def steal(name: str, victim: Any, judge: Judge, pool: torch.Tensor, budgets: list[int], epochs: int,
          seed: int) -> list[dict[str, Any]]:  # fmt: skip
    api = PredictionAPI(victim.model, victim.spec)
    api.register("thief", budget=budgets[-1])
    attack = get_extraction(name, arch="cnn", epochs=epochs)
    result = run_to_end(attack.run(Oracle(api, "thief"), judge, budgets, pool=pool, seed=seed))
    assert api.log("thief").answered == budgets[-1]
    return [p.to_record() for p in result.points]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--budgets", default="250,500,1000")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--pools", default="same,other")
    parser.add_argument("--json", type=Path, metavar="PATH")
    args = parser.parse_args()
    torch.set_num_threads(1)
    budgets = [int(b) for b in args.budgets.split(",")]
    data = load_dataset("mnist5k")
    victim = run_to_end(train(spec_for(data, "cnn"), data, TrainConfig(epochs=5, seed=0)))
    judge = Judge.of(victim.model, data.x_test, data.y_test)
    print(f"victim: cnn on mnist5k, test accuracy {victim.test_accuracy:.3f}", flush=True)
    rows: list[dict[str, Any]] = []
    for pool_kind in args.pools.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            gen = torch.Generator().manual_seed(seed)
            candidates = query_pool(pool_kind, data, budgets[-1], gen, up_to=4 * budgets[-1])
            for name in ("knockoff", "knockoff-adaptive"):
                t0 = time.perf_counter()
                points = steal(name, victim, judge, candidates, budgets, args.epochs, seed)
                for p in points:
                    rows.append({"pool": pool_kind, "seed": seed, "strategy": name, **p})
                    print(f"{pool_kind:5} seed {seed} {name:17} {p['queries']:5,} queries: accuracy "
                          f"{p['accuracy']:.3f} fidelity {p['fidelity']:.3f}", flush=True)  # fmt: skip
                print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    print("\nmean fidelity over seeds (adaptive - random):")
    for pool_kind in args.pools.split(","):
        for b in budgets:
            mean = {s: sum(r["fidelity"] for r in rows if r["pool"] == pool_kind and r["strategy"] == s
                           and r["queries"] == b) / len(args.seeds.split(","))
                    for s in ("knockoff", "knockoff-adaptive")}  # fmt: skip
            print(f"{pool_kind:5} {b:5,}: random {mean['knockoff']:.3f}  adaptive {mean['knockoff-adaptive']:.3f}  "
                  f"({mean['knockoff-adaptive'] - mean['knockoff']:+.3f})")  # fmt: skip
    if args.json:
        write_report(args.json, {"cpu": cpu_model(), "load_average": load_average(), "epochs": args.epochs,
                                 "budgets": budgets, "rows": rows})  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
