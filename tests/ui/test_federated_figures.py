"""The Federated learning page's figures: the clients' class histogram and the poisoning comparison."""

from __future__ import annotations

import numpy as np

from dlsec_ui.federated_figures import client_histogram, poisoning_rounds


def test_client_histogram_stacks_each_client_s_classes() -> None:
    histogram = np.array([[3, 0, 1], [0, 5, 2]])  # (K = 2 clients, C = 3 classes)
    fig = client_histogram(histogram, ["zero", "one", "two"])
    assert [t.name for t in fig.data] == ["zero", "one", "two"] and fig.layout.barmode == "stack"
    assert [list(t.y) for t in fig.data] == [
        [3, 0],
        [0, 5],
        [1, 2],
    ]  # one trace per class, one bar per client
    assert list(fig.data[0].x) == ["client 0", "client 1"]
    assert [t.name for t in client_histogram(histogram).data] == [
        "0",
        "1",
        "2",
    ]  # no names: the class indices


def test_poisoning_rounds_draw_clean_accuracy_and_backdoor_success_per_aggregator() -> None:
    curves = {
        "FedAvg": [{"round": 1, "test_accuracy": 0.8, "backdoor_success": 0.3},
                   {"round": 2, "test_accuracy": 0.85, "backdoor_success": 0.6}],
        "median": [{"round": 1, "test_accuracy": 0.82, "backdoor_success": 0.0},
                   {"round": 2, "test_accuracy": 0.86, "backdoor_success": 0.01}],
    }  # fmt: skip
    fig = poisoning_rounds(curves)
    names = [t.name for t in fig.data]
    assert names == ["FedAvg: clean accuracy", "FedAvg: backdoor success", "median: clean accuracy",
                     "median: backdoor success"]  # fmt: skip
    assert list(fig.data[1].y) == [0.3, 0.6] and fig.data[1].line.dash == "dash"
    assert (
        fig.data[0].line.color == fig.data[1].line.color != fig.data[2].line.color
    )  # one color per aggregator
    flip = poisoning_rounds({"FedAvg": [{"round": 1, "test_accuracy": 0.7, "backdoor_success": None}]})
    assert [t.name for t in flip.data] == ["FedAvg: clean accuracy"]  # label flipping: no backdoor curve
