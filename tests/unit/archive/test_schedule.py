"""The worker's schedule: every N minutes of the clock, whatever N is."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import pairwise

import pytest

from archive.jobs import every_minutes


def runs(minutes: int, start: datetime, hours: int) -> list[datetime]:
    due = every_minutes(minutes)
    at = [start + timedelta(minutes=m) for m in range(hours * 60)]
    return [t for t in at if due(t)]


@pytest.mark.parametrize("minutes", [1, 5, 7, 10, 45, 90, 360, 1440])
def test_runs_are_exactly_n_minutes_apart(minutes: int) -> None:
    found = runs(minutes, datetime(2026, 12, 31, 13, 7), hours=72)
    assert len(found) >= 2
    gaps = {b - a for a, b in pairwise(found)}
    assert gaps == {timedelta(minutes=minutes)}  # across hours, midnight and the year's end


def test_a_day_runs_at_midnight_and_ninety_minutes_is_not_hourly() -> None:
    assert runs(1440, datetime(2026, 12, 7, 11, 0), hours=48) == [
        datetime(2026, 12, 8),
        datetime(2026, 12, 9),
    ]
    assert len(runs(90, datetime(2026, 12, 7), hours=24)) == 16
