"""Evaluation: clean accuracy, predictions, and accuracy-vs-epsilon sweeps."""

from dlsec_core.evaluation.metrics import accuracy, predict_proba
from dlsec_core.evaluation.sweep import SweepPoint, sweep

__all__ = ["SweepPoint", "accuracy", "predict_proba", "sweep"]
