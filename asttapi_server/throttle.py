"""Keep a repeating problem from flooding the log.

A dialplan with one typo repeats it on every call, a broken plugin fails on
every event, and a hostile or broken PBX can send a different bad message
every millisecond; one line per problem per minute, with a count of what was
held back, tells the admin as much. Pure: the caller passes the time.

Every log line about input from outside (the PBX, clients) goes through one
of these, with a key naming the *kind* of problem (never the bad value
itself, which an attacker can vary at will).
"""

from __future__ import annotations

from collections.abc import Hashable

#: Seconds between two log lines about the same problem.
DEFAULT_INTERVAL = 60.0

#: The key every problem shares once ``max_keys`` distinct ones are remembered.
OVERFLOW = "<too many different problems>"


class LogThrottle:
    """Lets the first report of each problem through, then one per interval.

    ``allow(key, now)`` answers ``None`` to hold a report back, or the number
    of reports held back since the last one let through (0 the first time).
    At most ``max_keys`` problems are remembered. When that many are, the
    ones quiet for a whole interval are forgotten; if none is, a new problem
    is counted under :data:`OVERFLOW`, so a stream of ever-new problems costs
    bounded memory and at most ``max_keys + 1`` lines per interval.
    """

    __slots__ = ("interval", "max_keys", "_seen", "_purged_at")

    def __init__(self, interval: float = DEFAULT_INTERVAL, max_keys: int = 1024) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self._seen: dict[Hashable, list] = {}
        self._purged_at: float | None = None

    def allow(self, key: Hashable, now: float) -> int | None:
        seen = self._seen
        entry = seen.get(key)
        if entry is None and len(seen) >= self.max_keys:
            self._forget_quiet(now)
            if len(seen) >= self.max_keys:
                key = OVERFLOW
                entry = seen.get(key)
        if entry is not None:
            if now - entry[0] < self.interval:
                entry[1] += 1
                return None
            held, entry[0], entry[1] = entry[1], now, 0
            return held
        seen[key] = [now, 0]
        return 0

    def _forget_quiet(self, now: float) -> None:
        # At most one sweep per interval: a flood of new problems costs O(1) each.
        interval = self.interval
        if self._purged_at is not None and now - self._purged_at < interval:
            return
        self._purged_at = now
        quiet = [k for k, (at, held) in self._seen.items() if now - at >= interval and not held]
        for k in quiet:
            del self._seen[k]
