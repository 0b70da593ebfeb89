"""Time in profiles: minute buckets, window lengths and the as-of rule.

Both executors share one rule, so that they agree to the event:

* an event belongs to minute ``m = floor(timestamp_us / 60_000_000)``
  (minutes since the Unix epoch, UTC);
* a window of ``N`` minutes has buckets of ``r`` minutes: ``r = N / 1440``
  when ``N`` is a whole number of days (1,440 buckets: one minute for ``24h``,
  seven minutes for ``7d``), else ``r = 1``; it holds ``K = N / r`` buckets;
* as of an instant ``T`` (minute ``M``), the window holds the events with
  ``timestamp <= T`` and ``floor(m / r) > floor(M / r) - K``: the last ``K``
  buckets up to and including the as-of bucket. A lifetime window holds every
  event with ``timestamp <= T``.

So a ``24h`` window as of 10:30:15 covers 10:31 the day before up to 10:30:15,
and an event leaves it exactly when the clock enters minute ``m + 1440``.
The bucket size bounds memory: at most ``K + 1`` buckets per user and window.

>>> parse_window("24h")
1440
>>> parse_window("lifetime") is None
True
>>> minute_of(datetime(2024, 5, 1, 10, 3, 59, tzinfo=UTC))
28575963
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

MINUTE_US = 60_000_000
MINUTES_PER_DAY = 1440
LIFETIME = "lifetime"
_UNITS = {"m": 1, "h": 60, "d": MINUTES_PER_DAY}
WINDOW_PATTERN = r"^(lifetime|[1-9][0-9]{0,5}[mhd])$"
_WINDOW = re.compile(WINDOW_PATTERN)
#: The longest sliding window accepted (beyond it, use ``lifetime``).
MAX_WINDOW_MINUTES = 400 * MINUTES_PER_DAY
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_window(text: str) -> int | None:
    """Window length in minutes, or ``None`` for ``lifetime``.

    >>> parse_window("30m"), parse_window("7d")
    (30, 10080)
    """
    if not _WINDOW.match(text):
        raise ValueError(f"window {text!r}: use e.g. 30m, 24h, 7d or lifetime")
    if text == LIFETIME:
        return None
    minutes = int(text[:-1]) * _UNITS[text[-1]]
    if minutes > MAX_WINDOW_MINUTES:
        raise ValueError(f"window {text!r}: at most 400d (use lifetime beyond)")
    return minutes


def resolution(minutes: int) -> int:
    """Bucket length in minutes of a window of ``minutes``.

    >>> resolution(30), resolution(1440), resolution(7 * 1440), resolution(90)
    (1, 1, 7, 1)
    """
    if minutes % MINUTES_PER_DAY == 0:
        return minutes // MINUTES_PER_DAY
    return 1


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch (naive datetimes are UTC).

    >>> to_us(datetime(1970, 1, 1, 0, 1, tzinfo=UTC))
    60000000
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    """The UTC datetime of epoch microseconds.

    >>> from_us(60_000_000).isoformat()
    '1970-01-01T00:01:00+00:00'
    """
    return _EPOCH + timedelta(microseconds=us)


def minute_of(moment: datetime) -> int:
    """The minute bucket of an instant."""
    return to_us(moment) // MINUTE_US


def window_start(at: datetime, minutes: int) -> datetime:
    """The first instant inside a window of ``minutes`` as of ``at``.

    Events with ``window_start(at, N) <= timestamp <= at`` are in the window.

    >>> window_start(datetime(2024, 5, 1, 10, 30, 15, tzinfo=UTC), 1440).isoformat()
    '2024-04-30T10:31:00+00:00'
    >>> window_start(datetime(2024, 5, 1, 10, 30, 15, tzinfo=UTC), 7 * 1440).isoformat()
    '2024-04-24T10:35:00+00:00'
    """
    r = resolution(minutes)
    first_bucket = minute_of(at) // r - minutes // r + 1
    return from_us(first_bucket * r * MINUTE_US)


def iso(us: int | None) -> str | None:
    """ISO-8601 text (UTC, microseconds) of epoch microseconds, for JSON answers."""
    if us is None:
        return None
    return from_us(us).isoformat().replace("+00:00", "Z")
