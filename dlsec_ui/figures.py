"""Plotly figure builders. Pure functions of results, so they are tested directly (AppTest cannot see charts).

Every figure sets its template explicitly: importing streamlit changes Plotly's default one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from dlsec_core.attacks.base import AttackResult

TEMPLATE = "plotly_white"
CLEAN_COLOR = "#4C78A8"
ADV_COLOR = "#E45756"


def _as_hw(img: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W) gray or (H, W, 3) uint8 RGB for display."""
    arr = img.detach().cpu().numpy()
    if arr.shape[0] == 1:
        return np.asarray(arr[0])
    return np.asarray((arr.transpose(1, 2, 0)[..., :3] * 255).round().astype(np.uint8))


def _image_trace(img: torch.Tensor) -> go.BaseTraceType:
    arr = _as_hw(img)
    if arr.ndim == 2:
        return go.Heatmap(
            z=arr, colorscale="gray", zmin=0, zmax=1, showscale=False, hovertemplate="%{z:.3f}<extra></extra>"
        )
    return go.Image(z=arr)


def _label(class_names: Sequence[str], k: int, p: float) -> str:
    return f"{class_names[k]} ({p:.0%})"


def attack_triptych(result: AttackResult, class_names: Sequence[str], index: int = 0) -> go.Figure:
    """Original | perturbation | adversarial, each titled with its prediction and confidence.

    The perturbation uses a diverging scale centred on 0 whose range is the budget itself (±ε for L∞, the
    largest absolute change otherwise), so images at the same ε are drawn on the same scale.
    """
    x, x_adv = result.x[index], result.x_adv[index]
    delta = (x_adv - x).mean(dim=0).numpy()  # (C, H, W) -> (H, W): channel-averaged change
    bound = max(result.eps if result.norm == "linf" else float(np.abs(delta).max()), 1e-6)
    pc, pa = result.probs_clean[index], result.probs_adv[index]
    kc, ka = int(pc.argmax()), int(pa.argmax())
    fooled = bool(result.success[index])
    titles = (
        f"Original: {_label(class_names, kc, float(pc[kc]))}",
        f"Perturbation (scale ±{bound:.3g})",
        # FOOLED on its own line: the three titles share one narrow column and would run into each other
        f"Adversarial: {_label(class_names, ka, float(pa[ka]))}" + ("<br>FOOLED" if fooled else ""),
    )
    fig = make_subplots(rows=1, cols=3, subplot_titles=titles, horizontal_spacing=0.04)
    fig.add_trace(_image_trace(x), row=1, col=1)
    fig.add_trace(
        go.Heatmap(
            z=delta,
            colorscale="RdBu_r",
            zmid=0,
            zmin=-bound,
            zmax=bound,
            colorbar={"len": 0.8, "thickness": 12},
            hovertemplate="%{z:+.3f}<extra></extra>",
        ),  # fmt: skip
        row=1,
        col=2,
    )
    fig.add_trace(_image_trace(x_adv), row=1, col=3)
    for col in (1, 2, 3):
        fig.update_yaxes(
            autorange="reversed", scaleanchor=f"x{'' if col == 1 else col}", visible=False, row=1, col=col
        )
        fig.update_xaxes(visible=False, row=1, col=col)
    if fooled:
        fig.layout.annotations[2].font.color = ADV_COLOR
    fig.update_layout(template=TEMPLATE, height=340, margin={"l": 10, "r": 10, "t": 55, "b": 10})
    return fig


def probability_bars(result: AttackResult, class_names: Sequence[str], index: int = 0) -> go.Figure:
    """Class probabilities before and after the attack, side by side."""
    names = list(class_names)
    fig = go.Figure(
        [
            go.Bar(name="original", x=names, y=result.probs_clean[index].tolist(), marker_color=CLEAN_COLOR),
            go.Bar(name="adversarial", x=names, y=result.probs_adv[index].tolist(), marker_color=ADV_COLOR),
        ]
    )
    fig.update_layout(
        template=TEMPLATE, barmode="group", height=260, yaxis={"range": [0, 1], "title": "probability"},
        xaxis={"title": "class", "type": "category"}, margin={"l": 10, "r": 10, "t": 10, "b": 10},
        legend={"orientation": "h", "y": 1.12},
    )  # fmt: skip
    return fig


def mosaic(result: AttackResult, ncols: int = 8, border: int = 2) -> np.ndarray:
    """The adversarial images tiled in a grid, each framed red if fooled and green if it held: (H, W, 3) uint8."""
    imgs = result.x_adv
    n, c, h, w = imgs.shape
    rows = (n + ncols - 1) // ncols
    cell_h, cell_w = h + 2 * border, w + 2 * border
    out = np.full((rows * cell_h, ncols * cell_w, 3), 255, dtype=np.uint8)
    rgb = imgs.repeat(1, 3, 1, 1) if c == 1 else imgs[:, :3]
    tiles = (rgb.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)  # (N, C, H, W) -> (N, H, W, 3)
    success = result.success.tolist()
    for i in range(n):
        r, col = divmod(i, ncols)
        y0, x0 = r * cell_h, col * cell_w
        out[y0 : y0 + cell_h, x0 : x0 + cell_w] = (228, 87, 86) if success[i] else (84, 162, 75)
        out[y0 + border : y0 + border + h, x0 + border : x0 + border + w] = tiles[i]
    return out


def batch_grid(result: AttackResult, class_names: Sequence[str], ncols: int = 8) -> go.Figure:
    """A grid of adversarial test images: red frame = fooled, green = held; hover shows label -> prediction."""
    img = mosaic(result, ncols)
    n = result.x.shape[0]
    fig = go.Figure(go.Image(z=img, hoverinfo="skip"))
    h, w = result.x.shape[2] + 4, result.x.shape[3] + 4
    for i in range(n):
        r, c = divmod(i, ncols)
        k, a = int(result.y[i]), int(result.pred_adv[i])
        fig.add_annotation(
            x=c * w + w / 2, y=r * h + h - 1, text=f"{class_names[k]}→{class_names[a]}", showarrow=False,
            font={"size": 10, "color": "white"}, bgcolor="rgba(0,0,0,0.45)", yanchor="bottom",
        )  # fmt: skip
    rows = (n + ncols - 1) // ncols
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(
        template=TEMPLATE, height=min(900, 110 * rows + 20), margin={"l": 0, "r": 0, "t": 0, "b": 0}
    )
    return fig


def training_curves(records: Sequence[dict[str, Any]]) -> go.Figure:
    """Loss (left) and accuracy (right) against epochs; step records make the curve grow within an epoch.

    Each record needs "epoch_float", "loss", "train_accuracy" and optionally "test_accuracy".
    """
    private = [r for r in records if r.get("epsilon") is not None]
    titles = ("Training loss", "Accuracy") + (
        (f"Privacy spent (ε, {private[-1]['accountant'].upper()})",) if private else ()
    )
    fig = make_subplots(rows=1, cols=len(titles), subplot_titles=titles, horizontal_spacing=0.08)
    xs = [r["epoch_float"] for r in records]
    fig.add_trace(
        go.Scatter(x=xs, y=[r["loss"] for r in records], name="train loss", mode="lines"), row=1, col=1
    )
    fig.add_trace(
        go.Scatter(x=xs, y=[r["train_accuracy"] for r in records], name="train accuracy", mode="lines"),
        row=1,
        col=2,
    )
    test = [r for r in records if r.get("test_accuracy") is not None]
    fig.add_trace(
        go.Scatter(
            x=[r["epoch_float"] for r in test],
            y=[r["test_accuracy"] for r in test],
            name="test accuracy",
            mode="lines+markers",
        ),  # fmt: skip
        row=1,
        col=2,
    )
    robust = [r for r in records if r.get("robust_accuracy") is not None]
    if robust:
        fig.add_trace(
            go.Scatter(
                x=[r["epoch_float"] for r in robust],
                y=[r["robust_accuracy"] for r in robust],
                name="robust accuracy",
                mode="lines+markers",
                line={"dash": "dot"},
                hovertemplate="%{y:.1%}<extra>" + str(robust[-1].get("robust_attack", "")) + "</extra>",
            ),  # fmt: skip
            row=1,
            col=2,
        )
    if private:
        fig.add_trace(
            go.Scatter(
                x=[0.0] + [r["epoch_float"] for r in private], y=[0.0] + [r["epsilon"] for r in private],
                name="ε spent", mode="lines+markers", line={"color": "#7b2cbf"},
                hovertemplate="ε = %{y:.3g}<extra>δ = " + f"{private[-1]['delta']:g}, "
                + private[-1]["accountant"].upper() + "</extra>",
            ),
            row=1, col=3,
        )  # fmt: skip
    fig.update_xaxes(title_text="epoch", rangemode="tozero")
    fig.update_yaxes(range=[0, 1.01], row=1, col=2)
    if private:
        fig.update_yaxes(rangemode="tozero", row=1, col=3)
    fig.update_layout(template=TEMPLATE, height=300, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


#: one hue per model on the robustness chart (Plotly's qualitative "D3" colours)
MODEL_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
#: how each curve of a model is drawn: (line dash, marker symbol, legend suffix)
MODE_STYLES = {
    "undefended": ("dot", "circle", "undefended"),
    "adaptive": ("solid", "diamond", "adaptive attack"),
    "naive": ("dash", "square-open", "naive attack"),
}


def _mode(record: dict[str, Any]) -> str:
    """A record's curve kind; records written before `mode` existed say it in the label's suffix."""
    mode = record.get("mode")
    if mode in MODE_STYLES:
        return str(mode)
    name = str(record.get("model", ""))
    return (
        "naive" if name.endswith("(naive)") else "adaptive" if name.endswith("(adaptive)") else "undefended"
    )


def robustness_curves(records: Sequence[dict[str, Any]], title: str = "") -> go.Figure:
    """Accuracy vs. ε, one line per curve, points in arrival order (the chart grows while a sweep runs).

    With a defense a model has three curves; they share the model's hue (undefended dotted, adaptive solid, naive
    dashed with open markers), so six curves of two models read as two families. Curves that coincide (two
    models' naive curves at 100 % often do) stay visible: each model's lines and markers are wider than the next
    model's, so a line drawn over another leaves the other's edges showing.
    """
    fig = go.Figure()
    by_curve: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_curve.setdefault(r["model"], []).append(r)
    models = list(dict.fromkeys(str(r.get("model_id", r["model"])) for r in records))
    defended = any(_mode(r) != "undefended" for r in records)
    for name, rows in by_curve.items():
        i = models.index(str(rows[0].get("model_id", rows[0]["model"])))
        dash, symbol, _ = MODE_STYLES[_mode(rows[0])]
        if not defended:
            dash = "solid"
        wider = len(models) - 1 - i  # the first model is drawn widest, underneath the others
        fig.add_trace(
            go.Scatter(
                x=[r["eps"] for r in rows], y=[r["accuracy"] for r in rows], mode="lines+markers", name=name,
                legendgroup=str(i), line={"dash": dash, "color": MODEL_COLORS[i % len(MODEL_COLORS)], "width": 2 + 2.5 * wider},
                marker={"symbol": symbol, "size": 7 + 4 * wider, "line": {"width": 1.5}},
                hovertemplate="ε=%{x:.3g}<br>accuracy=%{y:.1%}<extra>" + name + "</extra>",
            )
        )  # fmt: skip
    unit = "L∞" if not records or records[0].get("norm", "linf") == "linf" else "L2"
    fig.update_layout(
        template=TEMPLATE, height=400, title=title, xaxis={"title": f"ε ({unit}, pixel units)", "rangemode": "tozero"},
        yaxis={"title": "accuracy under attack", "range": [0, 1.02], "tickformat": ".0%"},
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10}, legend={"orientation": "h", "y": -0.2},
    )  # fmt: skip
    return fig


def detection_curves(records: Sequence[dict[str, Any]]) -> go.Figure:
    """Attack success, detection rate (among successes) and evasion (fooled and not flagged) vs. ε."""
    xs = [r["eps"] for r in records]
    fig = go.Figure()
    for key, name, dash in (
        ("success_rate", "attack success", "solid"),
        ("detection_rate", "detected (among successful)", "solid"),
        ("evaded_rate", "fooled and not flagged", "dash"),
        ("false_positive_rate", "clean images flagged", "dot"),
    ):
        fig.add_trace(
            go.Scatter(
                x=xs, y=[r[key] for r in records], name=name, mode="lines+markers", line={"dash": dash}
            )
        )
    fig.update_layout(
        template=TEMPLATE, height=360, xaxis={"title": "ε (pixel units)", "rangemode": "tozero"},
        yaxis={"title": "rate", "range": [0, 1.02], "tickformat": ".0%"}, margin={"l": 10, "r": 10, "t": 10, "b": 10},
        legend={"orientation": "h", "y": -0.25},
    )  # fmt: skip
    return fig


def resolution_floor(n: int) -> float:
    """The smallest non-zero rate that n samples can show (1/n); rates below it read as 0 (1 when n is 0)."""
    return 1.0 / n if n > 0 else 1.0


def roc_figure(
    roc: Sequence[dict[str, float]],
    auc: float,
    title: str,
    *,
    n_clean: int | None = None,
    n_adversarial: int | None = None,
) -> go.Figure:
    """The detector's ROC curve (adversarial = positive) with its AUC, and the chance diagonal.

    With `n_clean` (and `n_adversarial`), the false-positive (true-positive) rates under 1/n, which that many
    images cannot resolve, are shaded: a curve that starts at 0 there says "fewer than one image", not "none".
    """
    fig = go.Figure(
        [
            go.Scatter(
                x=[p["fpr"] for p in roc], y=[p["tpr"] for p in roc], mode="lines", name=f"AUC {auc:.3f}"
            ),
            go.Scatter(
                x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot", "color": "gray"}
            ),
        ]
    )
    shade = {"fillcolor": "#bbbbbb", "opacity": 0.35, "line_width": 0, "layer": "below"}
    if n_clean:
        fig.add_vrect(
            x0=0, x1=resolution_floor(n_clean), annotation_text=f"< 1/{n_clean} clean", annotation_position="top left",
            **shade,
        )  # fmt: skip
    if n_adversarial is not None:
        fig.add_hrect(
            y0=0, y1=resolution_floor(n_adversarial), annotation_text=f"< 1/{n_adversarial} adversarial",
            annotation_position="bottom right", **shade,
        )  # fmt: skip
    fig.update_layout(
        template=TEMPLATE, height=360, title=title, xaxis={"title": "false-positive rate (clean flagged)"},
        yaxis={"title": "true-positive rate (adversarial flagged)"}, margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )  # fmt: skip
    return fig


def certified_vs_empirical(
    certified: Sequence[dict[str, Any]], empirical: Sequence[dict[str, Any]]
) -> go.Figure:
    """Certified accuracy (a guarantee) and empirical accuracy under attack (what an attack achieved) vs. L2 radius."""
    fig = go.Figure()
    if certified:
        fig.add_trace(
            go.Scatter(
                x=[r["radius"] for r in certified], y=[r["certified_accuracy"] for r in certified],
                mode="lines+markers", name="certified (randomized smoothing)", line={"shape": "hv"},
            )
        )  # fmt: skip
    if empirical:
        fig.add_trace(
            go.Scatter(
                x=[r["eps"] for r in empirical], y=[r["accuracy"] for r in empirical], mode="lines+markers",
                name="empirical (L2 PGD + EOT)", line={"dash": "dash"},
            )
        )  # fmt: skip
    fig.update_layout(
        template=TEMPLATE, height=380, xaxis={"title": "L2 radius / ε (pixel units)", "rangemode": "tozero"},
        yaxis={"title": "accuracy", "range": [0, 1.02], "tickformat": ".0%"}, margin={"l": 10, "r": 10, "t": 10, "b": 10},
        legend={"orientation": "h", "y": -0.25},
    )  # fmt: skip
    return fig


ACCOUNTANT_COLORS = {"rdp": "#1f77b4", "prv": "#d62728", "gdp": "#7f7f7f"}


def epsilon_curves(curves: dict[str, Sequence[dict[str, Any]]], steps_per_epoch: int) -> go.Figure:
    """ε spent against epochs, one line per accountant (records of `PrivacySpend.to_record()`)."""
    fig = go.Figure()
    for acc, records in curves.items():
        fig.add_trace(
            go.Scatter(
                x=[0.0] + [r["steps"] / steps_per_epoch for r in records], y=[0.0] + [r["epsilon"] for r in records],
                mode="lines", name=acc.upper(), line={"color": ACCOUNTANT_COLORS.get(acc), "dash": "dot" if acc == "gdp" else "solid"},
                hovertemplate="epoch %{x:.2f}: ε = %{y:.3g}<extra>" + acc.upper() + "</extra>",
            )
        )  # fmt: skip
    fig.update_layout(
        template=TEMPLATE, height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis_title="epochs", yaxis_title="ε spent", legend_title_text="accountant",
    )  # fmt: skip
    fig.update_yaxes(rangemode="tozero")
    return fig


def privacy_frontier(records: Sequence[dict[str, Any]]) -> go.Figure:
    """Test accuracy vs. ε (log axis), one marker series per accountant; non-private baselines as dashed lines."""
    fig = go.Figure()
    private = [r for r in records if r.get("epsilon") is not None]
    for acc in sorted({str(r["accountant"]) for r in private}):
        rows = sorted((r for r in private if r["accountant"] == acc), key=lambda r: r["epsilon"])
        fig.add_trace(
            go.Scatter(
                x=[r["epsilon"] for r in rows], y=[r["test_accuracy"] for r in rows], mode="lines+markers",
                name=f"DP-SGD (ε by {acc.upper()})", marker={"size": 9, "color": ACCOUNTANT_COLORS.get(acc)},
                text=[f"{r['model']}<br>σ = {r['noise_multiplier']:.3g}, δ = {r['delta']:g}" for r in rows],
                hovertemplate="%{text}<br>ε = %{x:.3g}, accuracy %{y:.1%}<extra></extra>",
            )
        )  # fmt: skip
    for r in (r for r in records if r.get("epsilon") is None):
        fig.add_hline(
            y=r["test_accuracy"], line={"dash": "dash", "color": "#2ca02c"},
            annotation_text=f"no DP (ε = ∞): {r['model']} {r['test_accuracy']:.1%}", annotation_position="bottom right",
        )  # fmt: skip
    fig.update_layout(
        template=TEMPLATE, height=380, margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis_title="ε (log scale)", yaxis_title="test accuracy",
    )  # fmt: skip
    fig.update_xaxes(type="log")
    fig.update_yaxes(range=[0, 1.01], tickformat=".0%")
    return fig


def membership_roc(curves: Sequence[dict[str, Any]]) -> go.Figure:
    """Membership-inference ROC curves on log-log axes (Carlini et al. 2022: what matters is the low-FPR corner).

    Each curve: {"label", "fpr", "tpr", "auc", "tpr_at_0_1pct"}; the chance diagonal TPR = FPR is drawn dotted.
    """
    fig = go.Figure()
    floor = 1e-4
    for c in curves:
        fpr = [max(float(v), floor) for v in c["fpr"]]
        tpr = [max(float(v), floor) for v in c["tpr"]]
        fig.add_trace(
            go.Scatter(
                x=fpr, y=tpr, mode="lines", name=f"{c['label']} (AUC {c['auc']:.3f}, TPR@0.1% {c['tpr_at_0_1pct']:.1%})",
                hovertemplate="FPR %{x:.2%} → TPR %{y:.2%}<extra>" + str(c["label"]) + "</extra>",
            )
        )  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=[floor, 1], y=[floor, 1], mode="lines", name="chance (TPR = FPR)",
            line={"dash": "dot", "color": "#999999"}, hoverinfo="skip",
        )
    )  # fmt: skip
    fig.update_layout(
        template=TEMPLATE, height=420, margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis_title="false-positive rate (log)", yaxis_title="true-positive rate (log)",
        legend={"orientation": "h", "y": -0.25},
    )  # fmt: skip
    fig.update_xaxes(type="log", range=[-4, 0], exponentformat="power")
    fig.update_yaxes(type="log", range=[-4, 0], exponentformat="power")
    return fig


def audit_scores(runs: Sequence[tuple[str, Any, Any]]) -> go.Figure:
    """Canary scores (−loss on the wrong label) of included vs. excluded canaries, one row per audited run.

    `runs`: (label, scores, included) with (m,) arrays. Separated histograms = memorised canaries = leakage.
    """
    fig = make_subplots(rows=len(runs), cols=1, subplot_titles=[r[0] for r in runs], vertical_spacing=0.18)
    for row, (_, scores, included) in enumerate(runs, start=1):
        s = [float(v) for v in scores]
        inc = [bool(v) for v in included]
        for flag, name, color in (
            (True, "canary in training set", "#d62728"),
            (False, "canary left out", "#1f77b4"),
        ):
            fig.add_trace(
                go.Histogram(
                    x=[v for v, i in zip(s, inc, strict=True) if i == flag], name=name, opacity=0.6,
                    marker_color=color, nbinsx=40, showlegend=row == 1,
                ),
                row=row, col=1,
            )  # fmt: skip
    fig.update_layout(
        template=TEMPLATE, barmode="overlay", height=260 * len(runs), margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )  # fmt: skip
    fig.update_xaxes(title_text="score: −loss on the canary's wrong label (higher = memorised)")
    return fig


def image_rows(rows: Sequence[tuple[str, torch.Tensor, Sequence[str]]]) -> go.Figure:
    """A grid of images: one row per (row label, (K, C, H, W) images in [0, 1], K cell titles)."""
    ncols = max(len(r[2]) for r in rows)
    titles = [t for _, _, cell_titles in rows for t in list(cell_titles) + [""] * (ncols - len(cell_titles))]
    fig = make_subplots(
        rows=len(rows), cols=ncols, subplot_titles=titles, horizontal_spacing=0.01, vertical_spacing=0.12
    )
    for r, (_, images, _) in enumerate(rows, start=1):
        for c in range(images.shape[0]):
            fig.add_trace(_image_trace(images[c]), row=r, col=c + 1)
        fig.update_yaxes(title_text=rows[r - 1][0], row=r, col=1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(autorange="reversed", showticklabels=False, scaleanchor="x", showgrid=False)
    fig.update_annotations(font_size=11)
    fig.update_layout(
        template=TEMPLATE, height=40 + 150 * len(rows), margin={"l": 10, "r": 10, "t": 30, "b": 10}
    )
    return fig
