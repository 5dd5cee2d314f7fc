"""DP-SGD benchmark: what differential privacy costs per epoch, in each Opacus mode, and what the preset reaches.

1. One epoch of the default `cnn` on `mnist5k` (4,000 images) at the DP preset's batch size, σ and C, 2 threads:
   - `non-private`: dlsec's training loop with the standard recipe at the same batch size (the reference);
   - `opacus-hooks`, `opacus-functorch`, `opacus-ghost`: Opacus's own `PrivacyEngine.make_private` with each
     `grad_sample_mode`, in a minimal loop (the library as its tutorials use it);
   - `dlsec dp-sgd`: dlsec's recipe (ghost clipping wired by hand so q = batch / N exactly) in dlsec's loop
     (with its shift augmentation and per-epoch test accuracy and ε, which the minimal loops do not do).
   Median of `--epochs` timed epochs after one warm-up epoch; wall and CPU seconds, ratio to non-private (issue
   target: at most 3x, judged on CPU time).
2. The DP preset (recipe defaults and its suggested epochs, batch size and learning rate): test accuracy and ε
   by RDP and PRV; the time to the final epoch (issue target: a useful accuracy within a minute on 2 cores).
3. Accountants against Google's dp-accounting on the preset's run and on Opacus's known run (σ 1.5, q 0.04,
   2,250 steps, δ 1e-5).

Usage: python benchmarks/bench_dp.py [--epochs N] [--json PATH]. Always exits 0; misses print "TARGET MISSED".
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from _common import cpu_model, load_average, write_report  # noqa: E402
from opacus import PrivacyEngine  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from dlsec_core.data.builtin import load_dataset  # noqa: E402
from dlsec_core.privacy.accounting import epsilon_after  # noqa: E402
from dlsec_core.privacy.dp_sgd import DPSGDRecipe  # noqa: E402
from dlsec_core.training import TrainConfig, TrainEvent, get_recipe, train  # noqa: E402
from dlsec_core.training.loop import init_model  # noqa: E402
from dlsec_core.workflows import spec_for  # noqa: E402

PRESET = TrainConfig.suggested(DPSGDRecipe)  # the Models page's DP-SGD defaults
BATCH, LR, SIGMA, CLIP, DELTA = PRESET.batch_size, PRESET.lr, DPSGDRecipe().noise_multiplier, 1.0, 1e-5
MAX_RATIO = 3.0
warnings.filterwarnings("ignore")


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def opacus_epochs(mode: str, epochs: int) -> list[tuple[float, float]]:
    """(wall, cpu) per epoch of Opacus's make_private in `mode`, minimal loop, after one warm-up epoch."""
    data = load_dataset("mnist5k")
    model = init_model(spec_for(data, "cnn"), 0)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loader = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=BATCH, shuffle=True)
    crit: Any = torch.nn.CrossEntropyLoss()
    out = PrivacyEngine(accountant="rdp").make_private(
        module=model, optimizer=opt, data_loader=loader, noise_multiplier=SIGMA, max_grad_norm=CLIP,
        grad_sample_mode=mode, criterion=crit,
    )  # fmt: skip
    if mode == "ghost":
        model, opt, crit, loader = out
    else:
        model, opt, loader = out
    times = []
    for _ in range(epochs + 1):
        w, c = _clock()
        for xb, yb in loader:
            if len(yb) == 0:
                continue
            opt.zero_grad()
            loss = crit(model(xb), yb)
            loss.backward()
            opt.step()
        w2, c2 = _clock()
        times.append((w2 - w, c2 - c))
    return times[1:]


def dlsec_epochs(recipe: str, epochs: int) -> tuple[list[tuple[float, float]], list[dict[str, Any]]]:
    """(wall, cpu) per epoch of dlsec's loop with `recipe`, and its per-epoch history."""
    data = load_dataset("mnist5k")
    config = TrainConfig(epochs=epochs + 1, batch_size=BATCH, lr=LR, seed=0)
    rec = get_recipe(recipe) if recipe == "standard" else get_recipe(recipe, noise_multiplier=SIGMA)
    times, history = [], []
    w, c = _clock()
    for event in train(spec_for(data, "cnn"), data, config, rec):
        if isinstance(event, TrainEvent) and event.kind == "epoch":
            w2, c2 = _clock()
            times.append((w2 - w, c2 - c))
            history.append(event.to_record())
            w, c = _clock()
    return times[1:], history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("DLSEC_THREADS", "2")))
    report: dict[str, Any] = {
        "machine": f"{cpu_model()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads", "torch": torch.__version__, "load_average": load_average(),
    }  # fmt: skip

    print(f"1. One epoch, cnn on mnist5k, batch {BATCH}, σ {SIGMA}, C {CLIP} ({report['machine']})")
    rows: dict[str, tuple[float, float]] = {}
    base, _ = dlsec_epochs("standard", args.epochs)
    rows["non-private (dlsec loop)"] = (
        statistics.median(t[0] for t in base),
        statistics.median(t[1] for t in base),
    )
    for mode in ("hooks", "functorch", "ghost"):
        t = opacus_epochs(mode, args.epochs)
        rows[f"opacus make_private {mode}"] = (
            statistics.median(x[0] for x in t),
            statistics.median(x[1] for x in t),
        )
    ours, _ = dlsec_epochs("dp-sgd", args.epochs)
    rows["dlsec dp-sgd (ghost)"] = (
        statistics.median(t[0] for t in ours),
        statistics.median(t[1] for t in ours),
    )
    ref_wall, ref_cpu = rows["non-private (dlsec loop)"]
    print(f"   {'':32s} {'wall s':>8s} {'cpu s':>8s} {'x wall':>7s} {'x cpu':>7s}")
    for name, (w, c) in rows.items():
        print(f"   {name:32s} {w:8.2f} {c:8.2f} {w / ref_wall:7.2f} {c / ref_cpu:7.2f}")
    ratio = rows["dlsec dp-sgd (ghost)"][1] / ref_cpu
    print(
        f"   dp-sgd / non-private (CPU): {ratio:.2f}x  target <= {MAX_RATIO}x: {'ok' if ratio <= MAX_RATIO else 'TARGET MISSED'}"
    )
    report["epoch_seconds"] = {k: {"wall": w, "cpu": c} for k, (w, c) in rows.items()}

    print(
        f"\n2. The DP preset (recipe defaults, {PRESET.epochs} epochs, batch {BATCH}, lr {LR:g}, σ {SIGMA:g})"
    )
    data = load_dataset("mnist5k")
    start = time.perf_counter()
    history = []
    for event in train(
        spec_for(data, "cnn"),
        data,
        PRESET,
        get_recipe("dp-sgd"),
    ):
        if event.kind == "epoch":
            rec = event.to_record()
            history.append(rec)
            print(
                f"   epoch {event.epoch}: {time.perf_counter() - start:5.1f} s, test accuracy {event.test_accuracy:.3f}, ε {rec['epsilon']:.2f} (RDP, δ {rec['delta']:g})"
            )
    last = history[-1]
    prv = epsilon_after(
        last["noise_multiplier"], last["sample_rate"], last["dp_steps"], DELTA, accountant="prv"
    ).epsilon
    seconds = time.perf_counter() - start
    print(
        f"   final: {last['test_accuracy']:.3f} at ε = {last['epsilon']:.2f} (RDP) / {prv:.2f} (PRV), δ {DELTA:g}, {seconds:.1f} s; within a minute: {'ok' if seconds <= 60 else 'TARGET MISSED'}"
    )
    report["preset"] = {"history": history, "seconds": seconds, "epsilon_prv": prv}

    print("\n3. Accountants vs Google's dp-accounting")
    try:
        import dp_accounting  # noqa: PLC0415
    except ImportError:
        print("   dp-accounting not installed (pip install -r requirements-dev.txt)")
    else:
        runs = [
            (1.5, 0.04, 2250, 1e-5),
            (last["noise_multiplier"], last["sample_rate"], last["dp_steps"], DELTA),
        ]
        for sigma, q, steps, delta in runs:
            ev = dp_accounting.SelfComposedDpEvent(
                dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps
            )
            g_rdp = dp_accounting.rdp.RdpAccountant().compose(ev).get_epsilon(delta)
            g_pld = (
                dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-4)
                .compose(ev)
                .get_epsilon(delta)
            )
            o_rdp = epsilon_after(sigma, q, steps, delta, accountant="rdp").epsilon
            o_prv = epsilon_after(sigma, q, steps, delta, accountant="prv").epsilon
            print(
                f"   σ {sigma:g}, q {q:.4g}, {steps} steps, δ {delta:g}: RDP {o_rdp:.4f} vs {g_rdp:.4f}; PRV {o_prv:.4f} vs PLD {g_pld:.4f}"
            )
    if args.json:
        write_report(args.json, report)


if __name__ == "__main__":
    main()
