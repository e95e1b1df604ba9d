"""Keeping a lease in Redis: the Twisted side of :class:`.lease.LeaseMachine`.

:class:`LeaseKeeper` runs the machine's requests as the scripts of
:mod:`.scripts`, feeds the answers back, keeps one timer at the machine's
next wake-up, and tells ``on_change(active, tenure, why)`` when this node
starts or stops being the holder. :meth:`LeaseKeeper.may_act` is the check
to make right before anything that must happen on the holder only (an AMI
action): it reads the monotonic clock itself, so a node that was stopped
answers False the moment it runs again, before any timer fires.

:func:`run_fenced` runs a fenced script and turns Redis's ``-STALE`` into
:class:`~asttapi_server.errors.StaleLease`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from asttapi_server.errors import RedisReplyError, RedisUnavailable, StaleLease

from . import scripts
from .client import RedisClient
from .lease import LeaseMachine, Step, Tenure

log = Logger(namespace="asttapi.cluster.lease")

#: Defaults of ``[cluster] lease_ttl`` and ``lease_renew``: a dead holder's lease runs out within
#: 2 s, so a fail-over (lease, then the new holder's resync) fits well within 5 s.
LEASE_TTL = 2.0
LEASE_RENEW = 0.5


def run_fenced(client: RedisClient, script: scripts.Script, keys: Sequence[Any], args: Sequence[Any]) -> defer.Deferred:
    """``client.run`` of a fenced script; a refusal fails with :class:`StaleLease`."""
    d = client.run(script, keys, args)
    d.addErrback(_stale)
    return d


def _stale(failure: Any) -> Any:
    if failure.check(RedisReplyError) and str(failure.value).startswith("STALE"):
        raise StaleLease(str(failure.value)[len("STALE "):])
    return failure


class LeaseKeeper:
    """Holds (or waits for) one lease: ``key`` with its token counter ``token_key``.

    ``holder``: this process's incarnation (``node/random``). ``now``: a
    monotonic clock (the reactor's ``seconds()`` is wall time, which NTP
    may move); ``clock`` only schedules.
    """

    def __init__(self, client: RedisClient, clock: Any, *, key: str, token_key: str, holder: str,
                 ttl: float = LEASE_TTL, renew_every: float = LEASE_RENEW,
                 on_change: Callable[[bool, Tenure | None, str], None] | None = None,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.clock = clock
        self.key = key
        self.token_key = token_key
        self.holder = holder
        self.on_change = on_change
        self.now = now
        self.machine = LeaseMachine(ttl, renew_every)
        self._timer: Any = None

    # -- the caller's side ---------------------------------------------------------

    def want(self) -> None:
        """Try to hold the lease, now and whenever it is free, until :meth:`unwant`."""
        self._apply(self.machine.want(self.now()))

    def unwant(self) -> None:
        """Stop holding (released at once, so another node takes over without waiting for the ttl)."""
        self._apply(self.machine.unwant(self.now()))
        self._cancel()

    def may_act(self) -> bool:
        return self.machine.may_act(self.now())

    @property
    def tenure(self) -> Tenure | None:
        """The tenure to fence writes with, while this node holds the lease."""
        return self.machine.tenure if self.may_act() else None

    @property
    def holder_seen(self) -> str | None:
        return self.machine.holder_seen

    # -- driving the machine ------------------------------------------------------------

    def _apply(self, step: Step) -> None:
        if step.active is not None and self.on_change is not None:
            tenure = self.machine.tenure if step.active else None
            try:
                self.on_change(step.active, tenure, step.why)
            except Exception:
                log.failure("lease {key}: the on_change callback failed", key=self.key)
        # Scheduled before sending: a send that fails at once feeds the machine again, and
        # that step's timer must stand.
        self._schedule(step.wake)
        if step.send is not None:
            self._send(step.send, step.tenure)

    def _schedule(self, wake: float | None) -> None:
        self._cancel()
        if wake is not None and self.machine.state != "idle":
            self._timer = self.clock.callLater(max(0.0, wake - self.now()), self._tick)

    def _cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _tick(self) -> None:
        self._timer = None
        self._apply(self.machine.tick(self.now()))

    def _send(self, kind: str, tenure: Tenure | None) -> None:
        m = self.machine
        ttl_ms = int(m.ttl * 1000)
        if kind == "acquire":
            d = self.client.run(scripts.ACQUIRE, [self.key, self.token_key], [self.holder, ttl_ms, m.highest_token])
            d.addCallbacks(self._acquire_answer, self._failed)
        elif kind == "renew":
            assert tenure is not None
            d = self.client.run(scripts.RENEW, [self.key], [tenure.value, ttl_ms])
            d.addCallbacks(self._renew_answer, self._failed)
        else:
            assert tenure is not None
            d = self.client.run(scripts.RELEASE, [self.key], [tenure.value])
            d.addErrback(lambda f: log.info("lease {key}: release not confirmed ({error}); it expires by itself",
                                            key=self.key, error=f.getErrorMessage()))
            d.addCallback(lambda _: self._apply(self.machine.released(self.now())))
        d.addErrback(lambda f: log.failure("lease {key}: answer handling failed", f, key=self.key))

    def _acquire_answer(self, reply: list) -> None:
        now = self.now()
        if reply[0] == 1:
            self._apply(self.machine.acquired(Tenure.parse(reply[1].decode()), now))
        else:
            pttl = reply[2] / 1000.0 if isinstance(reply[2], int) and reply[2] > 0 else 0.0
            self._apply(self.machine.taken(reply[1].decode("utf-8", "replace"), pttl, now))

    def _renew_answer(self, reply: list) -> None:
        now = self.now()
        if reply[0] == 1:
            self._apply(self.machine.renewed(now))
        else:
            self._apply(self.machine.refused(now, reply[1].decode("utf-8", "replace") or None))

    def _failed(self, failure: Any) -> None:
        if not failure.check(RedisUnavailable, RedisReplyError):
            log.failure("lease {key}: unexpected failure", failure, key=self.key)
        self._apply(self.machine.failed(self.now()))
