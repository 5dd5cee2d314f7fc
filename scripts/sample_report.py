"""Make the README's sample: three tiny digits models (standard, FGSM-RS adversarially trained, DP-SGD), a quick
scan of each, the report of the standard one compared with the other two (docs/sample_report.html, and its PDF
when Chromium is here), and screenshots of the Scorecard page (docs/scorecard.png, docs/scorecard_compare.png)
taken in Debian's Chromium over the same store.

    .venv/bin/python scripts/sample_report.py [--home DIR] [--no-screenshots]

About a minute on two cores (training and scans take seconds; starting the app takes the rest).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dlsec_core.execution.worker import in_process, serve  # noqa: E402
from dlsec_core.runs import RunStatus, RunStore  # noqa: E402
from dlsec_core.store import ModelCard, Store  # noqa: E402
from dlsec_core.studies.catalog import submit  # noqa: E402
from dlsec_core.studies.scan import ScanStudyConfig  # noqa: E402
from dlsec_core.training import get_recipe  # noqa: E402
from dlsec_core.training.loop import TrainConfig, run_to_end  # noqa: E402
from dlsec_core.workflows import train_and_store  # noqa: E402
from dlsec_ui.report import NoChromiumError, find_chromium, write_pdf, write_report  # noqa: E402

if TYPE_CHECKING:
    from playwright.sync_api import Page

DOCS = ROOT / "docs"
MODELS = {  # name -> (recipe, its settings): the three shapes the trade-offs are about
    "digits-standard": ("standard", {}),
    "digits-fgsm-rs": ("fgsm-rs", {"eps": 0.1}),
    "digits-dp-sgd": ("dp-sgd", {"noise_multiplier": 1.0}),
}
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'


def shoot(page: Page, path: Path) -> None:
    """The main area, whole: Streamlit scrolls inside its container, so the window is made as tall as the content."""
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": 1400, "height": min(int(height) + 40, 5000)})
    page.wait_for_timeout(800)  # let Plotly redraw at the new size
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 1000})


def train(store: Store, name: str, recipe: str, params: dict[str, object]) -> ModelCard:
    config = TrainConfig(epochs=5, lr=0.05, shift=0, seed=0)
    return run_to_end(train_and_store(store, dataset="digits", arch="mlp", name=name, config=config,
                                      recipe=get_recipe(recipe, **params)))  # fmt: skip


def scan(runs: RunStore, model_id: str) -> str:
    run = submit(runs, "scan", ScanStudyConfig(model_id=model_id, preset="quick", seed=0))
    serve(runs, max_runs=1, idle_exit_s=0, lower_priority=False, engine=in_process)
    done = runs.get(run.id)
    if done.status != RunStatus.DONE:
        raise SystemExit(f"scan of {model_id} ended {done.status}: {done.error}")
    return run.id


def screenshots(home: Path, model_id: str, run_id: str) -> None:
    from playwright.sync_api import sync_playwright

    chromium = find_chromium()
    if chromium is None:
        print("no Chromium: no screenshots", file=sys.stderr)
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "DLSEC_HOME": str(home), "DLSEC_WORKERS": "0"}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless=true", f"--server.port={port}",
         "--server.address=127.0.0.1", "--browser.gatherUsageStats=false"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read().decode().strip() == "ok":
                        break
            except OSError:
                time.sleep(0.3)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(chromium), args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(90_000)
            page.goto(f"{url}/scorecard?model={model_id}&run={run_id}")
            page.locator(".st-key-scorecard_tile_2_open button").click()
            page.locator(".st-key-scorecard_evidence_chart .main-svg").first.wait_for()
            page.wait_for_selector(IDLE)
            page.wait_for_timeout(500)
            shoot(page, DOCS / "scorecard.png")
            page.get_by_role("tab", name="Compare models").click()
            page.locator(".st-key-scorecard_tradeoff .main-svg").first.wait_for()
            page.wait_for_timeout(800)
            shoot(page, DOCS / "scorecard_compare.png")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="the store to use (default: a fresh temporary one)")
    parser.add_argument("--no-screenshots", action="store_true")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="dlsec-sample-"))
    store = Store(home)
    runs = RunStore(store)
    cards = {name: train(store, name, recipe, params) for name, (recipe, params) in MODELS.items()}
    run_ids = {name: scan(runs, card.id) for name, card in cards.items()}
    standard = run_ids["digits-standard"]
    DOCS.mkdir(exist_ok=True)
    html = write_report(runs, standard, compare=True)
    shutil.copy(html, DOCS / "sample_report.html")
    print(f"{DOCS / 'sample_report.html'}: {html.stat().st_size / 1e6:.1f} MB")
    try:
        shutil.copy(write_pdf(runs, standard), DOCS / "sample_report.pdf")
        print(DOCS / "sample_report.pdf")
    except NoChromiumError as err:
        print(err, file=sys.stderr)
    if not args.no_screenshots:
        screenshots(home, cards["digits-standard"].id, standard)
        print(DOCS / "scorecard.png", DOCS / "scorecard_compare.png")


if __name__ == "__main__":
    main()
