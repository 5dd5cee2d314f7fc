"""Side-by-side evasion benchmark: dlsec's training loop, FGSM sweep and PGD vs torchattacks (and ART).

One run, one model, one data set: the default `cnn` is trained on `mnist5k` with dlsec's own loop (default
`TrainConfig`, seed 0); then, on the mnist5k test split,

1. training: time to first reach >= 97 % test accuracy (from the per-epoch events) and the final accuracy;
2. an FGSM accuracy-vs-epsilon sweep (11 epsilons, linspace(0, 0.3, 11)): `dlsec_core.evaluation.sweep`
   (one gradient per batch reused for every epsilon) vs `torchattacks.FGSM` called once per epsilon, and
   ART's `FastGradientMethod` as a second reference. FGSM is deterministic: the accuracies must be identical;
3. L-inf PGD (40 steps, alpha 0.01, random start) at eps 0.1 and 0.2: ours with and without
   `stop_when_fooled` vs `torchattacks.PGD` (and ART's `ProjectedGradientDescent`, timed once: it is slow).

Goodfellow, Shlens, Szegedy 2015 (FGSM); Madry et al. 2018 (PGD). Usage:

    python benchmarks/bench_evasion.py [--quick] [--json PATH] [--no-art] [--repeats N] [--threads N]

Every method is warmed up on a small batch before it is timed; times are medians over `--repeats` runs,
interleaved round-robin between the methods so that load from other processes is shared out evenly.
The script always exits 0; a missed target is printed as "TARGET MISSED".
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
# `python benchmarks/bench_evasion.py` puts benchmarks/, not the repository root, on the import path.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchattacks  # noqa: E402
from _common import cpu_model, load_average, write_report  # noqa: E402
from torch import nn  # noqa: E402

from dlsec_core.attacks import FGSM, PGD  # noqa: E402
from dlsec_core.data.builtin import load_dataset  # noqa: E402
from dlsec_core.device import describe_device, get_device  # noqa: E402
from dlsec_core.evaluation import sweep  # noqa: E402
from dlsec_core.models.spec import ModelSpec  # noqa: E402
from dlsec_core.training.loop import TrainConfig, TrainEvent, train  # noqa: E402

T = TypeVar("T")

ARCH, DATASET, SEED = "cnn", "mnist5k", 0
TRAIN_TARGET_ACC, TRAIN_TARGET_S = 0.97, 20.0
FGSM_EPS = [round(float(e), 10) for e in np.linspace(0.0, 0.3, 11)]
FGSM_MIN_SPEEDUP = 3.0
PGD_EPS = (0.1, 0.2)
PGD_STEPS, PGD_ALPHA = 40, 0.01
WARMUP_IMAGES = 20
OK, MISSED = "ok", "TARGET MISSED"


# -- small helpers ---------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_methods(
    methods: dict[str, tuple[Callable[[torch.Tensor, torch.Tensor], T], int]],
    x: torch.Tensor,
    y: torch.Tensor,
    device: torch.device,
) -> tuple[dict[str, T], dict[str, list[float]]]:
    """Warm each method up on a few images, then time `repeats` runs of each on all of `x`.

    The runs are interleaved round-robin (A B C A B C ...), so a burst of load from other processes is spread
    over the methods instead of landing on one of them. Returns each method's last result and its run times.
    """
    for fn, _ in methods.values():
        fn(x[:WARMUP_IMAGES], y[:WARMUP_IMAGES])  # first-call overhead stays out of the timings
    results: dict[str, T] = {}
    times: dict[str, list[float]] = {name: [] for name in methods}
    for round_ in range(max(reps for _, reps in methods.values())):
        for name, (fn, reps) in methods.items():
            if round_ >= reps:
                continue
            _sync(device)
            t0 = time.perf_counter()
            results[name] = fn(x, y)
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return results, times


def count_correct(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, batch_size: int) -> int:
    """Number of `x_adv` classified as `y` (the same accuracy rule for every library)."""
    correct = 0
    with torch.no_grad():
        for i in range(0, x_adv.shape[0], batch_size):
            correct += int((model(x_adv[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
    return correct


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]


def verdict(met: bool) -> str:
    return OK if met else MISSED


def fmt_s(seconds: float) -> str:
    return f"{seconds:.2f} s"


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# -- optional third reference: ART ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArtRef:
    """ART's PyTorch wrapper around the same model, with the attack classes it needs."""

    classifier: Any
    fgm: Any
    pgd: Any
    import_s: float


def load_art(model: nn.Module, input_shape: tuple[int, int, int], num_classes: int) -> ArtRef | str:
    """ART's classifier, or a one-line reason why it is skipped."""
    t0 = time.perf_counter()
    try:
        from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
        from art.estimators.classification import PyTorchClassifier
    except Exception as err:  # any import failure just drops the optional third column
        return f"ART skipped: import failed ({type(err).__name__}: {err})"
    import_s = time.perf_counter() - t0
    device_type = "gpu" if next(model.parameters()).device.type == "cuda" else "cpu"
    classifier = PyTorchClassifier(
        model=model,
        loss=nn.CrossEntropyLoss(),
        input_shape=input_shape,
        nb_classes=num_classes,
        clip_values=(0.0, 1.0),
        device_type=device_type,
    )
    return ArtRef(classifier, FastGradientMethod, ProjectedGradientDescent, import_s)


# -- 1. training ------------------------------------------------------------------------------------------------
def bench_training(device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    dataset = load_dataset(DATASET)
    mean, std = dataset.channel_stats()
    spec = ModelSpec(
        arch=ARCH, input_shape=dataset.input_shape, num_classes=dataset.num_classes, mean=mean, std=std
    )
    config = TrainConfig(seed=SEED)
    epochs: list[dict[str, Any]] = []
    events = train(spec, dataset, config, device=device)
    t0 = time.perf_counter()
    # Drain the generator as `run_to_end` does, keeping the per-epoch events.
    while True:
        try:
            event: TrainEvent = next(events)
        except StopIteration as stop:
            result = stop.value
            break
        if event.kind == "epoch":
            epochs.append(
                {"epoch": event.epoch, "test_accuracy": event.test_accuracy, "elapsed_s": event.elapsed}
            )
    wall = time.perf_counter() - t0
    first = next((e for e in epochs if (e["test_accuracy"] or 0.0) >= TRAIN_TARGET_ACC), None)
    met = first is not None and first["elapsed_s"] <= TRAIN_TARGET_S
    return result.model, {
        "arch": ARCH,
        "dataset": DATASET,
        "train_images": int(dataset.x_train.shape[0]),
        "test_images": int(dataset.x_test.shape[0]),
        "config": config.to_dict(),
        "epochs": epochs,
        "first_reach_97": first,
        "final_test_accuracy": result.test_accuracy,
        "train_seconds": result.seconds,
        "wall_seconds": wall,
        "target": f">= {TRAIN_TARGET_ACC:.0%} test accuracy within {TRAIN_TARGET_S:g} s on 2 cores",
        "target_met": met,
    }


def print_training(r: dict[str, Any]) -> None:
    c = r["config"]
    print(
        f"\n1. Training: {r['arch']} on {r['dataset']} ({r['train_images']} train / {r['test_images']} test), "
        f"dlsec_core.training.loop.train, default TrainConfig (seed {c['seed']})"
    )
    print(
        f"   {c['epochs']} epochs, {c['optimizer']} lr {c['lr']:g}, batch {c['batch_size']}, "
        f"one-cycle {c['one_cycle']}, shift {c['shift']}"
    )
    print("   epoch  test acc  elapsed")
    for e in r["epochs"]:
        print(f"   {e['epoch']:>5}  {e['test_accuracy']:>8.3f}  {e['elapsed_s']:>6.2f} s")
    first = r["first_reach_97"]
    reached = f"epoch {first['epoch']} at {fmt_s(first['elapsed_s'])}" if first else "never"
    print(f"   first >= {TRAIN_TARGET_ACC:.0%}: {reached}")
    print(f"   [target {r['target']}: {verdict(r['target_met'])}]")
    print(f"   final: {r['final_test_accuracy']:.3f} test accuracy after {fmt_s(r['train_seconds'])}")


# -- 2. FGSM sweep ------------------------------------------------------------------------------------------------
def fgsm_ours(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int) -> list[int]:
    """Correct counts per eps from dlsec's sweep (one input gradient per batch, reused for every eps)."""
    return [p.correct for p in sweep(model, x, y, FGSM(), FGSM_EPS, batch_size=batch_size)]


def fgsm_torchattacks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int) -> list[int]:
    """Correct counts per eps from `torchattacks.FGSM`, one attack (one gradient) per eps and batch."""
    out = []
    for eps in FGSM_EPS:
        attack = torchattacks.FGSM(model, eps=eps)
        out.append(
            sum(count_correct(model, attack(xb, yb), yb, batch_size) for xb, yb in batches(x, y, batch_size))
        )
    return out


def fgsm_art(
    art: ArtRef, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int
) -> list[int]:
    """Correct counts per eps from ART's `FastGradientMethod` (numpy in, numpy out)."""
    xn, yn = x.cpu().numpy(), y.cpu().numpy()
    out = []
    for eps in FGSM_EPS:
        adv = art.fgm(art.classifier, eps=eps, batch_size=batch_size).generate(xn, y=yn)
        out.append(count_correct(model, torch.from_numpy(adv).to(x.device), y, batch_size))
    return out


def bench_fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    repeats: int,
    art: ArtRef | None,
    device: torch.device,
) -> dict[str, Any]:
    n = x.shape[0]
    methods: dict[str, Callable[[torch.Tensor, torch.Tensor], list[int]]] = {
        "ours": functools.partial(fgsm_ours, model, batch_size=batch_size),
        "torchattacks": functools.partial(fgsm_torchattacks, model, batch_size=batch_size),
    }
    if art is not None:
        methods["art"] = functools.partial(fgsm_art, art, model, batch_size=batch_size)
    correct, times = time_methods({k: (fn, repeats) for k, fn in methods.items()}, x, y, device)
    medians = {k: statistics.median(v) for k, v in times.items()}
    identical = correct["ours"] == correct["torchattacks"]
    speedup = medians["torchattacks"] / medians["ours"]
    return {
        "eps": FGSM_EPS,
        "n": n,
        "batch_size": batch_size,
        "correct": correct,
        "accuracy": {k: [c / n for c in v] for k, v in correct.items()},
        "times_s": times,
        "median_s": medians,
        "speedup_vs_torchattacks": speedup,
        "speedup_vs_art": medians["art"] / medians["ours"] if "art" in medians else None,
        "identical_to_torchattacks": identical,
        "identical_to_art": correct["ours"] == correct["art"] if "art" in correct else None,
        "target": f"identical accuracies and >= {FGSM_MIN_SPEEDUP:g}x faster than torchattacks",
        "target_met": identical and speedup >= FGSM_MIN_SPEEDUP,
    }


LABELS = {"ours": "ours", "torchattacks": "torchattacks", "art": "ART"}


def print_fgsm(r: dict[str, Any], repeats: int) -> None:
    names = list(r["correct"])
    print(f"\n2. FGSM sweep, eps = linspace(0, 0.3, 11), {r['n']} test images, batch {r['batch_size']}")
    print(
        "   ours: dlsec_core.evaluation.sweep(model, x, y, FGSM(), eps_list)  (one gradient, reused per eps)"
    )
    print("   torchattacks: torchattacks.FGSM(model, eps=e), once per eps (one gradient per eps)")
    if "art" in names:
        print("   ART: FastGradientMethod(PyTorchClassifier(..., clip_values=(0, 1)), eps=e), once per eps")
    print("    eps  " + "  ".join(f"{LABELS[k]:>12}" for k in names) + "  equal?")
    for i, eps in enumerate(r["eps"]):
        accs = "  ".join(f"{r['accuracy'][k][i]:>12.3f}" for k in names)
        same = len({r["correct"][k][i] for k in names}) == 1
        print(f"   {eps:4.2f}  {accs}  {'yes' if same else 'NO'}")
    med = r["median_s"]
    print(f"   time (median of {repeats}): " + ", ".join(f"{LABELS[k]} {fmt_s(med[k])}" for k in names))
    if repeats > 1:
        for k in names:
            print(f"      {LABELS[k]:<12} runs: {', '.join(f'{t:.2f}' for t in r['times_s'][k])} s")
    speed = f"   speed-up of ours: {r['speedup_vs_torchattacks']:.2f}x vs torchattacks"
    if r["speedup_vs_art"] is not None:
        speed += f", {r['speedup_vs_art']:.2f}x vs ART"
    print(speed)
    verdicts = "identical" if r["identical_to_torchattacks"] else "DIFFERENT"
    if r["identical_to_art"] is not None:
        verdicts += f" (vs ART: {'identical' if r['identical_to_art'] else 'DIFFERENT'})"
    print(f"   accuracies vs torchattacks: {verdicts}")
    print(f"   [target {r['target']}: {verdict(r['target_met'])}]")


# -- 3. PGD -------------------------------------------------------------------------------------------------------
def pgd_ours(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, stop: bool, batch_size: int
) -> int:
    attack = PGD(eps=eps, steps=PGD_STEPS, alpha=PGD_ALPHA, random_start=True, stop_when_fooled=stop)
    (point,) = sweep(model, x, y, attack, [eps], batch_size=batch_size, seed=SEED)
    return point.correct


def pgd_torchattacks(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, batch_size: int
) -> int:
    torch.manual_seed(SEED)  # torchattacks draws its random start from torch's global generator
    attack = torchattacks.PGD(model, eps=eps, alpha=PGD_ALPHA, steps=PGD_STEPS, random_start=True)
    return sum(count_correct(model, attack(xb, yb), yb, batch_size) for xb, yb in batches(x, y, batch_size))


def pgd_art(
    art: ArtRef, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, batch_size: int
) -> int:
    np.random.seed(SEED)  # ART draws its random start from numpy's global generator
    attack = art.pgd(
        art.classifier,
        norm=np.inf,
        eps=eps,
        eps_step=PGD_ALPHA,
        max_iter=PGD_STEPS,
        num_random_init=1,
        batch_size=batch_size,
        verbose=False,
    )
    adv = attack.generate(x.cpu().numpy(), y=y.cpu().numpy())
    return count_correct(model, torch.from_numpy(adv).to(x.device), y, batch_size)


def bench_pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    repeats: int,
    art: ArtRef | None,
    device: torch.device,
) -> list[dict[str, Any]]:
    n = x.shape[0]
    rows: list[dict[str, Any]] = []
    for eps in PGD_EPS:
        methods: dict[str, tuple[Callable[[torch.Tensor, torch.Tensor], int], int]] = {
            "ours": (functools.partial(pgd_ours, model, eps=eps, stop=True, batch_size=batch_size), repeats),
            "ours_no_stop": (
                functools.partial(pgd_ours, model, eps=eps, stop=False, batch_size=batch_size),
                repeats,
            ),
            "torchattacks": (
                functools.partial(pgd_torchattacks, model, eps=eps, batch_size=batch_size),
                repeats,
            ),
        }
        if art is not None:
            # ART's PGD is the slowest (15-25 s per eps on 2 quiet cores, far more when busy): time it once.
            methods["art"] = (functools.partial(pgd_art, art, model, eps=eps, batch_size=batch_size), 1)
        correct, times = time_methods(methods, x, y, device)
        medians = {k: statistics.median(v) for k, v in times.items()}
        acc_ok = correct["ours"] <= correct["torchattacks"]
        time_ok = medians["ours"] <= medians["torchattacks"]
        rows.append(
            {
                "eps": eps,
                "steps": PGD_STEPS,
                "alpha": PGD_ALPHA,
                "random_start": True,
                "n": n,
                "batch_size": batch_size,
                "correct": correct,
                "robust_accuracy": {k: c / n for k, c in correct.items()},
                "times_s": times,
                "median_s": medians,
                "speedup_vs_torchattacks": medians["torchattacks"] / medians["ours"],
                "target": "ours (stop_when_fooled) robust accuracy <= torchattacks and time <= torchattacks",
                "accuracy_target_met": acc_ok,
                "time_target_met": time_ok,
                "target_met": acc_ok and time_ok,
            }
        )
    return rows


PGD_LABELS = {
    "ours": "ours, stop_when_fooled=True",
    "ours_no_stop": "ours, stop_when_fooled=False",
    "torchattacks": "torchattacks.PGD",
    "art": "ART ProjectedGradientDescent",
}


def print_pgd(rows: Sequence[dict[str, Any]]) -> None:
    first = rows[0]
    print(
        f"\n3. PGD, L-inf, {first['steps']} steps, alpha {first['alpha']:g}, random start, "
        f"{first['n']} test images, batch {first['batch_size']}"
    )
    print("   ours: sweep(model, x, y, PGD(eps=e, steps=40, alpha=0.01, random_start=True, ...), [e])")
    print("    eps  method                        robust acc   time")
    for r in rows:
        for k, label in PGD_LABELS.items():
            if k not in r["correct"]:
                continue
            runs = len(r["times_s"][k])
            how = f"median of {runs}" if runs > 1 else "1 run"
            eps = f"{r['eps']:4.2f}" if k == "ours" else "    "
            print(
                f"   {eps}  {label:<29} {r['robust_accuracy'][k]:>10.3f}  {r['median_s'][k]:>6.2f} s ({how})"
            )
        extra = r["correct"]["ours"] - r["correct"]["torchattacks"]
        more = f" ({extra} image{'s' if extra > 1 else ''} more)" if extra > 0 else ""
        acc = r["robust_accuracy"]
        med = r["median_s"]
        print(
            f"          target ours <= torchattacks: robust acc {acc['ours']:.3f} vs {acc['torchattacks']:.3f}: "
            f"{verdict(r['accuracy_target_met'])}{more}"
        )
        print(
            f"                                       time {med['ours']:.2f} vs {med['torchattacks']:.2f} s: "
            f"{verdict(r['time_target_met'])} (speed ratio {r['speedup_vs_torchattacks']:.2f}x)"
        )
    print(
        "   random starts: on CPU, ours (a generator seeded 0) and torchattacks (torch.manual_seed(0)) draw the"
    )
    print(
        "   same uniform start, so they are compared step for step; ART draws its start from numpy, so its robust"
    )
    print("   accuracy may differ by a few images (see benchmarks/README.md for the spread over seeds)")


# -- main -----------------------------------------------------------------------------------------------------------
def machine_info(device: torch.device) -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "device_label": describe_device(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torchattacks": version("torchattacks"),
        "adversarial-robustness-toolbox": version("adversarial-robustness-toolbox"),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 repeat, 200 test images")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every figure to this JSON file")
    parser.add_argument("--repeats", type=int, default=None, help="timing repeats (default 3, --quick 1)")
    parser.add_argument("--images", type=int, default=None, help="test images to attack (default all 1000)")
    parser.add_argument(
        "--batch-size", type=int, default=500, help="attack batch size, same for every library"
    )
    parser.add_argument("--no-art", action="store_true", help="skip the ART reference columns")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the usable cores)")
    args = parser.parse_args(argv)
    args.repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    args.images = args.images if args.images is not None else (200 if args.quick else None)
    if any(v is not None and v < 1 for v in (args.repeats, args.images, args.batch_size, args.threads)):
        parser.error("--repeats, --images, --batch-size and --threads must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(args.threads or cores)
    device = get_device()
    if device.type == "cuda":
        # With TF32 convolutions the input gradient of a summed loss (dlsec) and of a mean loss (torchattacks,
        # ART) differ in sign at about 40 of 392,000 pixels per 500 images, so FGSM stops being bit-identical.
        # This benchmark compares implementations, so it runs in full fp32.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    info = machine_info(device)
    load_start = load_average()
    started = time.perf_counter()

    print(f"dlsec evasion benchmark ({'quick' if args.quick else 'full'} run)")
    print(
        f"machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), "
        f"torch {info['torch']} on {info['device_label']}, python {info['python']}"
        + (" (TF32 off)" if device.type == "cuda" else "")
    )
    print(
        f"libraries: torchattacks {info['torchattacks']}, adversarial-robustness-toolbox "
        f"{info['adversarial-robustness-toolbox']}, numpy {info['numpy']}"
    )
    # The load average counts the whole machine's runnable processes, so compare it with all its cores.
    busy = load_start is not None and load_start[0] > 0.5 * (os.cpu_count() or cores)
    print(
        f"load average at start (1/5/15 min): {load_start}"
        + ("  -- the machine is busy: other processes add noise to every time below" if busy else "")
    )

    model, training = bench_training(device)
    print_training(training)
    model.eval()

    dataset = load_dataset(DATASET)
    x, y = dataset.x_test.to(device), dataset.y_test.to(device)
    if args.images is not None:
        x, y = x[: args.images], y[: args.images]

    art: ArtRef | None = None
    art_note: str | None = None
    if args.no_art:
        art_note = "ART skipped (--no-art)"
    else:
        loaded = load_art(model, dataset.input_shape, dataset.num_classes)
        if isinstance(loaded, str):
            art_note = loaded
        else:
            art = loaded
    if art is not None:
        print(
            f"\nART imported in {fmt_s(art.import_s)}; PyTorchClassifier(clip_values=(0, 1)) wraps the same model"
        )
    if art_note:
        print(f"\n{art_note}")

    fgsm = bench_fgsm(model, x, y, args.batch_size, args.repeats, art, device)
    print_fgsm(fgsm, args.repeats)
    pgd = bench_pgd(model, x, y, args.batch_size, args.repeats, art, device)
    print_pgd(pgd)

    load_end = load_average()
    total = time.perf_counter() - started
    targets = {
        "training": training["target_met"],
        "fgsm": fgsm["target_met"],
        **{f"pgd_eps_{r['eps']:g}": r["target_met"] for r in pgd},
    }
    print(f"\nsummary: {', '.join(f'{k} {verdict(v)}' for k, v in targets.items())}")
    print(f"load average at end: {load_end}; benchmark wall time {total:.0f} s")

    if args.json is not None:
        report = {
            "run": {
                "quick": args.quick,
                "repeats": args.repeats,
                "images": int(x.shape[0]),
                "batch_size": args.batch_size,
                "load_average_start": load_start,
                "load_average_end": load_end,
                "wall_seconds": total,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
            "machine": info,
            "training": training,
            "fgsm": fgsm,
            "pgd": pgd,
            "art_note": art_note,
            "art_import_s": art.import_s if art is not None else None,
            "targets_met": targets,
        }
        write_report(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
