"""How long the Models page's default training run takes: cnn on mnist5k, the standard recipe, 10 epochs, batch 64,
one torch thread (what the app gives each job), with the machine's load average before and after.

    python benchmarks/bench_default_training.py [--out benchmarks/results/default_training.json]

Home states this time, so re-measure here when the defaults change.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from _common import cpu_model, load_average, write_report  # noqa: E402

from dlsec_core.data.builtin import load_dataset  # noqa: E402
from dlsec_core.training.loop import TrainConfig, run_to_end, train  # noqa: E402
from dlsec_core.training.recipes import get_recipe  # noqa: E402
from dlsec_core.workflows import spec_for  # noqa: E402

# The Models page's defaults (dlsec_ui/model_forms.py: DEFAULT_EPOCHS, DEFAULT_BATCH; the cnn; the first dataset).
EPOCHS, BATCH, ARCH, DATASET = 10, 64, "cnn", "mnist5k"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/default_training.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset(DATASET)
    recipe = get_recipe("standard")
    config = TrainConfig.suggested(recipe, epochs=EPOCHS, batch_size=BATCH, seed=0)
    load_before = load_average()
    start = time.perf_counter()
    result = run_to_end(train(spec_for(data, ARCH), data, config, recipe))
    wall = time.perf_counter() - start
    report = {
        "what": f"{ARCH} on {DATASET} ({len(data.y_train)} train / {len(data.y_test)} test), standard recipe, "
        f"{EPOCHS} epochs, batch {BATCH}, 1 torch thread",
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "wall_seconds": round(wall, 1),
        "train_seconds_reported": round(result.seconds, 1),
        "test_accuracy": round(result.test_accuracy, 4),
    }
    print(report)
    write_report(args.out, report)


if __name__ == "__main__":
    main()
