"""Arrays as a run's artifact files: what a study returns (`npy_bytes`) and what a page reads back (`read_arrays`)."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt


def npy_bytes(array: npt.ArrayLike) -> bytes:
    """An array as the bytes of a .npy file (an artifact a study returns)."""
    out = io.BytesIO()
    np.save(out, np.asarray(array), allow_pickle=False)
    return out.getvalue()


def read_arrays(paths: Iterable[Path]) -> dict[str, npt.NDArray[Any]]:
    """The .npy artifacts of a run by file name without the suffix (e.g. "images-0")."""
    return {p.stem: np.load(p, allow_pickle=False) for p in paths if p.suffix == ".npy"}
