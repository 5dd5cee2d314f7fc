"""The Models page in a real browser (issue 13, "Honest first use"): the card and its downloads follow the model a
link names; delete asks first and the sidebar says what happened; imports and dataset uploads show up at once;
words a person reads (table, card, "1 thread"); and the README's Attack Lab picture.

These tests run their own server over their own store (they delete models), seeded per test.
Set DLSEC_UPDATE_README_PICTURE=1 to copy the README picture into docs/attack_lab.png.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from dlsec_core.runs import RunStore
from dlsec_core.store import Store
from dlsec_ui import state
from dlsec_ui.widgets import model_label

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from dlsec_core.training.loop import TrainResult

from playwright.sync_api import TimeoutError as PlaywrightTimeout
from streamlit_page import (  # skips the module when Chromium or Playwright is missing
    DONE,
    ROOT,
    SCREENSHOTS,
    alerts,
    assert_no_errors,
    fill,
    key,
    metric,
    open_page,
    plot_state,
    press,
    screenshot,
    select_option,
    settle,
    start_run,
    table_column,
    wait_chart,
    wait_run_done,
    wait_triptych,
)

pytestmark = pytest.mark.e2e
RUN_TIMEOUT_MS = 240_000

NAV_TITLES = [
    "Home",
    "Models",
    "Attack Lab",
    "Robustness",
    "Detection",
    "Certified",
    "Privacy budget",
    "Membership inference",
    "Model inversion",
    "Privacy audit",
    "Model theft",
    "Runs",
]


@dataclass(frozen=True)
class Lab:
    url: str
    home: Path


@pytest.fixture(scope="module")
def lab(server: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A server of this module's own over an empty store (each test seeds what it needs)."""
    home = tmp_path_factory.mktemp("models-flows") / "dlsec_home"
    Store(home)
    with server(home, "e2e-models-flows") as url:
        yield Lab(url=url, home=home)


@pytest.fixture(scope="module")
def other_digits() -> TrainResult:
    """A second digits model with other weights than `trained_digits` (another seed), so downloads can be told
    apart."""
    from dlsec_core.data.builtin import load_dataset
    from dlsec_core.training.loop import TrainConfig, run_to_end, train
    from dlsec_core.workflows import spec_for

    data = load_dataset("digits")
    return run_to_end(train(spec_for(data, "logreg"), data, TrainConfig(epochs=3, lr=0.05, shift=0, seed=1)))


def card_title(page: Page) -> str:
    return page.locator(f"{key(state.CARD_VIEW)} h4").first.inner_text().strip()


def sidebar_model(page: Page) -> str:
    """The sidebar select box's shown label (it ends with the model's id)."""
    return page.locator(f'[data-testid="stSidebar"] {key(state.MODEL)} input[role=combobox]').input_value()


def sidebar_warnings(page: Page) -> list[str]:
    return page.locator('[data-testid="stSidebar"] [data-testid="stAlertContentWarning"]').all_inner_texts()


def upload(page: Page, widget_key: str, path: Path) -> None:
    """Give a file uploader a file, and wait until it shows it (a rerun in flight can swallow an upload: retry)."""
    for _ in range(3):
        page.locator(f"{key(widget_key)} input[type=file]").set_input_files(str(path))
        try:
            page.locator(key(widget_key), has_text=path.name).wait_for(timeout=10_000)
            break
        except PlaywrightTimeout:
            settle(page)
    settle(page)


def table_names(page: Page) -> list[str]:
    return table_column(page, 2)


# -- item 4: the card and its downloads are the selected model's ------------------------------------------


def test_card_and_downloads_follow_the_linked_model(
    lab: Lab, page: Page, trained_digits: Any, other_digits: Any, save_trained: Callable[..., Any]
) -> None:
    older = save_trained(lab.home, trained_digits, name="link-older")
    newer = save_trained(lab.home, other_digits, name="link-newer")  # newest: first in every list
    store = Store(lab.home)
    assert store.weights_bytes(older.id) != store.weights_bytes(newer.id)

    open_page(page, f"{lab.url}/models?model={older.id}", key(state.CARD_VIEW))
    assert card_title(page) == "link-older"
    assert older.id in sidebar_model(page)
    with page.expect_download() as download:
        page.locator(f"{key(state.DOWNLOAD_WEIGHTS)} button").click()
    assert Path(download.value.path()).read_bytes() == store.weights_bytes(older.id)
    screenshot(page, "models-card-follows-link")

    # Picking another card makes it the current model everywhere (sidebar, URL), downloads included.
    select_option(page, state.CARD_MODEL, model_label(newer))
    assert card_title(page) == "link-newer"
    assert newer.id in sidebar_model(page)
    assert f"model={newer.id}" in page.url
    with page.expect_download() as download:
        page.locator(f"{key(state.DOWNLOAD_WEIGHTS)} button").click()
    assert Path(download.value.path()).read_bytes() == store.weights_bytes(newer.id)
    assert_no_errors(page)


# -- item 13: delete asks first; the sidebar says when the current or linked model is gone -------------------


def test_delete_asks_first_and_the_sidebar_says_what_happened(
    lab: Lab,
    new_page: Callable[[], Page],
    trained_digits: Any,
    other_digits: Any,
    save_trained: Callable[..., Any],
) -> None:
    other = save_trained(lab.home, trained_digits, name="del-other")
    save_trained(lab.home, trained_digits, name="del-keep")
    doomed = save_trained(lab.home, other_digits, name="del-doomed")
    page = new_page()
    open_page(page, f"{lab.url}/models?model={doomed.id}", key(state.CARD_VIEW))
    assert card_title(page) == "del-doomed"

    page.locator(
        f"{key(state.DELETE_POPOVER)}_{doomed.id} button"
    ).first.click()  # opens the question, deletes nothing
    confirm = page.locator(f"{key(state.DELETE_BUTTON)} button")
    confirm.wait_for()
    page.wait_for_timeout(500)
    settle(page)
    assert doomed.id in [c.id for c in Store(lab.home).list_models()]
    assert "del-doomed" in page.locator('[data-testid="stPopoverBody"]').inner_text()
    confirm.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "models-delete-asks.png"))

    confirm.click()
    page.locator('[data-testid="stAlertContentSuccess"]', has_text="Deleted del-doomed").wait_for()
    settle(page)
    assert doomed.id not in [c.id for c in Store(lab.home).list_models()]
    warnings = sidebar_warnings(page)
    assert len(warnings) == 1 and "del-doomed" in warnings[0] and "was deleted" in warnings[0], warnings
    current = Store(lab.home).list_models()[0]
    assert current.id in sidebar_model(page) and current.name in warnings[0]
    assert "del-doomed" not in table_names(page) and "del-keep" in table_names(page)
    assert not page.locator(
        '[data-testid="stPopoverBody"]'
    ).is_visible()  # the next card's question is closed
    assert card_title(page) == current.name
    assert_no_errors(page)
    screenshot(page, "models-deleted-current")

    # The notice stays while the substitute is current and goes once the user picks another model.
    select_option(page, state.MODEL, model_label(other))
    page.wait_for_url(f"**model={other.id}*")
    page.locator('[data-testid="stSidebar"] [data-testid="stAlertContentWarning"]').wait_for(state="detached")
    settle(page)
    assert not sidebar_warnings(page) and card_title(page) == "del-other"

    # Another user opens an old link to the deleted model: told, not silently switched.
    second = new_page()
    open_page(second, f"{lab.url}/attack_lab?model={doomed.id}", "h1")
    second.locator(f'[data-testid="stSidebar"] {key(state.MODEL)}').wait_for()
    warnings = sidebar_warnings(second)
    assert len(warnings) == 1 and doomed.id in warnings[0] and "not stored" in warnings[0], warnings
    screenshot(second, "deleted-model-link")


# -- item 14 and 17: imports and datasets show up at once; a text file is "not a safetensors file" ----------


def test_import_and_dataset_upload_show_up_at_once(
    lab: Lab, page: Page, trained_digits: Any, save_trained: Callable[..., Any], tmp_path: Path
) -> None:
    source = save_trained(lab.home, trained_digits, name="import-source")
    exported = tmp_path / "exported.safetensors"
    exported.write_bytes(Store(lab.home).weights_bytes(source.id))
    notes = tmp_path / "notes.txt"
    notes.write_text("my model: a small CNN trained for 10 epochs\n")
    open_page(page, f"{lab.url}/models?model={source.id}", key(state.CARD_VIEW))

    page.locator('[data-testid="stExpander"] summary').filter(has_text="Upload a model").click()
    upload(page, state.UPLOAD_WEIGHTS, notes)
    page.locator(f"{key(state.UPLOAD_BUTTON)} button:not([disabled])").click()
    page.locator('[data-testid="stAlertContentError"]').wait_for()
    settle(page)
    errors = alerts(page, "Error")
    assert len(errors) == 1 and "not a .safetensors file" in errors[0] and "text file" in errors[0], errors
    assert "header claims" not in errors[0]
    screenshot(page, "models-text-file-refused")

    upload(page, state.UPLOAD_WEIGHTS, exported)
    fill(page, state.UPLOAD_NAME, "imported-now")
    select_option(page, state.UPLOAD_DATASET, "digits")
    page.locator(f"{key(state.UPLOAD_BUTTON)} button:not([disabled])").click()
    page.locator('[data-testid="stAlertContentSuccess"]', has_text="Imported imported-now").wait_for()
    settle(page)
    assert alerts(page, "Success")[-1].startswith("Imported imported-now (650 parameters")
    imported = next(c for c in Store(lab.home).list_models() if c.name == "imported-now")
    # No further click: the table, the card and the sidebar already have it (the grid draws its new rows a moment
    # after the script run ends: wait for them, without touching the page).
    page.locator('[data-testid="stDataFrame"] td', has_text="imported-now").first.wait_for(state="attached")
    assert "imported-now" in table_names(page)
    assert card_title(page) == "imported-now"
    assert imported.id in sidebar_model(page)

    rng = np.random.default_rng(0)
    npz = tmp_path / "tiny.npz"
    np.savez_compressed(
        npz, x=rng.integers(0, 256, (60, 8, 8), dtype=np.uint8), y=np.repeat(np.arange(3), 20)
    )
    page.locator('[data-testid="stExpander"] summary').filter(has_text="Upload a dataset").click()
    upload(page, state.DATA_UPLOAD, npz)
    fill(page, state.DATA_NAME, "tiny-set")
    page.locator(f"{key(state.DATA_BUTTON)} button:not([disabled])").click()
    page.locator('[data-testid="stAlertContentSuccess"]', has_text="Added tiny-set").wait_for()
    settle(page)
    assert alerts(page, "Success")[-1].startswith("Added tiny-set: 48 train / 12 test images")
    chosen = page.locator(f"{key(state.TRAIN_DATASET)} input[role=combobox]").input_value()
    assert chosen == "tiny-set"  # already selected for training
    assert_no_errors(page)
    screenshot(page, "models-imported-and-dataset-added")


# -- item 17: words a person reads -------------------------------------------------------------------------


def test_table_and_card_read_like_words(
    lab: Lab, page: Page, trained_digits: Any, save_trained: Callable[..., Any]
) -> None:
    card = save_trained(lab.home, trained_digits, name="words")
    Store(lab.home).import_model(
        Store(lab.home).weights_bytes(card.id), name="words-upload", dataset="digits"
    )
    open_page(page, f"{lab.url}/models?model={card.id}", key(state.CARD_VIEW))

    device = page.locator(
        '[data-testid="stSidebar"] [data-testid="stCaptionContainer"]', has_text="Device"
    ).inner_text()
    threads = re.search(r"\((\d+) (threads?)\)", device)
    assert threads is not None, device
    assert threads[2] == ("thread" if threads[1] == "1" else "threads"), device

    headers = page.locator('[data-testid="stDataFrame"] th').all_inner_texts()
    created = table_column(page, headers.index("created") + 1) if "created" in headers else []
    cells = [c for i in range(1, 11) for c in table_column(page, i)]
    assert "None" not in cells, cells
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", c) for c in created), created
    assert f"{100 * card.clean_accuracy:.1f} %" in cells
    assert "—" in cells  # the upload's unknown training time and seed
    assert not any(re.fullmatch(r"\d+\.\d{3,}", c) for c in cells), cells  # no raw floats

    box = page.locator(key(state.CARD_VIEW))
    text = box.inner_text()
    epochs = card.train_config["epochs"]
    assert f"{epochs} epoch{'s' if epochs != 1 else ''}" in text
    assert metric(page, "Clean accuracy") == f"{100 * card.clean_accuracy:.1f} %"
    assert "Recipe: Standard (no defense)" in text and "Data: digits: input 1×8×8, 10 classes" in text
    assert_no_errors(page)
    screenshot(page, "models-card-and-table")


# -- item 18: the README's picture ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_cnn(lab: Lab) -> Any:
    """The default cnn on mnist5k, trained for 2 epochs (about 10 s on one busy core): a model worth fooling."""
    from dlsec_core.training.loop import TrainConfig, run_to_end
    from dlsec_core.workflows import train_and_store

    return run_to_end(
        train_and_store(
            Store(lab.home),
            dataset="mnist5k",
            arch="cnn",
            name="cnn-mnist5k",
            config=TrainConfig(epochs=2, seed=0),
        )
    )


def test_readme_picture_shows_every_page_and_a_fooled_image(lab: Lab, page: Page, mnist_cnn: Any) -> None:
    """The README's picture: the whole navigation, and FGSM at ε = 0.1 fooling the default cnn on a test digit."""
    page.set_viewport_size({"width": 1400, "height": 1050})
    open_page(page, f"{lab.url}/attack_lab?model={mnist_cnn.id}", key(state.EPS + "_linf"))
    select_option(page, state.ATTACK, "FGSM")
    wait_triptych(page)
    for example in range(30):  # the first test digit of class 0 that FGSM at ε = 0.1 fools
        if metric(page, "Fooled") == "yes":
            break
        fill(page, state.GALLERY_INDEX, str(example + 1))
        wait_triptych(page)
    assert metric(page, "Fooled") == "yes"
    assert metric(page, "L∞ size") == "0.100"
    height = 1050
    assert page.locator('[data-testid="stSidebarNavViewButton"]').count() == 0, "no page folded away"
    for title in NAV_TITLES:
        link = page.locator('[data-testid="stSidebarNav"] a', has_text=title).first
        box = link.bounding_box()
        assert box is not None and link.is_visible() and box["y"] + box["height"] <= height, title
    page.evaluate(
        "document.activeElement && document.activeElement.blur()"
    )  # no focus ring on the example box
    page.mouse.move(1390, 1040)  # nor a hover effect
    page.wait_for_timeout(500)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / "readme-attack-lab.png"
    page.screenshot(path=str(path))  # the window, as a person sees it
    assert_no_errors(page)
    if os.environ.get("DLSEC_UPDATE_README_PICTURE") == "1":
        shutil.copyfile(path, ROOT / "docs" / "attack_lab.png")


# -- issue 8: the Models page lists each model's runs ------------------------------------------------------


def test_a_models_card_lists_its_runs_and_opens_them(lab: Lab, page: Page) -> None:
    """Train a model in the browser, sweep it on the Robustness page, see both runs on the model's card; the
    sweep's link opens the finished sweep on the Robustness page, the training's link the training on the Models
    page, and the "all runs" link the Runs page filtered on the model."""
    open_page(page, f"{lab.url}/models", key(state.TRAIN_BUTTON))
    select_option(page, state.TRAIN_DATASET, "digits")
    select_option(page, state.TRAIN_ARCH, "logreg:", exact=False)
    press(page, state.TRAIN_EPOCHS, "Home", "ArrowRight")  # 2 epochs
    fill(page, state.TRAIN_NAME, "runs-card")
    train_run = start_run(page, state.TRAIN_BUTTON)
    wait_run_done(page, train_run, RUN_TIMEOUT_MS)
    runs = RunStore(Store(lab.home))
    model_id = runs.get(train_run).result["model_id"]  # type: ignore[index]

    open_page(page, f"{lab.url}/robustness?model={model_id}", key(state.SWEEP_BUTTON))
    select_option(page, state.SWEEP_ATTACK, "FGSM")
    press(page, state.SWEEP_POINTS, "Home")  # 3 points
    sweep_run = start_run(page, state.SWEEP_BUTTON)
    wait_run_done(page, sweep_run, RUN_TIMEOUT_MS)
    sweep_title, train_title = runs.get(sweep_run).title, runs.get(train_run).title

    open_page(page, f"{lab.url}/models?model={model_id}", key(state.CARD_RUNS))
    assert card_title(page) == "runs-card"
    card_runs = page.locator(key(state.CARD_RUNS))
    card_runs.get_by_text(sweep_title).first.wait_for()  # the box fills as the page's rerun settles
    text = card_runs.inner_text()
    assert text.index(sweep_title) < text.index(train_title)  # newest first
    assert "sweep · done" in text and "train · done" in text
    assert "All 2 runs of this model on the Runs page" in text
    assert_no_errors(page)
    screenshot(page, "models-card-runs")

    # The sweep's link: the finished sweep on the Robustness page, drawn, in the same tab and session.
    card_runs.locator("a", has_text=sweep_title).click()
    page.wait_for_url(f"**/robustness?*run={sweep_run}*")
    page.locator(DONE, has_text=f"run {sweep_run[:6]}").wait_for()
    wait_chart(page, state.SWEEP_CHART)
    settle(page)
    assert len(plot_state(page, state.SWEEP_CHART)["data"][0]["x"]) == 3
    assert_no_errors(page)
    screenshot(page, "models-card-run-opened")

    # The training's link, from the card again: the training run on the Models page, its curves drawn.
    open_page(page, f"{lab.url}/models?model={model_id}", key(state.CARD_RUNS))
    page.locator(key(state.CARD_RUNS)).locator("a", has_text=train_title).click()
    page.wait_for_url(f"**/models?*run={train_run}*")
    page.locator(DONE, has_text=f"run {train_run[:6]}").wait_for()
    wait_chart(page, "train_curves")

    # "All runs": the Runs page, filtered on this model.
    page.locator(key(state.CARD_RUNS)).locator("a", has_text="All 2 runs").click()
    page.wait_for_url("**/runs?*runs_only_model=true*")
    page.locator(key(state.RUNS_TABLE)).wait_for()
    settle(page)
    assert sorted(table_column(page, 1)) == sorted([train_run, sweep_run])
    assert page.locator(f"{key(state.RUNS_ONLY_MODEL)} input").is_checked()
    assert_no_errors(page)
    screenshot(page, "runs-filtered-on-model")
