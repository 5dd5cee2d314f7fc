"""Federated learning, simulated in one process: client splits, FedAvg and DP-FedAvg (and local DP-SGD per
client), secure aggregation, malicious clients (`poisoning`) and robust aggregators (`robust`).
"""

from dlsec_core.federated.fedavg import (
    ACCOUNTANT,
    FedAvgConfig,
    FedAvgResult,
    RoundEvent,
    clip_update,
    federated_averaging,
    local_update,
)
from dlsec_core.federated.poisoning import AttackKind
from dlsec_core.federated.robust import Aggregator, aggregate
from dlsec_core.federated.secure_aggregation import mask_updates, secure_sum, unmask_sum
from dlsec_core.federated.splits import ClientSplit, SplitKind, split_clients

__all__ = [
    "ACCOUNTANT",
    "Aggregator",
    "AttackKind",
    "aggregate",
    "ClientSplit",
    "FedAvgConfig",
    "FedAvgResult",
    "RoundEvent",
    "SplitKind",
    "clip_update",
    "federated_averaging",
    "local_update",
    "mask_updates",
    "secure_sum",
    "split_clients",
    "unmask_sum",
]
