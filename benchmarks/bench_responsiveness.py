"""How fast the Attack Lab answers a slider move, measured on the code path the page uses.

The page's FGSM path computes the gradient sign once per image (cached) and then costs one forward pass per
ε (`Attack.apply_direction`); the reference is what a page built on torchattacks would do: call the attack again
for every slider position. Also the single-image PGD (40 steps) a slider move costs when PGD is selected.

    python benchmarks/bench_responsiveness.py [--repeats N] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torchattacks  # noqa: E402

from dlsec_core.attacks import FGSM, PGD  # noqa: E402
from dlsec_core.data.builtin import load_dataset  # noqa: E402
from dlsec_core.training.loop import TrainConfig, run_to_end, train  # noqa: E402
from dlsec_core.workflows import spec_for  # noqa: E402


def ms(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the app uses 1; see README)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("mnist5k")
    model = run_to_end(train(spec_for(data, "cnn"), data, TrainConfig(epochs=2))).model.eval()
    for p in model.parameters():
        p.requires_grad_(False)  # as the app's cached models
    x, y = data.x_test[:1], data.y_test[:1]
    eps_values = [i / 200 for i in range(1, 61)]  # sixty slider positions
    attack = FGSM()
    direction = attack.direction(model, x, y)
    it = iter(eps_values * (args.repeats + 2))

    ours = ms(lambda: attack.with_params(eps=next(it)).apply_direction(model, x, y, direction), args.repeats)
    first = ms(lambda: attack.direction(model, x, y), args.repeats)
    ta = ms(lambda: torchattacks.FGSM(model, eps=next(it))(x, y), args.repeats)
    pgd = ms(lambda: PGD(eps=0.1, steps=40)(model, x, y, generator=torch.Generator().manual_seed(0)), 10)
    print(
        f"Attack Lab slider, one 28x28 image, default cnn, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"  FGSM, ours, per slider move (cached direction + 1 forward): {ours:7.2f} ms")
    print(f"  FGSM, ours, first time on a new image (gradient):            {first:7.2f} ms")
    print(
        f"  FGSM, torchattacks called per slider move:                   {ta:7.2f} ms  ({ta / ours:.1f}x ours)"
    )
    print(f"  PGD-40 (no early stop needed here: a clean digit), ours:     {pgd:7.2f} ms")


if __name__ == "__main__":
    main()
