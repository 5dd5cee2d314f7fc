"""Workshop mode in a real browser: a link reproduces a view in a fresh browser (same widget values, same
metrics and chart data), and a learner follows lesson 1 ("Fool a model") to the end, checkpoints verified by the
app, then projects it in presenter mode.

The server runs over its own DLSEC_HOME holding the model lesson 1 names (a standard cnn on mnist5k, trained here
for one epoch). Screenshots: artifacts/screenshots/workshop-*.png.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from dlsec_ui import state

if TYPE_CHECKING:
    from playwright.sync_api import Page

from streamlit_page import (  # skips the module when Chromium or Playwright is missing
    IDLE,
    TRIPTYCH,
    alerts,
    assert_no_errors,
    key,
    metric,
    open_page,
    press,
    probabilities,
    screenshot,
    select_option,
    settle,
    slider,
    start_run,
    triptych_titles,
    wait_chart,
    wait_run_done,
    wait_triptych,
)

pytestmark = pytest.mark.e2e
EPS = f"{state.EPS}_linf"
RUN_MS = 240_000


@pytest.fixture(scope="module")
def workshop(
    tmp_path_factory: pytest.TempPathFactory, server: Callable[..., Any]
) -> Iterator[tuple[str, str]]:
    """(url, model id): a server whose store holds lesson 1's model."""
    from dlsec_core.data.builtin import load_dataset
    from dlsec_core.store import Store
    from dlsec_core.training.loop import TrainConfig, run_to_end, train
    from dlsec_core.workflows import spec_for

    home = tmp_path_factory.mktemp("workshop") / "dlsec_home"
    data = load_dataset("mnist5k")
    result = run_to_end(train(spec_for(data, "cnn"), data, TrainConfig(epochs=1, batch_size=128, lr=3e-3)))
    card = Store(home).save_model(
        result.model, result.spec, name="victim", dataset="mnist5k", train_config=result.config.to_dict(),
        clean_accuracy=result.test_accuracy,
    )  # fmt: skip
    with server(home, "e2e-workshop") as url:
        yield url, card.id


def link_box(page: Page) -> str:
    """The sidebar's 'link to this view' (the text st.code's copy button copies)."""
    box = page.locator(f"{key(state.COPY_LINK)} code")
    box.wait_for()
    return box.inner_text().strip()


def shown(page: Page, widget_key: str) -> str:
    """What a widget shows: its text and its inputs' values (a select box shows its choice in its input)."""
    return page.locator(key(widget_key)).evaluate(
        "el => el.innerText + ' | ' + Array.from(el.querySelectorAll('input')).map(i => i.value).join(',')"
    )


def lab_view(page: Page) -> dict[str, Any]:
    """What the Attack Lab shows: the widget values and the metrics and chart data they produce."""
    wait_triptych(page)
    return {
        "widgets": {k: shown(page, k) for k in (state.ATTACK, EPS, state.GALLERY_CLASS, state.GALLERY_INDEX)},
        "defense": shown(page, "lab_" + state.DEFENSE),
        "metrics": [metric(page, m) for m in ("Fooled", "L∞ size", "L2 size", "L0 (pixels changed)")],
        "notes": alerts(page, "Info"),
        "triptych": triptych_titles(page),
        "bars": probabilities(page),
    }


def eps_thumb(page: Page) -> Any:
    return slider(page, EPS)


def test_a_link_reproduces_the_attack_lab_in_a_fresh_browser(
    workshop: tuple[str, str], new_page: Callable[[], Page]
) -> None:
    url, model_id = workshop
    first = new_page()
    open_page(first, f"{url}/attack_lab?model={model_id}", TRIPTYCH)
    select_option(first, state.ATTACK, "FGSM")
    select_option(first, state.GALLERY_CLASS, "3")
    first.locator(f"{key(state.GALLERY_INDEX)} input").fill("2")
    first.locator(f"{key(state.GALLERY_INDEX)} input").press("Enter")
    settle(first)
    for _ in range(6):
        press(first, EPS, "ArrowRight")
    if not first.locator(key("lab_" + state.DEFENSE)).is_visible():
        first.locator('[data-testid="stExpander"] summary', has_text="Defense").click()
        settle(first)
    select_option(first, "lab_" + state.DEFENSE, "Bit-depth reduction")
    before = lab_view(first)
    assert "Bit-depth reduction" in before["defense"] and "FGSM" in before["widgets"][state.ATTACK], before
    assert any("bit-depth" in n for n in before["notes"]), before["notes"]
    link = link_box(first)
    assert (
        f"eps_linf={slider(first, EPS).input_value()}" in link
        and "gallery_class=3" in link
        and "gallery_index=2" in link
    ), link
    assert f"model={model_id}" in link and "lab_defense=Bit-depth" in link, link
    screenshot(first, "workshop-link-before")

    fresh = new_page()  # another browser context: no session, no cookies, just the link
    open_page(fresh, link, TRIPTYCH)
    after = lab_view(fresh)
    screenshot(fresh, "workshop-link-after")
    for name in before:
        assert after[name] == before[name], name
    assert_no_errors(fresh)


def test_a_learner_follows_lesson_1_to_the_end(
    workshop: tuple[str, str], new_page: Callable[[], Page]
) -> None:
    url, model_id = workshop
    page = new_page()
    open_page(page, f"{url}/lessons", key(f"{state.LESSON_STEP}fgsm-by-hand"))
    assert "0 of 4 steps passed" in page.locator('[data-testid="stProgress"]').inner_text()
    screenshot(page, "workshop-lesson1-start")

    # step 1: the link opens the Attack Lab on the lesson's digit with FGSM at ε = 0
    page.get_by_role("link", name="Open the Attack Lab on this digit").click()
    page.locator(TRIPTYCH).first.wait_for()
    settle(page)
    assert page.locator("h1", has_text="Attack Lab").count() == 1
    assert eps_thumb(page).input_value() == "0"
    assert shown(page, state.GALLERY_CLASS).endswith("| 7"), shown(page, state.GALLERY_CLASS)
    assert metric(page, "Fooled") == "no"
    steps = 0
    while metric(page, "Fooled") != "yes":  # move ε up, one slider step at a time, until the digit flips
        eps_thumb(page).focus()
        page.keyboard.press("ArrowRight")
        settle(page)
        steps += 1
        assert steps <= 100, "FGSM did not flip the digit up to ε = 0.5"
    found = float(eps_thumb(page).input_value())
    screenshot(page, "workshop-lesson1-flipped")

    open_page(page, f"{url}/lessons", key(f"{state.LESSON_STEP}fgsm-by-hand"))
    answer = page.locator(f"{key(state.LESSON_ANSWER + 'fool-a-model_fgsm-by-hand')} input")
    answer.fill(f"{found + 0.05:.3f}")  # too large: one step below flips too
    answer.press("Enter")
    settle(page)
    page.locator(f"{key(state.LESSON_CHECK + 'fool-a-model_fgsm-by-hand')} button").click()
    settle(page)
    assert any("smaller ε" in w for w in alerts(page, "Warning")), alerts(page, "Warning")
    answer.fill(f"{found:.3f}")
    answer.press("Enter")
    settle(page)
    page.locator(f"{key(state.LESSON_CHECK + 'fool-a-model_fgsm-by-hand')} button").click()
    settle(page)
    assert any("flips the digit" in s for s in alerts(page, "Success")), alerts(page, "Success")

    # steps 2 and 3: a sweep with FGSM, then with PGD (small, to keep the test short)
    for step_id, link, attack in (
        ("fgsm-curve", "Open Robustness with FGSM", "fgsm"),
        ("pgd-curve", "Open Robustness with PGD", "pgd"),
    ):
        page.locator(f"{key(state.LESSON_CHECK + 'fool-a-model_' + step_id)} button").click()
        settle(page)
        assert any("No finished sweep run" in w for w in alerts(page, "Warning"))
        page.get_by_role("link", name=link).click()
        page.locator(key(state.SWEEP_BUTTON)).wait_for()
        settle(page)
        assert attack.upper() in shown(page, state.SWEEP_ATTACK)
        press(page, state.SWEEP_POINTS, "Home")
        press(page, state.SWEEP_IMAGES, "Home")
        run_id = start_run(page, state.SWEEP_BUTTON)
        wait_run_done(page, run_id, RUN_MS)
        wait_chart(page, state.SWEEP_CHART)
        screenshot(page, f"workshop-lesson1-{step_id}")
        open_page(page, f"{url}/lessons", key(f"{state.LESSON_STEP}{step_id}"))
        page.locator(f"{key(state.LESSON_CHECK + 'fool-a-model_' + step_id)} button").click()
        settle(page)
        assert any(f"run {run_id}" in s for s in alerts(page, "Success")), alerts(page, "Success")

    # step 4: what the curves say
    box = page.locator(key(state.LESSON_ANSWER + "fool-a-model_compare"))
    box.get_by_text("FGSM", exact=True).click()
    settle(page)
    page.locator(f"{key(state.LESSON_CHECK + 'fool-a-model_compare')} button").click()
    settle(page)
    assert any("Not quite" in w for w in alerts(page, "Warning"))
    box.get_by_text("PGD", exact=True).click()
    settle(page)
    page.locator(f"{key(state.LESSON_CHECK + 'fool-a-model_compare')} button").click()
    settle(page)
    page.reload()
    page.wait_for_selector(IDLE)
    page.locator('[data-testid="stProgress"]').wait_for()
    assert "4 of 4 steps passed" in page.locator('[data-testid="stProgress"]').inner_text()
    screenshot(page, "workshop-lesson1-done")

    # presenter mode: larger type, navigation and controls hidden; ε slider and chart still there
    page.goto(
        f"{url}/attack_lab?model={model_id}&presenter=true&attack=FGSM&gallery_class=7&eps_linf={found}"
    )
    page.locator(TRIPTYCH).first.wait_for()
    settle(page)
    assert page.evaluate("getComputedStyle(document.documentElement).fontSize") == "20px"
    assert not page.locator('[data-testid="stSidebarNav"]').is_visible()
    assert not page.locator(key(state.ATTACK)).is_visible()
    assert eps_thumb(page).is_visible() and metric(page, "Fooled") == "yes"
    screenshot(page, "workshop-presenter-attack-lab")
    page.locator(f"{key(state.PRESENTER)} label").click()
    settle(page)
    assert page.evaluate("getComputedStyle(document.documentElement).fontSize") != "20px"
    assert page.locator(key(state.ATTACK)).is_visible()
    assert re.search(r"presenter", page.url) is None
