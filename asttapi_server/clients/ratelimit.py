"""Requests per second per connection: a token bucket.

One client that sends requests as fast as its socket allows (successful ones
or errors, it makes no difference to the reactor) must not slow down every
other client. The bucket lets a CRM open its lines in one burst at start-up,
then holds it to a steady rate. Pure: the caller passes the time.
"""

from __future__ import annotations


# A token is whole when it is within rounding of 1: 0.02 s at 50/s must make one.
_ONE = 1.0 - 1e-9


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; starts full.

    ``take(now)`` spends one token and answers True, or answers False when
    the bucket is empty (the request is over the limit).
    """

    __slots__ = ("rate", "burst", "_tokens", "_at")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = now

    def _refill(self, now: float) -> None:
        elapsed = now - self._at
        if elapsed > 0:
            tokens = self._tokens + elapsed * self.rate
            self._tokens = tokens if tokens < self.burst else float(self.burst)
            self._at = now

    def take(self, now: float) -> bool:
        self._refill(now)
        if self._tokens >= _ONE:
            self._tokens = max(0.0, self._tokens - 1.0)
            return True
        return False

    def spend(self, now: float, cost: float) -> None:
        """Charge ``cost`` tokens after the fact (an answer that turned out large).

        The bucket may go into debt, down to ``-burst``: the next requests
        wait until it is paid off.
        """
        self._refill(now)
        self._tokens = max(-float(self.burst), self._tokens - cost)

    def full(self, now: float) -> bool:
        """True once the bucket has saved up its whole burst again."""
        return self._tokens + max(0.0, now - self._at) * self.rate >= self.burst

    def wait(self, now: float) -> float:
        """Seconds until ``take`` can next succeed (0 if it can now)."""
        missing = _ONE - (self._tokens + max(0.0, now - self._at) * self.rate)
        return missing / self.rate if missing > 0 else 0.0
