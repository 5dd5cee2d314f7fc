"""Plotly figure builders. Pure functions of results, so they are tested directly (AppTest cannot see charts).

Every figure sets its template explicitly: importing streamlit changes Plotly's default one.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.colors as pcolors
import plotly.graph_objects as go
import plotly.io as pio
import torch
from plotly.subplots import make_subplots

from dlsec_core.attacks.base import AttackResult, Reference
from dlsec_core.evaluation.rates import MeasuredRate, smallest_measurable_rate
from dlsec_core.studies.ownership import OwnershipStudyResult
from dlsec_core.theft.prada import PradaResult
from dlsec_core.workflows import CurveMode

#: plotly_white's layout only (axes, grid, fonts, colorway). Its per-trace-type defaults (bar outlines, error-bar
#: colours, ...) are not used here, and validating and copying them cost ~4.5 ms per figure, a tenth of a slider
#: rerun's server CPU on the Attack Lab (benchmarks/README.md, bench_load run 2).
TEMPLATE = go.layout.Template(layout=pio.templates["plotly_white"].layout)
CLEAN_COLOR = "#4C78A8"
ADV_COLOR = "#E45756"


def _rgb(imgs: torch.Tensor) -> np.ndarray:
    """(..., C, H, W) in [0, 1] -> (..., H, W, 3) uint8: gray repeated into three channels, channels past the
    third dropped."""
    rgb = imgs.detach().cpu().clamp(0, 1)
    rgb = rgb.expand(*rgb.shape[:-3], 3, *rgb.shape[-2:]) if rgb.shape[-3] == 1 else rgb[..., :3, :, :]
    return np.asarray((rgb.movedim(-3, -1).numpy() * 255).round().astype(np.uint8))


def _as_hw(img: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W) gray or (H, W, 3) uint8 RGB for display."""
    return np.asarray(img.detach().cpu().numpy()[0]) if img.shape[0] == 1 else _rgb(img)


def _image_trace(img: torch.Tensor) -> go.BaseTraceType:
    arr = _as_hw(img)
    if arr.ndim == 2:
        return go.Heatmap(
            z=arr, colorscale="gray", zmin=0, zmax=1, showscale=False, hovertemplate="%{z:.3f}<extra></extra>"
        )
    return go.Image(z=arr)


def _label(class_names: Sequence[str], k: int, p: float) -> str:
    return f"{class_names[k]} ({p:.0%})"


@dataclass(frozen=True, eq=False)
class Triptych:
    """The words and the scale of original | perturbation | adversarial for one attacked image, shared by the
    Attack Lab's light view (images) and its interactive one (Plotly)."""

    titles: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]  # each panel's title, line by line
    delta: np.ndarray  # (H, W): the change, averaged over channels
    bound: float  # the perturbation's diverging scale runs from -bound to +bound
    changed: bool  # any pixel changed
    fooled: bool


def triptych(result: AttackResult, class_names: Sequence[str], index: int = 0) -> Triptych:
    """Titles with each prediction and confidence; the perturbation's scale is the budget itself (±ε for L∞, the
    largest absolute change otherwise), so images at the same ε are drawn on the same scale. An unchanged image
    says "no perturbation" instead of a scale. "FOOLED" means the attack changed a right decision (an image the
    model already got wrong says so on the original instead)."""
    delta = (result.x_adv[index] - result.x[index]).mean(dim=0).numpy()  # (C, H, W) -> (H, W)
    changed = int(result.l0[index]) > 0
    largest = float(np.abs(delta).max())
    bound = max(result.eps if result.norm == "linf" and math.isfinite(result.eps) else largest, 1e-6)
    pc, pa = result.probs_clean[index], result.probs_adv[index]
    kc, ka = int(pc.argmax()), int(pa.argmax())
    fooled = bool(result.fooled[index])
    wrong = result.reference is Reference.LABEL and bool(result.already_wrong[index])
    titles = (
        (f"Original: {_label(class_names, kc, float(pc[kc]))}",)
        + ((f"already wrong (true: {class_names[int(result.y[index])]})",) if wrong else ()),
        (f"Perturbation (scale ±{bound:.3g})",) if changed else ("Perturbation: none", "(nothing changed)"),
        # FOOLED on its own line: the three titles share one narrow column and would run into each other
        (f"Adversarial: {_label(class_names, ka, float(pa[ka]))}",) + (("FOOLED",) if fooled else ()),
    )
    return Triptych(titles=titles, delta=delta, bound=bound, changed=changed, fooled=fooled)


def attack_triptych(result: AttackResult, class_names: Sequence[str], index: int = 0) -> go.Figure:
    """Original | perturbation | adversarial as Plotly heatmaps (pixel values on hover), titled by `triptych`."""
    words = triptych(result, class_names, index)
    bound = words.bound
    fig = make_subplots(
        rows=1, cols=3, subplot_titles=["<br>".join(t) for t in words.titles], horizontal_spacing=0.04
    )
    fig.add_trace(_image_trace(result.x[index]), row=1, col=1)
    fig.add_trace(
        go.Heatmap(
            z=words.delta,
            colorscale="RdBu_r",
            zmid=0,
            zmin=-bound,
            zmax=bound,
            showscale=words.changed,
            colorbar={"len": 0.8, "thickness": 12},
            hovertemplate="%{z:+.3f}<extra></extra>",
        ),  # fmt: skip
        row=1,
        col=2,
    )
    fig.add_trace(_image_trace(result.x_adv[index]), row=1, col=3)
    for col in (1, 2, 3):
        fig.update_yaxes(
            autorange="reversed", scaleanchor=f"x{'' if col == 1 else col}", visible=False, row=1, col=col
        )
        fig.update_xaxes(visible=False, row=1, col=col)
    if words.fooled:
        fig.layout.annotations[2].font.color = ADV_COLOR
    fig.update_layout(template=TEMPLATE, height=340, margin={"l": 10, "r": 10, "t": 55, "b": 10})
    return fig


#: Plotly's RdBu_r (blue = darker, white = unchanged, red = brighter), the perturbation's scale in both views.
_RDBU_R = np.array(
    [[int(v) for v in c[4:-1].split(",")] for c in pcolors.sequential.RdBu_r], dtype=np.float64
)


def perturbation_rgb(delta: np.ndarray, bound: float) -> np.ndarray:
    """(H, W) signed change -> (H, W, 3) uint8 on RdBu_r from -bound to +bound (0 is the middle colour)."""
    t = np.clip((np.asarray(delta, dtype=np.float64) / bound + 1) / 2, 0, 1) * (len(_RDBU_R) - 1)
    lo = np.floor(t).astype(int).clip(0, len(_RDBU_R) - 2)
    frac = (t - lo)[..., None]
    return np.asarray((_RDBU_R[lo] * (1 - frac) + _RDBU_R[lo + 1] * frac).round(), dtype=np.uint8)


def triptych_images(
    result: AttackResult, words: Triptych, index: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Original, perturbation (`words.delta` on `perturbation_rgb`'s scale) and adversarial as RGB uint8 arrays at
    the image's own resolution. The light view lets the browser scale them up without smoothing
    (`image-rendering: pixelated`, lab_view.PIXELATED): each pixel a sharp block at any size, and an ε step encodes
    and decodes three 28x28 PNGs instead of 280x280 ones (server CPU per step 0.023-0.025 -> 0.019-0.020 s, browser
    0.159-0.170 -> 0.135-0.147 s; benchmarks/README.md run 15)."""
    return _rgb(result.x[index]), perturbation_rgb(words.delta, words.bound), _rgb(result.x_adv[index])


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


def probability_bars_html(result: AttackResult, class_names: Sequence[str], index: int = 0) -> str:
    """Class probabilities before and after the attack as an HTML table of bars (the Attack Lab's light view: no
    chart library to redraw on every ε step). Each bar's width is its probability; the value is written next to
    it."""
    rows = []
    for k, name in enumerate(class_names):
        cells = []
        for probs, color, which in (
            (result.probs_clean, CLEAN_COLOR, "original"), (result.probs_adv, ADV_COLOR, "adversarial")
        ):  # fmt: skip
            p = float(probs[index][k])
            cells.append(
                f'<td class="dlsec-bar" data-which="{which}" data-p="{p:.6f}"><div style="display:flex;'
                f'align-items:center;gap:6px"><div style="width:{80 * p:.2f}%;height:10px;'
                f'background:{color};border-radius:2px"></div><span>{p:.0%}</span></div></td>'
            )
        rows.append(
            f'<tr data-class="{html.escape(str(name))}"><th style="text-align:right;font-weight:normal;'
            f'padding-right:8px">{html.escape(str(name))}</th>{"".join(cells)}</tr>'
        )
    head = (
        f'<tr><th></th><th style="text-align:left;font-weight:normal;color:{CLEAN_COLOR}">original</th>'
        f'<th style="text-align:left;font-weight:normal;color:{ADV_COLOR}">adversarial</th></tr>'
    )
    return (
        '<table class="dlsec-probabilities" style="width:100%;border-collapse:collapse;font-size:0.85rem;'
        'table-layout:fixed"><colgroup><col style="width:22%"><col><col></colgroup>'
        f"{head}{''.join(rows)}</table>"
    )


FOOLED_RGB, HELD_RGB, WRONG_RGB = (228, 87, 86), (84, 162, 75), (160, 160, 160)


def _label_band(h: int) -> int:
    """Height, in image pixels, of the white band under each tile that holds its label."""
    return max(5, (h + 4) // 2)


def mosaic(result: AttackResult, ncols: int = 8, border: int = 2, band: int = 0) -> np.ndarray:
    """The adversarial images tiled in a grid, each framed red if the attack fooled it, green if it held, grey if
    the model already got it wrong; `band` white rows under each tile leave room for a label: (H, W, 3) uint8."""
    imgs = result.x_adv
    n, _, h, w = imgs.shape
    rows = (n + ncols - 1) // ncols
    cell_h, cell_w = h + 2 * border + band, w + 2 * border
    out = np.full((rows * cell_h, ncols * cell_w, 3), 255, dtype=np.uint8)
    tiles = _rgb(imgs)  # (N, C, H, W) -> (N, H, W, 3)
    fooled, wrong = result.fooled.tolist(), result.already_wrong.tolist()
    for i in range(n):
        r, col = divmod(i, ncols)
        y0, x0 = r * cell_h, col * cell_w
        frame = WRONG_RGB if wrong[i] else FOOLED_RGB if fooled[i] else HELD_RGB
        out[y0 : y0 + h + 2 * border, x0 : x0 + cell_w] = frame
        out[y0 + border : y0 + border + h, x0 + border : x0 + border + w] = tiles[i]
    return out


def batch_grid(result: AttackResult, class_names: Sequence[str], ncols: int = 8) -> go.Figure:
    """A grid of adversarial test images (red frame = fooled, green = held, grey = already wrong), each with
    "label → prediction" in a band under the image, never over it."""
    h0, w0 = result.x.shape[2], result.x.shape[3]
    band = _label_band(h0)
    img = mosaic(result, ncols, band=band)
    n = result.x.shape[0]
    fig = go.Figure(go.Image(z=img, hoverinfo="skip"))
    h, w = h0 + 4 + band, w0 + 4
    for i in range(n):
        r, c = divmod(i, ncols)
        k, a = int(result.y[i]), int(result.pred_adv[i])
        fig.add_annotation(
            x=c * w + w / 2, y=r * h + h0 + 4 + band / 2, text=f"{class_names[k]}→{class_names[a]}",
            showarrow=False, font={"size": 11, "color": "#222"}, yanchor="middle",
        )  # fmt: skip
    rows = (n + ncols - 1) // ncols
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    # Each cell drawn about 90 px wide: the height follows the cells' aspect ratio.
    fig.update_layout(
        template=TEMPLATE,
        height=min(1100, int(rows * 90 * h / w) + 20),
        margin={"l": 0, "r": 0, "t": 0, "b": 0},
    )
    return fig


def training_curves(records: Sequence[dict[str, Any]]) -> go.Figure:
    """Loss (left) and accuracy (right) against epochs; step records make the curve grow within an epoch.

    Each record needs "epoch_float" and has "loss", "train_accuracy" and optionally "test_accuracy"; a value a
    record lacks (a card whose history another tool wrote) is a gap, not an error.
    """
    private = [r for r in records if r.get("epsilon") is not None]
    titles = ("Training loss", "Accuracy") + (
        (f"Privacy spent (ε, {str(private[-1].get('accountant', '')).upper()})",) if private else ()
    )
    fig = make_subplots(rows=1, cols=len(titles), subplot_titles=titles, horizontal_spacing=0.08)
    xs = [r["epoch_float"] for r in records]
    mode = (
        "lines" if len(records) > 1 else "markers"
    )  # one step (a run cancelled at once): a dot, not nothing
    fig.add_trace(
        go.Scatter(x=xs, y=[r.get("loss") for r in records], name="train loss", mode=mode), row=1, col=1
    )
    fig.add_trace(
        go.Scatter(x=xs, y=[r.get("train_accuracy") for r in records], name="train accuracy", mode=mode),
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
                + str(private[-1].get("accountant", "")).upper() + "</extra>",
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
MODE_STYLES: dict[CurveMode, tuple[str, str, str]] = {
    CurveMode.UNDEFENDED: ("dot", "circle", "undefended"),
    CurveMode.ADAPTIVE: ("solid", "diamond", "adaptive attack"),
    CurveMode.NAIVE: ("dash", "square-open", "naive attack"),
}


def _mode(record: dict[str, Any]) -> CurveMode:
    """A record's curve kind; records written before `mode` existed say it in the label's suffix."""
    mode = record.get("mode")
    if mode in MODE_STYLES:
        return CurveMode(mode)
    name = str(record.get("model", ""))
    return next((m for m in MODE_STYLES if name.endswith(f"({m})")), CurveMode.UNDEFENDED)


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
    defended = any(_mode(r) != CurveMode.UNDEFENDED for r in records)
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


def decade_axis(lo: float, hi: float, fmt: str = "g", *, snap: bool = False) -> dict[str, Any]:
    """A log axis over [lo, hi] labelled at the decades only ("0.1 1 10", not "4 5 6 7 8 9 1 2 3": Plotly's own
    log ticks label every digit when a range spans a decade or two).

    `snap`: widen the range to whole decades (at least two labels, for data inside one decade); otherwise the
    range is exactly [lo, hi] and its ends are labelled too when they are not decades (an ROC axis starting at
    1/500 says "0.2%"). `fmt`: "g" for plain numbers, "%" for rates (10^-3 -> "0.1%").
    """
    if not (lo > 0 and hi > lo):
        raise ValueError(f"A log axis needs 0 < lo < hi, got {lo!r}, {hi!r}.")
    first, last = math.floor(math.log10(lo) + 1e-9), math.ceil(math.log10(hi) - 1e-9)
    if snap:
        last = max(last, first + 1)
        lo, hi = 10.0**first, 10.0**last
    ticks = [10.0**k for k in range(first, last + 1) if lo * (1 - 1e-9) <= 10.0**k <= hi * (1 + 1e-9)]
    ticks = sorted({*ticks, lo, hi}, key=float) if not snap else ticks
    ticks = [t for i, t in enumerate(ticks) if i == 0 or t > ticks[i - 1] * (1 + 1e-9)]

    def text(v: float) -> str:
        if fmt == "%":
            return f"{v * 100:.2g}%" if v < 0.1 else f"{v * 100:.0f}%"
        return f"{v:.3g}"

    return {
        "type": "log", "range": [math.log10(lo), math.log10(hi)], "tickmode": "array", "tickvals": ticks,
        "ticktext": [text(t) for t in ticks],
    }  # fmt: skip


def roc_chart(
    curves: Sequence[dict[str, Any]],
    *,
    n_negatives: int,
    n_positives: int | None = None,
    title: str = "",
    x_title: str = "false-positive rate",
    y_title: str = "true-positive rate",
) -> go.Figure:
    """ROC curves on log-log axes that start where the sample can resolve a rate: 1/n negatives on the FPR axis
    and 1/n positives on the TPR axis (`dlsec_core.evaluation.rates`), never at an arbitrary 10^-4.

    Each curve: {"label", "fpr", "tpr"} (the label should carry its AUC and low-FPR reading). Points at a rate of 0
    are drawn on the axis floor. The chance diagonal TPR = FPR is dotted.
    """
    x_floor = smallest_measurable_rate(n_negatives)
    y_floor = smallest_measurable_rate(n_positives if n_positives is not None else n_negatives)
    fig = go.Figure()
    for c in curves:
        fig.add_trace(
            go.Scatter(
                x=[max(float(v), x_floor) for v in c["fpr"]], y=[max(float(v), y_floor) for v in c["tpr"]],
                mode="lines", name=str(c["label"]), line={"shape": "hv"},
                hovertemplate="FPR %{x:.2%} → TPR %{y:.2%}<extra>" + str(c["label"]) + "</extra>",
            )
        )  # fmt: skip
    low = min(x_floor, y_floor)
    fig.add_trace(
        go.Scatter(
            x=[low, 1], y=[low, 1], mode="lines", name="chance (TPR = FPR)",
            line={"dash": "dot", "color": "#999999"}, hoverinfo="skip",
        )
    )  # fmt: skip
    fig.update_layout(
        template=TEMPLATE, height=420, title=title, margin={"l": 10, "r": 10, "t": 40 if title else 30, "b": 10},
        xaxis={"title": f"{x_title} (log; from 1/{n_negatives:,})", **decade_axis(x_floor, 1.0, "%")},
        yaxis={"title": f"{y_title} (log)", **decade_axis(y_floor, 1.0, "%")},
        legend={"orientation": "h", "y": -0.25},
    )  # fmt: skip
    return fig


def roc_figure(
    roc: Sequence[dict[str, float]],
    auc: float,
    title: str,
    *,
    n_clean: int | None = None,
    n_adversarial: int | None = None,
) -> go.Figure:
    """The detector's ROC curve (adversarial = positive) with its AUC, and the chance diagonal.

    With `n_clean` (the clean images scored; and `n_adversarial`, the adversarial ones) the axes are log and start
    at 1/n, like every other ROC here (`roc_chart`): a rate below that is "fewer than one image", not a number.
    Without them, the old linear axes.
    """
    if n_clean is not None:
        return roc_chart(
            [{"label": f"AUC {auc:.3f}", "fpr": [p["fpr"] for p in roc], "tpr": [p["tpr"] for p in roc]}],
            n_negatives=n_clean, n_positives=n_adversarial, title=title,
            x_title="false-positive rate (clean flagged)", y_title="true-positive rate (adversarial flagged)",
        )  # fmt: skip
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
        showlegend=True,  # even with one line: the chart must say which accountant drew it
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
    eps = [float(r["epsilon"]) for r in private]
    fig.update_xaxes(**(decade_axis(min(eps), max(eps) * 1.01, snap=True) if eps else {"type": "log"}))
    fig.update_yaxes(range=[0, 1.01], tickformat=".0%")
    return fig


def membership_roc(curves: Sequence[dict[str, Any]], n_members: int, n_nonmembers: int) -> go.Figure:
    """Membership-inference ROC curves on log-log axes (Carlini et al. 2022: what matters is the low-FPR corner),
    from 1/n non-members: a smaller FPR cannot be measured on them.

    Each curve: {"label", "fpr", "tpr", "auc", "tpr_at_0_1pct": MeasuredRate}.
    """
    labelled = []
    for c in curves:
        rate: MeasuredRate = c["tpr_at_0_1pct"]
        reading = f"{rate.value:.1%}" if rate.measurable else f"not measurable at n = {rate.n:,}"
        labelled.append({**c, "label": f"{c['label']} (AUC {c['auc']:.3f}, TPR@0.1% FPR {reading})"})
    return roc_chart(labelled, n_negatives=n_nonmembers, n_positives=n_members)


def audit_scores(runs: Sequence[tuple[str, Any, Any]], bins: int = 40) -> go.Figure:
    """Canary scores (−loss on the wrong label) of included vs. excluded canaries, one row per audited run.

    `runs`: (label, scores, included) with (m,) arrays. Separated histograms = memorised canaries = leakage. Every
    histogram shares one set of bins and one x range (over all runs), so bar heights compare across colours and
    rows: Plotly's automatic bins differ per trace (2.5 vs 1 wide on a DP run) and make one colour look twice as tall.
    """
    all_scores = (
        np.concatenate([np.asarray(r[1], dtype=np.float64).ravel() for r in runs]) if runs else np.zeros(1)
    )
    lo, hi = float(all_scores.min()), float(all_scores.max())
    size = (hi - lo) / bins if hi > lo else 1.0
    xbins = {"start": lo, "end": hi + size * 1e-6 + (0 if hi > lo else 1.0), "size": size}
    fig = make_subplots(
        rows=max(1, len(runs)), cols=1, subplot_titles=[r[0] for r in runs], vertical_spacing=0.18,
        shared_xaxes=True,
    )  # fmt: skip
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
                    marker_color=color, xbins=xbins, autobinx=False, showlegend=row == 1,
                ),
                row=row, col=1,
            )  # fmt: skip
    fig.update_layout(
        template=TEMPLATE, barmode="overlay", height=260 * max(1, len(runs)),
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )  # fmt: skip
    fig.update_xaxes(range=[lo, xbins["end"]], showticklabels=True)
    fig.update_xaxes(
        title_text="score: −loss on the canary's wrong label (higher = memorised)", row=len(runs) or 1
    )
    return fig


def prada_distances(result: PradaResult, title: str = "") -> go.Figure:
    """PRADA on one client's stream: each query's minimum distance to its class's growing set (top) and the
    Shapiro-Wilk W of every test against δ (bottom), with the first alarm marked on both rows."""
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.12, row_heights=[0.6, 0.4],
        subplot_titles=["min L2 distance to earlier queries of the same class", "Shapiro-Wilk W of the distances"],
    )  # fmt: skip
    steps = [s for s in result.steps if s.distance is not None]
    for grew, name, color in ((True, "joined the growing set", CLEAN_COLOR), (False, "did not", "#9D9D9D")):
        chosen = [s for s in steps if s.grew == grew]
        fig.add_trace(
            go.Scatter(
                x=[s.index + 1 for s in chosen], y=[s.distance for s in chosen], mode="markers", name=name,
                marker={"color": color, "size": 5},
                hovertemplate="query %{x}<br>distance %{y:.3f}<extra></extra>",
            ),
            row=1, col=1,
        )  # fmt: skip
    tests = result.tests
    fig.add_trace(
        go.Scatter(
            x=[i + 1 for i, _ in tests], y=[w for _, w in tests], mode="lines+markers", name="W",
            line={"color": "#54A24B"}, hovertemplate="query %{x}<br>W %{y:.3f}<extra></extra>",
        ),
        row=2, col=1,
    )  # fmt: skip
    fig.add_hline(
        y=result.delta, line_dash="dash", line_color=ADV_COLOR, annotation_text=f"δ = {result.delta:g}",
        row=2, col=1,
    )  # fmt: skip
    if result.first_alarm is not None:
        for row in (1, 2):
            fig.add_vline(x=result.first_alarm + 1, line_color=ADV_COLOR, line_width=2, row=row, col=1)
        fig.add_annotation(
            x=result.first_alarm + 1, y=1, yref="y domain", text=f"alarm at query {result.first_alarm + 1}",
            showarrow=False, xanchor="left", font={"color": ADV_COLOR}, row=1, col=1,
        )  # fmt: skip
    fig.update_layout(
        template=TEMPLATE, height=460, title=title or None, margin={"l": 10, "r": 10, "t": 50, "b": 10},
        legend={"orientation": "h", "y": -0.15},
    )  # fmt: skip
    fig.update_xaxes(title_text="query", row=2, col=1)
    return fig


def watermark_key_accuracy(result: OwnershipStudyResult) -> go.Figure:
    """Key accuracy of each null model, the owner, the suspect, each modified copy of the suspect and each copy
    stolen from the owner, against chance (1 / classes); bars are green where the watermark was found."""
    rows: list[tuple[str, float, bool | None, str]] = [
        (f"null model (seed {n.seed})", n.key_accuracy, None, "trained without the watermark")
        for n in result.null_models
    ]
    rows.append((f"owner: {result.owner_name}", result.owner.key_accuracy, result.owner.verified,
                 f"p = {result.owner.p_value:.2g}"))  # fmt: skip
    rows.append((f"suspect: {result.suspect_name}", result.suspect.key_accuracy, result.suspect.verified,
                 f"p = {result.suspect.p_value:.2g}"))  # fmt: skip
    for check in result.survival:
        if check.kind == "extraction":  # a copy stolen from the owner, not a modified suspect
            label = (
                f"owner's copy {check.label}" if check.label else f"owner's copy, {check.parameter:g} queries"
            )
        else:
            label = f"suspect {check.label}" if check.label else f"suspect {check.kind} {check.parameter:g}"
        rows.append(
            (label, check.verdict.key_accuracy, check.verdict.verified, f"p = {check.verdict.p_value:.2g}")
        )
    colors = ["#9D9D9D" if found is None else "#54A24B" if found else ADV_COLOR for _, _, found, _ in rows]
    fig = go.Figure(
        go.Bar(
            x=[r[1] for r in rows], y=[r[0] for r in rows], orientation="h", marker_color=colors,
            text=[r[3] for r in rows], textposition="auto",
            hovertemplate="%{y}<br>key accuracy %{x:.2f}<extra></extra>",
        )
    )  # fmt: skip
    fig.add_vline(
        x=result.suspect.chance, line_dash="dash", annotation_text=f"chance {result.suspect.chance:.2f}"
    )
    fig.update_layout(
        template=TEMPLATE, height=120 + 28 * len(rows), margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis={"range": [0, 1.05], "title": {"text": f"key accuracy ({result.keys} keys)"}},
        yaxis={"autorange": "reversed"},
    )  # fmt: skip
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
    fig.update_yaxes(autorange="reversed", showticklabels=False, showgrid=False)
    for r in range(1, len(rows) + 1):  # square pixels in every cell: each y axis scales with its own x axis
        for c in range(1, ncols + 1):
            fig.update_yaxes(
                scaleanchor=fig.get_subplot(r, c).xaxis.plotly_name.replace("axis", ""), row=r, col=c
            )
    fig.update_annotations(font_size=11)
    fig.update_layout(
        template=TEMPLATE, height=40 + 150 * len(rows), margin={"l": 10, "r": 10, "t": 30, "b": 10}
    )
    return fig


def gradient_leakage(
    originals: torch.Tensor,
    labels: Sequence[int],
    reconstructions: torch.Tensor,
    psnr: Sequence[float | str],
    ssim: Sequence[float],
) -> go.Figure:
    """A client's images (top row, with their labels) over the attacker's reconstructions (bottom row, each paired
    with the original above it, with its PSNR in dB and SSIM); PSNR may be the string "inf" (JSON has no inf)."""
    recovered = [f"{float(p):.1f} dB · SSIM {s:.2f}" for p, s in zip(psnr, ssim, strict=True)]
    return image_rows(
        [
            ("client's image", originals, [f"label {k}" for k in labels]),
            ("reconstruction", reconstructions, recovered),
        ]
    )


def extraction_curve(points: Sequence[dict[str, Any]], victim_accuracy: float | None = None) -> go.Figure:
    """A stolen model's fidelity (agreement with the victim) and test accuracy vs. the queries spent, log x axis;
    the victim's own accuracy as a dotted line (records of `ExtractionPoint.to_record()`)."""
    fig = go.Figure()
    queries = [p["queries"] for p in points]
    for key, name, dash in (("fidelity", "fidelity (agrees with the victim)", "solid"),
                            ("accuracy", "accuracy (test labels)", "dash")):  # fmt: skip
        fig.add_trace(
            go.Scatter(
                x=queries, y=[p[key] for p in points], mode="lines+markers", name=name, line={"dash": dash},
                hovertemplate="%{x:,} queries: %{y:.1%}<extra>" + key + "</extra>",
            )
        )  # fmt: skip
    if victim_accuracy is not None:
        fig.add_hline(y=victim_accuracy, line={"dash": "dot", "color": "#7f7f7f"},
                      annotation_text=f"victim accuracy {victim_accuracy:.1%}", annotation_position="bottom right")  # fmt: skip
    fig.update_layout(
        template=TEMPLATE, height=380, xaxis={"title": "queries answered by the API", "type": "log"},
        yaxis={"title": "fraction of test images", "range": [0, 1.02], "tickformat": ".0%"},
        margin={"l": 10, "r": 10, "t": 10, "b": 10}, legend={"orientation": "h", "y": -0.25},
    )  # fmt: skip
    return fig


def federated_rounds(records: Sequence[dict[str, Any]]) -> go.Figure:
    """A federation's global test accuracy per round, with the range of its clients' own accuracies (the spread a
    non-IID split opens) as a band; `records` are the federated study's round events."""
    rounds = [r["round"] for r in records]
    spread = [[a for a in r["client_accuracies"] if a is not None] for r in records]
    lo = [min(a) if a else None for a in spread]
    hi = [max(a) if a else None for a in spread]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(x=rounds, y=hi, mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip")
    )
    fig.add_trace(
        go.Scatter(
            x=rounds, y=lo, mode="lines", line={"width": 0}, fill="tonexty", fillcolor="rgba(76,120,168,0.18)",
            name="clients' accuracy (lowest to highest)", hovertemplate="round %{x}: lowest client %{y:.1%}<extra></extra>",
        )
    )  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=rounds, y=[r["test_accuracy"] for r in records], mode="lines+markers", line={"color": CLEAN_COLOR},
            name="global model, test accuracy", hovertemplate="round %{x}: %{y:.1%}<extra></extra>",
        )
    )  # fmt: skip
    fig.update_layout(
        template=TEMPLATE, height=360, margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis={"title": {"text": "round"}, "dtick": 1 if len(rounds) <= 20 else None},
        yaxis={"title": {"text": "accuracy"}, "range": [0, 1], "tickformat": ".0%"},
        legend={"orientation": "h", "y": -0.2},
    )  # fmt: skip
    return fig


def transfer_vs_whitebox(curves: Mapping[str, Sequence[dict[str, Any]]]) -> go.Figure:
    """Attack success vs. ε for a few sweeps of the same victim (label -> the sweep's point records), drawn side
    by side: success = 1 − accuracy under attack, the share of the test images the victim gets wrong."""
    fig = go.Figure()
    for i, (label, rows) in enumerate(curves.items()):
        fig.add_trace(
            go.Scatter(
                x=[r["eps"] for r in rows], y=[1 - r["accuracy"] for r in rows], mode="lines+markers",
                name=label, line={"color": MODEL_COLORS[i % len(MODEL_COLORS)]},
                hovertemplate="ε=%{x:.3g}<br>success=%{y:.1%}<extra>" + label + "</extra>",
            )
        )  # fmt: skip
    first = next((rows for rows in curves.values() if rows), [])
    unit = "L∞" if not first or first[0].get("norm", "linf") == "linf" else "L2"
    fig.update_layout(
        template=TEMPLATE, height=380, xaxis={"title": f"ε ({unit}, pixel units)", "rangemode": "tozero"},
        yaxis={"title": "attack success (1 − accuracy)", "range": [0, 1.02], "tickformat": ".0%"},
        margin={"l": 10, "r": 10, "t": 10, "b": 10}, legend={"orientation": "h", "y": -0.2},
    )  # fmt: skip
    return fig
