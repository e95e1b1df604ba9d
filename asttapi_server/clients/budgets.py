"""Request budgets shared by connections: one per logged-in user, one per address before login.

A connection's own token bucket (``server.request_rate``) stops one socket
from flooding; it does not stop one user from opening fifty. So every
request (a JSON-lines line, a WebSocket frame, an HTTP request) also spends
from a bucket shared by all of its user's connections
(``server.user_request_rate``/``user_request_burst``), or, before login and on
the web port, of its address's. A connection that finds the shared bucket
empty is not refused: it stops reading and joins the bucket's queue; when a
token is due the *first* waiter gets it and reads its next request, so a
user's fifty connections take turns and cost the reactor what one
connection at the user's rate costs, and other users never wait for them.
Login-free servers (every client anonymous, loopback only) share nothing:
each connection keeps its own bucket.

Requests differ a hundredfold in what they cost (a ``ping`` 6 µs, a 404
100 µs, a WebSocket handshake 0.5-1 ms, a ``/metrics`` scrape a few ms), so
a request costs a token and one more for
every :data:`TOKEN_SECONDS` of the reactor thread's CPU time its handling
took (``time.thread_time``: a machine busy with other work does not make
requests dearer): a flood of expensive requests runs dry as fast as their
cost, not their number.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

from asttapi_server.clients.ratelimit import TokenBucket

#: A waiter: called when it was given a token.
Wake = Callable[[], None]

#: Reactor CPU time one token pays for, beyond the token every request costs anyway.
TOKEN_SECONDS = 0.00005


class SharedBucket:
    """One user's (or address's) bucket and the connections waiting for it, first come first served."""

    __slots__ = ("key", "bucket", "users", "_waiters", "_timer", "_clock")

    def __init__(self, key: Hashable, bucket: TokenBucket, clock: Any) -> None:
        self.key = key
        self.bucket = bucket
        self.users = 0
        self._waiters: deque[Wake] = deque()
        self._timer: Any = None
        self._clock = clock

    def take(self) -> bool:
        """A token now, unless the bucket is empty or others wait already (they come first)."""
        return not self._waiters and self.bucket.take(self._clock.seconds())

    def spend(self, cost: float) -> None:
        """Charge ``cost`` more tokens for a request that turned out large (the bucket may go into debt)."""
        self.bucket.spend(self._clock.seconds(), cost)

    def charge_work(self, seconds: float) -> None:
        """A request took ``seconds`` of reactor time: a token more for every :data:`TOKEN_SECONDS` of it."""
        extra = seconds / TOKEN_SECONDS
        if extra >= 1.0:
            self.spend(extra)

    def wait(self, wake: Wake) -> None:
        """Call ``wake`` once a token is set aside for it (after those already waiting)."""
        self._waiters.append(wake)
        self._arm()

    def cancel(self, wake: Wake) -> None:
        """The waiter went away (its connection closed)."""
        try:
            self._waiters.remove(wake)
        except ValueError:
            pass
        if not self._waiters and self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _arm(self) -> None:
        if self._timer is None and self._waiters:
            self._timer = self._clock.callLater(self.bucket.wait(self._clock.seconds()), self._due)

    def _due(self) -> None:
        self._timer = None
        if self._waiters and self.bucket.take(self._clock.seconds()):
            self._waiters.popleft()()
        self._arm()


class SharedBudgets:
    """The shared buckets of one server, made on first use and forgotten once idle and full again."""

    def __init__(self, rate: float, burst: float, clock: Any) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[Hashable, SharedBucket] = {}
        self._idle: list[Hashable] = []
        self._swept_at = float("-inf")

    def acquire(self, key: Hashable) -> SharedBucket:
        """The bucket of ``key`` for one more connection (``release`` it when the connection ends)."""
        shared = self._buckets.get(key)
        if shared is None:
            now = self._clock.seconds()
            if len(self._idle) > 64 and now - self._swept_at >= 1.0:
                self._forget_idle(now)  # at most once a second: a flood of new addresses costs O(1) each
            shared = self._buckets[key] = SharedBucket(key, TokenBucket(self.rate, self.burst, now), self._clock)
        shared.users += 1
        return shared

    def release(self, shared: SharedBucket) -> None:
        shared.users -= 1
        if shared.users <= 0 and not shared.waiting:
            # Kept until full again: closing every connection must not buy a fresh burst.
            self._idle.append(shared.key)

    def _forget_idle(self, now: float) -> None:
        self._swept_at = now
        keep = []
        for key in self._idle:
            shared = self._buckets.get(key)
            if shared is None or shared.users > 0:
                continue
            if shared.bucket.full(now):
                del self._buckets[key]
            else:
                keep.append(key)
        self._idle = keep

    def __len__(self) -> int:
        return len(self._buckets)
