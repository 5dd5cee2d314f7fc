"""Side-by-side model-extraction benchmark: dlsec's Copycat and Knockoff vs ART's CopycatCNN and KnockoffNets.

One run, one victim, one pool, the same budgets: the default `cnn` trained on `mnist5k` for 5 epochs (seed 0; ART's
own MNIST extraction notebook uses a 5-epoch victim), served full probabilities; the attacker's pool is the
mnist5k training split without labels, in one seeded order; at each budget (250, 500, 1,000, 2,000, 4,000
queries) each method trains a fresh `cnn` surrogate (same initialisation, Adam, same learning rate, batch and
epochs) on the first B pool images labelled by the victim. Both are scored by the same judge on the mnist5k test
split: accuracy (true labels) and fidelity (agreement with the victim's top-1 label). Times per budget cover
querying and training (not the judge's scoring), two ways: the process's CPU seconds (one torch thread: the compute
each method needed, barely moved by other processes) and wall-clock seconds (which, on a shared machine, also count
the time other processes held the cores; the load average is recorded before and after). At each budget the order
of the two libraries alternates, so neither always runs first.

Papers: Correia-Silva et al. 2018 (Copycat CNN), Orekondy et al. 2019 (Knockoff Nets, random strategy).
Both Knockoffs train on the probabilities (soft targets): ART 1.20's PyTorchClassifier with a cross-entropy loss
keeps probability labels as they are; both Copycats on top-1 labels. `--seed` seeds our attack and ART's (NumPy's
and torch's global generators, which ART's selection and shuffling draw from), so a run is repeatable; different
seeds show how much of a gap is shuffling noise. Usage:

    python benchmarks/bench_theft.py [--quick] [--epochs N] [--budgets 250,500,...] [--seed S] [--no-art]
                                     [--json PATH]

Targets (issue "Model theft"): our fidelity at 1,000 queries >= 0.85, never below ART's at any budget, in no more
time (CPU seconds, within 10 %; the wall-clock ratio is printed beside it). The script always exits 0; a missed
target is printed as "TARGET MISSED".
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if (
    str(ROOT) not in sys.path
):  # `python benchmarks/bench_theft.py` puts benchmarks/, not the root, on the path
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import cpu_model, load_average, write_report  # noqa: E402
from torch import nn  # noqa: E402

from dlsec_core.data.builtin import load_dataset  # noqa: E402
from dlsec_core.models.spec import ModelSpec  # noqa: E402
from dlsec_core.theft.api import Oracle, PredictionAPI  # noqa: E402
from dlsec_core.theft.extraction import Judge, PoolKind, get_extraction, query_pool  # noqa: E402
from dlsec_core.training.loop import TrainConfig, init_model, run_to_end, train  # noqa: E402
from dlsec_core.workflows import spec_for  # noqa: E402

BUDGETS = [250, 500, 1000, 2000, 4000]
LR, BATCH = 2e-3, 64


@dataclass(frozen=True, eq=False)
class TimedJudge(Judge):
    """The judge, counting the CPU seconds it spends scoring (to leave them out of the attacker's)."""

    cpu: list[float] = field(default_factory=list)

    def score(self, surrogate: nn.Module) -> tuple[float, float]:
        c0 = time.process_time()
        out = super().score(surrogate)
        self.cpu.append(time.process_time() - c0)
        return out


def ours(
    name: str, victim: Any, judge: Judge, pool: torch.Tensor, budget: int, epochs: int, seed: int
) -> dict[str, Any]:
    api = PredictionAPI(victim.model, victim.spec)
    api.register("thief", budget=budget)
    attack = get_extraction(name, arch="cnn", epochs=epochs, batch_size=BATCH, lr=LR)
    timed = TimedJudge(judge.x, judge.y, judge.victim)
    c0 = time.process_time()
    result = run_to_end(attack.run(Oracle(api, "thief"), timed, [budget], pool=pool, seed=seed))
    cpu = time.process_time() - c0 - sum(timed.cpu)
    assert api.log("thief").answered == budget
    p = result.points[-1]  # its seconds: querying and training, the judge's scoring excluded (as ART's below)
    return {"accuracy": p.accuracy, "fidelity": p.fidelity, "seconds": p.seconds, "cpu_seconds": cpu}


def art_attack(
    name: str, victim: Any, judge: Judge, pool: torch.Tensor, budget: int, epochs: int, seed: int
) -> dict[str, Any]:
    from art.attacks.extraction import CopycatCNN, KnockoffNets  # noqa: PLC0415 (optional dependency)
    from art.estimators.classification import PyTorchClassifier  # noqa: PLC0415

    shape, k = victim.spec.input_shape, victim.spec.num_classes
    # the victim answers probabilities, as ours does (a bare PyTorchClassifier would answer logits)
    oracle = PyTorchClassifier(model=nn.Sequential(victim.model, nn.Softmax(dim=1)), loss=nn.CrossEntropyLoss(), input_shape=shape, nb_classes=k,
                               clip_values=(0.0, 1.0), device_type="cpu")  # fmt: skip
    x = pool[:budget]
    mean = tuple(round(float(m), 4) for m in x.mean(dim=(0, 2, 3)))
    std = tuple(round(float(s), 4) for s in x.std(dim=(0, 2, 3)).clamp_min(1e-3))
    thief_model = init_model(ModelSpec(arch="cnn", input_shape=shape, num_classes=k, mean=mean, std=std), 0)
    thief = PyTorchClassifier(model=thief_model, loss=nn.CrossEntropyLoss(), input_shape=shape, nb_classes=k,
                              optimizer=torch.optim.Adam(thief_model.parameters(), lr=LR), clip_values=(0.0, 1.0),
                              device_type="cpu")  # fmt: skip
    np.random.seed(seed)  # ART draws its selection from NumPy's global generator
    torch.manual_seed(seed)  # and its shuffling from torch's
    common = {"batch_size_fit": BATCH, "batch_size_query": BATCH, "nb_epochs": epochs, "nb_stolen": budget}
    if name == "copycat":
        attack = CopycatCNN(oracle, use_probability=False, **common)
    else:
        attack = KnockoffNets(
            oracle, sampling_strategy="random", use_probability=True, verbose=False, **common
        )
    c0, t0 = time.process_time(), time.perf_counter()
    stolen = attack.extract(x.numpy(), thieved_classifier=thief)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    acc, fid = judge.score(stolen.model)
    return {"accuracy": acc, "fidelity": fid, "seconds": seconds, "cpu_seconds": cpu}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke run: budgets 250,500, 2 epochs")
    parser.add_argument("--epochs", type=int, default=None, help="surrogate epochs (default 20, --quick 2)")
    parser.add_argument("--budgets", default=None, help="comma-separated query budgets")
    parser.add_argument("--seed", type=int, default=0, help="seed of both attacks (default 0)")
    parser.add_argument("--no-art", action="store_true", help="skip the ART columns")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    epochs = args.epochs or (2 if args.quick else 20)
    budgets = (
        [int(b) for b in args.budgets.split(",")] if args.budgets else ([250, 500] if args.quick else BUDGETS)
    )
    load_before = load_average()
    data = load_dataset("mnist5k")
    t0 = time.perf_counter()
    victim = run_to_end(train(spec_for(data, "cnn"), data, TrainConfig(epochs=5, seed=0)))
    print(f"victim: cnn on mnist5k, 5 epochs, test accuracy {victim.test_accuracy:.3f} "
          f"({time.perf_counter() - t0:.1f} s)")  # fmt: skip
    judge = Judge.of(victim.model, data.x_test, data.y_test)
    pool = query_pool(PoolKind.SAME, data, max(budgets), torch.Generator().manual_seed(0))
    rows: list[dict[str, Any]] = []
    for i, budget in enumerate(budgets):
        libraries = ["ours"] if args.no_art else (["ours", "ART"] if i % 2 == 0 else ["ART", "ours"])
        for who in libraries:
            for name in ("copycat", "knockoff"):
                run = ours if who == "ours" else art_attack
                row = {
                    "who": who,
                    "attack": name,
                    "queries": budget,
                    **run(name, victim, judge, pool, budget, epochs, args.seed),
                }
                rows.append(row)
                print(f"{who:4} {name:8} {budget:5,} queries: accuracy {row['accuracy']:.3f}  fidelity "
                      f"{row['fidelity']:.3f}  {row['cpu_seconds']:.1f} s CPU  {row['seconds']:.1f} s wall",
                      flush=True)  # fmt: skip
    load_after = load_average()
    print(f"load average (1, 5, 15 min) before {load_before}, after {load_after}")
    missed = []
    for name in ("copycat", "knockoff"):
        mine = {r["queries"]: r for r in rows if r["who"] == "ours" and r["attack"] == name}
        theirs = {r["queries"]: r for r in rows if r["who"] == "ART" and r["attack"] == name}
        if 1000 in mine and mine[1000]["fidelity"] < 0.85:
            missed.append(f"{name}: fidelity {mine[1000]['fidelity']:.3f} < 0.85 at 1,000 queries")
        for b, theirs_b in theirs.items():
            cpu, wall = (mine[b][k] / theirs_b[k] for k in ("cpu_seconds", "seconds"))
            gap = mine[b]["fidelity"] - theirs_b["fidelity"]
            print(f"{name:8} {b:5,} queries: fidelity ours - ART {gap:+.3f}; time ours / ART {cpu:.2f} CPU, "
                  f"{wall:.2f} wall")  # fmt: skip
            if gap < 0:
                missed.append(f"{name}: fidelity {gap:+.3f} below ART's at {b:,} queries")
            if cpu > 1.1:
                missed.append(f"{name}: {cpu:.2f}x ART's CPU time at {b:,} queries")
    for m in missed:
        print(f"TARGET MISSED: {m}")
    if not missed:
        print("targets met" + (" (ART not run)" if args.no_art else ""))
    if args.json:
        write_report(args.json, {"cpu": cpu_model(), "load_average_before": load_before,
                                 "load_average_after": load_after, "epochs": epochs, "seed": args.seed,
                                 "victim_accuracy": victim.test_accuracy, "rows": rows, "missed": missed})  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
