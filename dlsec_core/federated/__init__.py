"""Federated learning, simulated in one process: client splits, FedAvg and DP-FedAvg, secure aggregation.

Gradient inversion against a client's update, poisoning clients and robust aggregators are not here yet.
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
from dlsec_core.federated.secure_aggregation import mask_updates, secure_sum, unmask_sum
from dlsec_core.federated.splits import ClientSplit, SplitKind, split_clients

__all__ = [
    "ACCOUNTANT",
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
