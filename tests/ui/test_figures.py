"""The Plotly figure builders, tested directly (AppTest cannot look inside charts)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest
import torch

from dlsec_core.attacks.base import AttackResult, Reference
from dlsec_ui import figures

NAMES = [str(k) for k in range(10)]
RED = (228, 87, 86)
GREEN = (84, 162, 75)


def make_result(
    *,
    n: int | None = None,
    channels: int = 1,
    size: int = 8,
    eps: float = 0.1,
    norm: str = "linf",
    fooled: list[bool] | None = None,
    target: list[int] | None = None,
    seed: int = 0,
) -> AttackResult:
    """A hand-made attack result: labels 0, 1, ...; clean predictions right, adversarial ones wrong where `fooled`
    (default: every other image of `n`)."""
    g = torch.Generator().manual_seed(seed)
    k = len(NAMES)
    fooled = fooled if fooled is not None else [i % 2 == 0 for i in range(n or 3)]
    n = len(fooled)
    x = torch.rand(n, channels, size, size, generator=g) * 0.6 + 0.2  # away from the box edges
    sign = torch.randint(0, 2, x.shape, generator=g).float() * 2 - 1
    x_adv = (
        x + eps * sign if norm == "linf" else x + eps * sign / sign.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    )
    y = torch.arange(n) % k
    pred_adv = torch.where(torch.tensor(fooled), (y + 1) % k, y)

    def probs(pred: torch.Tensor) -> torch.Tensor:
        p = torch.full((n, k), 0.2 / (k - 1))
        p[torch.arange(n), pred] = 0.8
        return p

    return AttackResult(
        attack="fgsm",
        eps=eps,
        norm=norm,
        x=x,
        x_adv=x_adv,
        y=y,
        target=None if target is None else torch.tensor(target),
        probs_clean=probs(y),
        probs_adv=probs(pred_adv),
    )


# -- attack triptych ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [0.03, 0.1, 0.3])
def test_triptych_gray_linf(eps: float) -> None:
    result = make_result(eps=eps, fooled=[True, False, True])
    fig = figures.attack_triptych(result, NAMES)
    assert len(fig.data) == 3
    assert all(isinstance(t, go.Heatmap) for t in fig.data)
    original, delta, adversarial = fig.data
    assert np.allclose(np.asarray(original.z), result.x[0, 0].numpy())
    assert np.allclose(np.asarray(adversarial.z), result.x_adv[0, 0].numpy())
    assert np.allclose(np.asarray(delta.z), result.perturbation[0, 0].numpy(), atol=1e-6)
    # symmetric diverging scale, and its range is the budget itself
    assert delta.zmid == 0
    assert delta.zmin == pytest.approx(-eps) and delta.zmax == pytest.approx(eps)
    assert original.zmin == 0 and original.zmax == 1


def test_triptych_titles_follow_the_result() -> None:
    result = make_result(fooled=[True, False])
    fooled = figures.attack_triptych(result, NAMES, index=0)
    held = figures.attack_triptych(result, NAMES, index=1)
    titles = [a.text for a in fooled.layout.annotations]
    assert titles[0] == "Original: 0 (80%)"
    assert titles[1].startswith("Perturbation (scale ±0.1")
    assert titles[2] == "Adversarial: 1 (80%)<br>FOOLED"
    assert fooled.layout.annotations[2].font.color == figures.ADV_COLOR
    assert held.layout.annotations[2].text == "Adversarial: 1 (80%)"  # label 1 kept
    assert held.layout.annotations[2].font.color is None


def test_triptych_targeted_marks_reaching_the_target() -> None:
    reached = make_result(fooled=[True], target=[1])  # adversarial prediction 1 == target
    missed = make_result(fooled=[True], target=[5])
    assert figures.attack_triptych(reached, NAMES).layout.annotations[2].text.endswith("FOOLED")
    assert not figures.attack_triptych(missed, NAMES).layout.annotations[2].text.endswith("FOOLED")


def test_triptych_l2_scale_is_the_largest_change() -> None:
    result = make_result(norm="l2", eps=1.0)
    fig = figures.attack_triptych(result, NAMES)
    delta = fig.data[1]
    largest = float(np.abs(result.perturbation[0].mean(dim=0).numpy()).max())
    assert delta.zmax == pytest.approx(largest) and delta.zmin == pytest.approx(-largest)
    assert delta.zmid == 0


def test_triptych_zero_perturbation_keeps_a_valid_scale() -> None:
    result = make_result(eps=0.0)
    delta = figures.attack_triptych(result, NAMES).data[1]
    assert delta.zmax > 0 and delta.zmin == -delta.zmax


def test_triptych_rgb() -> None:
    result = make_result(channels=3, size=6)
    fig = figures.attack_triptych(result, NAMES)
    assert len(fig.data) == 3
    assert isinstance(fig.data[0], go.Image) and isinstance(fig.data[2], go.Image)
    assert isinstance(fig.data[1], go.Heatmap)
    assert np.asarray(fig.data[0].z).shape == (6, 6, 3)


# -- the light view: words, images and bars without a chart library ------------------------------------------


def test_light_and_interactive_triptych_say_the_same() -> None:
    for result in (make_result(fooled=[True, False]), make_result(eps=0.0, fooled=[False])):
        for index in range(len(result.y)):
            words = figures.triptych(result, NAMES, index)
            plotted = figures.attack_triptych(result, NAMES, index)
            assert ["<br>".join(t) for t in words.titles] == [a.text for a in plotted.layout.annotations]
            assert plotted.data[1].zmax == pytest.approx(words.bound)
            assert words.fooled == bool(result.fooled[index])


def test_perturbation_colours_follow_rdbu_r_on_the_budget() -> None:
    from plotly.colors import sample_colorscale

    bound = 0.1
    delta = np.array([[-0.2, -0.1, -0.05, 0.0], [0.025, 0.05, 0.1, 0.3]])
    rgb = figures.perturbation_rgb(delta, bound)
    assert rgb.shape == (2, 4, 3) and rgb.dtype == np.uint8
    # Plotly's own sampling of the same scale is the oracle; beyond ±bound the end colours (clipped)
    t = np.clip((delta / bound + 1) / 2, 0, 1).ravel()
    expected = [[float(v) for v in c[4:-1].split(",")] for c in sample_colorscale("RdBu_r", list(t))]
    assert np.abs(rgb.reshape(-1, 3).astype(float) - np.array(expected)).max() <= 1.0
    assert tuple(rgb[0, 3]) == (247, 247, 247)  # no change: the middle (white-ish) colour
    assert rgb[1, 2, 0] > rgb[1, 2, 2] and rgb[0, 1, 2] > rgb[0, 1, 0]  # brighter red, darker blue


@pytest.mark.parametrize(("channels", "size"), [(1, 8), (3, 6)])
def test_triptych_images_are_the_images_pixel_for_pixel(channels: int, size: int) -> None:
    result = make_result(channels=channels, size=size, fooled=[True])
    words = figures.triptych(result, NAMES)
    original, delta, adversarial = figures.triptych_images(result, words)
    assert original.shape == delta.shape == adversarial.shape == (size, size, 3)
    for shown, source in ((original, result.x[0]), (adversarial, result.x_adv[0].clamp(0, 1))):
        expected = source.expand(3, -1, -1) if channels == 1 else source
        assert np.abs(shown.astype(float) - expected.permute(1, 2, 0).numpy() * 255).max() <= 0.5
    change = (result.x_adv[0] - result.x[0]).mean(dim=0).numpy()
    assert (delta == figures.perturbation_rgb(change, words.bound)).all()


def test_probability_table_holds_every_class_before_and_after() -> None:
    import re

    result = make_result(fooled=[True])
    names = [*NAMES[:-1], "<b>cat</b>"]  # a class name is text, never markup
    table = figures.probability_bars_html(result, names)
    for which, probs in (("original", result.probs_clean[0]), ("adversarial", result.probs_adv[0])):
        values = [float(v) for v in re.findall(rf'data-which="{which}" data-p="([0-9.]+)"', table)]
        assert values == pytest.approx(probs.tolist(), abs=1e-6)
    widths = [float(w) for w in re.findall(r"width:([0-9.]+)%;height", table)]
    assert widths[0] == pytest.approx(80 * float(result.probs_clean[0][0]), abs=0.01)  # width ∝ probability
    assert "<b>cat</b>" not in table and "&lt;b&gt;cat&lt;/b&gt;" in table


# -- probability bars --------------------------------------------------------------------------------------


def test_probability_bars() -> None:
    result = make_result(fooled=[True])
    fig = figures.probability_bars(result, NAMES)
    assert len(fig.data) == 2
    clean, adv = fig.data
    assert all(isinstance(t, go.Bar) for t in fig.data)
    assert (clean.name, adv.name) == ("original", "adversarial")
    assert list(clean.x) == NAMES and list(adv.x) == NAMES
    assert len(clean.y) == len(adv.y) == len(NAMES)
    assert np.allclose(clean.y, result.probs_clean[0].numpy())
    assert np.allclose(adv.y, result.probs_adv[0].numpy())
    assert fig.layout.barmode == "group"
    assert tuple(fig.layout.yaxis.range) == (0, 1)


# -- batch grid --------------------------------------------------------------------------------------------


def test_mosaic_frames_match_success() -> None:
    fooled = [True, False, True, True, False, False, True, False, True, False, False]
    result = make_result(fooled=fooled)
    ncols, border = 4, 2
    img = figures.mosaic(result, ncols=ncols, border=border)
    cell = 8 + 2 * border
    rows = (len(fooled) + ncols - 1) // ncols
    assert img.shape == (rows * cell, ncols * cell, 3) and img.dtype == np.uint8
    for i, was_fooled in enumerate(fooled):
        r, c = divmod(i, ncols)
        y0, x0 = r * cell, c * cell
        frame = img[y0 : y0 + cell, x0 : x0 + cell]
        expected = RED if was_fooled else GREEN
        for corner in (frame[0, 0], frame[-1, -1], frame[0, -1], frame[-1, 0]):
            assert tuple(corner) == expected, (i, was_fooled)
        inner = frame[border:-border, border:-border, 0]
        assert np.array_equal(inner, (result.x_adv[i, 0].numpy() * 255).round().astype(np.uint8))
    # empty cells after the last image stay white
    assert (img[-cell:, -cell:] == 255).all()


def test_batch_grid() -> None:
    fooled = [True, False] * 5
    result = make_result(fooled=fooled)
    fig = figures.batch_grid(result, NAMES, ncols=8)
    assert len(fig.data) == 1 and isinstance(fig.data[0], go.Image)
    assert np.array_equal(np.asarray(fig.data[0].z), figures.mosaic(result, 8, band=figures._label_band(8)))
    texts = [a.text for a in fig.layout.annotations]
    assert len(texts) == 10
    for i, text in enumerate(texts):
        k = i % 10
        assert text == f"{k}→{(k + 1) % 10 if fooled[i] else k}"


# -- robustness curves -------------------------------------------------------------------------------------


def sweep_records(models: list[str], eps: list[float], norm: str = "linf") -> list[dict[str, Any]]:
    return [
        {"model": m, "eps": e, "accuracy": max(0.0, 0.9 - j * e), "norm": norm, "attack": "FGSM"}
        for j, m in enumerate(models, start=1)
        for e in eps
    ]


def test_robustness_curves_one_trace_per_model_one_point_per_eps() -> None:
    eps = [float(e) for e in np.linspace(0, 0.3, 5)]
    records = sweep_records(["a", "b", "c"], eps)
    fig = figures.robustness_curves(records, title="FGSM")
    assert [t.name for t in fig.data] == ["a", "b", "c"]
    for j, trace in enumerate(fig.data, start=1):
        assert list(trace.x) == eps
        assert list(trace.y) == [max(0.0, 0.9 - j * e) for e in eps]
        assert trace.mode == "lines+markers"
    assert fig.layout.title.text == "FGSM"
    assert "L∞" in fig.layout.xaxis.title.text
    assert tuple(fig.layout.yaxis.range) == (0, 1.02)


def test_defended_curves_share_a_hue_per_model_and_coinciding_lines_stay_visible() -> None:
    """Issue 13 item 12: two models with a defense gave six unrelated colours, and the two naive curves (both at
    100 %) hid each other."""
    eps = [0.0, 0.1, 0.2]
    records = [
        {"model_id": mid, "model": f"{name}{suffix}", "mode": mode, "eps": e, "norm": "linf",
         "accuracy": 1.0 if mode == "naive" else 0.9 - k * e}
        for k, (mid, name) in enumerate((("id-a", "cnn"), ("id-b", "cnn-fgsm-rs")), start=1)
        for mode, suffix in (("undefended", ""), ("adaptive", " + bits (adaptive)"), ("naive", " + bits (naive)"))
        for e in eps
    ]  # fmt: skip
    fig = figures.robustness_curves(records)
    by_name = {t.name: t for t in fig.data}
    assert len(by_name) == 6
    colours = {name: t.line.color for name, t in by_name.items()}
    assert len({colours[n] for n in by_name if n.startswith("cnn-fgsm-rs")}) == 1  # one hue per model
    assert len({c for n, c in colours.items() if not n.startswith("cnn-fgsm-rs")}) == 1
    assert colours["cnn"] != colours["cnn-fgsm-rs"]
    dashes = {n: t.line.dash for n, t in by_name.items()}
    assert dashes["cnn + bits (adaptive)"] == "solid" and dashes["cnn + bits (naive)"] == "dash"
    assert dashes["cnn"] not in ("solid", "dash")
    a, b = by_name["cnn + bits (naive)"], by_name["cnn-fgsm-rs + bits (naive)"]
    assert list(a.y) == list(b.y)  # they coincide...
    assert (
        a.line.width > b.line.width and a.marker.size > b.marker.size
    )  # ...and the one below shows its edges
    assert fig.data.index(a) < fig.data.index(b)  # the wider one is drawn first, underneath


def test_robustness_curves_grow_point_by_point() -> None:
    records = sweep_records(["a"], [0.0, 0.1, 0.2])
    assert [len(figures.robustness_curves(records[:k]).data[0].x) for k in (1, 2, 3)] == [1, 2, 3]
    assert figures.robustness_curves([]).data == ()


def test_robustness_curves_l2_axis() -> None:
    fig = figures.robustness_curves(sweep_records(["a"], [0.0, 1.0], norm="l2"))
    assert "L2" in fig.layout.xaxis.title.text


# -- training curves ---------------------------------------------------------------------------------------


def test_training_curves() -> None:
    records = [
        {"epoch_float": 0.5, "loss": 2.0, "train_accuracy": 0.3, "test_accuracy": None},
        {"epoch_float": 1.0, "loss": 1.0, "train_accuracy": 0.6, "test_accuracy": 0.7},
        {"epoch_float": 1.5, "loss": 0.8, "train_accuracy": 0.7},
        {"epoch_float": 2.0, "loss": 0.5, "train_accuracy": 0.8, "test_accuracy": 0.85},
    ]
    fig = figures.training_curves(records)
    assert [t.name for t in fig.data] == ["train loss", "train accuracy", "test accuracy"]
    loss, train_acc, test_acc = fig.data
    assert list(loss.x) == [0.5, 1.0, 1.5, 2.0] and list(loss.y) == [2.0, 1.0, 0.8, 0.5]
    assert list(train_acc.y) == [0.3, 0.6, 0.7, 0.8]
    assert list(test_acc.x) == [1.0, 2.0] and list(test_acc.y) == [0.7, 0.85]
    assert loss.xaxis == "x" and train_acc.xaxis == test_acc.xaxis == "x2"
    assert tuple(fig.layout.yaxis2.range) == (0, 1.01)


def test_training_curves_of_one_step_show_a_dot() -> None:
    """A training cancelled after its first step drew empty axes (a line needs two points): one record is a dot."""
    loss, train_acc, _ = figures.training_curves(
        [{"epoch_float": 0.1, "loss": 2.3, "train_accuracy": 0.1}]
    ).data
    assert loss.mode == train_acc.mode == "markers" and list(loss.y) == [2.3]
    two = figures.training_curves([{"epoch_float": x, "loss": 1.0} for x in (0.5, 1.0)])
    assert {t.mode for t in two.data[:2]} == {"lines"}


def test_every_figure_sets_its_template() -> None:
    result = make_result()
    built = [
        figures.attack_triptych(result, NAMES),
        figures.probability_bars(result, NAMES),
        figures.batch_grid(result, NAMES),
        figures.robustness_curves(sweep_records(["a"], [0.0, 0.1])),
        figures.training_curves([{"epoch_float": 1.0, "loss": 1.0, "train_accuracy": 0.5}]),
    ]
    white = pio.templates["plotly_white"].layout
    for fig in built:  # importing streamlit changes Plotly's default template: each figure names its own
        assert fig.layout.template == figures.TEMPLATE
        assert (
            fig.layout.template.layout == white
        )  # plotly_white's look (its per-trace defaults are left out)


# -- honest words: nothing changed, already wrong, no reference label, labels off the images -------------------


def test_triptych_without_a_change_says_there_is_no_perturbation() -> None:
    result = make_result(eps=0.0, fooled=[False])
    fig = figures.attack_triptych(result, NAMES)
    title = fig.layout.annotations[1].text
    assert title.startswith("Perturbation: none") and "e-06" not in title and "±" not in title
    assert fig.data[1].showscale is False


def test_triptych_unbounded_linf_uses_the_largest_change() -> None:
    result = dataclasses.replace(make_result(eps=0.2, fooled=[True]), eps=float("inf"))
    delta = figures.attack_triptych(result, NAMES).data[1]
    assert delta.zmax == pytest.approx(0.2, abs=1e-5)


def test_triptych_says_when_the_model_was_already_wrong_and_fooled_nothing() -> None:
    result = make_result(fooled=[True])
    wrong = dataclasses.replace(result, y=torch.tensor([7]))  # the model says 0, the true class is 7
    fig = figures.attack_triptych(wrong, NAMES)
    assert "already wrong (true: 7)" in fig.layout.annotations[0].text
    assert "FOOLED" not in fig.layout.annotations[2].text


def test_triptych_without_a_label_is_fooled_when_the_prediction_changed() -> None:
    result = dataclasses.replace(make_result(fooled=[True]), reference=Reference.PREDICTION)
    assert figures.attack_triptych(result, NAMES).layout.annotations[2].text.endswith("FOOLED")


def test_mosaic_frames_already_wrong_images_grey() -> None:
    result = make_result(fooled=[True, False, True])
    wrong = dataclasses.replace(result, y=torch.tensor([5, 1, 2]))  # image 0: model says 0, label 5
    img = figures.mosaic(wrong, ncols=3, border=2)
    assert tuple(img[0, 0]) == figures.WRONG_RGB
    assert tuple(img[0, 12]) == GREEN and tuple(img[0, 24]) == RED


@pytest.mark.parametrize("size", [8, 28])
def test_batch_grid_labels_sit_under_the_images_not_on_them(size: int) -> None:
    result = make_result(fooled=[True, False] * 6, size=size)
    fig = figures.batch_grid(result, NAMES, ncols=8)
    img = np.asarray(fig.data[0].z)
    band = figures._label_band(size)
    cell_h, cell_w = size + 4 + band, size + 4
    for i, note in enumerate(fig.layout.annotations):
        r, c = divmod(i, 8)
        top = r * cell_h + size + 4  # first row under the framed tile
        assert top <= note.y <= top + band, (i, note.y)
        assert note.yanchor == "middle"
        assert (img[top : top + band, c * cell_w : (c + 1) * cell_w] == 255).all()  # a white band, no digit


def test_detection_roc_axes_start_where_its_sample_can_resolve_a_rate() -> None:
    """Item 11's rule on the Detection page: with 200 clean and 40 adversarial images, the log axes start at 1/200
    and 1/40; rates of 0 are drawn on the floor, not below it."""
    roc = [{"fpr": 0.0, "tpr": 0.0}, {"fpr": 0.5, "tpr": 0.9}, {"fpr": 1.0, "tpr": 1.0}]
    fig = figures.roc_figure(roc, 0.8, "ROC", n_clean=200, n_adversarial=40)
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    assert 10 ** fig.layout.xaxis.range[0] == pytest.approx(1 / 200)
    assert 10 ** fig.layout.yaxis.range[0] == pytest.approx(1 / 40)
    assert min(fig.data[0].x) == pytest.approx(1 / 200) and min(fig.data[0].y) == pytest.approx(1 / 40)
    assert "1/200" in fig.layout.xaxis.title.text
    assert figures.roc_figure(roc, 0.8, "ROC").layout.xaxis.type != "log"


def test_training_curves_draw_a_history_with_missing_values() -> None:
    """A card whose history lacks loss or accuracy (written by another tool) drew nothing: the Models page crashed."""
    fig = figures.training_curves([{"epoch_float": 1, "epoch": 1, "epsilon": 4.0, "delta": 1e-5}])
    assert list(fig.data[0].y) == [None] and list(fig.data[1].y) == [None]
    assert "Privacy spent (ε, )" in [a.text for a in fig.layout.annotations]


def test_extraction_curve_draws_fidelity_and_accuracy_per_budget() -> None:
    points = [
        {"queries": q, "accuracy": a, "fidelity": f} for q, a, f in ((250, 0.6, 0.62), (1000, 0.9, 0.95))
    ]
    fig = figures.extraction_curve(points, victim_accuracy=0.93)
    fidelity, acc = fig.data
    assert list(fidelity.x) == [250, 1000] and list(fidelity.y) == [0.62, 0.95] and list(acc.y) == [0.6, 0.9]
    assert fig.layout.xaxis.type == "log" and fig.layout.shapes[0].y0 == 0.93
    assert len(figures.extraction_curve(points[:1]).layout.shapes) == 0  # live: no victim line yet


def test_federated_rounds_draw_the_global_accuracy_and_the_clients_range() -> None:
    records = [
        {"round": 1, "rounds": 2, "test_accuracy": 0.5, "client_accuracies": [0.4, None, 0.7]},
        {"round": 2, "rounds": 2, "test_accuracy": 0.8, "client_accuracies": [0.6, 0.9, 0.75]},
    ]
    fig = figures.federated_rounds(records)
    upper, lower, main = fig.data
    assert list(main.y) == [0.5, 0.8] and list(main.x) == [1, 2]
    assert list(upper.y) == [0.7, 0.9] and list(lower.y) == [0.4, 0.6]  # a client without data is left out
    assert lower.fill == "tonexty"


def test_gradient_leakage_puts_each_reconstruction_under_its_original() -> None:
    originals = torch.zeros(2, 1, 8, 8)
    reconstructions = torch.ones(2, 1, 8, 8)
    fig = figures.gradient_leakage(originals, [3, 7], reconstructions, [12.345, "inf"], [0.5, 1.0])
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["label 3", "label 7", "12.3 dB · SSIM 0.50", "inf dB · SSIM 1.00"]
    assert len(fig.data) == 4 and float(fig.data[0].z[0][0]) == 0.0 and float(fig.data[2].z[0][0]) == 1.0
    # square pixels in every cell (before: every y axis followed the first cell's x axis, later cells stretched)
    anchors = [fig.layout[f"yaxis{i if i > 1 else ''}"].scaleanchor for i in range(1, 5)]
    assert anchors == ["x", "x2", "x3", "x4"]
