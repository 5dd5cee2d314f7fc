"""A workshop room in a real browser (issue 11, item 5): two participants and an instructor log in to one server
whose room passcodes come from its environment (`DLSEC_ROOM_PASSCODE`, `DLSEC_ROOM_INSTRUCTOR_PASSCODE`); a wrong
passcode is refused; participant Ada sees Bob's model with its owner but cannot delete it (the button is disabled
and says whose it is), and can delete her own; the instructor's sidebar has the Instructor page, which lists both
participants and their models; no participant's sidebar has it.

Its own server over its own store, seeded with one model for each participant.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from dlsec_core.store import Store
from dlsec_ui import state

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from dlsec_core.training.loop import TrainResult

from streamlit_page import (  # skips the module when Chromium or Playwright is missing
    alerts,
    assert_no_errors,
    key,
    navigate,
    open_page,
    screenshot,
    select_option,
    settle,
    table_column,
)

pytestmark = pytest.mark.e2e

PASSCODE, TEACHER_PASSCODE = "owl-2026", "teach-me"
ROOM_ENV = {"DLSEC_ROOM_PASSCODE": PASSCODE, "DLSEC_ROOM_INSTRUCTOR_PASSCODE": TEACHER_PASSCODE}
LOGIN = key(state.ROOM_LOGIN)
NAV = '[data-testid="stSidebarNav"]'


def log_in(page: Page, url: str, name: str, passcode: str = PASSCODE) -> None:
    """Type a name and a passcode and press the button (Enter in a field would submit the form early)."""
    open_page(page, url + "/", LOGIN)
    page.locator(f"{key(state.ROOM_NAME)} input").fill(name)
    page.locator(f"{key(state.ROOM_PASSCODE)} input").fill(passcode)
    page.locator(f"{LOGIN} button").click()
    settle(page)


def log_in_as_instructor(page: Page, url: str) -> None:
    open_page(page, url + "/", LOGIN)
    page.get_by_text("I am the instructor").click()
    page.locator(f"{key(state.ROOM_INSTRUCTOR_PASSCODE)} input").fill(TEACHER_PASSCODE)
    page.locator(f"{key(state.ROOM_INSTRUCTOR_LOGIN)} button").click()
    settle(page)


def signed_in(page: Page) -> str:
    return page.locator('[data-testid="stSidebar"]').get_by_text("Signed in as").inner_text()


def nav_links(page: Page) -> list[str]:
    """The sidebar's page titles (each link's text is its icon's name, then its title)."""
    return [t.strip().splitlines()[-1].strip() for t in page.locator(f"{NAV} a").all_inner_texts()]


def test_two_participants_and_an_instructor(
    server: Callable[..., object],
    new_page: Callable[[], Page],
    tmp_path: Path,
    trained_digits: TrainResult,
) -> None:
    home = tmp_path / "room_home"
    store = Store(home)
    for name, owner in (("bobs-model", "Bob"), ("adas-model", "Ada")):
        store.save_model(
            trained_digits.model, trained_digits.spec, name=name, dataset="digits",
            clean_accuracy=trained_digits.test_accuracy, owner=owner,
        )  # fmt: skip
    cards = {c.name: c for c in store.list_models()}
    with server(home, "e2e-room", env=ROOM_ENV) as url:  # type: ignore[attr-defined]
        ada, bob, teacher = new_page(), new_page(), new_page()

        log_in(ada, url, "Ada", "not-the-passcode")
        ada.locator(
            '[data-testid="stAlertContentError"]'
        ).first.wait_for()  # settle() may return before the rerun
        assert alerts(ada, "Error") == [
            "That passcode is not right. Ask the instructor for the room's passcode."
        ]
        assert ada.locator(key(state.SEED)).count() == 0  # nothing of the lab yet
        screenshot(ada, "room-login-refused")
        log_in(ada, url, "Ada")
        assert "Signed in as Ada (participant)" in signed_in(ada)
        log_in(bob, url, "Bob")
        assert "Signed in as Bob (participant)" in signed_in(bob)
        log_in_as_instructor(teacher, url)
        assert "Signed in as instructor (instructor)" in signed_in(teacher)
        for page in (ada, bob):
            assert "Models" in nav_links(page) and "Instructor" not in nav_links(page)
        assert "Instructor" in nav_links(teacher)

        # Ada sees both models with their owners; Bob's cannot be deleted by her.
        navigate(ada, "Models", key(state.CARD_VIEW))
        names = table_column(ada, 2)  # waits for the grid
        headers = [h.strip() for h in ada.locator('[data-testid="stDataFrame"] th').all_inner_texts()]
        assert "owner" in headers, headers
        owners = dict(zip(names, table_column(ada, headers.index("owner") + 1), strict=True))
        assert owners == {"adas-model": "Ada", "bobs-model": "Bob"}, owners
        select_option(ada, state.MODEL, "bobs-model", exact=False)
        ada.locator(f"{key(state.DELETE_POPOVER)}_{cards['bobs-model'].id} button").click()
        delete = ada.locator(f"{key(state.DELETE_BUTTON)} button")
        delete.wait_for()
        assert delete.is_disabled()
        assert ada.get_by_text("Owned by Bob. Only its owner or the instructor can delete it.").is_visible()
        screenshot(ada, "room-participant-cannot-delete")
        ada.keyboard.press("Escape")
        select_option(ada, state.MODEL, "adas-model", exact=False)
        ada.locator(f"{key(state.DELETE_POPOVER)}_{cards['adas-model'].id} button").click()
        ada.locator(f"{key(state.DELETE_BUTTON)} button").click()  # her own: allowed
        settle(ada)
        assert_no_errors(ada)
        assert [c.name for c in Store(home).list_models()] == ["bobs-model"]

        # The instructor sees both participants and Bob's model.
        navigate(teacher, "Instructor", "h3")
        participants = dict(zip(table_column(teacher, 1), table_column(teacher, 2), strict=True))
        assert participants == {"Ada": "0", "Bob": "1"}, (
            participants
        )  # names and their models (Ada deleted hers)
        assert_no_errors(teacher)
        screenshot(teacher, "room-instructor")
