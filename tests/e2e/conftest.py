"""A real Streamlit server and a real Chromium for the end-to-end tests (one of each per test session).

The server runs `app.py` on a free port over a temporary DLSEC_HOME that holds one trained `digits` model,
so every test can use that model without depending on another test.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Playwright

    from dlsec_core.store import ModelCard
    from dlsec_core.training.loop import TrainResult

ROOT = Path(__file__).resolve().parents[2]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
START_TIMEOUT_S = 90.0
TIMEOUT_MS = 60_000  # one interaction (a script rerun, a chart drawing) on a busy two-core machine


@dataclass(frozen=True)
class App:
    """The running app: where it answers, where its store lives, and the model seeded before it started."""

    url: str
    home: Path
    model_id: str
    model_name: str

    def health(self) -> str:
        return health(self.url)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def health(url: str) -> str:
    """The body of the server's health endpoint ("ok"), or "" if it does not answer."""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.read().decode().strip()
    except (urllib.error.URLError, OSError):
        return ""


def _log_tail(path: Path, n: int = 40) -> str:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines() if path.exists() else []
    return "\n".join(lines[-n:])


@contextlib.contextmanager
def run_server(
    home: Path, name: str = "e2e-server", *, stop_workers: bool = True, env: dict[str, str] | None = None
) -> Iterator[str]:
    """`streamlit run app.py` on a free port over `home`; yields its URL; the log is artifacts/<name>.log.

    `env` adds environment variables for the server (e.g. a workshop room's `DLSEC_ROOM_PASSCODE`). The server is
    stopped on exit, also when the test fails.
    """
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / f"{name}.log"
    # One worker process executes the runs (trainings, sweeps); it exits 30 s after its last run, and is stopped
    # with the server.
    env = {**os.environ, "DLSEC_HOME": str(home), "PYTHONUNBUFFERED": "1", "DLSEC_WORKERS": "1",
           "DLSEC_WORKER_IDLE_S": "30", **(env or {})}  # fmt: skip
    command = [
        sys.executable, "-m", "streamlit", "run", "app.py",
        "--server.headless=true", f"--server.port={port}", "--server.address=127.0.0.1",
        "--server.fileWatcherType=none", "--server.runOnSave=false", "--browser.gatherUsageStats=false",
    ]  # fmt: skip
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while health(url) != "ok":
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited with {proc.returncode}:\n{_log_tail(log_path)}")
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit did not answer within {START_TIMEOUT_S} s:\n{_log_tail(log_path)}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if stop_workers:  # else they finish their runs and exit 30 s after the last one
            subprocess.run(["pkill", "-f", f"dlsec_core --home {home} worker"], check=False)


@pytest.fixture(scope="session")
def server() -> Callable[..., contextlib.AbstractContextManager[str]]:
    """`run_server` for tests that need a server of their own (a conftest module cannot be imported)."""
    return run_server


@pytest.fixture(scope="session")
def app_server(
    tmp_path_factory: pytest.TempPathFactory,
    trained_digits: TrainResult,
    save_trained: Callable[..., ModelCard],
) -> Iterator[App]:
    """The app on a free port, over a fresh DLSEC_HOME seeded with one trained model, for the whole session."""
    home = tmp_path_factory.mktemp("e2e") / "dlsec_home"
    card = save_trained(home, trained_digits, name="e2e-seeded")
    with run_server(home) as url:
        yield App(url=url, home=home, model_id=card.id, model_name=card.name)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def app(app_server: App, browser: Browser) -> App:
    """The app after one visit to its root URL (warms the server's imports and caches for the tests)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.goto(app_server.url + "/")
        page.locator(".st-key-seed input").wait_for(timeout=TIMEOUT_MS)
        page.wait_for_selector(IDLE, timeout=TIMEOUT_MS)
    finally:
        context.close()
    return app_server


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the test item, so fixtures can tell whether the test failed."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def new_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Callable[[], Page]]:
    """Make pages in fresh browser contexts (each one an independent user); fails on uncaught page errors.

    When the test fails, each page's last state is saved as artifacts/screenshots/FAILED-<test>-<n>.png.
    """
    contexts = []
    pages: list[Page] = []
    errors: list[str] = []

    def make() -> Page:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda err: errors.append(str(err)))
        pages.append(page)
        return page

    yield make
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for i, page in enumerate(pages):
            page.screenshot(path=str(SCREENSHOTS / f"FAILED-{request.node.name}-{i}.png"), full_page=True)
    for context in contexts:
        context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def page(new_page: Callable[[], Page]) -> Page:
    return new_page()
