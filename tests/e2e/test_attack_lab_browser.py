"""The Attack Lab in a real browser, as a workshop participant uses it: every input defense in both views and both
attack modes, a digit drawn without a class, a target that is the true class, and DeepFool / CW without a budget.

Needs Debian's Chromium at /usr/bin/chromium. Screenshots go to artifacts/screenshots/attack-lab-*.png.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest

from dlsec_core.defenses.transforms import TRANSFORMS
from dlsec_ui import state

if TYPE_CHECKING:
    from playwright.sync_api import Page

from streamlit_page import (  # skips the module when Chromium or Playwright is missing
    TRIPTYCH,
    alerts,
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
    triptych_titles,
    wait_chart,
    wait_triptych,
)

pytestmark = pytest.mark.e2e

LAB_DEFENSE = "lab_" + state.DEFENSE  # defense_form(prefix="lab_") on the Attack Lab
INFO = '[data-testid="stAlertContentInfo"]'
CAPTION = '[data-testid="stCaptionContainer"]'


def open_lab(page: Page, app: Any) -> None:
    open_page(page, f"{app.url}/attack_lab?model={app.model_id}", TRIPTYCH)


def choose(page: Page, widget_key: str, label: str) -> None:
    """Pick an option of a radio group by its text, and wait until the app has it (a click that lands while the
    group is being redrawn is lost, so it is repeated)."""
    radio = page.locator(key(widget_key)).get_by_role("radio", name=label, exact=True)
    for _ in range(5):
        page.locator(key(widget_key)).get_by_text(label, exact=True).first.click()
        settle(page)
        if radio.is_checked():
            return
    assert radio.is_checked(), f"{widget_key}: {label} not chosen"


def view(page: Page, label: str) -> None:
    """Switch the lab's view (a segmented control: buttons)."""
    page.get_by_role("radiogroup", name="View").get_by_role("radio", name=label, exact=True).click()
    settle(page)


def flip(page: Page, widget_key: str) -> None:
    """Click a toggle."""
    page.locator(f"{key(widget_key)} label").first.click()
    settle(page)


def captions(page: Page) -> str:
    return "\n".join(page.locator(CAPTION).all_inner_texts())


def delta(page: Page, label: str) -> str:
    """The small line under a metric's value."""
    box = page.locator('[data-testid="stMetric"]').filter(
        has=page.locator('[data-testid="stMetricLabel"]', has_text=label)
    )
    return box.locator('[data-testid="stMetricDelta"]').inner_text().strip()


def predicted(title: str) -> str:
    """The class in a triptych title such as 'Original: 1 (97%)'."""
    found = re.search(r":\s*(\S+) \(\d+%\)", title)
    assert found, title
    return found.group(1)


def draw_vertical_stroke(page: Page) -> None:
    """Draw a "1" on the drawing pad.

    The pad (fabric.js in the component's open shadow root) marks its canvas draggable, so Playwright's real mouse
    starts a native drag in Chromium and never draws: the stroke is sent as the mouse events fabric listens to.
    """
    page.locator(f"{key(state.CANVAS)} canvas.upper-canvas").wait_for()
    page.locator(f"{key(state.CANVAS)} canvas.upper-canvas").evaluate(
        """c => {
            const r = c.getBoundingClientRect();
            const send = (type, y, target) => (target || c).dispatchEvent(new MouseEvent(type, {
                bubbles: true, composed: true, cancelable: true, clientX: r.x + r.width / 2, clientY: r.y + y,
                button: 0, buttons: type === "mouseup" ? 0 : 1}));
            send("mousedown", 30);
            for (let y = 40; y <= 170; y += 10) { send("mousemove", y); send("mousemove", y, document); }
            send("mouseup", 170);
            send("mouseup", 170, document);
        }"""
    )


# -- the light view by default, Plotly on request ------------------------------------------------------------


def test_interactive_charts_draw_the_same_attack_as_the_light_view(app: Any, page: Page) -> None:
    open_lab(page, app)
    select_option(page, state.ATTACK, "FGSM")
    press(page, f"{state.EPS}_linf", *["ArrowRight"] * 10)  # 0.1 -> 0.15
    settle(page)
    titles, bars = triptych_titles(page), probabilities(page)
    assert page.locator(".js-plotly-plot").count() == 0  # no chart library on the default view
    screenshot(page, "attack-lab-light")

    flip(page, state.LAB_INTERACTIVE)
    wait_chart(page, "triptych_plot")
    wait_chart(page, "prob_bars_plot")
    assert "lab_interactive=true" in page.url  # the link keeps the choice
    assert plot_state(page, "triptych_plot")["titles"] == titles
    plotted = plot_state(page, "prob_bars_plot")["data"]
    assert [t["name"] for t in plotted] == [b["name"] for b in bars]
    for drawn, shown in zip(plotted, bars, strict=True):
        assert drawn["y"] == pytest.approx(shown["y"], abs=1e-6)
    assert page.locator(TRIPTYCH).count() == 0
    assert_no_errors(page)
    screenshot(page, "attack-lab-interactive")


# -- item 1: input defenses --------------------------------------------------------------------------------


def test_every_input_defense_works_in_both_views_and_both_modes(app: Any, page: Page) -> None:
    open_lab(page, app)
    select_option(page, state.ATTACK, "PGD")
    page.locator('[data-testid="stExpander"] summary', has_text="Defense").click()
    page.locator(key(LAB_DEFENSE)).wait_for()
    for shown in ("Single image", "Batch"):
        if shown == "Batch":
            view(page, "Batch")
        for cls in TRANSFORMS.values():
            select_option(page, LAB_DEFENSE, cls.title)
            for mode, other in (("adaptive", "naive"), ("naive", "adaptive")):
                choose(page, state.ATTACK_MODE, mode)
                assert_no_errors(page)
                if shown == "Single image":  # the twin sentence names the other mode: this rerun has landed
                    info = f"Defense: {cls.title.split()[0].lower()}"
                    page.locator(INFO, has_text=info).filter(has_text=f"With the {other} attack").wait_for()
                    wait_triptych(page)
                    assert metric(page, "Fooled") in ("yes", "no")
                else:
                    page.locator(CAPTION, has_text=f"({mode} attack)").filter(
                        has_text=cls.title.split()[0].lower()
                    ).wait_for()
                    wait_chart(page, "batch_grid")
                    assert re.fullmatch(r"\d+%", metric(page, "Fooled"))
                assert_no_errors(page)
        screenshot(page, f"attack-lab-defense-{shown.split()[0].lower()}")


# -- item 3: your own image has no class unless you give one -----------------------------------------------


def test_a_drawn_digit_without_a_class_is_attacked_away_from_its_prediction(app: Any, page: Page) -> None:
    open_lab(page, app)
    choose(page, state.IMAGE_SOURCE, "Draw")
    draw_vertical_stroke(page)
    wait_triptych(page)
    settle(page)
    assert page.locator(f"{key(state.TRUE_LABEL)} input").input_value() == ""  # no class unless given
    eps = f"{state.EPS}_linf"
    press(page, eps, "Home")  # ε = 0: nothing changes, so nothing can be fooled
    titles = triptych_titles(page)
    assert metric(page, "Fooled") == "no"
    assert titles[1].startswith("Perturbation: none") and "FOOLED" not in titles[2]
    assert "No class was given" in captions(page)
    screenshot(page, "attack-lab-drawn-eps-0")

    press(page, eps, "End")  # ε = 0.5: "fooled" is exactly "the prediction changed"
    titles = triptych_titles(page)
    changed = predicted(titles[0]) != predicted(titles[2])
    assert metric(page, "Fooled") == ("yes" if changed else "no")
    assert ("FOOLED" in titles[2]) == changed

    mine = predicted(titles[0])
    other = "0" if mine != "0" else "7"
    select_option(page, state.TRUE_LABEL, other)  # a class the model does not predict
    assert metric(page, "Fooled") == "no"
    assert delta(page, "Fooled") == "already wrong"
    warning = " ".join(alerts(page, "Warning"))
    assert f"it says {mine}, the true class is {other}" in warning, warning
    assert_no_errors(page)
    screenshot(page, "attack-lab-drawn-with-a-wrong-class")


# -- item 6: a target that is the true class ---------------------------------------------------------------


def test_a_target_equal_to_the_true_class_fools_nothing(app: Any, page: Page) -> None:
    open_lab(page, app)
    select_option(page, state.ATTACK, "PGD")
    select_option(page, state.GALLERY_CLASS, "7")
    flip(page, state.TARGETED)
    select_option(page, state.TARGET_CLASS, "7")
    press(page, f"{state.EPS}_linf", *["ArrowRight"] * 20)  # 0.1 -> 0.2
    assert slider(page, f"{state.EPS}_linf").input_value() == "0.2"
    assert metric(page, "Reached target") == "no"
    assert delta(page, "Reached target") == "target = true class"
    assert metric(page, "L0 (pixels changed)") == "0"
    assert "FOOLED" not in triptych_titles(page)[2]
    assert "is the image's true class" in " ".join(alerts(page, "Warning"))
    assert_no_errors(page)
    screenshot(page, "attack-lab-target-is-the-true-class")


# -- item 7: minimal-perturbation attacks have their own budget ---------------------------------------------


def test_deepfool_and_cw_find_their_own_size(app: Any, page: Page) -> None:
    open_lab(page, app)
    select_option(page, state.GALLERY_CLASS, "4")
    select_option(page, state.ATTACK, "Carlini-Wagner (L2)")
    assert page.locator(f"{key('CW_norm')} input[type=radio]").count() == 1  # an L2 attack offers L2 only
    assert slider(page, f"{state.EPS}_l2").count() == 0  # no shared ε slider cutting it off
    assert metric(page, "Fooled") == "yes"
    assert "Carlini-Wagner (L2) found a change of L2 size" in captions(page)
    screenshot(page, "attack-lab-cw-no-budget")

    select_option(page, state.ATTACK, "DeepFool")
    assert slider(page, f"{state.EPS}_l2").count() == 0
    assert "No budget: DeepFool looks for the smallest change" in captions(page)
    assert metric(page, "Fooled") == "yes"
    found = float(metric(page, "L2 size"))
    assert found > 0 and f"DeepFool found a change of L2 size {found:.3f} that fools the model" in captions(
        page
    )
    screenshot(page, "attack-lab-deepfool-no-budget")

    flip(
        page, state.EPS_CAP
    )  # cap it at about half of what DeepFool needs (the slider moves in steps of 0.05)
    half = int(found / 2 / 0.05)
    press(page, f"{state.EPS}_l2", "Home", *["ArrowRight"] * half)
    assert float(metric(page, "L2 size")) == pytest.approx(half * 0.05, abs=1e-3)
    assert metric(page, "Fooled") == "no"
    assert f"DeepFool is capped at L2 ε = {half * 0.05:g}: its change, cut back to that size" in captions(
        page
    )
    assert_no_errors(page)
    screenshot(page, "attack-lab-deepfool-capped")
