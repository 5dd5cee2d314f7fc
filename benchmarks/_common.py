"""Helpers every benchmark script shares: what machine it ran on, how busy it was, and writing the JSON report."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages (None where the OS has none): other work inflates every time."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def percentile(values: list[float], q: float) -> float | None:
    """The `q` quantile of `values` (the nearest rank; None for none)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Write a benchmark's figures as indented JSON (creating the folder) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"figures written to {path}")
