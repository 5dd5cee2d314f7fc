"""Numbers in words for people: counts with their noun in the right number, durations, timestamps.

>>> plural(1, "epoch"), plural(10, "epoch"), plural(1_000, "image"), plural(2, "query", "queries")
('1 epoch', '10 epochs', '1,000 images', '2 queries')
>>> duration(0.42), duration(12.34), duration(231.0897), duration(3725)
('0.4 s', '12.3 s', '3 min 51 s', '1 h 2 min')
>>> timestamp("2026-11-29T18:42:04.123456+00:00")
'2026-11-29 18:42 UTC'
"""

from __future__ import annotations

from datetime import UTC, datetime


def plural(n: int, word: str, many: str | None = None) -> str:
    """`n` and `word`, the noun in the plural unless `n` is 1 (`many` for irregular plurals; default word + 's')."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def duration(seconds: float) -> str:
    """A wall-clock time as a person reads it: '12.3 s' under a minute, '3 min 51 s', '1 h 2 min'."""
    if seconds < 0:
        raise ValueError(f"a duration must be >= 0, got {seconds}")
    if seconds < 59.95:
        return f"{seconds:.1f} s"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s"


def timestamp(iso: str) -> str:
    """An ISO 8601 time (as the store writes it: UTC, microseconds) to the minute, in UTC: '2026-11-29 18:42 UTC'.
    Text that is not ISO 8601 comes back unchanged."""
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%d %H:%M") + " UTC"
