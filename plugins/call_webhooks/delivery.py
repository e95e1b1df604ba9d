"""Delivering one target's webhook events: in order per call, retried with backoff, dropped when too old.

Each call's events form a queue; only its head is ever in flight, so a
receiver sees a call's events in the order they happened. Different calls
go out side by side (``concurrency``). What an answer means is
:data:`VERDICTS`' rule, :func:`verdict`:

* **2xx**: delivered; the outbox marks it, the next event of the call goes.
* **400, 413, 415** (and 422 from a JSON receiver): the receiver refuses this
  event for good: dropped, logged, counted; the call's later events go on.
* **500 and the other 5xx but 502-504, 408, 409**: this event failed; it
  is retried after a backoff of its own while the other calls go on.
* **Anything else** (no connection, a timeout, TLS refused, 502/503/504,
  429, 401/403/404, a redirect): the receiver as a whole is not taking
  events. The target pauses (backoff doubling from 1 s up to ``retry_max``,
  with jitter: half the delay fixed, half random, so many servers do not
  return at once; a ``Retry-After`` is honoured up to ``retry_max``), then
  sends one event as a probe; the first success lifts the pause.

An event older than the target's ``max_age`` is dropped when it would be
sent (and by a sweep every minute), with one log line per sweep and the
``dropped`` count; for Zammad the rest of its call goes with it (an answer
whose newCall never arrived is an error in Zammad). Zammad answers a
newCall it already has with HTTP 500 (``Cti::Log``: "call_id already
exists"); a retried newCall whose earlier attempt may have reached it
(timeout, connection lost after sending) counts as delivered on a 500.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from asttapi_server.errors import HttpError
from asttapi_server.http_client import HttpClient, HttpResponse
from asttapi_server.metrics import DELIVERY_BUCKETS, Histogram
from asttapi_server.throttle import LogThrottle

from .outbox import DROPPED, SENT, Outbox, Pending

log = Logger(namespace="asttapi_plugins.call_webhooks")

RETRY_BASE = 1.0
DEFAULT_RETRY_MAX = 300.0
DEFAULT_CONCURRENCY = 4
SWEEP_INTERVAL = 60.0
SIGNATURE_HEADER = "X-Asttapi-Signature"

DELIVERED, REFUSED, RETRY_EVENT, PAUSE_TARGET = "delivered", "refused", "retry_event", "pause_target"


def verdict(code: int | None, fmt: str) -> str:
    """What an answer (``code``; None: no answer at all) means for the event and the target."""
    if code is None:
        return PAUSE_TARGET
    if 200 <= code < 300:
        return DELIVERED
    if code in (400, 413, 415) or (code == 422 and fmt == "json"):
        return REFUSED
    if code in (408, 409) or (500 <= code < 600 and code not in (502, 503, 504)):
        return RETRY_EVENT
    return PAUSE_TARGET


def backoff(failures: int, retry_max: float, rng: random.Random) -> float:
    """Seconds to wait after the ``failures``-th failure in a row: 1, 2, 4 ... up to ``retry_max``,
    half of it fixed and half random."""
    delay = min(retry_max, RETRY_BASE * (2 ** min(failures - 1, 30)))
    return delay / 2 + rng.uniform(0, delay / 2)


@dataclass(frozen=True)
class TargetConfig:
    """One ``[[plugins.call_webhooks.target]]``, checked (``url`` with its token filled in)."""

    name: str
    url: str
    origin: str
    format: str
    lines: tuple[str, ...] = ("*",)
    headers: dict[str, str] = field(default_factory=dict)
    secret: bytes | None = None
    timeout: float = 10.0
    max_age: float = 86400.0
    retry_max: float = DEFAULT_RETRY_MAX
    concurrency: int = DEFAULT_CONCURRENCY


class Delivery:
    """Sends one target's events; see the module docstring."""

    def __init__(self, target: TargetConfig, outbox: Outbox, client: HttpClient, clock: Any,
                 rng: random.Random | None = None) -> None:
        self.target = target
        self.outbox = outbox
        self.client = client
        self.clock = clock
        self.rng = rng or random.Random()
        self.queues: OrderedDict[str, deque[Pending]] = OrderedDict()
        self.in_flight: dict[str, Deferred] = {}
        self.failures = 0
        self.paused_until = 0.0
        self.last_error = ""
        self.complained = False
        self.stopped = False
        self._timer: Any = None
        self._timer_at: float | None = None
        self.counts = {"sent": 0, "retried": 0, "dropped": 0}
        self.delivery_seconds = Histogram(DELIVERY_BUCKETS)
        self._log_throttle = LogThrottle()

    # -- queueing ------------------------------------------------------------------------

    def add(self, pending: Pending) -> None:
        self.queues.setdefault(pending.call, deque()).append(pending)
        self.pump()

    def depth(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def oldest(self) -> Pending | None:
        heads = [q[0] for q in self.queues.values() if q]
        return min(heads, key=lambda p: p.created) if heads else None

    # -- sending -------------------------------------------------------------------------

    def pump(self) -> None:
        """Send what may go now; set the one timer for what may go later."""
        if self.stopped:
            return
        now = self.clock.seconds()
        self.sweep(now)
        later: float | None = None
        if now < self.paused_until:
            later = self.paused_until
        else:
            limit = self.target.concurrency if self.failures == 0 else 1  # after a failure: one probe
            for call, queue in self.queues.items():
                if len(self.in_flight) >= limit:
                    break
                if call in self.in_flight or not queue:
                    continue
                head = queue[0]
                if head.not_before > now:
                    later = head.not_before if later is None else min(later, head.not_before)
                    continue
                self._send(call, head)
        self._schedule(later)

    def _schedule(self, at: float | None) -> None:
        if at == self._timer_at and (self._timer is None or self._timer.active()):
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer, self._timer_at = None, at
        if at is not None:
            self._timer = self.clock.callLater(max(0.0, at - self.clock.seconds()), self._tick)

    def _tick(self) -> None:
        self._timer, self._timer_at = None, None
        self.pump()

    def headers(self, pending: Pending) -> dict[str, str]:
        """The request's headers: the target's, the content type, the event id, the signature."""
        out = dict(self.target.headers)
        out["Content-Type"] = pending.content_type
        out["Idempotency-Key"] = pending.event_id
        if self.target.format == "json":
            out["X-Asttapi-Event"] = pending.kind
            if self.target.secret is not None:
                digest = hmac.new(self.target.secret, pending.body, hashlib.sha256).hexdigest()
                out[SIGNATURE_HEADER] = "sha256=" + digest
        return out

    def _send(self, call: str, pending: Pending) -> None:
        pending.attempts += 1
        d = self.client.request("POST", self.target.url, headers=self.headers(pending), body=pending.body)
        self.in_flight[call] = d
        d.addCallbacks(self._answered, self._failed, callbackArgs=(call, pending), errbackArgs=(call, pending))

    def _answered(self, answer: HttpResponse, call: str, pending: Pending) -> None:
        self.in_flight.pop(call, None)
        what = verdict(answer.code, self.target.format)
        if (what == RETRY_EVENT and answer.code == 500 and pending.unanswered and pending.kind == "newCall"
                and self.target.format == "zammad"):
            what = DELIVERED  # Zammad has it from the attempt whose answer we lost
        if what == DELIVERED:
            self._delivered(call, pending)
        elif what == REFUSED:
            self._refused(call, pending, f"HTTP {answer.code}")
        else:
            retry_after = _retry_after(answer.header("Retry-After"))
            self._retry(what, call, pending, f"HTTP {answer.code}", retry_after)
        self.pump()

    def _failed(self, failure: Failure, call: str, pending: Pending) -> None:
        self.in_flight.pop(call, None)
        if self.stopped:
            return
        if failure.check(HttpError):
            if failure.value.sent:
                pending.unanswered = True
            why = failure.value.reason
        else:
            pending.unanswered = True
            why = failure.getErrorMessage()
        self._retry(PAUSE_TARGET, call, pending, why, None)
        self.pump()

    def _delivered(self, call: str, pending: Pending) -> None:
        self._pop(call, pending)
        self.outbox.settled(pending, SENT)
        self.counts["sent"] += 1
        self.delivery_seconds.observe(max(0.0, self.clock.seconds() - pending.created))
        self.failures = 0
        self.paused_until = 0.0
        if self.complained:
            self.complained = False
            log.info("call_webhooks: target {target} ({origin}) answers again; {depth} events to send",
                     target=self.target.name, origin=self.target.origin, depth=self.depth())

    def _refused(self, call: str, pending: Pending, why: str) -> None:
        self._pop(call, pending)
        self.outbox.settled(pending, DROPPED)
        self.counts["dropped"] += 1
        held = self._log_throttle.allow("refused", self.clock.seconds())
        if held is not None:
            log.error("call_webhooks: target {target} ({origin}) refused a {kind} event of call {call} for good "
                      "({why}); dropped ({held} more since the last report)", target=self.target.name,
                      origin=self.target.origin, kind=pending.kind, call=call, why=why, held=held)

    def _retry(self, what: str, call: str, pending: Pending, why: str, retry_after: float | None) -> None:
        now = self.clock.seconds()
        self.counts["retried"] += 1
        pending.last_error = self.last_error = why
        if what == RETRY_EVENT:
            delay = backoff(pending.attempts, self.target.retry_max, self.rng)
            pending.not_before = now + delay
            key, text = "event", "{why} for a {kind} event of call {call}; it is retried in {delay:.0f} s"
        else:
            self.failures += 1
            delay = backoff(self.failures, self.target.retry_max, self.rng)
            if retry_after is not None:
                delay = min(self.target.retry_max, max(delay, retry_after))
            self.paused_until = now + delay
            key, text = "target", "{why}; {depth} events wait, the next try in {delay:.0f} s"
        held = self._log_throttle.allow(key, now)
        if held is not None:
            self.complained = True
            log.warn("call_webhooks: target {target} ({origin}): " + text + " ({held} more like it since the "
                     "last report)", target=self.target.name, origin=self.target.origin, why=why,
                     kind=pending.kind, call=call, delay=delay, depth=self.depth(), held=held)

    def _pop(self, call: str, pending: Pending) -> None:
        queue = self.queues.get(call)
        if queue and queue[0] is pending:
            queue.popleft()
            if not queue:
                del self.queues[call]

    # -- age ---------------------------------------------------------------------------------

    def sweep(self, now: float) -> int:
        """Drop events older than max_age (not those in flight); returns how many went."""
        cutoff = now - self.target.max_age
        dropped, calls = 0, 0
        for call in list(self.queues):
            if call in self.in_flight:
                continue
            queue = self.queues[call]
            before = dropped
            while queue and queue[0].created < cutoff:
                dropped += 1
                self.outbox.settled(queue.popleft(), DROPPED)
            if dropped > before and self.target.format == "zammad":
                while queue:  # the rest of a Zammad call is an error without its start
                    dropped += 1
                    self.outbox.settled(queue.popleft(), DROPPED)
            if dropped > before:
                calls += 1
            if not queue:
                del self.queues[call]
        if dropped:
            self.counts["dropped"] += dropped
            log.error("call_webhooks: target {target} ({origin}): dropped {count} events of {calls} calls "
                      "undelivered for longer than max_age {max_age:g} s (last error: {why})",
                      target=self.target.name, origin=self.target.origin, count=dropped, calls=calls,
                      max_age=self.target.max_age, why=self.last_error or "none")
        return dropped

    # -- stop ------------------------------------------------------------------------------------

    def stop(self) -> Deferred:
        """Send nothing new; fires when the requests in flight have their answers (or fail)."""
        self.stopped = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        waits = list(self.in_flight.values())
        return DeferredList(waits, consumeErrors=True) if waits else succeed(None)


def _retry_after(value: str | None) -> float | None:
    if value and value.strip().isdigit():
        return float(value.strip())
    return None


def route(pendings: Iterable[Pending], deliveries: dict[str, Delivery]) -> dict[str, int]:
    """Hand loaded events to their targets; the count of those whose target is no longer configured."""
    orphans: dict[str, int] = {}
    for pending in pendings:
        delivery = deliveries.get(pending.target)
        if delivery is None:
            orphans[pending.target] = orphans.get(pending.target, 0) + 1
            continue
        delivery.queues.setdefault(pending.call, deque()).append(pending)
    return orphans
