"""Keep a repeating problem from flooding the log.

A dialplan with one typo repeats it on every call, and a broken plugin fails
on every event; one line per problem per minute, with a count of what was held
back, tells the admin as much. Pure: the caller passes the time.
"""

from __future__ import annotations

from collections.abc import Hashable

#: Seconds between two log lines about the same problem.
DEFAULT_INTERVAL = 60.0


class LogThrottle:
    """Lets the first report of each problem through, then one per interval.

    ``allow(key, now)`` answers ``None`` to hold a report back, or the number
    of reports held back since the last one let through (0 the first time).
    At most ``max_keys`` problems are remembered; past that the memory is
    cleared, so a stream of ever-new problems costs bounded memory (and is
    logged more often, which is what it deserves).
    """

    __slots__ = ("interval", "max_keys", "_seen")

    def __init__(self, interval: float = DEFAULT_INTERVAL, max_keys: int = 1024) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self._seen: dict[Hashable, list] = {}

    def allow(self, key: Hashable, now: float) -> int | None:
        entry = self._seen.get(key)
        if entry is not None:
            if now - entry[0] < self.interval:
                entry[1] += 1
                return None
            held, entry[0], entry[1] = entry[1], now, 0
            return held
        if len(self._seen) >= self.max_keys:
            self._seen.clear()
        self._seen[key] = [now, 0]
        return 0
