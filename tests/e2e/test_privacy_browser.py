"""End to end in a real browser, the privacy features as a user meets them.

Train a DP-SGD model (the planned ε before training, the live "Privacy spent" panel, ε growing epoch by epoch)
and its non-private twin; attack both with membership inference as a stored run (two ROC curves, a results table
that labels each model's privacy; the run's link redraws it in another tab); invert both (a run too); use the
privacy-budget calculator (RDP and PRV rows, the δ ≥ 1/N error).

Needs Debian's Chromium at /usr/bin/chromium. Screenshots go to artifacts/screenshots/privacy_*.png.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest

from dlsec_core.privacy.dp_sgd import DPSGDRecipe
from dlsec_core.store import Store
from dlsec_ui import state

if TYPE_CHECKING:
    from playwright.sync_api import Page

from streamlit_page import (  # skips the module when Chromium or Playwright is missing
    DONE,
    alerts,
    assert_no_errors,
    fill,
    key,
    legend_texts,
    navigate,
    open_page,
    plot_state,
    press,
    screenshot,
    select_option,
    settle,
    slider,
    start_run,
    table_column,
    wait_chart,
    wait_run_done,
)

pytestmark = pytest.mark.e2e

JOB_TIMEOUT_MS = 120_000
DP_TITLE = "DP-SGD (differential privacy, Opacus)"
STANDARD_TITLE = "Standard (no defense)"
EPOCHS = 3
# "Train privacy-dp on digits: epoch 2/3 · ε = 5.27 (RDP) (1 s)", the running job's progress text
PROGRESS_EPS = re.compile(r"epoch (\d+)/(\d+) · ε = ([0-9.e+-]+) \((\w+)\)")
PRIVACY_LABEL = re.compile(r"^ε = [0-9.e+-]+ \(RDP, δ 1e-05\)$")


def watch_training(page: Page) -> None:
    """From now on, record what the page shows while a job runs: each distinct progress text, and each distinct
    state of the live training chart (its subplot titles and its ε trace). The fragment refreshes once a second."""
    page.evaluate(
        """(chartSel) => {
            window.__seen = {progress: [], charts: []};
            const keys = new Set();
            window.__watch = setInterval(() => {
                const bars = [...document.querySelectorAll('[data-testid="stProgress"]')];
                for (const el of bars) {
                    const t = el.innerText.trim();
                    if (t && !window.__seen.progress.includes(t)) window.__seen.progress.push(t);
                }
                const gd = document.querySelector(chartSel + ' .js-plotly-plot');
                if (!bars.length || !gd || !gd.data) return;
                const eps = gd.data.find(t => t.name === 'ε spent');
                const snap = {titles: (gd.layout.annotations || []).map(a => a.text),
                              eps: eps ? Array.from(eps.y) : []};
                const k = JSON.stringify(snap);
                if (!keys.has(k)) { keys.add(k); window.__seen.charts.push(snap); }
            }, 50);
        }""",
        key(state.TRAIN_CURVES),
    )


def seen_training(page: Page) -> dict[str, list[Any]]:
    return page.evaluate("() => { clearInterval(window.__watch); return window.__seen; }")


def train(page: Page, name: str) -> None:
    """Name the run, click Train, wait for the job to finish and the page to show it."""
    fill(page, state.TRAIN_NAME, name)
    wait_run_done(page, start_run(page, state.TRAIN_BUTTON), JOB_TIMEOUT_MS)
    # the finished job reruns the whole page once (the model list, the sidebar): wait for the list to show it
    page.locator('[data-testid="stDataFrame"] td', has_text=name).first.wait_for(state="attached")
    settle(page)
    wait_chart(page, state.TRAIN_CURVES)


def stored(app: Any, name: str) -> Any:
    cards = [c for c in Store(app.home).list_models() if c.name == name]
    assert len(cards) == 1, [c.name for c in Store(app.home).list_models()]
    return cards[0]


# -- tests -------------------------------------------------------------------------------------------------


def test_dp_model_and_twin_then_membership_inference(app: Any, page: Page, new_page: Any) -> None:
    page.goto(f"{app.url}/models")
    page.locator(f"{key(state.TRAIN_BUTTON)} button").wait_for()
    settle(page)

    # 1. a DP-SGD model: the recipe brings its suggested epochs and batch, the info box plans the ε
    select_option(page, state.TRAIN_DATASET, "digits")
    select_option(page, state.TRAIN_ARCH, "logreg:", exact=False)
    select_option(page, state.TRAIN_RECIPE, DP_TITLE)
    assert slider(page, state.TRAIN_EPOCHS).input_value() == str(DPSGDRecipe.suggested["epochs"])
    planned = page.locator('[data-testid="stAlertContentInfo"]', has_text="Planned:")
    assert f"Planned: {DPSGDRecipe.suggested['epochs']} epochs" in planned.inner_text()
    press(page, state.TRAIN_EPOCHS, "Home", *["ArrowRight"] * (EPOCHS - 1))
    assert slider(page, state.TRAIN_EPOCHS).input_value() == str(EPOCHS)
    plan = planned.inner_text()
    assert (
        f"Planned: {EPOCHS} epochs" in plan
        and f"q = {DPSGDRecipe.suggested['batch_size']}/" in plan
        and "RDP" in plan
    ), plan
    planned_eps = float(re.search(r"→ ε = ([0-9.e+-]+) at δ = 1e-05", plan).group(1))  # type: ignore[union-attr]
    assert_no_errors(page)
    screenshot(page, "privacy_01_dp_planned")

    watch_training(page)
    train(page, "privacy-dp")
    live = seen_training(page)
    curves = plot_state(page, state.TRAIN_CURVES)
    assert curves["titles"] == ["Training loss", "Accuracy", "Privacy spent (ε, RDP)"]
    spent = next(t for t in curves["data"] if t["name"] == "ε spent")
    assert spent["x"] == pytest.approx([0.0, *range(1, EPOCHS + 1)])
    assert all(a < b for a, b in zip(spent["y"], spent["y"][1:], strict=False)), spent["y"]  # ε only grows
    assert_no_errors(page)
    screenshot(page, "privacy_02_dp_trained")

    dp = stored(app, "privacy-dp")
    eps = [h["epsilon"] for h in dp.history]
    assert dp.recipe == "dp-sgd" and len(eps) == EPOCHS
    assert all(a < b for a, b in zip(eps, eps[1:], strict=False)), eps
    assert {h["accountant"] for h in dp.history} == {"rdp"} and {h["delta"] for h in dp.history} == {1e-5}
    assert spent["y"][1:] == pytest.approx(eps)  # the chart draws what the card stores
    assert eps[-1] == pytest.approx(planned_eps, rel=0.01)  # the plan was honest

    # While it ran (training takes about a second, the page refreshes each second, so these catch 0 to 2 moments):
    # the live chart's ε trace was the start of the final one; each progress text named its epoch's ε.
    for snap in live["charts"]:
        if snap["eps"]:
            assert snap["titles"][-1] == "Privacy spent (ε, RDP)", snap
            assert snap["eps"] == pytest.approx([0.0, *eps][: len(snap["eps"])]), (snap, eps)
    epoch_texts = [t for t in live["progress"] if re.search(r"epoch \d+/\d+", t)]
    readings = [(int(m[1]), float(m[3])) for m in map(PROGRESS_EPS.search, epoch_texts) if m]
    assert all(m[2] == str(EPOCHS) and m[4] == "RDP" for m in map(PROGRESS_EPS.search, epoch_texts) if m)
    for (
        epoch,
        value,
    ) in readings:  # ε spent so far: at the end of this epoch, or (during it) of the one before
        spent_by = [round(e, 2) for e in eps[max(0, epoch - 2) : epoch]]
        assert round(value, 2) in spent_by, (live["progress"], eps)
    assert [v for _, v in sorted(readings)] == sorted(v for _, v in readings)  # later epochs, more ε
    # from the end of epoch 1 on, every progress text carries the ε spent so far
    late = [t for t in epoch_texts if int(re.search(r"epoch (\d+)/", t)[1]) > 1]  # type: ignore[index]
    assert all(PROGRESS_EPS.search(t) for t in late), late

    # its non-private twin: same data, architecture and epochs; the chart has no privacy panel
    select_option(page, state.TRAIN_RECIPE, STANDARD_TITLE)
    assert page.locator('[data-testid="stAlertContentInfo"]', has_text="Planned:").count() == 0
    press(page, state.TRAIN_EPOCHS, "Home", *["ArrowRight"] * (EPOCHS - 1))
    assert slider(page, state.TRAIN_EPOCHS).input_value() == str(EPOCHS)
    train(page, "privacy-nodp")
    assert plot_state(page, state.TRAIN_CURVES)["titles"] == ["Training loss", "Accuracy"]
    twin = stored(app, "privacy-nodp")
    assert twin.recipe == "standard" and twin.spec.arch == dp.spec.arch and len(twin.history) == EPOCHS
    assert all(h.get("epsilon") is None for h in twin.history)
    assert_no_errors(page)
    screenshot(page, "privacy_03_twin_trained")

    # 2. membership inference: the DP model is current; the page pairs it with its twin by default
    select_option(page, state.MODEL, dp.id, exact=False)
    navigate(page, "Membership inference", f"{key(state.MI_BUTTON)} button")
    tags = page.locator(f'{key(state.MI_MODELS)} [data-testid="stMultiSelectTagsContainer"] [data-tag]')
    chips = [tag.get_attribute("aria-label") or "" for tag in tags.all()]
    assert len(chips) == 2, chips
    assert any("privacy-dp" in c and "ε = " in c for c in chips), chips
    assert any("privacy-nodp" in c and "no DP" in c for c in chips), chips
    assert page.locator(f"{key(state.MI_ATTACK)} input[type=radio]").first.is_checked()  # the loss attack
    mi_run = start_run(page, state.MI_BUTTON)  # a stored run, executed by a worker process
    wait_run_done(page, mi_run, JOB_TIMEOUT_MS)
    wait_chart(page, state.MI_ROC)
    settle(page)

    roc = plot_state(page, state.MI_ROC)
    names = [t["name"] for t in roc["data"]]
    assert len(names) == 3, names
    assert names[0].startswith("privacy-dp · ε = ") and "(RDP, δ 1e-05)" in names[0], names
    assert names[1].startswith("privacy-nodp · no DP"), names
    assert names[2].startswith("chance"), names
    legend = legend_texts(page, state.MI_ROC)
    assert len(legend) == 3, legend
    assert [n.split(" ·")[0] for n in legend[:2]] == ["privacy-dp", "privacy-nodp"] and "chance" in legend[2]
    assert table_column(page, 1) == ["privacy-dp", "privacy-nodp"]
    privacy = table_column(page, 2)
    assert PRIVACY_LABEL.match(privacy[0]) and privacy[1] == "no DP", privacy
    assert_no_errors(page)
    screenshot(page, "privacy_04_membership")

    # another participant opens the run's link in a new tab: the same attack, redrawn from the stored run
    other = new_page()
    open_page(other, f"{app.url}/membership?run={mi_run}", f"{key(state.MI_BUTTON)} button")
    other.locator(DONE, has_text=f"run {mi_run[:6]}").wait_for()
    wait_chart(other, state.MI_ROC)
    settle(other)
    assert [t["name"] for t in plot_state(other, state.MI_ROC)["data"]] == names
    assert table_column(other, 1) == ["privacy-dp", "privacy-nodp"] and table_column(other, 2) == privacy
    assert_no_errors(other)
    other.context.close()

    # 3. model inversion of both models, as a run: the class means, then one row per model
    navigate(page, "Model inversion", f"{key(state.INV_BUTTON)} button")
    inv_run = start_run(page, state.INV_BUTTON)
    wait_run_done(page, inv_run, JOB_TIMEOUT_MS)
    wait_chart(page, state.INV_RESULT)
    settle(page)
    grid = plot_state(page, state.INV_RESULT)
    assert len(grid["data"]) == 3 * 10, len(grid["data"])  # 3 rows (means, dp, no dp) x 10 classes
    titles = grid["titles"]
    assert titles[:10] == [str(k) for k in range(10)], titles
    assert all(re.fullmatch(r"\d: p=[01]\.\d\d", t) for t in titles[10:]), titles
    assert page.get_by_text("MI-Face model inversion (Fredrikson et al. 2015): minimise").count() == 1
    assert_no_errors(page)
    screenshot(page, "privacy_05_inversion")


def test_privacy_budget_calculator(app: Any, page: Page) -> None:
    page.goto(f"{app.url}/models")
    page.locator(f"{key(state.TRAIN_BUTTON)} button").wait_for()
    settle(page)
    navigate(page, "Privacy budget", key(state.PB_DATASET))
    select_option(page, state.PB_DATASET, "digits")
    n = int(page.locator(f"{key(f'{state.PB_N}_digits')} input").input_value())
    assert n == 1438  # the digits training split
    wait_chart(page, state.PB_CHART)  # drawn after PRV (about 2 s the first time)
    settle(page)

    chart = plot_state(page, state.PB_CHART)
    assert [t["name"] for t in chart["data"]] == ["RDP", "PRV"]
    for trace in chart["data"]:
        assert (
            trace["y"][0] == 0.0
            and trace["y"][-1] > 0
            and trace["x"][-1] == pytest.approx(DPSGDRecipe.suggested["epochs"], abs=0.5)
        )
    accountants = table_column(page, 1)
    assert len(accountants) == 2 and accountants[0].startswith("RDP") and accountants[1].startswith("PRV")
    assert page.get_by_text("Inverse: how much noise for a target ε?").count() == 1
    assert_no_errors(page)
    screenshot(page, "privacy_06_budget_calculator")

    fill(page, state.PB_DELTA, "0.01")
    error = page.locator('[data-testid="stAlertContentError"]', has_text="1/N")
    error.wait_for()
    settle(page)
    assert "δ = 0.01 is not below 1/N" in error.inner_text()
    assert alerts(page, "Error") == [error.inner_text()]  # the intended error, no other
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator(key(state.PB_CHART)).count() == 0
    screenshot(page, "privacy_07_budget_delta_error")
