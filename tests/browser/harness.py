"""The whole server on the demo PBX, in a child process, remote-controlled over stdin/stdout.

The browser tests drive Chromium with blocking selenium calls; the server needs a
running reactor. Each lives in its own process: this script runs ``make_service``
(the same graph ``twistd -n asttapi`` builds) with a web listener on loopback,
and puts a TCP relay in front of that listener so a test can pull the network
(abort every browser connection, refuse new ones for a while) the way a Wi-Fi
blip does, without knowing anything about the WebSocket code.

Protocol: one JSON object per line. The script first prints
``{"ready": {"url": ..., "tcp": port}}``; then for every command read on stdin
it prints one answer ``{"ok": ...}`` or ``{"error": "..."}``. Commands:

* ``{"cmd": "play", "kind": "inbound", "kwargs": {...}}``: a demo call now
  (``"until_done": true``: answered once the call has ended);
* ``{"cmd": "actions", "name": "Originate"}``: the AMI actions the demo PBX got;
* ``{"cmd": "pbx", "up": false}``: the demo PBX stops listening and drops the
  server's AMI link (``true``: it listens again, the server reconnects);
* ``{"cmd": "net", "up": false}``: the relay aborts every browser connection and
  refuses new ones (``true``: it lets them through again);
* ``{"cmd": "link"}``: whether the server's AMI link is up.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

from twisted.internet import defer, protocol, reactor, stdio, task
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.protocols.basic import LineReceiver

from asttapi_server.config import load_config
from asttapi_server.demo.scenarios import Timing
from asttapi_server.demo.server import AMIServerProtocol
from asttapi_server.service import make_service

#: Real time (a person watches a call ring), but no waiting for a first call or a bad login.
TIMING = Timing(first_call=0.05, gap=0.2, scale=1.0, auth_fail_delay=0.0)

ACTIONS: list[dict] = []
_handle = AMIServerProtocol.handle


def _recording_handle(self, headers):  # the demo PBX's action dispatch, recorded
    ACTIONS.append({k: v for k, v in headers})
    return _handle(self, headers)


AMIServerProtocol.handle = _recording_handle  # type: ignore[method-assign]


class _Pipe(protocol.Protocol):
    def __init__(self, peer: "Relay") -> None:
        self.peer = peer

    def connectionMade(self) -> None:
        self.peer.upstream = self
        if self.peer.pending:
            self.transport.write(b"".join(self.peer.pending))
            self.peer.pending = []

    def dataReceived(self, data: bytes) -> None:
        self.peer.transport.write(data)

    def connectionLost(self, reason=None) -> None:
        self.peer.transport.loseConnection()


class Relay(protocol.Protocol):
    """Browser side of the relay: bytes through to the web listener, both ways."""

    def connectionMade(self) -> None:
        if not self.factory.up:
            self.transport.abortConnection()
            return
        self.factory.live.add(self)
        self.upstream = None
        self.pending: list[bytes] = []
        protocol.ClientCreator(reactor, _Pipe, self).connectTCP("127.0.0.1", self.factory.target)

    def dataReceived(self, data: bytes) -> None:
        if self.upstream is None:
            self.pending.append(data)
        else:
            self.upstream.transport.write(data)

    def connectionLost(self, reason=None) -> None:
        self.factory.live.discard(self)
        if getattr(self, "upstream", None) is not None:
            self.upstream.transport.abortConnection()


class RelayFactory(protocol.Factory):
    protocol = Relay

    def __init__(self, target: int) -> None:
        self.target = target
        self.up = True
        self.live: set[Relay] = set()

    def cut(self) -> None:
        self.up = False
        for relay in list(self.live):
            relay.transport.abortConnection()


class Control(LineReceiver):
    delimiter = b"\n"

    def __init__(self, app, relay: RelayFactory) -> None:
        self.app = app
        self.relay = relay
        self.pbx_port_number: int | None = None

    def reply(self, obj: dict) -> None:
        self.transport.write(json.dumps(obj).encode() + b"\n")

    def lineReceived(self, line: bytes) -> None:
        try:
            msg = json.loads(line)
            result = getattr(self, "do_" + msg["cmd"])(msg)
        except Exception as e:  # a test bug: say it, keep serving
            self.reply({"error": f"{type(e).__name__}: {e}"})
            return
        d = defer.maybeDeferred(lambda: result)
        d.addCallbacks(lambda r: self.reply({"ok": r}), lambda f: self.reply({"error": f.getErrorMessage()}))

    def do_play(self, msg: dict):
        kwargs = dict(msg.get("kwargs", {}))
        if "caller" in kwargs:
            kwargs["caller"] = tuple(kwargs["caller"])
        flow = self.app.demo.play(msg["kind"], **kwargs)
        if not msg.get("until_done"):
            return True
        # The answer comes once the call is over at the PBX, and the server
        # has had a moment to read its last events off the AMI socket.
        done = defer.Deferred()
        flow.done.addCallback(lambda _: reactor.callLater(0.1, done.callback, True))
        return done

    def do_actions(self, msg: dict):
        name = msg.get("name")
        return [a for a in ACTIONS if name is None or a.get("Action", "").lower() == name.lower()]

    def do_link(self, msg: dict):
        return bool(self.app.bridge.link_up)

    def do_pbx(self, msg: dict):
        demo = self.app.demo
        if msg["up"]:
            if demo.port is None:
                demo.port_number = self.pbx_port_number
                demo.listen()
            return True
        self.pbx_port_number = demo.listening_port()
        d = demo.port.stopListening()
        demo.port = None
        for session in list(demo.factory.sessions):
            session.transport.abortConnection()
        return d

    def do_net(self, msg: dict):
        if msg["up"]:
            self.relay.up = True
        else:
            self.relay.cut()
        return True

    def connectionLost(self, reason=None) -> None:
        if reactor.running:
            reactor.stop()


def write_config(users: bool) -> str:
    lines = [
        "demo = true",
        "[server]",
        'listen = ["tcp:0:interface=127.0.0.1"]',
        "[web]",
        'listen = ["tcp:0:interface=127.0.0.1"]',
        "[plugins]",
        'enabled = ["crm_sql", "outlook_contacts"]',
    ]
    if users:
        lines += ["[users.desk]", 'token = "desk-secret-token"', 'lines = ["line_1", "line_2"]']
    fd, path = tempfile.mkstemp(prefix="asttapi-browser-", suffix=".toml")
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


LOGGED_URLS: list[str] = []


def _watch_log(event: dict) -> None:
    if "Web page: open" in event.get("log_format", "") and "url" in event:
        LOGGED_URLS.append(event["url"])


@defer.inlineCallbacks
def main(users: bool, first_run: bool):
    if first_run:
        # A newcomer's `make run`: no config file, the demo playing by itself;
        # only the ports are ephemeral.
        config = load_config(None, {"server.listen": ["tcp:0:interface=127.0.0.1"],
                                    "web.listen": ["tcp:0:interface=127.0.0.1"]})
        options = {}
    else:
        path = write_config(users)
        try:
            config = load_config(path)
        finally:
            os.unlink(path)
        options = {"timing": TIMING, "autoplay": False}
    app = make_service(config, reactor, demo_options=options)
    app.startService()
    reactor.addSystemEventTrigger("before", "shutdown", app.stopService)
    tcp = yield app.listeners[0].whenListening()
    for _ in range(500):  # the AMI link to the demo PBX, logged in and resynchronised
        if app.bridge.link_up:
            break
        yield task.deferLater(reactor, 0.02, lambda: None)
    web = yield app.web_listeners[0].whenListening()
    relay = RelayFactory(web.getHost().port)
    front = reactor.listenTCP(0, relay, interface="127.0.0.1")
    url = f"http://127.0.0.1:{front.getHost().port}/"
    control = Control(app, relay)
    stdio.StandardIO(control)
    control.reply({"ready": {"url": url, "tcp": tcp.getHost().port, "logged_urls": LOGGED_URLS}})


if __name__ == "__main__":
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr), _watch_log], redirectStandardIO=False)
    reactor.callWhenRunning(main, "--users" in sys.argv, "--first-run" in sys.argv)
    reactor.run()
