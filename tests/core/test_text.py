"""Numbers in words: plurals, durations and timestamps as the app and the CLI show them."""

from __future__ import annotations

import doctest

import pytest
import torch

import dlsec_core.text
from dlsec_core.device import describe_device
from dlsec_core.text import duration, plural, timestamp


def test_doctests() -> None:
    assert doctest.testmod(dlsec_core.text).failed == 0


@pytest.mark.parametrize(
    ("n", "word", "expected"),
    [
        (0, "epoch", "0 epochs"),
        (1, "epoch", "1 epoch"),
        (2, "thread", "2 threads"),
        (12_345, "step", "12,345 steps"),
    ],
)
def test_plural(n: int, word: str, expected: str) -> None:
    assert plural(n, word) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0.0, "0.0 s"), (59.9, "59.9 s"), (59.96, "1 min 0 s"), (231.0897, "3 min 51 s"), (7200, "2 h 0 min")],
)
def test_duration(seconds: float, expected: str) -> None:
    assert duration(seconds) == expected


def test_duration_refuses_negative_times() -> None:
    with pytest.raises(ValueError, match="-1"):
        duration(-1)


def test_timestamp_is_in_utc_to_the_minute() -> None:
    assert timestamp("2026-11-29T18:42:04.123456+00:00") == "2026-11-29 18:42 UTC"
    assert timestamp("2026-11-29T19:42:59+01:00") == "2026-11-29 18:42 UTC"
    assert timestamp("not a date") == "not a date"


def test_one_thread_is_one_thread() -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert describe_device() == "CPU (1 thread)"
    finally:
        torch.set_num_threads(before)
