"""One AMI connection: login, ActionID correlation, event lists, keepalive.

Adapter ring: feeds bytes to :class:`~asttapi_server.ami.parser.AMIParser` and
hands messages on.  Reconnecting is :mod:`asttapi_server.ami.link`'s job; a
protocol lives exactly as long as its TCP connection.

Session states (one table, as in magic-wormhole's machines)::

    login  --login ok-->          live
    login  --refused / lost-->    closed   (login Deferred fails)
    live   --Event: Shutdown-->   closing  (pending fail LinkDown; abort after a grace)
    live   --no Pong in time-->   closed   (abortConnection: half-open link)
    any    --connectionLost-->    closed   (every pending action fails LinkDown)

Only the login's own ``Challenge`` and ``Login`` are ever written before
``live``: :meth:`AMIProtocol.send_action` fails fast with
:class:`~asttapi_server.errors.LinkDown` otherwise (pitfall 3).

Correlation is AMP's: a counter makes ActionIDs (``<prefix>-<n>``, the prefix
names the connection so a late answer from an old link never matches), a dict
maps them to their Deferreds, and connection loss fails them all.  Their
timeouts share one timer, armed for the earliest deadline (a timer per
action was made and cancelled for every call's Getvar).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

import re

from asttapi_server.ami import actions
from asttapi_server.ami.message import EVENT, RESPONSE, Message
from asttapi_server.ami.parser import AMIParser
from asttapi_server.idents import wanted_name, wanted_names
from asttapi_server.errors import (
    ActionFailed,
    ActionTimeout,
    AMIError,
    AuthenticationFailed,
    LinkDown,
    NotAsteriskManager,
)
from asttapi_server.throttle import LogThrottle

__all__ = ["AMIProtocol"]

LOGIN, LIVE, CLOSING, CLOSED = "login", "live", "closing", "closed"

# The kind of a parser problem: its text before any quoted bytes, numbers
# folded, so "block without any header" is one problem however it varies.
_PROBLEM_KIND = re.compile(r"\d+")


#: Seconds a peer has to send its ``Asterisk Call Manager/...`` banner, which
#: Asterisk writes the moment it accepts; silence means a wrong host or port.
GREETING_TIMEOUT = 5.0
#: Bytes one AMI link reads per turn of the reactor (Twisted's default is 64 KiB).
#: Each ready link gets one read a turn: a PBX flooding its link puts at most
#: this much work (about 28 events) ahead of another PBX's events, not 64 KiB
#: of them (``bench/pbx_flood.py``: a flood as fast as the server reads slowed
#: the other PBX's calls x3.4 at p50 with 64 KiB reads, x1.2 with 16 KiB).
READ_BYTES = 16384
#: Bytes of a peer's first line we read (and show) before judging it.
_GREETING_BYTES = 200
_SHOWN_BYTES = 60


def greeting_problem(first: bytes) -> str | None:
    """Why the peer's first line is not an AMI greeting (None: it is one).

    Asterisk greets with ``Asterisk Call Manager/<version>`` (proxies with
    ``Asterisk Call Manager Proxy/<version>``) before anything else; a web
    server, an SSH daemon or a database answers with something else, or
    waits. The text shows what the peer said, escaped and truncated."""
    line = first.lstrip(b"\r\n").split(b"\n", 1)[0].rstrip(b"\r")
    if b"call manager" in line.lower():
        return None
    shown = repr(line[:_SHOWN_BYTES])[1:]
    if len(line) > _SHOWN_BYTES:
        shown += "..."
    return f"it said: {shown}"


#: Actions Asterisk answers with one response and never with events: their
#: ActionIDs need not open the parser's event filter (a Getvar per call is
#: pending most of the time; the events it would open the filter to never come).
ONE_RESPONSE = frozenset(("getvar", "ping"))


#: An action whose deadline is this close (seconds) when the sweep runs is
#: overdue: a timer re-armed at ``deadline - now`` may fire a rounding early.
_SLACK = 1e-6


class _Pending:
    __slots__ = ("action", "deferred", "deadline", "events", "timeout", "started")

    def __init__(self, action: str, deferred: Deferred, deadline: float | None, timeout: float | None,
                 started: float | None):
        self.action = action
        self.deferred = deferred
        self.deadline = deadline  # clock time of its ActionTimeout, None: none
        self.timeout = timeout
        self.started = started  # when it was sent, if on_action is told of its end
        self.events: list[Message] | None = None  # set once "EventList: start" arrives


def _is_list_start(msg: Message) -> bool:
    if (msg.get("EventList") or "").strip().lower() == "start":
        return True
    # Asterisk < 1.6.1 sent no EventList header; "... will follow" says the same.
    return (msg.get("Message") or "").strip().lower().endswith("will follow")


def _list_end(msg: Message) -> str | None:
    flag = (msg.get("EventList") or "").strip().lower()
    if flag in ("complete", "cancelled"):
        return flag
    if msg.name.lower().endswith("complete"):
        return "complete"
    return None


class AMIProtocol(Protocol):
    """The AMI session on one connection."""

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        *,
        prefix: str = "asttapi",
        observers: Sequence[Callable[[Message], None]] = (),
        on_shutdown: Callable[[AMIProtocol, Message], None] | None = None,
        on_lost: Callable[[AMIProtocol, Failure], None] | None = None,
        max_message_bytes: int = 1 << 20,
        shutdown_grace: float = 10.0,
        event_filter: Iterable[str] | None = None,
        greeting_timeout: float = GREETING_TIMEOUT,
        on_action: Callable[[str, float, str | None], None] | None = None,
    ) -> None:
        self.clock = clock
        #: Told of every action's end: (action, seconds, None or "error"/"timeout"/"link_down").
        self.on_action = on_action
        self.prefix = prefix
        # The client's own list object: observers added later are seen here too.
        self.observers = observers
        self.on_shutdown = on_shutdown
        self.on_lost = on_lost
        self.shutdown_grace = shutdown_grace
        self.parser = AMIParser(max_message_bytes, on_error=self._parse_error)
        self.state = LOGIN
        self._counter = 0
        self._pending: dict[str, _Pending] = {}
        # The pending actions that may answer with events (not ONE_RESPONSE):
        # one dict for the whole life of the protocol, the parser lets the
        # events of these ActionIDs through its filter.
        self._listable: dict[str, _Pending] = {}
        self.parser.action_ids = self._listable
        # One timer for every pending action's timeout, armed for the earliest
        # deadline (not a timer per action, made and cancelled per Getvar).
        self._sweep_call: IDelayedCall | None = None
        self._sweep_at: float | None = None
        self._wanted: frozenset[str] | None = None
        self.set_event_filter(event_filter)
        self._collecting = 0
        self._keepalive_call: IDelayedCall | None = None
        self._shutdown_call: IDelayedCall | None = None
        self._ping_outstanding = False
        self.keepalive = 0.0
        self.pong_timeout = 0.0
        self.peer = "?"
        self.greeting_timeout = greeting_timeout
        self._greeting: bytes | None = b""  # None once the banner is seen
        self._greeting_call: IDelayedCall | None = None
        # Every log line about what the PBX sent goes through this (item 8 of
        # issue 11: a garbage flood wrote 224 MB of log in 45 s).
        self._log_throttle = LogThrottle()
        self._secrets: tuple[str, ...] = ()  # masked in every line quoting the PBX

    def set_event_filter(self, names: Iterable[str] | None) -> None:
        """Observers get only events with these names (any case); ``None``: all.

        The parser drops the other events unread, except Shutdown/FullyBooted
        (the link reacts to them) and the events of pending actions (event
        lists); those reach the protocol but not the observers."""
        self._wanted = wanted_names(names)
        self._deliver: dict[str, bool] = {}  # event name as sent -> wanted?
        self.parser.set_event_filter(self._wanted)

    def _delivered(self, name: str) -> bool:
        deliver = wanted_name(name) in self._wanted  # type: ignore[operator]
        # Bounded in bytes too: a hostile PBX may send ever-new, huge names.
        if len(self._deliver) < 4096 and len(name) <= 64:
            self._deliver[name] = deliver
        return deliver

    # -- connection ----------------------------------------------------------

    def connectionMade(self) -> None:
        if isinstance(getattr(self.transport, "bufferSize", None), int):
            self.transport.bufferSize = READ_BYTES
        try:
            peer = self.transport.getPeer()
            self.peer = f"{peer.host}:{peer.port}"
        except Exception:
            self.peer = "?"
        if self.greeting_timeout > 0:
            self._greeting_call = self.clock.callLater(self.greeting_timeout, self._no_greeting)

    def dataReceived(self, data: bytes) -> None:
        if self._greeting is not None:
            data = self._check_greeting(data)
            if not data:
                return
        collecting = self._collecting
        observers = self.observers
        wanted = self._wanted
        for msg in self.parser.feed(data):
            kind = msg.kind
            if kind == EVENT:
                if collecting and self._collect(msg):
                    collecting = self._collecting
                    continue
                if msg.name == "Shutdown":
                    self._shutdown(msg)
                if wanted is not None:
                    deliver = self._deliver.get(msg.name)
                    if deliver is None:
                        deliver = self._delivered(msg.name)
                    if not deliver:
                        continue
                for fn in observers:
                    try:
                        fn(msg)
                    except Exception:
                        self.log.failure("AMI event observer {observer!r} failed on {event}", observer=fn, event=msg.name)
            elif kind == RESPONSE:
                self._response(msg)
                collecting = self._collecting
            else:
                # (kind OTHER has no name: show the block's head instead)
                self._input_problem("ignored " + kind, "AMI {kind} message from {peer} ignored: {name}",
                                    level="debug", kind=kind,
                                    name=repr(msg.name[:80]) if msg.name else repr(msg.raw[:_SHOWN_BYTES])[1:])

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self._greeting:  # it said something, then hung up: judge what it said
            self._not_asterisk(greeting_problem(self._greeting) or "it hung up after its banner")
        self._cancel_greeting_timer()
        was = self.state
        self.state = CLOSED
        for call in (self._keepalive_call, self._shutdown_call):
            if call is not None and call.active():
                call.cancel()
        self._keepalive_call = self._shutdown_call = None
        why = reason.getErrorMessage() if reason is not None else "closed"
        self._fail_all(LinkDown(f"AMI link to {self.peer} lost ({why})"))
        if was != CLOSED and self.on_lost is not None:
            self.on_lost(self, reason)

    # -- the greeting ------------------------------------------------------

    def _check_greeting(self, data: bytes) -> bytes:
        """Hold bytes until the first line is in; b"" while waiting or refused."""
        buf = self._greeting + data  # type: ignore[operator]
        if b"\n" not in buf.lstrip(b"\r\n") and len(buf) < _GREETING_BYTES:
            self._greeting = buf
            return b""
        problem = greeting_problem(buf)
        if problem is not None:
            self._greeting = b""
            self._not_asterisk(problem)
            return b""
        self._greeting = None
        self._cancel_greeting_timer()
        return buf

    def _no_greeting(self) -> None:
        self._greeting_call = None
        held = self._greeting
        if held is None or self.state != LOGIN:
            return
        if not held:
            self._not_asterisk(f"it sent nothing in {self.greeting_timeout:g} s")
            return
        problem = greeting_problem(held)
        if problem is not None:
            self._not_asterisk(problem)
        else:  # a slow "Asterisk Call Manager/..." still on its way: it is one
            self._greeting = None
            self.dataReceived(held)

    def _not_asterisk(self, problem: str) -> None:
        """Fail the login with one clear reason and hang up (the client retries)."""
        self._greeting = None
        self._cancel_greeting_timer()
        if self.state == CLOSED:
            return
        self.state = CLOSING
        problem = actions.scrub_text(problem, *self._secrets)  # an echo of a plain Login
        self._fail_all(NotAsteriskManager(f"{self.peer} is not an Asterisk manager ({problem})"))
        self.transport.abortConnection()

    def _cancel_greeting_timer(self) -> None:
        if self._greeting_call is not None and self._greeting_call.active():
            self._greeting_call.cancel()
        self._greeting_call = None

    def _parse_error(self, text: str) -> None:
        kind = _PROBLEM_KIND.sub("N", text.split(":", 1)[0])[:80]
        self._input_problem(kind, "AMI stream from {peer}: {problem}", problem=text)

    def _input_problem(self, problem: str, fmt: str, /, level: str = "warn", **fields: Any) -> None:
        """Log something odd the PBX sent: throttled per kind of ``problem``, credentials masked."""
        held = self._log_throttle.allow(problem, self.clock.seconds())
        if held is None:
            return
        for key, value in fields.items():
            if isinstance(value, str):
                fields[key] = actions.scrub_text(value, *self._secrets)
        if held:
            fmt += " ({held} more like it since the last report)"
        getattr(self.log, level)(fmt, peer=self.peer, held=held, **fields)

    # -- actions -------------------------------------------------------------

    def next_action_id(self) -> str:
        self._counter += 1
        return f"{self.prefix}-{self._counter}"

    def send_action(
        self,
        action: actions.Action,
        *,
        timeout: float | None = 30.0,
        on_action_id: Callable[[str], None] | None = None,
    ) -> Deferred:
        """Send one action once logged in; see ``AMILink.send_action``."""
        if self.state != LIVE:
            return fail(LinkDown(f"AMI link to {self.peer} is not logged in; {action.name} not sent"))
        return self._send(action, timeout, on_action_id)

    def _send(
        self,
        action: actions.Action,
        timeout: float | None,
        on_action_id: Callable[[str], None] | None = None,
    ) -> Deferred:
        action_id = self.next_action_id()
        try:
            data = actions.encode(action.name, action.headers, action_id)  # (one call less than Action.encode)
        except AMIError:
            return fail()
        name = action.name
        if on_action_id is not None:
            on_action_id(action_id)
        d: Deferred = Deferred()
        deadline = None
        if timeout is not None and timeout > 0:
            deadline = self.clock.seconds() + timeout
            if self._sweep_call is None or deadline < self._sweep_at:  # type: ignore[operator]
                self._arm(deadline, timeout)
        started = self.clock.seconds() if self.on_action is not None else None
        pending = self._pending[action_id] = _Pending(name, d, deadline, timeout, started)
        if name.lower() not in ONE_RESPONSE:
            self._listable[action_id] = pending
        self.transport.write(data)
        return d

    def _settle(self, pending: _Pending, result: Any) -> None:
        """Fire the action's Deferred with ``result`` (an exception: errback), ``on_action``
        told first (no callback of its own on every action's Deferred)."""
        failed = isinstance(result, (Exception, Failure))
        if pending.started is not None and self.on_action is not None:
            failure = None
            if failed:
                error = result.value if isinstance(result, Failure) else result
                failure = ("timeout" if isinstance(error, ActionTimeout) else
                           "link_down" if isinstance(error, LinkDown) else "error")
            try:
                self.on_action(pending.action, self.clock.seconds() - pending.started, failure)
            except Exception:
                self.log.failure("AMI action observer failed")
        if failed:
            pending.deferred.errback(result)
        else:
            pending.deferred.callback(result)

    def _finish(self, action_id: str) -> _Pending | None:
        pending = self._pending.pop(action_id, None)
        if pending is None:
            return None
        self._listable.pop(action_id, None)
        if pending.events is not None:
            self._collecting -= 1
        return pending  # (its deadline needs no cancelling: the sweep finds it gone)

    def _arm(self, at: float, delay: float) -> None:
        """The sweep runs at ``at`` (``delay`` seconds from now), instead of when it was due."""
        self._disarm()
        self._sweep_at = at
        self._sweep_call = self.clock.callLater(max(0.0, delay), self._sweep)

    def _disarm(self) -> None:
        if self._sweep_call is not None and self._sweep_call.active():
            self._sweep_call.cancel()
        self._sweep_call = self._sweep_at = None

    def _sweep(self) -> None:
        """Fail every action past its deadline (in deadline order) with ActionTimeout; re-arm for the next."""
        self._sweep_call = self._sweep_at = None
        now = self.clock.seconds()
        overdue = sorted(((p.deadline, aid) for aid, p in self._pending.items()
                          if p.deadline is not None and p.deadline - now <= _SLACK), key=lambda x: x[0])
        expired = [self._finish(aid) for _, aid in overdue]
        nxt = min((p.deadline for p in self._pending.values() if p.deadline is not None), default=None)
        if nxt is not None and (self._sweep_call is None or nxt < self._sweep_at):  # type: ignore[operator]
            self._arm(nxt, nxt - now)
        for pending in expired:
            self._settle(pending, ActionTimeout(  # type: ignore[arg-type]
                f"no answer from {self.peer} to AMI {pending.action} within {pending.timeout:g} s"))

    def _response(self, msg: Message) -> None:
        action_id = msg.action_id
        pending = self._pending.get(action_id) if action_id is not None else None
        if pending is None:
            self._input_problem("stray response", "AMI response from {peer} for no pending action (ActionID {aid}): {name}",
                                level="debug", aid=repr((action_id or "")[:80]), name=repr(msg.name[:80]))
            return
        if pending.events is not None:
            self._input_problem("second response", "AMI second response from {peer} for {aid}; ignored",
                                aid=repr(action_id[:80]))
            return
        if msg.name.strip().lower() == "error":
            self._finish(action_id)
            self._settle(pending, ActionFailed(pending.action, msg))
        elif _is_list_start(msg):
            pending.events = [msg]
            self._collecting += 1
        else:
            self._finish(action_id)
            self._settle(pending, msg)

    def _collect(self, msg: Message) -> bool:
        """Put an event into its pending event list; False if it belongs to none."""
        action_id = msg.action_id
        pending = self._pending.get(action_id) if action_id is not None else None
        if pending is None or pending.events is None:
            return False
        pending.events.append(msg)
        end = _list_end(msg)
        if end is not None:
            self._finish(action_id)  # type: ignore[arg-type]
            self._settle(pending, ActionFailed(pending.action, msg) if end == "cancelled" else pending.events)
        return True

    def _fail_all(self, error: Exception) -> None:
        pending = list(self._pending.values())
        self._pending.clear()
        self._listable.clear()  # the same dict: the parser holds it
        self._collecting = 0
        self._disarm()
        for p in pending:
            self._settle(p, Failure(error))

    # -- login ---------------------------------------------------------------

    def login(self, username: str, secret: str, *, auth: str = "md5", events: str = "on", timeout: float = 30.0) -> Deferred:
        """Log in; fires with the Login response, fails with AuthenticationFailed,
        ActionTimeout or LinkDown.  The secret never reaches a log line."""
        if self.state != LOGIN:
            return fail(LinkDown(f"AMI link to {self.peer} is {self.state}; cannot log in"))

        self._secrets = (secret,)

        def refused(failure: Failure) -> Failure:
            if failure.check(ActionFailed):
                # The PBX's words, quoted: masked, since a broken one may echo our Login.
                text = repr(actions.scrub_text((failure.value.message.get("Message") or "refused")[:200], *self._secrets))
                return Failure(
                    AuthenticationFailed(
                        f"Asterisk at {self.peer} refused the AMI login as {username!r}: {text} "
                        "(check username, secret and permit/deny in manager.conf)"
                    )
                )
            return failure

        if auth == "md5":
            d = self._send(actions.challenge(), timeout)

            def answer(msg: Message) -> Deferred:
                challenge = msg.get("Challenge")
                if not challenge:
                    raise AuthenticationFailed(f"Asterisk at {self.peer} sent no MD5 challenge")
                key = actions.md5_key(challenge, secret)
                self._secrets = (secret, key)
                return self._send(actions.login_md5(username, key, events), timeout)

            d.addCallback(answer)
        elif auth == "plain":
            d = self._send(actions.login(username, secret, events), timeout)
        else:
            return fail(AuthenticationFailed(f"unknown AMI auth {auth!r}; use 'md5' or 'plain'"))
        d.addErrback(refused)
        d.addCallback(self._logged_in)
        return d

    def _logged_in(self, msg: Message) -> Message:
        if self.state != LOGIN:
            raise LinkDown(f"AMI link to {self.peer} closed during login")
        self.state = LIVE
        self._schedule_keepalive()
        return msg

    # -- keepalive -----------------------------------------------------------

    def start_keepalive(self, interval: float, pong_timeout: float) -> None:
        self.keepalive = interval
        self.pong_timeout = pong_timeout
        self._schedule_keepalive()

    def _schedule_keepalive(self) -> None:
        if self._keepalive_call is not None and self._keepalive_call.active():
            self._keepalive_call.cancel()
        self._keepalive_call = None
        if self.keepalive > 0 and self.state == LIVE:
            self._keepalive_call = self.clock.callLater(self.keepalive, self._ping)

    def _ping(self) -> None:
        self._keepalive_call = None
        if self.state != LIVE:
            return
        if not self._ping_outstanding:
            self._ping_outstanding = True
            d = self._send(actions.ping(), self.pong_timeout)
            d.addBoth(self._pong)
        self._schedule_keepalive()

    def _pong(self, result: Any) -> None:
        self._ping_outstanding = False
        if isinstance(result, Failure) and result.check(ActionTimeout):
            if self.state == LIVE:
                self.log.error(
                    "AMI link to {peer}: no Pong within {timeout} s, the link is half-open; dropping it to reconnect",
                    peer=self.peer,
                    timeout=self.pong_timeout,
                )
                self.state = CLOSING
                self.transport.abortConnection()
        # LinkDown (connection lost meanwhile) and ActionFailed need no action.

    # -- shutdown ------------------------------------------------------------

    def _shutdown(self, msg: Message) -> None:
        if self.state not in (LIVE, LOGIN):
            return
        self.log.warn(
            "Asterisk at {peer} is shutting down (Shutdown: {how!r}, Restart: {restart!r}); "
            "expecting the link to close, will reconnect",
            peer=self.peer,
            how=(msg.get("Shutdown") or "")[:80],
            restart=(msg.get("Restart") or "")[:80],
        )
        self.state = CLOSING
        if self._keepalive_call is not None and self._keepalive_call.active():
            self._keepalive_call.cancel()
        self._keepalive_call = None
        self._fail_all(LinkDown(f"Asterisk at {self.peer} is shutting down"))
        if self.on_shutdown is not None:
            self.on_shutdown(self, msg)
        # Asterisk closes ~10 ms later; if it does not, do it ourselves.
        self._shutdown_call = self.clock.callLater(self.shutdown_grace, self._shutdown_overdue)

    def _shutdown_overdue(self) -> None:
        self._shutdown_call = None
        if self.state != CLOSED:
            self.log.warn("Asterisk at {peer} did not close after Shutdown; aborting the link", peer=self.peer)
            self.transport.abortConnection()

    def close(self) -> None:
        """Stop using this link (service stopping)."""
        if self.state == CLOSED:
            return
        self.state = CLOSING
        self._fail_all(LinkDown(f"AMI link to {self.peer} closed by us"))
        self.transport.loseConnection()
