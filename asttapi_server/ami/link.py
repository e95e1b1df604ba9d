"""The AMI link as a service: connect, log in, keep alive, reconnect forever.

Adapter ring.  ``bridge`` uses only :class:`AMILink`; it never sees a protocol.

Reconnect loop
--------------
Twisted's ``ClientService`` with login in ``prepareConnection`` was the plan,
but in Twisted 26.10 a connection lost while ``prepareConnection`` is running
(or after it failed) raises automat's ``NoTransition`` from ``connectionLost``
(no ``_clientDisconnected`` transition in ``Connecting``/``Waiting``), and that
is exactly what Asterisk does after a wrong secret: answer Error, close the
socket.  So the loop here is ClientService's, written out (about 60 lines):
connect with the endpoint, log in, and on any failure wait
``retry_policy(failures)`` (default: ``backoffPolicy`` capped at 30 s with
jitter) and try again; the failure count resets after a successful login, so a
wrong secret backs off while a restart of Asterisk reconnects within a second
or two.

A peer that is not Asterisk
---------------------------
Asterisk greets every connection with ``Asterisk Call Manager/<version>``
at once.  If the first line says anything else, or nothing comes within
``GREETING_TIMEOUT`` seconds, the protocol fails the login with
:class:`~asttapi_server.errors.NotAsteriskManager` and the log gets one line
(``AMI: pbx:80 is not an Asterisk manager (it said: 'HTTP/1.1 400 Bad
Request'); check [ami] host and port``) instead of 30 s of silence and a
login timeout; the retries back off as for any failed attempt.

Actions before login
--------------------
No action is queued: while the link is not logged in :meth:`AMILink.send_action`
fails at once with :class:`~asttapi_server.errors.LinkDown`, so a client gets a
LINEERR straight away instead of a call placed minutes later when nobody waits
for it any more.  The protocol enforces the same rule on its own (pitfall 3).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

from twisted.application.internet import backoffPolicy
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from asttapi_server.ami.actions import Action
from asttapi_server.ami.message import Message
from asttapi_server.idents import wanted_names
from asttapi_server.ami.protocol import AMIProtocol
from asttapi_server.errors import AuthenticationFailed, LinkDown, NotAsteriskManager

__all__ = ["AMILink", "DEFAULT_EVENTS", "default_retry_policy"]

#: Event classes we need: UserEvent (user), Hangup/OriginateResponse (call),
#: Shutdown/FullyBooted (system).  "on" would add dialplan (Newexten, VarSet),
#: about three times the traffic (capture 15 vs 16).
DEFAULT_EVENTS = "system,call,user"


def default_retry_policy() -> Callable[[int], float]:
    """1, 2, 4, 8, 16, 30, 30 ... seconds, plus up to 1 s of jitter."""
    return backoffPolicy(initialDelay=0.5, maxDelay=30.0, factor=2.0, jitter=random.random)


def _describe(endpoint: Any) -> str:
    host = getattr(endpoint, "_hostText", None) or getattr(endpoint, "_host", None)
    port = getattr(endpoint, "_port", None)
    if host is not None:
        return f"{host}:{port}" if port is not None else str(host)
    return repr(endpoint)


class _Factory(Factory):
    # One per connection attempt: Twisted's "Starting factory <... at 0x...>"
    # and "Stopping factory" lines would come with every reconnect.
    noisy = False

    def __init__(self, client: AMILink) -> None:
        self.client = client

    def buildProtocol(self, addr: Any) -> AMIProtocol:
        return self.client._build_protocol()


class AMILink(Service):
    """The PBX link.  Observers registered here survive every reconnect."""

    log = Logger()

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        username: str,
        secret: str,
        *,
        auth: str = "md5",
        clock: IReactorTime,
        keepalive: float = 20.0,
        pong_timeout: float = 10.0,
        action_timeout: float = 30.0,
        events: str = DEFAULT_EVENTS,
        retry_policy: Callable[[int], float] | None = None,
        max_message_bytes: int = 1 << 20,
    ) -> None:
        if auth not in ("md5", "plain"):
            raise ValueError(f"auth must be 'md5' or 'plain', not {auth!r}")
        self.endpoint = endpoint
        self.username = username
        self._secret = secret
        self.auth = auth
        self.clock = clock
        self.keepalive = keepalive
        self.pong_timeout = pong_timeout
        self.action_timeout = action_timeout
        self.events = events
        self.retry_policy = retry_policy or default_retry_policy()
        self.max_message_bytes = max_message_bytes
        self.where = _describe(endpoint)
        self.connected = False
        self.protocol: AMIProtocol | None = None  # the logged-in one
        self._login_proto: AMIProtocol | None = None  # connected, logging in
        self._event_observers: list[Callable[[Message], None]] = []
        self._link_observers: list[Callable[[bool], None]] = []
        self._state_observers: list[Callable[[], None]] = []
        #: Why the link is not up, the last reason seen (refused login, unreachable,
        #: not an Asterisk manager, lost); None while logged in. See :attr:`state_line`.
        self.problem: str | None = f"connecting to {self.where}"
        self._action_observers: list[Callable[[str, float, str | None], None]] = []
        self._failures = 0
        self._connections = 0
        self._attempt: Deferred | None = None
        self._retry: IDelayedCall | None = None
        self._stopping: Deferred | None = None
        self._event_filter: frozenset[str] | None = None

    def __repr__(self) -> str:  # never shows the secret
        return f"<AMILink {self.username}@{self.where} connected={self.connected}>"

    # -- public API ----------------------------------------------------------

    def send_action(
        self,
        action: Action,
        *,
        timeout: float | None = None,
        on_action_id: Callable[[str], None] | None = None,
    ) -> Deferred:
        """Send ``action`` (built by :mod:`asttapi_server.ami.actions`, the only
        place that makes AMI text). Fires with the response Message, or with a
        list[Message] (the events of the list, response first) for event-list
        actions; errbacks with ActionFailed / ActionTimeout / LinkDown, or
        InvalidActionHeader for a header the wire would not take.

        ``on_action_id`` is called with the ActionID before the action is
        written, for callers that must match later events carrying it (an
        async Originate's OriginateResponse, on every Asterisk version)."""
        if not isinstance(action, Action):
            raise TypeError(f"send_action takes an ami.actions.Action, not {type(action).__name__}")
        proto = self.protocol
        if not self.connected or proto is None:
            return fail(LinkDown(f"AMI link to {self.where} is down; {action.name} not sent"))
        return proto.send_action(
            action,
            timeout=self.action_timeout if timeout is None else timeout,
            on_action_id=on_action_id,
        )

    def set_event_filter(self, names: Iterable[str] | None) -> None:
        """Deliver to the event observers only the events with these names
        (compared case-insensitively); ``None`` (the default): every event.

        Applies at once to the live link and to every later connection.  The
        parser drops the other events after reading only their ``Event:``
        line (no :class:`Message`, no decoding), which is what makes ingest
        fast on a noisy PBX.  Responses, and the events of our own pending
        actions (CoreShowChannels/Status lists), are never filtered; the link
        still sees Shutdown and FullyBooted, but observers get them only if
        named here."""
        self._event_filter = wanted_names(names)
        for proto in (self.protocol, self._login_proto):
            if proto is not None:
                proto.set_event_filter(self._event_filter)

    @property
    def event_filter(self) -> frozenset[str] | None:
        """The wanted event names, lower-cased, or None (every event)."""
        return self._event_filter

    def add_event_observer(self, fn: Callable[[Message], None]) -> None:
        self._event_observers.append(fn)

    def remove_event_observer(self, fn: Callable[[Message], None]) -> None:
        self._event_observers.remove(fn)

    def add_link_observer(self, fn: Callable[[bool], None]) -> None:
        self._link_observers.append(fn)

    def remove_link_observer(self, fn: Callable[[bool], None]) -> None:
        self._link_observers.remove(fn)

    def add_state_observer(self, fn: Callable[[], None]) -> None:
        """``fn()`` after every change of :attr:`state_line` (link up or down, a new reason)."""
        self._state_observers.append(fn)

    @property
    def state_line(self) -> str:
        """The link in one line for people: systemd's ``STATUS=`` and ``/readyz`` both say this.

        ``PBX link up (pbx:5038)`` or ``PBX link DOWN: <the last reason>``.
        """
        if self.connected:
            return f"PBX link up ({self.where})"
        return f"PBX link DOWN: {self.problem or 'not connected'}"

    def _set_problem(self, text: str | None) -> None:
        if text != self.problem:
            self.problem = text
            self._notify_state()

    def _notify_state(self) -> None:
        for fn in list(self._state_observers):
            try:
                fn()
            except Exception:
                self.log.failure("AMI state observer {observer!r} failed", observer=fn)

    def add_action_observer(self, fn: Callable[[str, float, str | None], None]) -> None:
        """``fn(action, seconds, failure)`` after every action of later connections
        (keepalive Ping and Login included); ``failure`` is None, "error",
        "timeout" or "link_down"."""
        self._action_observers.append(fn)

    def _action_done(self, action: str, seconds: float, failure: str | None) -> None:
        for fn in self._action_observers:
            fn(action, seconds, failure)

    def reconfigure(self, endpoint: IStreamClientEndpoint, username: str, secret: str, *, auth: str = "md5",
                    keepalive: float = 20.0, pong_timeout: float = 10.0, action_timeout: float = 30.0) -> Deferred:
        """New [ami] settings: drop the current connection and connect again with them.

        Observers (and so the bridge) stay; they see the link go down and up
        as for any reconnect. Fires once the old connection is closed and the
        new attempt has begun.
        """
        if auth not in ("md5", "plain"):
            raise ValueError(f"auth must be 'md5' or 'plain', not {auth!r}")
        running = self.running
        d = self.stopService() if running else succeed(None)

        def again(_: Any) -> None:
            self.endpoint = endpoint
            self.username = username
            self._secret = secret
            self.auth = auth
            self.keepalive = keepalive
            self.pong_timeout = pong_timeout
            self.action_timeout = action_timeout
            self.where = _describe(endpoint)
            self._failures = 0
            self._set_problem(f"connecting to {self.where} (new [ami] settings)")
            if running:
                self.startService()

        return d.addCallback(again)

    # -- service -------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._connect()

    def stopService(self) -> Deferred:
        super().stopService()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._attempt is not None:
            attempt, self._attempt = self._attempt, None
            attempt.cancel()
        proto = self.protocol or self._login_proto
        if self.connected:
            self.problem = f"the link to {self.where} was closed by this server"
        self._link_down()
        if proto is None or proto.state == "closed":
            return succeed(None)
        stopping = self._stopping = Deferred()
        proto.close()  # may call _on_lost at once
        return stopping

    # -- the loop --------------------------------------------------------------

    def _build_protocol(self) -> AMIProtocol:
        self._connections += 1
        return AMIProtocol(
            self.clock,
            prefix=f"asttapi-{self._connections}",
            observers=self._event_observers,
            on_shutdown=self._on_shutdown,
            on_lost=self._on_lost,
            max_message_bytes=self.max_message_bytes,
            shutdown_grace=self.pong_timeout,
            event_filter=self._event_filter,
            on_action=self._action_done if self._action_observers else None,
        )

    def _connect(self) -> None:
        self._retry = None
        if not self.running:
            return
        self.log.info("AMI: connecting to {where}", where=self.where)
        d = self.endpoint.connect(_Factory(self))
        self._attempt = d
        d.addCallbacks(self._connected, self._connect_failed)

    def _connect_failed(self, failure: Failure) -> None:
        if self._attempt is None:  # cancelled by stopService
            return
        self._attempt = None
        why = failure.getErrorMessage()
        self.log.warn("AMI: cannot connect to {where}: {why}", where=self.where, why=why)
        self._set_problem(f"cannot reach {self.where}: {why.rstrip('.')}")
        self._schedule_retry()

    def _connected(self, proto: AMIProtocol) -> Deferred:
        self._attempt = None
        if not self.running:
            proto.close()
            return succeed(None)
        self._login_proto = proto
        d = proto.login(
            self.username, self._secret, auth=self.auth, events=self.events, timeout=self.action_timeout
        )
        d.addCallbacks(self._logged_in, self._login_failed, callbackArgs=(proto,), errbackArgs=(proto,))
        return d

    def _logged_in(self, response: Message, proto: AMIProtocol) -> None:
        self._login_proto = None
        self._failures = 0
        self.protocol = proto
        self.connected = True
        self.problem = None  # observers hear of it with the link's change, below
        proto.start_keepalive(self.keepalive, self.pong_timeout)
        self.log.info(
            "AMI: logged in to {where} as {username} ({auth}, Events: {events})",
            where=proto.peer if proto.peer != "?" else self.where,
            username=self.username,
            auth=self.auth,
            events=self.events,
        )
        self._notify_link(True)

    def _login_failed(self, failure: Failure, proto: AMIProtocol) -> None:
        self._login_proto = None
        why = failure.getErrorMessage()
        if failure.check(NotAsteriskManager):
            # Wrong host or port: say so in one line, then keep retrying.
            self.log.error("AMI: {why}; check [ami] host and port", why=why)
            self._set_problem(f"{why}; check [ami] host and port")
        elif failure.check(AuthenticationFailed):
            # Loud on purpose, every time (pitfall 16): the admin must see it.
            self.log.error(
                "AMI LOGIN REFUSED for user {username} at {where}: {why}",
                username=self.username,
                where=self.where,
                why=why,
            )
            self._set_problem(why)
        else:
            self.log.warn(
                "AMI: login as {username} at {where} did not complete: {why}",
                username=self.username,
                where=self.where,
                why=why,
            )
            self._set_problem(f"the login at {self.where} did not complete: {why}")
        if proto.state != "closed":
            proto.state = "closing"
            proto.transport.abortConnection()
        if self.running:
            self._schedule_retry()

    def _schedule_retry(self) -> None:
        if not self.running or (self._retry is not None and self._retry.active()):
            return
        self._failures += 1
        delay = self.retry_policy(self._failures)
        self.log.info(
            "AMI: reconnecting to {where} in {delay:.1f} s (attempt {n})",
            where=self.where,
            delay=delay,
            n=self._failures,
        )
        self._retry = self.clock.callLater(delay, self._connect)

    def _on_shutdown(self, proto: AMIProtocol, msg: Message) -> None:
        if proto is self.protocol:
            self.problem = f"Asterisk at {self.where} is shutting down"
            self._link_down()

    def _on_lost(self, proto: AMIProtocol, reason: Failure) -> None:
        if self._stopping is not None:
            stopping, self._stopping = self._stopping, None
            self.protocol = None
            stopping.callback(None)
            return
        if proto is not self.protocol:
            return  # lost during login: _login_failed schedules the retry
        self.protocol = None
        why = reason.getErrorMessage() if reason is not None else "closed"
        self.log.warn("AMI: link to {where} lost: {why}", where=self.where, why=why)
        if self.connected:  # a Shutdown said why already
            self.problem = f"the link to {self.where} was lost: {why}"
        self._link_down()
        self._schedule_retry()

    def _link_down(self) -> None:
        if self.connected:
            self.connected = False
            self._notify_link(False)

    def _notify_link(self, up: bool) -> None:
        for fn in list(self._link_observers):
            try:
                fn(up)
            except Exception:
                self.log.failure("AMI link observer {observer!r} failed", observer=fn)
        self._notify_state()
