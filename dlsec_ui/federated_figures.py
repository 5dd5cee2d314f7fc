"""Plotly figures of the Federated learning page: the clients' class histogram and the poisoning comparison (the
rounds chart of one federation is `figures.federated_rounds`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from dlsec_ui.figures import MODEL_COLORS, TEMPLATE

CLASS_COLORS = (
    "#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#EECA3B", "#B279A2", "#FF9DA6", "#9D755D", "#BAB0AC",
)  # fmt: skip


def client_histogram(
    histogram: np.ndarray | Sequence[Sequence[int]], class_names: Sequence[str] = ()
) -> go.Figure:
    """One stacked bar per client: how many examples of each class it holds (`histogram[k][c]`, shape (K, C))."""
    counts = np.asarray(histogram, dtype=np.int64)
    clients, classes = counts.shape
    names = list(class_names) if len(class_names) == classes else [str(c) for c in range(classes)]
    x = [f"client {k}" for k in range(clients)]
    fig = go.Figure()
    for c in range(classes):
        fig.add_trace(
            go.Bar(
                x=x, y=counts[:, c].tolist(), name=names[c], marker={"color": CLASS_COLORS[c % len(CLASS_COLORS)]},
                hovertemplate="%{x}: %{y} examples of class " + names[c] + "<extra></extra>",
            )
        )  # fmt: skip
    fig.update_layout(
        template=TEMPLATE, barmode="stack", height=320, margin={"l": 10, "r": 10, "t": 10, "b": 10},
        xaxis={"title": {"text": "client"}}, yaxis={"title": {"text": "examples"}},
        legend={"title": {"text": "class"}, "orientation": "v"},
    )  # fmt: skip
    return fig


def poisoning_rounds(curves: Mapping[str, Sequence[dict[str, Any]]]) -> go.Figure:
    """Per round, each federation's clean test accuracy (solid) and backdoor success (dashed, when measured):
    `curves` maps a label (the aggregator) to that run's round records."""
    fig = go.Figure()
    for i, (label, records) in enumerate(curves.items()):
        color = MODEL_COLORS[i % len(MODEL_COLORS)]
        rounds = [r["round"] for r in records]
        fig.add_trace(
            go.Scatter(
                x=rounds, y=[r["test_accuracy"] for r in records], mode="lines+markers", line={"color": color},
                name=f"{label}: clean accuracy", hovertemplate="round %{x}: %{y:.1%}<extra>" + label + "</extra>",
            )
        )  # fmt: skip
        if any(r.get("backdoor_success") is not None for r in records):
            fig.add_trace(
                go.Scatter(
                    x=rounds, y=[r.get("backdoor_success") for r in records], mode="lines+markers",
                    line={"color": color, "dash": "dash"}, marker={"symbol": "x"}, name=f"{label}: backdoor success",
                    hovertemplate="round %{x}: backdoor %{y:.1%}<extra>" + label + "</extra>",
                )
            )  # fmt: skip
    longest = max((len(r) for r in curves.values()), default=0)
    fig.update_layout(
        template=TEMPLATE, height=380, margin={"l": 10, "r": 10, "t": 10, "b": 10},
        xaxis={"title": {"text": "round"}, "dtick": 1 if longest <= 20 else None},
        yaxis={"title": {"text": "share of test images"}, "range": [0, 1.02], "tickformat": ".0%"},
        legend={"orientation": "h", "y": -0.25},
    )  # fmt: skip
    return fig
