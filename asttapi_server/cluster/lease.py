"""The holder's side of a lease, sans-IO: when to acquire, renew, release, and when to stop acting.

One :class:`LeaseMachine` per lease (a PBX's link; a node's name). It is
told what the caller wants (:meth:`want`, :meth:`unwant`), what Redis
answered (:meth:`acquired`, :meth:`taken`, :meth:`renewed`, :meth:`refused`,
:meth:`failed`) and the time (:meth:`tick`); it returns :class:`Step`:
a request to send (at most one in flight), whether the holder just became
active or stopped, and when to call :meth:`tick` next.

The safety rule: the holder may act only while :meth:`may_act` is true,
which ends ``safety`` seconds before the lease could have expired in Redis,
counted from when the last successful acquire or renewal was *sent* (Redis
set the expiry after that moment, so ours is never later than Redis's). A
holder that was stopped (SIGSTOP, a long GC, a hung host) wakes up past that
point and stops before doing anything; whatever it still tries to write
carries its old tenure and Redis refuses it (the fencing in :mod:`.scripts`).

States (``TABLE``): IDLE (not wanted), TRYING (wanted, not held), HELD.
At most one request is in flight, except a release, which goes out at once
(the connection keeps it after whatever was sent before).

Pure module: no reactor, no clock; ``now`` is monotonic seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["IDLE", "TRYING", "HELD", "TABLE", "LeaseMachine", "Step", "Tenure"]

IDLE, TRYING, HELD = "idle", "trying", "held"

#: state -> input -> next state. An input not listed for a state is a bug
#: (:meth:`LeaseMachine._go` raises); results that arrive after the caller
#: changed its mind are listed, and handled.
TABLE: dict[str, dict[str, str]] = {
    IDLE: {"want": TRYING, "unwant": IDLE, "tick": IDLE, "acquired": IDLE, "taken": IDLE, "renewed": IDLE,
           "refused": IDLE, "failed": IDLE, "released": IDLE},
    TRYING: {"want": TRYING, "unwant": IDLE, "tick": TRYING, "acquired": HELD, "taken": TRYING, "failed": TRYING,
             "renewed": TRYING, "refused": TRYING, "released": TRYING},
    HELD: {"want": HELD, "unwant": IDLE, "tick": HELD, "expired": TRYING, "renewed": HELD, "refused": TRYING,
           "failed": HELD, "acquired": HELD, "taken": HELD, "released": HELD},
}


@dataclass(frozen=True)
class Tenure:
    """One holding of a lease: the fencing ``token`` (strictly increasing per lease) and the
    ``holder`` (this process's incarnation). ``value`` is what the lease key holds and what
    every fenced write is checked against."""

    token: int
    holder: str

    @property
    def value(self) -> str:
        return f"{self.token} {self.holder}"

    @classmethod
    def parse(cls, value: str) -> "Tenure":
        token, _, holder = value.partition(" ")
        return cls(int(token), holder)


@dataclass
class Step:
    """What the caller does now: ``send`` one of "acquire", "renew", "release" (with ``tenure``
    for the last two); ``active``: True/False when the holder just started/stopped acting
    (``why`` says why); ``wake``: when to :meth:`LeaseMachine.tick` next (None: no need)."""

    send: str | None = None
    tenure: Tenure | None = None
    active: bool | None = None
    why: str = ""
    wake: float | None = None


class LeaseMachine:
    """See the module docstring. ``ttl``: the lease's life in Redis per acquire/renew;
    ``renew_every``: seconds between renewals (a few per ttl); ``safety``: how long before
    the lease could expire the holder stops acting (default 5% of ttl, at least 50 ms)."""

    def __init__(self, ttl: float, renew_every: float, *, safety: float | None = None) -> None:
        if not 0 < renew_every < ttl:
            raise ValueError("renew_every must be > 0 and shorter than ttl")
        self.ttl = ttl
        self.renew_every = renew_every
        self.safety = max(0.05 * ttl, 0.05) if safety is None else safety
        if self.safety >= ttl - renew_every:
            raise ValueError("ttl leaves no time to renew before the holder must stop")
        self.state = IDLE
        self.tenure: Tenure | None = None
        self.valid_until = 0.0
        self.holder_seen: str | None = None  # who holds it when we do not (for logs, /readyz)
        self.highest_token = 0  # the floor every acquire passes: tokens never go back
        self._inflight: str | None = None
        self._sent_at = 0.0
        self._next_at: float | None = None

    # -- questions -----------------------------------------------------------------

    def may_act(self, now: float) -> bool:
        """True while this holder may act (write, send to the PBX): held and not past ``valid_until``."""
        return self.state == HELD and now < self.valid_until

    # -- inputs from the caller -----------------------------------------------------------

    def want(self, now: float) -> Step:
        self._go("want")
        if self.state == TRYING and self._inflight is None:
            return self._send("acquire", now)
        return self._wait()

    def unwant(self, now: float) -> Step:
        was = self.state
        self._go("unwant")
        self._next_at = None
        if was == HELD:
            # Sent even with a renewal in flight: one connection keeps them in order.
            tenure = self.tenure
            self.tenure = None
            self._inflight = "release"
            return Step(send="release", tenure=tenure, active=False, why="released")
        return Step()

    def tick(self, now: float) -> Step:
        if self.state == HELD and now >= self.valid_until:
            return self._lose("expired", "the lease was not renewed in time", now)
        self._go("tick")
        if self._inflight is None and self._next_at is not None and now >= self._next_at:
            if self.state == HELD:
                return self._send("renew", now)
            if self.state == TRYING:
                return self._send("acquire", now)
        return self._wait()

    # -- answers from Redis ----------------------------------------------------------------

    def acquired(self, tenure: Tenure, now: float) -> Step:
        """The acquire sent last got the lease as ``tenure``."""
        self._answered("acquire")
        self.highest_token = max(self.highest_token, tenure.token)
        was = self.state
        self._go("acquired")
        if was == IDLE:  # no longer wanted: give it back at once
            self._inflight = "release"
            return Step(send="release", tenure=tenure)
        if was == HELD:  # cannot happen with one request in flight; never trust it
            return self._wait()
        self.tenure = tenure
        self.holder_seen = None
        self.valid_until = self._sent_at + self.ttl - self.safety
        if now >= self.valid_until:  # the answer took most of the ttl: unusable
            return self._lose("expired", "the acquire took too long to be answered", now)
        self._next_at = self._sent_at + self.renew_every
        step = self._wait()
        step.active, step.why = True, f"acquired with token {tenure.token}"
        return step

    def taken(self, holder: str | None, pttl: float, now: float) -> Step:
        """The acquire found the lease held by ``holder`` for ``pttl`` more seconds."""
        self._answered("acquire")
        self._go("taken")
        self.holder_seen = holder
        if holder:
            try:
                self.highest_token = max(self.highest_token, Tenure.parse(holder).token)
            except ValueError:
                pass
        if self.state == TRYING:
            # Try again when it expires (a dead holder's lease runs out then), or sooner.
            self._next_at = now + min(max(pttl, 0.001), self.renew_every)
        return self._wait()

    def renewed(self, now: float) -> Step:
        self._answered("renew")
        self._go("renewed")
        if self.state == HELD:
            self.valid_until = self._sent_at + self.ttl - self.safety
            if now >= self.valid_until:
                return self._lose("expired", "the renewal came back too late", now)
            self._next_at = self._sent_at + self.renew_every
        return self._wait()

    def refused(self, now: float, holder: str | None = None) -> Step:
        """The renewal found the lease gone or held by another tenure: stop at once."""
        self._answered("renew")
        self.holder_seen = holder
        if self.state == HELD:
            return self._lose("refused", "the lease is no longer ours (expired in Redis or taken over)", now)
        self._go("refused")
        return self._wait()

    def released(self, now: float) -> Step:
        """The release sent last was answered (or failed: the lease then runs out by itself)."""
        if self._inflight == "release":
            self._inflight = None
        self._go("released")
        if self.state == TRYING and self._inflight is None:
            return self._send("acquire", now)
        return self._wait()

    def failed(self, now: float) -> Step:
        """The request in flight got no answer (Redis unreachable, timeout): retry soon."""
        self._inflight = None
        if self.state == HELD and now >= self.valid_until:
            return self._lose("expired", "Redis could not be reached to renew the lease", now)
        self._go("failed")
        if self.state != IDLE:
            self._next_at = now + self.renew_every / 2
        return self._wait()

    # -- internals ----------------------------------------------------------------------------

    def _go(self, event: str) -> None:
        nxt = TABLE[self.state].get(event)
        if nxt is None:
            raise AssertionError(f"lease: no transition for {event!r} in state {self.state!r}")
        self.state = nxt

    def _answered(self, kind: str) -> None:
        if self._inflight in (kind, "release"):
            self._inflight = None

    def _send(self, kind: str, now: float) -> Step:
        self._inflight = kind
        self._sent_at = now
        self._next_at = None
        return Step(send=kind, tenure=self.tenure if kind != "acquire" else None, wake=self._wake())

    def _lose(self, event: str, why: str, now: float) -> Step:
        self._go(event)
        self.tenure = None
        self.valid_until = 0.0
        self._next_at = now  # try to get it back (it may have expired for good)
        step = self._wait()
        if self._inflight is None:
            step = self._send("acquire", now)
        step.active, step.why = False, why
        return step

    def _wake(self) -> float | None:
        times = [t for t in (self._next_at, self.valid_until if self.state == HELD else None) if t is not None]
        return min(times) if times else None

    def _wait(self) -> Step:
        return Step(wake=self._wake())
