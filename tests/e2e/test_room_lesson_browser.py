"""A workshop room in a real browser following lesson 1 (issue 11's quality bar): participants Ada and Bob log in to
one room and each follow lesson 1 ("Fool a model") to the end, each on their own: FGSM by hand on the lesson's
digit, an FGSM and a PGD sweep of their own, the question; the instructor's page then lists both participants with
"Fool a model 4/4". Everything happens inside each browser session (a room login lives in the session): the
lesson's links and the sidebar navigate, nothing reloads the page.

The server's store holds the model lesson 1 names (a standard cnn on mnist5k, trained here for one epoch, as in
test_workshop_browser); the sweeps use the fewest points and images. Screenshots: artifacts/screenshots/
room-lesson-*.png.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from dlsec_ui import state

if TYPE_CHECKING:
    from playwright.sync_api import Page

from streamlit_page import (  # skips the module when Chromium or Playwright is missing
    TRIPTYCH,
    alerts,
    assert_no_errors,
    key,
    metric,
    navigate,
    press,
    screenshot,
    settle,
    slider,
    start_run,
    table_column,
    wait_chart,
    wait_run_done,
)
from test_room_browser import ROOM_ENV, log_in, log_in_as_instructor, signed_in

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(600),
]  # two learners, four sweeps: about 3 min on 2 busy cores
LESSON = "fool-a-model"
RUN_MS = 240_000
EPS = f"{state.EPS}_linf"


def check(page: Page, step: str) -> None:
    page.locator(f"{key(state.LESSON_CHECK + LESSON + '_' + step)} button").click()
    settle(page)


def to_lessons(page: Page, step: str) -> None:
    navigate(page, "Lessons", key(f"{state.LESSON_STEP}{step}"))


def follow_lesson_1(page: Page, who: str) -> None:
    """Lesson 1 from its first step to its last, in this participant's session (the steps of
    test_workshop_browser's learner, navigating inside the session)."""
    to_lessons(page, "fgsm-by-hand")
    assert "0 of 4 steps passed" in page.locator('[data-testid="stProgress"]').inner_text()

    # step 1: the link opens the Attack Lab on the lesson's digit with FGSM at ε = 0; move ε until the digit flips
    page.get_by_role("link", name="Open the Attack Lab on this digit").click()
    page.locator(TRIPTYCH).first.wait_for()
    settle(page)
    assert slider(page, EPS).input_value() == "0" and metric(page, "Fooled") == "no"
    steps = 0
    while metric(page, "Fooled") != "yes":
        slider(page, EPS).focus()
        page.keyboard.press("ArrowRight")
        settle(page)
        steps += 1
        assert steps <= 100, "FGSM did not flip the digit up to ε = 0.5"
    found = float(slider(page, EPS).input_value())
    to_lessons(page, "fgsm-by-hand")
    answer = page.locator(f"{key(state.LESSON_ANSWER + LESSON + '_fgsm-by-hand')} input")
    answer.fill(f"{found:.3f}")
    answer.press("Enter")
    settle(page)
    check(page, "fgsm-by-hand")
    assert any("flips the digit" in s for s in alerts(page, "Success")), alerts(page, "Success")

    # steps 2 and 3: this participant's own FGSM and PGD sweeps (fewest points and images)
    for step, link in (
        ("fgsm-curve", "Open Robustness with FGSM"),
        ("pgd-curve", "Open Robustness with PGD"),
    ):
        check(page, step)
        assert any("No finished sweep run" in w for w in alerts(page, "Warning")), alerts(page, "Warning")
        page.get_by_role("link", name=link).click()
        page.locator(key(state.SWEEP_BUTTON)).wait_for()
        settle(page)
        press(page, state.SWEEP_POINTS, "Home")
        press(page, state.SWEEP_IMAGES, "Home")
        run_id = start_run(page, state.SWEEP_BUTTON)
        wait_run_done(page, run_id, RUN_MS)
        wait_chart(page, state.SWEEP_CHART)
        to_lessons(page, step)
        check(page, step)
        assert any(f"run {run_id}" in s for s in alerts(page, "Success")), alerts(page, "Success")

    # step 4: what the curves say
    page.locator(key(state.LESSON_ANSWER + LESSON + "_compare")).get_by_text("PGD", exact=True).click()
    settle(page)
    check(page, "compare")
    assert not any("Not quite" in w for w in alerts(page, "Warning")), alerts(page, "Warning")
    navigate(
        page, "Runs", "h1"
    )  # and back: the progress bar (drawn above the steps) counts the last check too
    to_lessons(page, "compare")
    assert "4 of 4 steps passed" in page.locator('[data-testid="stProgress"]').inner_text()
    assert page.locator("strong", has_text=who).count() >= 1  # "Your progress is saved as **Ada**"
    assert_no_errors(page)
    screenshot(page, f"room-lesson-{who.lower()}-done")


def room_progress(teacher: Page) -> dict[str, str]:
    """The Instructor page's participants and their lesson progress (the first table's name and progress columns)."""
    navigate(teacher, "Runs", "h1")  # from another page: a click on the page already open would not rerun it
    navigate(teacher, "Instructor", "h3")
    names = table_column(teacher, 1)  # waits for the grid
    grid = teacher.locator('[data-testid="stDataFrame"] table[role=grid]').first
    headers = [h.strip() for h in grid.locator("th").all_text_contents()]
    return dict(zip(names, table_column(teacher, headers.index("lessons (steps passed)") + 1), strict=True))


def test_two_participants_follow_lesson_1_and_the_instructor_sees_both(
    server: Callable[..., object], new_page: Callable[[], Page], tmp_path: Path
) -> None:
    from dlsec_core.data.builtin import load_dataset
    from dlsec_core.store import Store
    from dlsec_core.training.loop import TrainConfig, run_to_end, train
    from dlsec_core.workflows import spec_for

    home = tmp_path / "room_lesson_home"
    data = load_dataset("mnist5k")
    result = run_to_end(train(spec_for(data, "cnn"), data, TrainConfig(epochs=1, batch_size=128, lr=3e-3)))
    Store(home).save_model(
        result.model, result.spec, name="victim", dataset="mnist5k", train_config=result.config.to_dict(),
        clean_accuracy=result.test_accuracy, owner="instructor",
    )  # fmt: skip
    with server(home, "e2e-room-lesson", env=ROOM_ENV) as url:  # type: ignore[attr-defined]
        ada, bob, teacher = new_page(), new_page(), new_page()
        log_in(ada, url, "Ada")
        log_in(bob, url, "Bob")
        log_in_as_instructor(teacher, url)
        assert "Signed in as Ada" in signed_in(ada) and "Signed in as Bob" in signed_in(bob)

        follow_lesson_1(ada, "Ada")
        progress = room_progress(teacher)  # halfway: Ada done, Bob not started
        assert progress.get("Ada") == "Fool a model 4/4" and progress.get("Bob") in (None, "none yet"), (
            progress
        )

        follow_lesson_1(bob, "Bob")
        assert "Signed in as Ada" in signed_in(ada)  # still in the room, after every step
        progress = room_progress(teacher)
        assert progress == {"Ada": "Fool a model 4/4", "Bob": "Fool a model 4/4"}, progress
        assert_no_errors(teacher)
        screenshot(teacher, "room-lesson-instructor")
