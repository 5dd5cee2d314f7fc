"""Page tests run the app in-process (AppTest): no worker process is started for them (`DLSEC_WORKERS=0`); a test
executes the runs its page queued with `finish_work` (what a worker would do), then reruns the script."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def no_worker_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLSEC_WORKERS", "0")
