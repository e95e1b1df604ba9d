"""The demo PBX's AMI server: what a client on the loopback port talks to.

Speaks the manager protocol as Asterisk 22 does (banner ``Asterisk Call
Manager/11.0.0``, ``\\r\\n`` line ends, responses and events laid out as in
``tests/data/ami/``): Login (plain, and MD5 after ``Action: Challenge``),
a bad login answered after ``Timing.auth_fail_delay`` with ``Authentication
failed`` and the socket closed, ``Permission denied`` before login, Ping,
Events, Originate, Hangup, Redirect, BlindTransfer, Getvar, CoreShowChannels, Logoff, and
``Invalid/unknown command`` for the rest. Each session gets the events its
``Events:`` mask allows (``on``, ``off`` or a list such as ``call,user``).

Actions are read by :class:`ActionReader`, a small splitter of our own, so
the demo does not depend on the client-side parser it is used to test.

:class:`DemoPBX` (alias ``DemoPBXService``) is the Twisted service around it.
Usage (this is what ``service.make_service`` does in demo mode)::

    pbx = DemoPBX(reactor, username=config.ami.username, secret=config.ami.secret,
                  phones={line.channel: line.name for line in config.lines.values() if not line.device},
                  devices={line.device: line.name for line in config.lines.values() if line.device})
    pbx.setServiceParent(top)           # startService() listens and starts the calls
    pbx.listening_port()                # the port number (binds now if not yet started)
    # or bind early: port = pbx.listen(); port.getHost().port

or, outside a service tree::

    pbx = yield start_demo_pbx(reactor, port=0, username="asttapi", secret="s")
    pbx.port.getHost().port             # where to connect
    flow = pbx.play("inbound")          # one call now; flow.done fires at its end
    yield pbx.stopService()

``DemoPBX(reactor=None, *, port=0, interface="127.0.0.1", username="asttapi",
secret="", timing=Timing(), phones=None, devices=None, autoplay=True)``:

* ``timing``: :class:`~asttapi_server.demo.scenarios.Timing` (first call after
  2 s, 6 s between calls); ``Timing.fast()`` plays a call in ~50 ms.
* ``phones``: ``{channel: line}``, the ring group and the line each phone's
  calls are signalled on; default ``Local/bob@phones`` -> ``line_1``,
  ``Local/bobbett@phones`` -> ``line_2``.
* ``devices``: ``{device: line}``, the device lines' phones, whose calls the
  demo plays with channel events only (:mod:`asttapi_server.demo.devices`);
  default ``PJSIP/203`` -> ``line_3`` when ``phones`` is not given either.
* ``autoplay``: False plays nothing by itself; use :meth:`DemoPBX.play`.

It logs, at start and with every call, that it is a SIMULATION.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IAddress, IDelayedCall, IListeningPort
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from asttapi_server.demo import channels as ami
from asttapi_server.demo.channels import Pairs
from asttapi_server.demo.engine import DemoEngine, _Headers
from asttapi_server.demo.scenarios import Flow, Timing

log = Logger()

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
_ON = {"on", "yes", "true", "1", "all"}
_OFF = {"off", "no", "false", "0", ""}


class ActionReader:
    """Bytes in, complete actions (lists of ``(key, value)``) out.

    Accepts ``\\r\\n`` and bare ``\\n``; extra blank lines are skipped; an
    action larger than *max_bytes* without its blank line is an error.
    """

    def __init__(self, max_bytes: int = 65536) -> None:
        self.max_bytes = max_bytes
        self._buf = b""
        self._lines: list[tuple[str, str]] = []
        self._size = 0

    def feed(self, data: bytes) -> list[list[tuple[str, str]]]:
        self._buf += data
        out = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                break
            raw, self._buf = self._buf[:nl], self._buf[nl + 1:]
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            self._size += len(raw) + 1
            if not line.strip():
                if self._lines:
                    out.append(self._lines)
                self._lines, self._size = [], 0
                continue
            key, _, value = line.partition(":")
            self._lines.append((key.strip(), value.strip()))
        if self._size + len(self._buf) > self.max_bytes:
            raise ValueError("action too large")
        return out


def _mask(value: str | None) -> frozenset[str] | None:
    """The Events: header as a set of classes; None = off, {"all"} = everything."""
    if value is None:
        return frozenset({"all"})
    v = value.strip().lower()
    if v in _ON:
        return frozenset({"all"})
    if v in _OFF:
        return None
    return frozenset(p.strip() for p in v.split(",") if p.strip())


class AMIServerProtocol(Protocol):
    """One manager session on the demo PBX."""

    def __init__(self, factory: DemoAMIFactory) -> None:
        self.factory = factory
        self.engine: DemoEngine = factory.engine
        self.reader = ActionReader()
        self.authenticated = False
        self.username: str | None = None
        self.mask: frozenset[str] | None = None
        self.challenge: str | None = None
        self.closing = False
        self._pending: IDelayedCall | None = None

    # -- connection ------------------------------------------------------------

    def connectionMade(self) -> None:
        self.factory.sessions.add(self)
        self.transport.write(BANNER)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.factory.sessions.discard(self)
        self.engine.remove_listener(self._on_event)
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self._pending = None

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            actions = self.reader.feed(data)
        except ValueError:
            log.warn("DEMO PBX: oversized action, closing the session")
            self.closing = True
            self.transport.loseConnection()
            return
        for headers in actions:
            if self.closing:
                return
            self.handle(headers)

    def send(self, pairs: Pairs) -> None:
        self.transport.write(ami.encode(pairs))

    def _on_event(self, privilege: str, data: bytes) -> None:
        if self.mask is None or self.closing:
            return
        if "all" in self.mask or any(c in self.mask for c in privilege.split(",") if c != "all"):
            self.transport.write(data)

    # -- dispatch --------------------------------------------------------------

    def handle(self, headers: list[tuple[str, str]]) -> None:
        h = _Headers(headers)
        action = h.get("Action")
        aid = h.get("ActionID")
        if action is None:
            self.send(ami.response("Error", aid, ("Message", "Missing action in request")))
            return
        name = action.lower()
        if name in ("login", "challenge", "logoff"):
            getattr(self, f"action_{name}")(h, aid)
            return
        if not self.authenticated:
            self.send(ami.response("Error", aid, ("Message", "Permission denied")))
            return
        method = getattr(self, f"action_{name}", None)
        if method is None:
            self.send(ami.response("Error", aid, (
                "Message",
                f"Invalid/unknown command: {action}. Use Action: ListCommands to show "
                "available commands.",
            )))
            return
        method(h, aid)

    # -- session actions -------------------------------------------------------

    def action_challenge(self, h: _Headers, aid: str | None) -> None:
        if (h.get("AuthType") or "").lower() != "md5":
            self.send(ami.response("Error", aid, ("Message", "Must specify AuthType")))
            return
        self.challenge = str(random.SystemRandom().randrange(10**8, 10**9))
        self.send(ami.response("Success", aid, ("Challenge", self.challenge)))

    def action_login(self, h: _Headers, aid: str | None) -> None:
        if self.authenticated:
            self.send(ami.response("Success", aid, ("Message", "Already authenticated")))
            return
        f = self.factory
        username = h.get("Username") or ""
        ok = username == f.username
        using_password = True
        if (h.get("AuthType") or "").lower() == "md5":
            using_password = False
            expected = (hashlib.md5((self.challenge or "").encode() + f.secret.encode()).hexdigest()
                        if self.challenge else None)
            ok = ok and expected is not None and (h.get("Key") or "").lower() == expected
        else:
            ok = ok and (h.get("Secret") or "") == f.secret
        if not ok:
            log.info("DEMO PBX: login as {user!r} refused (wrong username or secret)", user=username)
            self.closing = True
            self._pending = self.engine.clock.callLater(
                self.engine.timing.auth_fail_delay, self._refuse, aid)
            return
        self.authenticated = True
        self.username = username
        self.mask = _mask(h.get("Events"))
        self.engine.add_listener(self._on_event)
        self.send(ami.response("Success", aid, ("Message", "Authentication accepted")))
        if self.mask is not None and ("all" in self.mask or "system" in self.mask):
            uptime = int(self.engine.clock.seconds() - self.engine.started_at)
            self.send(ami.fully_booted(uptime))
        self.engine.emit(self._successful_auth(username, using_password))

    def _successful_auth(self, username: str, using_password: bool) -> Pairs:
        tv = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.engine.clock.seconds()))
        tv += ".000+0000"
        return ami.successful_auth(
            username, tv, f"0x{id(self):x}", _addr(self.transport.getHost()),
            _addr(self.transport.getPeer()), using_password,
        )

    def _refuse(self, aid: str | None) -> None:
        self._pending = None
        self.send(ami.response("Error", aid, ("Message", "Authentication failed")))
        self.transport.loseConnection()

    def action_logoff(self, h: _Headers, aid: str | None) -> None:
        self.send(ami.response("Goodbye", aid, ("Message", "Thanks for all the fish.")))
        self.closing = True
        self.transport.loseConnection()

    def action_ping(self, h: _Headers, aid: str | None) -> None:
        self.send(ami.response("Success", aid, ("Ping", "Pong"),
                               ("Timestamp", f"{self.engine.clock.seconds():.6f}")))

    def action_events(self, h: _Headers, aid: str | None) -> None:
        self.mask = _mask(h.get("EventMask") or "off")
        self.send(ami.response("Success", aid, ("Events", "Off" if self.mask is None else "On")))

    # -- call actions ----------------------------------------------------------

    def action_originate(self, h: _Headers, aid: str | None) -> None:
        self.send(self.engine.originate(h.pairs, aid))

    def action_hangup(self, h: _Headers, aid: str | None) -> None:
        try:
            cause = int(h.get("Cause") or "16")
        except ValueError:
            cause = 16
        for pairs in self.engine.hangup(h.get("Channel"), cause, aid):
            self.send(pairs)

    def action_redirect(self, h: _Headers, aid: str | None) -> None:
        self.send(self.engine.redirect(h.get("Channel"), h.get("Context"), h.get("Exten"),
                                       h.get("Priority"), aid))

    def action_blindtransfer(self, h: _Headers, aid: str | None) -> None:
        self.send(self.engine.blind_transfer(h.get("Channel"), h.get("Context"), h.get("Exten"), aid))

    def action_getvar(self, h: _Headers, aid: str | None) -> None:
        self.send(self.engine.getvar(h.get("Channel"), h.get("Variable"), aid))

    def action_coreshowchannels(self, h: _Headers, aid: str | None) -> None:
        for pairs in self.engine.core_show_channels(aid):
            self.send(pairs)


def _addr(address: IAddress) -> str:
    host = getattr(address, "host", "127.0.0.1")
    port = getattr(address, "port", 0)
    return f"IPV4/TCP/{host}/{port}"


class DemoAMIFactory(Factory):
    """Builds :class:`AMIServerProtocol` sessions sharing one :class:`DemoEngine`."""

    protocol = AMIServerProtocol  # type: ignore[assignment]
    noisy = False  # no "Starting factory <... at 0x...>" lines

    def __init__(self, engine: DemoEngine, username: str = "asttapi", secret: str = "") -> None:
        self.engine = engine
        self.username = username
        self.secret = secret
        self.sessions: set[AMIServerProtocol] = set()

    def buildProtocol(self, addr: IAddress) -> AMIServerProtocol:
        return AMIServerProtocol(self)


class DemoPBX(Service):
    """A simulated Asterisk AMI server playing the manual's call flows."""

    name = "demo-pbx"

    def __init__(self, reactor: Any = None, *, port: int = 0, interface: str = "127.0.0.1",
                 username: str = "asttapi", secret: str = "", timing: Timing | None = None,
                 phones: Mapping[str, str] | None = None, devices: Mapping[str, str] | None = None,
                 autoplay: bool = True) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.reactor = reactor
        self.port_number = port
        self.interface = interface
        self.autoplay = autoplay
        self.engine = DemoEngine(reactor, timing=timing, phones=phones, devices=devices)
        self.factory = DemoAMIFactory(self.engine, username, secret)
        self.port: IListeningPort | None = None

    def listen(self) -> IListeningPort:
        """Bind the AMI port now (idempotent) and return it."""
        if self.port is None:
            self.port = self.reactor.listenTCP(self.port_number, self.factory,
                                               interface=self.interface)
        return self.port

    def listening_port(self) -> int:
        """The TCP port number the AMI server listens on (binds now if needed)."""
        return self.listen().getHost().port

    def startService(self) -> None:
        super().startService()
        host = self.listen().getHost()
        # The one banner per start (every call's own log line says "simulation" too).
        log.warn("DEMO MODE: calls come from the embedded SIMULATED PBX on {host}:{port}, not a real "
                 "Asterisk; callers and numbers are invented ([ami] host, without demo = true, selects your PBX)",
                 host=host.host, port=host.port)
        if self.autoplay:
            self.engine.start()
        else:
            self.engine.running = False

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        self.engine.stop()
        waits: list[Deferred[Any]] = []
        for session in list(self.factory.sessions):
            session.transport.loseConnection()
        if self.port is not None:
            result = self.port.stopListening()
            if isinstance(result, Deferred):
                waits.append(result)
            self.port = None
        return DeferredList(waits) if waits else succeed(None)

    def play(self, kind: str, **kwargs: Any) -> Flow:
        """Play one flow now (``"inbound"``, ``"outbound"``, ``"busy"``, ``"device_inbound"``, ...);
        see DemoEngine.play."""
        return self.engine.play(kind, **kwargs)


def start_demo_pbx(reactor: Any = None, port: int = 0, username: str = "asttapi",
                   secret: str = "", **kwargs: Any) -> Deferred[DemoPBX]:
    """Start a :class:`DemoPBX` listening on loopback; fires with it (``.port`` set)."""
    pbx = DemoPBX(reactor, port=port, username=username, secret=secret, **kwargs)
    pbx.startService()
    return succeed(pbx)


#: The name service.py uses.
DemoPBXService = DemoPBX
