"""End to end in a real browser: the Model theft page's Defend, Own and Transfer tabs, on a server of their own.

Before the server starts, its DLSEC_HOME gets the seeded digits victim, a finished extraction run of it (Jacobian
augmentation behind a rate limit, the stolen copy stored) executed in this process as a worker would, and a
watermarked owner. In the browser:
- Defend draws PRADA's W for the attacker and the benign client exactly as the run stored them, says whether
  each raised the alarm as the stored trace does, and what the rate limit cost;
- Own verifies the current model against the owner, also stealing the owner's model with Copycat and pruning the
  suspect: the table's p-values are the stored result's, one row per verified model;
- Transfer attacks the victim from its stolen copy beside white-box PGD: two sweeps on the workers, two curves
  whose points are the stored records.

Needs Debian's Chromium at /usr/bin/chromium. Screenshots go to artifacts/screenshots/theft_tabs_*.png.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from dlsec_core.execution.worker import in_process, serve
from dlsec_core.runs import RunStatus, RunStore
from dlsec_core.store import ModelCard, Store
from dlsec_core.studies.catalog import submit
from dlsec_core.studies.ownership import OwnershipStudyResult
from dlsec_core.studies.theft import ExtractionStudyConfig, ExtractionStudyResult
from dlsec_core.theft.watermark import WatermarkRecipe
from dlsec_core.training.loop import TrainConfig, TrainResult, run_to_end
from dlsec_core.workflows import train_and_store
from dlsec_ui import state

if TYPE_CHECKING:
    from playwright.sync_api import Page

from streamlit_page import (  # skips the module when Chromium or Playwright is missing
    assert_no_errors,
    key,
    plot_state,
    screenshot,
    select_option,
    settle,
    start_run,
    table_column,
    wait_chart,
    wait_run_done,
)

pytestmark = pytest.mark.e2e

RUN_TIMEOUT_MS = 240_000


class Theft:
    def __init__(self, url: str, home: Path, victim: ModelCard, extraction: str, owner: ModelCard) -> None:
        self.url, self.home, self.victim, self.extraction, self.owner = url, home, victim, extraction, owner

    def open(self, page: Page, *, run: str | None = None) -> None:
        query = f"?model={self.victim.id}" + (f"&run={run}" if run else "")
        page.goto(f"{self.url}/theft{query}")
        page.locator(f"{key(state.THEFT_BUTTON)} button").wait_for()
        settle(page)


@pytest.fixture(scope="module")
def theft(
    tmp_path_factory: pytest.TempPathFactory,
    trained_digits: TrainResult,
    save_trained: Callable[..., ModelCard],
    server: Callable[..., Any],
) -> Iterator[Theft]:
    home = tmp_path_factory.mktemp("e2e_theft") / "dlsec_home"
    victim = save_trained(home, trained_digits, name="victim")
    store = Store(home)
    runs = RunStore(store)
    config = ExtractionStudyConfig(
        model_id=victim.id, attack="jacobian", attack_params={"arch": "logreg", "epochs": 2, "seed_size": 20},
        budgets=[100, 400], store_surrogate=True, rate_limit=100, rate_window_s=60.0, seed=0,
    )  # fmt: skip
    run = submit(runs, "extraction", config)
    assert serve(runs, max_runs=1, idle_exit_s=0, lower_priority=False, engine=in_process) == 1
    assert runs.get(run.id).status == RunStatus.DONE
    owner = run_to_end(
        train_and_store(
            store, dataset="digits", arch="logreg", name="owner", recipe=WatermarkRecipe(keys=20),
            config=TrainConfig(epochs=2, lr=0.05, shift=0, seed=1),
        )
    )  # fmt: skip
    with server(home, "e2e-theft-tabs") as url:
        yield Theft(url, home, victim, run.id, owner)


def _w(chart: dict[str, Any]) -> list[float]:
    return next(t["y"] for t in chart["data"] if t["name"] == "W")


def test_defend_tab_draws_prada_from_the_stored_run(theft: Theft, page: Page) -> None:
    theft.open(page, run=theft.extraction)
    page.get_by_role("tab", name="Defend").click()
    page.get_by_text("Juuti et al. 2019").first.wait_for()
    wait_chart(page, state.DEFEND_CHART)
    wait_chart(page, state.DEFEND_BENIGN_CHART)
    run = RunStore(Store(theft.home)).get(theft.extraction)
    report = ExtractionStudyResult.from_json(run.result or {})
    traces = report.prada_results()
    assert traces is not None
    attacker, benign = traces
    assert _w(plot_state(page, state.DEFEND_CHART)) == pytest.approx([w for _, w in attacker.tests])
    assert _w(plot_state(page, state.DEFEND_BENIGN_CHART)) == pytest.approx([w for _, w in benign.tests])
    verdict = page.locator(
        '[data-testid="stCaptionContainer"]', has_text="The jacobian attacker was"
    ).inner_text()
    assert ("was caught" if attacker.alarmed else "was not caught") in verdict
    assert ("raised a false alarm" if benign.alarmed else "raised no false alarm") in verdict
    # 400 queries at 100 per 60 s: three 60 s waits on the API's clock, 300 answers throttled
    assert report.throttled_s == 180.0 and report.throttled_queries == 300
    # the Defend tab repeats it (the Steal tab, hidden now, holds the same sentence)
    page.locator("p:visible", has_text="the attacker waited 3.0 minutes on the API's clock").first.wait_for()
    assert_no_errors(page)
    screenshot(page, "theft_tabs_01_defend")


def test_own_tab_verifies_every_copy_with_a_p_value(theft: Theft, page: Page) -> None:
    theft.open(page)
    page.get_by_role("tab", name="Own").click()
    page.locator(f"{key(state.OWN_BUTTON)} button").wait_for()
    select_option(page, state.OWN_PRUNE, "50% of its weights")
    page.keyboard.press("Escape")
    select_option(page, state.OWN_STEAL, "Copycat")
    page.keyboard.press("Escape")
    settle(page)
    run_id = start_run(page, state.OWN_BUTTON)
    wait_run_done(page, run_id, RUN_TIMEOUT_MS)
    run = RunStore(Store(theft.home)).get(run_id)
    assert (
        run.status == RunStatus.DONE and run.config["steal"] == ["copycat"] and run.config["prune"] == [0.5]
    )
    assert run.config["owner_id"] == theft.owner.id and run.config["suspect_id"] == theft.victim.id
    report = OwnershipStudyResult.from_json(run.result or {})
    assert (
        report.owner.p_value < 1e-6 and not report.suspect.verified
    )  # positive control; the victim is a null
    page.locator('[data-testid="stDataFrame"]').first.wait_for()
    models = table_column(page, 1)
    assert models == [
        "owner (positive control)",
        "suspect: victim",
        "pruned 50%",
        "stolen: copycat, 1,000 queries",
    ]
    found = table_column(page, 4)
    assert found == ["yes" if v.verified else "no" for v in
                     (report.owner, report.suspect, *(s.verdict for s in report.survival))]  # fmt: skip
    p_values = [float(v) for v in table_column(page, 3)]
    expected = [report.owner.p_value, report.suspect.p_value, *(s.verdict.p_value for s in report.survival)]
    assert p_values == pytest.approx(expected, rel=0.01)
    assert page.get_by_text("stolen copies lost the watermark").count() == 1
    assert_no_errors(page)
    screenshot(page, "theft_tabs_02_own")


def test_transfer_tab_draws_the_stolen_copy_beside_white_box_pgd(theft: Theft, page: Page) -> None:
    theft.open(page)
    page.get_by_role("tab", name="Transfer").click()
    page.locator(f"{key(state.TRANSFER_BUTTON)} button").wait_for()
    settle(page)
    page.locator(f"{key(state.TRANSFER_BUTTON)} button").click()
    # the caption comes when both sweeps (transfer and white-box) have finished on the workers
    page.get_by_text("PGD crafted on the stolen copy and transferred").first.wait_for(timeout=RUN_TIMEOUT_MS)
    settle(page)
    wait_chart(page, state.TRANSFER_CHART)
    chart = plot_state(page, state.TRANSFER_CHART)
    runs = RunStore(Store(theft.home))
    sweeps = runs.list_runs(study="sweep", status="done", model_id=theft.victim.id, limit=10)
    by_attack = {r.config["attack"]: r for r in sweeps}
    assert set(by_attack) == {"transfer", "pgd"}
    curves = {t["name"]: t for t in chart["data"]}
    white = next(v for k, v in curves.items() if k.startswith("white-box"))
    moved = next(v for k, v in curves.items() if k.startswith("transfer from"))
    for trace, run in ((white, by_attack["pgd"]), (moved, by_attack["transfer"])):
        records = (run.result or {})["records"]
        assert trace["x"] == pytest.approx([r["eps"] for r in records])
        assert trace["y"] == pytest.approx([1 - r["accuracy"] for r in records])  # success = 1 - accuracy
    # white-box PGD succeeds at least as often as the transferred attack at the largest ε
    assert white["y"][-1] >= moved["y"][-1] - 1e-9
    assert_no_errors(page)
    screenshot(page, "theft_tabs_03_transfer")
