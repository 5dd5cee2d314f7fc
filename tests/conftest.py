"""Fixtures shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def tmp_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty DLSEC_HOME for one test (the store, jobs and runs all live under it)."""
    home = tmp_path / "dlsec_home"
    monkeypatch.setenv("DLSEC_HOME", str(home))
    return home
