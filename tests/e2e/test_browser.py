"""End to end in a real browser: train, attack with the ε slider, sweep, refuse a pickle, two users at once.

Needs Debian's Chromium at /usr/bin/chromium (`apt-get install -y chromium`; Playwright cannot download its own
browsers here). Screenshots go to artifacts/screenshots/ (git-ignored).
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from dlsec_core.store import Store
from dlsec_ui import state

if TYPE_CHECKING:
    from playwright.sync_api import Page

from playwright.sync_api import TimeoutError as PlaywrightTimeout
from streamlit_page import (  # skips the module when Chromium or Playwright is missing
    TRIPTYCH,
    assert_no_errors,
    key,
    metric,
    open_page,
    plot_state,
    press,
    probabilities,
    screenshot,
    select_option,
    settle,
    slider,
    start_run,
    table_column,
    triptych_titles,
    wait_chart,
    wait_run_done,
    wait_triptych,
)

pytestmark = pytest.mark.e2e

JOB_TIMEOUT_MS = 120_000
EPS_KEY = f"{state.EPS}_linf"  # widgets.eps_slider keys the slider by norm; the default norm is L∞


# -- tests -------------------------------------------------------------------------------------------------


def test_train_a_model_and_see_it_listed(app: Any, page: Page) -> None:
    open_page(page, f"{app.url}/models", key(state.TRAIN_BUTTON))
    select_option(page, state.TRAIN_DATASET, "digits")
    select_option(page, state.TRAIN_ARCH, "logreg:", exact=False)
    press(page, state.TRAIN_EPOCHS, "Home", "ArrowRight")  # 1, then 2 epochs
    assert slider(page, state.TRAIN_EPOCHS).input_value() == "2"
    page.locator(f"{key(state.TRAIN_NAME)} input").fill("e2e-trained")
    page.keyboard.press("Enter")
    settle(page)

    wait_run_done(page, start_run(page, state.TRAIN_BUTTON), JOB_TIMEOUT_MS)
    wait_chart(page, "train_curves")
    curves = plot_state(page, "train_curves")
    assert [t["name"] for t in curves["data"]] == ["train loss", "train accuracy", "test accuracy"]
    assert max(curves["data"][0]["x"]) == pytest.approx(2.0)  # two epochs drawn

    page.locator('[data-testid="stDataFrame"] td', has_text="e2e-trained").wait_for(state="attached")
    names = table_column(page, 2)
    assert "e2e-trained" in names and app.model_name in names
    assert "e2e-trained" in [c.name for c in Store(app.home).list_models()]
    assert_no_errors(page)
    screenshot(page, "models-after-training")


def test_eps_slider_changes_the_attack(app: Any, page: Page) -> None:
    open_page(page, f"{app.url}/attack_lab?model={app.model_id}", TRIPTYCH)
    select_option(page, state.ATTACK, "FGSM")  # ε is then exactly the L∞ size of the change
    assert page.locator(f"{key(state.MODEL)} input").input_value().endswith(app.model_id)
    assert f"model={app.model_id}" in page.url  # the link stays shareable
    page.locator(".st-key-prob_bars table").first.wait_for()
    before = {"linf": metric(page, "L∞ size"), "titles": triptych_titles(page)}
    bars_before = probabilities(page)
    assert before["linf"] == "0.100"
    assert slider(page, EPS_KEY).input_value() == "0.1"
    screenshot(page, "attack-lab-eps-0.100")

    press(page, EPS_KEY, "ArrowRight", "ArrowRight", "ArrowRight")
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=stMetricValue]')].some(m => m.innerText.trim() === '0.115')"
    )
    settle(page)
    assert metric(page, "L∞ size") == "0.115"

    press(page, EPS_KEY, "End")
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=stMetricValue]')].some(m => m.innerText.trim() === '0.500')"
    )
    settle(page)
    after = {"linf": metric(page, "L∞ size"), "titles": triptych_titles(page)}
    bars_after = probabilities(page)

    assert slider(page, EPS_KEY).input_value() == "0.5"
    assert after["linf"] == "0.500"
    assert after["titles"][0] == before["titles"][0]  # the original image and its prediction stay
    assert after["titles"][1] != before["titles"][1]  # perturbation scale ±0.1 -> ±0.5
    assert "±0.5" in after["titles"][1]
    assert after["titles"][2] != before["titles"][2]  # the adversarial prediction moved
    assert bars_after[0]["y"] == pytest.approx(bars_before[0]["y"])  # clean probabilities unchanged
    assert bars_after[1]["y"] != pytest.approx(bars_before[1]["y"])  # adversarial ones changed
    assert_no_errors(page)
    screenshot(page, "attack-lab-eps-0.500")


def test_robustness_sweep_draws_one_point_per_eps(app: Any, page: Page) -> None:
    open_page(page, f"{app.url}/robustness?model={app.model_id}", key(state.SWEEP_BUTTON))
    select_option(page, state.SWEEP_ATTACK, "FGSM")
    press(page, state.SWEEP_POINTS, "Home", "ArrowRight", "ArrowRight")  # 3 -> 5 points
    assert slider(page, state.SWEEP_POINTS).input_value() == "5"
    wait_run_done(page, start_run(page, state.SWEEP_BUTTON), JOB_TIMEOUT_MS)
    wait_chart(page, "sweep_chart")
    settle(page)

    chart = plot_state(page, "sweep_chart")
    assert [t["name"] for t in chart["data"]] == [app.model_name]
    xs = chart["data"][0]["x"]
    assert len(xs) == 5
    assert xs == sorted(xs) and xs[0] == 0.0
    points = page.locator(f"{key('sweep_chart')} .scatterlayer .point")
    assert points.count() == 5
    assert_no_errors(page)
    screenshot(page, "robustness-sweep-5-points")


def test_defended_sweep_shows_the_masking_gap_and_the_flags(app: Any, page: Page) -> None:
    """Toggle bit-depth reduction, run a PGD sweep: undefended, adaptive and naive curves on one chart, and the
    honesty checks flag the naive one."""
    open_page(page, f"{app.url}/robustness?model={app.model_id}", key(state.SWEEP_BUTTON))
    select_option(page, state.SWEEP_ATTACK, "PGD")
    select_option(page, "sweep_" + state.DEFENSE, "Bit-depth reduction")
    press(page, state.SWEEP_POINTS, "Home")  # 3 points
    wait_run_done(page, start_run(page, state.SWEEP_BUTTON), JOB_TIMEOUT_MS)
    wait_chart(page, state.SWEEP_CHART)
    settle(page)

    chart = plot_state(page, state.SWEEP_CHART)
    names = [t["name"] for t in chart["data"]]
    assert len(names) == 3 and names[0] == app.model_name
    assert names[1].endswith("(adaptive)") and names[2].endswith("(naive)")
    assert all(len(t["x"]) == 3 for t in chart["data"])
    adaptive, naive = chart["data"][1]["y"], chart["data"][2]["y"]
    assert naive[-1] > adaptive[-1]  # the naive attack is blinded by zero gradients
    warnings = page.locator('[data-testid="stAlertContentWarning"]').all_inner_texts()
    assert any("naive attack overestimated robustness" in w.lower() for w in warnings), warnings
    assert any("zero gradient" in w.lower() for w in warnings), warnings
    assert_no_errors(page)
    screenshot(page, "robustness-defended-sweep")


class _WritesMarker:
    """Unpickling this creates a file: proof that an upload was unpickled. The test itself never unpickles it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.path), "w"))


def test_pickle_upload_is_refused(app: Any, page: Page, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled.marker"
    upload = tmp_path / "model.pt"
    upload.write_bytes(pickle.dumps(_WritesMarker(marker)))
    before = sorted(c.id for c in Store(app.home).list_models())

    open_page(page, f"{app.url}/models", key(state.TRAIN_BUTTON))
    rows_before = len(table_column(page, 1))
    page.locator('[data-testid="stExpander"] summary').filter(has_text="Upload a model").click()
    page.locator(f"{key(state.UPLOAD_WEIGHTS)} input[type=file]").set_input_files(str(upload))
    settle(page)
    page.locator(f"{key(state.UPLOAD_BUTTON)} button:not([disabled])").click()
    error = page.locator('[data-testid="stAlertContentError"]')
    error.wait_for()
    settle(page)

    text = error.inner_text()
    assert "model.pt" in text and "unpickling" in text and ".safetensors" in text
    assert page.locator('[data-testid="stException"]').count() == 0
    assert not marker.exists()
    assert sorted(c.id for c in Store(app.home).list_models()) == before
    assert len(table_column(page, 1)) == rows_before
    assert app.health() == "ok"  # the server is still there
    screenshot(page, "models-pickle-refused")


def test_two_users_at_once(app: Any, new_page: Callable[[], Page]) -> None:
    first, second = new_page(), new_page()
    url = f"{app.url}/attack_lab?model={app.model_id}"
    first.goto(url)
    second.goto(url)  # both scripts run on the server at the same time
    for user in (first, second):
        wait_triptych(user)
        settle(user)
        select_option(user, state.ATTACK, "FGSM")
        assert_no_errors(user)
        assert metric(user, "L∞ size") == "0.100"

    press(first, EPS_KEY, "End")  # one user's slider must not move the other's
    first.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=stMetricValue]')].some(m => m.innerText.trim() === '0.500')"
    )
    second.locator(f"{key(state.SEED)} input").focus()  # any rerun of the second session
    second.keyboard.press("ArrowUp")
    settle(second)
    wait_triptych(second)
    assert metric(first, "L∞ size") == "0.500"
    assert metric(second, "L∞ size") == "0.100"
    screenshot(first, "two-users-first")
    screenshot(second, "two-users-second")


def test_deep_link_on_a_fresh_server_gets_the_frame(
    server: Callable[..., Any],
    save_trained: Callable[..., Any],
    trained_digits: Any,
    tmp_path: Path,
    page: Page,
) -> None:
    card = save_trained(tmp_path / "dlsec_home", trained_digits, name="fresh")
    with server(tmp_path / "dlsec_home", "e2e-fresh-server") as url:
        open_page(page, f"{url}/attack_lab?model={card.id}", "h1")
        # The first run on a fresh server still shows skeletons while it renders: wait for the sidebar's widget.
        seed = page.locator(f"{key(state.SEED)} input")
        with contextlib.suppress(PlaywrightTimeout):
            seed.wait_for(timeout=30_000)
        screenshot(page, "fresh-server-deep-link")
        assert seed.count() == 1, "app.py's sidebar did not run"
        wait_triptych(page)
