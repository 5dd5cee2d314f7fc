"""How long the web server's store reads take while a worker trains and the cores are busy (issue "Runs that last").

A worker runs at SCHED_IDLE in an autogroup at nice 19 (dlsec_core/execution/worker.py `yield_cpu`): while other
work keeps the cores busy it gets next to no CPU, also when it is descheduled in the middle of writing its
progress into SQLite. This script measures what that does to a reader that opens a connection for each read, as
the web server's `Store` does: `get_card` every 20 ms for `--seconds`, in four phases: idle; `--spinners` busy
loops at the normal priority (a room's browsers); the same plus one training run on a worker; the spinners alone
again. Reported per phase: reads, p50, p95, max, and reads over 20 ms.

    python benchmarks/bench_store_reads.py [--seconds 8] [--spinners 2] [--json PATH]
"""

from __future__ import annotations

import argparse
import multiprocessing
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _common import cpu_model, load_average, percentile, write_report  # noqa: E402

from dlsec_core.data.builtin import load_dataset  # noqa: E402
from dlsec_core.store import Store  # noqa: E402
from dlsec_core.training.loop import TrainConfig, run_to_end, train  # noqa: E402
from dlsec_core.workflows import spec_for  # noqa: E402


def spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def reads(store: Store, model_id: str, seconds: float) -> dict[str, Any]:
    lat = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.perf_counter()
        store.get_card(model_id)
        lat.append(time.perf_counter() - t)
        time.sleep(0.02)
    p50, p95 = percentile(lat, 0.5), percentile(lat, 0.95)
    return {
        "reads": len(lat),
        "p50_ms": None if p50 is None else round(1000 * p50, 2),
        "p95_ms": None if p95 is None else round(1000 * p95, 2),
        "max_ms": round(1000 * max(lat), 1),
        "over_20ms": sum(x > 0.02 for x in lat),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--spinners", type=int, default=2)
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "store_reads.json"))
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="dlsec-bench-reads-")) / "home"
    store = Store(home)
    data = load_dataset("digits")
    result = run_to_end(train(spec_for(data, "logreg"), data, TrainConfig(epochs=1)))
    card = store.save_model(result.model, result.spec, name="reads", dataset="digits")
    report: dict[str, Any] = {"cpu": cpu_model(), "load_average_start": load_average(), "phases": {}}
    report["phases"]["idle"] = reads(store, card.id, args.seconds)
    total = 3 * args.seconds + 30
    spinners = [multiprocessing.Process(target=spin, args=(total,)) for _ in range(args.spinners)]
    for p in spinners:
        p.start()
    try:
        report["phases"]["spinners"] = reads(store, card.id, args.seconds)
        env_cmd = [sys.executable, "-m", "dlsec_core", "--home", str(home), "train", "--dataset", "mnist5k",
                   "--arch", "cnn", "--epochs", "20", "--name", "busy", "--detach"]  # fmt: skip
        subprocess.run(env_cmd, cwd=ROOT, check=True, capture_output=True)
        time.sleep(5)  # the worker starts and imports torch
        report["phases"]["spinners + training worker"] = reads(store, card.id, args.seconds)
        subprocess.run(["pkill", "-f", f"dlsec_core --home {home} .*worker"], check=False)
        time.sleep(1)
        report["phases"]["spinners, worker gone"] = reads(store, card.id, args.seconds)
    finally:
        for p in spinners:
            p.terminate()
        subprocess.run(["pkill", "-f", f"dlsec_core --home {home} .*worker"], check=False)
    report["load_average_end"] = load_average()
    for phase, figures in report["phases"].items():
        print(f"{phase:28s} {figures}")
    write_report(Path(args.json), report)


if __name__ == "__main__":
    main()
