"""Datasets: built-in ones shipped inside packages (no downloads) and the user's own files."""

from dlsec_core.data.builtin import DATASETS, Dataset, load_dataset, register_dataset

__all__ = ["DATASETS", "Dataset", "load_dataset", "register_dataset"]
