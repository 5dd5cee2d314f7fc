"""Pick the compute device once for the whole process.

`DLSEC_DEVICE` overrides (`cpu`, `cuda`, `cuda:1`, `mps`); otherwise CUDA when present, else CPU. Every module
asks `get_device()` instead of assuming CPU.
"""

from __future__ import annotations

import functools
import os

import torch


@functools.cache
def get_device() -> torch.device:
    """The device every model and batch goes to, decided on first call."""
    wanted = os.environ.get("DLSEC_DEVICE", "").strip()
    if wanted:
        return torch.device(wanted)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def describe_device() -> str:
    """A short human label, e.g. 'CPU (2 threads)' or 'CUDA: NVIDIA H200'."""
    dev = get_device()
    if dev.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(dev)}"
    return f"{dev.type.upper()} ({torch.get_num_threads()} threads)"
