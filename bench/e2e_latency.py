"""End-to-end latency: AMI event written by "Asterisk" -> JSON line received by the client.

Three parties, two processes, one host:

* **This process** plays Asterisk and the clients. A minimal scripted AMI
  server (plain sockets) answers the server's Login, CoreShowChannels, Ping
  and Getvar (each caller's presentation, read before its pop) as Asterisk 22 does, then writes realistic inbound calls: every ``call`` and
  ``user`` class event of the real capture ``tests/data/ami/05_inbound_call``
  (about 75 events per call: Newchannel, DialBegin, Hangup, ... and the TAPI
  UserEvents), with each call's Uniqueids and line renamed, one ``send()`` per
  event as Asterisk writes them, at ``--rate`` calls per second. Call k rings
  ``line_{k % N}``; the UserEvents of a call are spread over 0.6 s as in a real
  ring-answer-hangup, so several calls overlap.
  N client sockets, each with its own line open, are read in the same loop.
* **The child process** is the real server: ``service.make_service`` with a
  real AMI client logging in over loopback, the bridge, the call model, the
  built-in TAPI UserEvent plugin, the hub and the client listener.

Latency is ``time.monotonic_ns()`` just before the ``send()`` of the
UserEvent that causes a TAPI event, to the moment its JSON line is read from
the client's socket; both stamps are taken in this process, so no clock is
compared across processes. Every client must get exactly the 5 TAPI events of
each call on its line (NEWCALL, OFFERING, CALLINFO, CONNECTED, IDLE; the
``[~id&!line_1] HANGUP`` of the capture reaches no one) and nothing else: the
run fails loudly otherwise. The server reports its RSS.

    .venv/bin/python bench/e2e_latency.py                       # 10, 100, 1000 clients
    .venv/bin/python bench/e2e_latency.py --clients 1000 --rate 100 --duration 10
    .venv/bin/python bench/e2e_latency.py --transport both --clients 10 1000   # TCP, then WebSocket

``--transport websocket`` connects the clients to the web listener's ``/ws``
instead, each a browser-like RFC 6455 client (autobahn's client protocol,
driven by this loop's sockets: handshake with an ``Origin``, masked frames
out, one JSON-RPC message per text frame in, UTF-8 checked); the latency is
then to the moment the frame is read. ``both`` runs TCP and then WebSocket
for each client count, each on a fresh server with the same calls.

``run()`` returns one dict of figures per client count.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CAPTURE = ROOT / "tests" / "data" / "ami" / "05_inbound_call.monitor.raw"
CAPTURE_ID = b"1795674354."
PHASES = (0.0, 0.3, 0.6)  # seconds after the call starts: ring / answer / hangup
EXPECTED_PER_CALL = 5


# -- the scripted Asterisk --------------------------------------------------------------


def call_template() -> list[list[bytes]]:
    """The capture's call/user class events, split into the three phases of a call."""
    data = CAPTURE.read_bytes()
    blocks = [b for b in data.split(b"\r\n\r\n") if b.startswith(b"Event: ")]
    keep = []
    for b in blocks:
        priv = re.search(rb"\r\nPrivilege: ([^\r]*)", b)
        name = b.split(b"\r\n", 1)[0][7:]
        if priv and (priv.group(1).startswith((b"call", b"user"))) and name != b"OriginateResponse":
            keep.append(b + b"\r\n\r\n")
    connected = next(i for i, b in enumerate(keep) if b"LINECALLSTATE_CONNECTED" in b)
    idle = next(i for i, b in enumerate(keep) if b"LINECALLSTATE_IDLE" in b)
    return [keep[:connected], keep[connected:idle], keep[idle:]]


def _tapi_key(block: bytes) -> str | None:
    """Which client event a UserEvent block causes (None: none for line_1)."""
    m = re.search(rb"\r\nTAPIEVENT: ([^\r]*)", block)
    if not m:
        return None
    text = m.group(1).decode()
    if "LINE_NEWCALL" in text:
        return "LINE_NEWCALL"
    if text.startswith("SET ") or "!line_1" in text:
        return None
    return text.split()[-1]


def _ami_headers(block: bytes) -> dict[str, str]:
    out = {}
    for line in block.split(b"\r\n"):
        if b":" in line:
            k, v = line.split(b":", 1)
            out.setdefault(k.strip().lower().decode(), v.strip().decode())
    return out


class ScriptedAsterisk:
    """The AMI side of one server connection, driven by the benchmark's loop."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.conn: socket.socket | None = None
        self.buf = b""
        self.logged_in = False

    def accept(self) -> socket.socket:
        self.conn, _ = self.listener.accept()
        self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn.settimeout(10)
        self.conn.sendall(b"Asterisk Call Manager/11.0.0\r\n")
        return self.conn

    def readable(self) -> None:
        assert self.conn is not None
        data = self.conn.recv(65536)
        if not data:
            raise RuntimeError("the server closed its AMI connection")
        self.buf += data.replace(b"\r\n", b"\n")
        while b"\n\n" in self.buf:
            block, self.buf = self.buf.split(b"\n\n", 1)
            self.action(_ami_headers(block.replace(b"\n", b"\r\n")))

    def action(self, h: dict[str, str]) -> None:
        name, aid = h.get("action", "").lower(), h.get("actionid", "")
        if name == "login":
            self.logged_in = True
            self.send(f"Response: Success\r\nActionID: {aid}\r\nMessage: Authentication accepted\r\n\r\n"
                      "Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 1000\r\nLastReload: 1000\r\n"
                      "Status: Fully Booted\r\n\r\n".encode())
        elif name == "coreshowchannels":
            self.send(f"Response: Success\r\nActionID: {aid}\r\nEventList: start\r\nMessage: Channels will follow\r\n\r\n"
                      f"Event: CoreShowChannelsComplete\r\nActionID: {aid}\r\nEventList: Complete\r\nListItems: 0\r\n\r\n"
                      .encode())
        elif name == "ping":
            self.send(f"Response: Success\r\nActionID: {aid}\r\nPing: Pong\r\nTimestamp: {time.time():.6f}\r\n\r\n".encode())
        elif name == "getvar":  # the caller's presentation, read before each pop: the callers present it
            self.send(f"Response: Success\r\nActionID: {aid}\r\nVariable: {h.get('variable', '')}\r\n"
                      "Value: allowed_not_screened\r\n\r\n".encode())
        else:
            self.send(f"Response: Error\r\nActionID: {aid}\r\nMessage: Invalid/unknown command\r\n\r\n".encode())

    def send(self, data: bytes) -> None:
        assert self.conn is not None
        self.conn.sendall(data)


# -- the server (child process) -------------------------------------------------------


def _rss_kib() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


def serve(ami_port: int, transport: str = "tcp", settings: dict[str, Any] | None = None) -> None:
    """The server child; ``settings``: more config overrides (dotted keys), from
    bench/e2e_throughput.py's ``--set KEY=JSON``."""
    sys.path.insert(0, str(ROOT))
    from twisted.internet import reactor, stdio, task
    from twisted.logger import globalLogBeginner
    from twisted.protocols.basic import LineReceiver

    from asttapi_server.config import load_config
    from asttapi_server.service import make_service

    counts: dict[str, int] = {}

    def observe(event: dict) -> None:  # count, don't keep: an unstarted log system buffers
        level = event.get("log_level")
        counts[getattr(level, "name", "?")] = counts.get(getattr(level, "name", "?"), 0) + 1

    globalLogBeginner.beginLoggingTo([observe], redirectStandardIO=False)
    config = load_config(None, {
        "ami.host": "127.0.0.1", "ami.port": ami_port, "ami.auth": "plain", "ami.secret": "bench",
        "server.listen": ["tcp:0:interface=127.0.0.1:backlog=1024"],
        # every benchmark client comes from 127.0.0.1 (docs/security.md, "The network")
        "server.max_clients": 5_000, "server.max_clients_per_address": 5_000,
        "web.listen": ["tcp:0:interface=127.0.0.1:backlog=1024"] if transport == "websocket" else [],
        # bench/e2e_throughput.py --metrics-compare runs one server each way
        "metrics.enabled": os.environ.get("ASTTAPI_BENCH_METRICS", "1") != "0",
        **(settings or {}),
    })
    app = make_service(config, reactor)
    app.tune_gc = True  # as tap.py does for the real server (docs/operations.md)
    app.startService()
    baseline: dict[str, Any] = {}

    class Control(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line: bytes) -> None:
            cmd = line.decode().strip()
            if cmd == "stat":
                self.sendLine(b"STAT " + json.dumps({
                    "rss": _rss_kib(), "baseline": baseline, "tracked": app.model.tracked, "published": app.hub.seq,
                    "logs": counts, "stats": dict(app.model.stats),
                }).encode())
            elif cmd == "quit":
                app.stopService()
                reactor.stop()
            else:  # bench/event_cost.py: profile / trace on and off
                from bench.event_cost import child_command

                answer = child_command(app, cmd)
                if answer is not None:
                    self.sendLine(answer.encode())

    listeners = app.web_listeners if transport == "websocket" else app.listeners

    def ready() -> None:
        if app.bridge.link_up and listeners[0].port is not None:
            loop.stop()
            baseline.update(_rss_kib())
            stdio.StandardIO(Control())
            sys.stdout.write(f"PORT {listeners[0].port.getHost().port}\n")
            sys.stdout.flush()

    loop = task.LoopingCall(ready)
    loop.start(0.01)
    reactor.run()


def stop_server(proc: subprocess.Popen) -> None:
    """Ask the server child started with ``--serve`` to stop; kill it if it does not."""
    try:
        proc.stdin.write(b"quit\n")
        proc.stdin.flush()
        proc.wait(15)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()


# -- clients and the driving loop (this process) --------------------------------------


class Client:
    __slots__ = ("sock", "line", "buf", "got", "bad", "open")

    def __init__(self, port: int, line: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.line = line
        self.buf = b""
        self.got: dict[tuple[str, str], int] = {}
        self.bad: list[str] = []
        self.open = False
        req = {"jsonrpc": "2.0", "id": 1, "method": "lineOpen", "params": {"line": line}}
        self.sock.send(json.dumps(req).encode() + b"\n")


class WSClient(Client):
    """A browser-like WebSocket client: autobahn's client protocol on this loop's socket."""

    __slots__ = ("proto", "now", "sink")

    def __init__(self, port: int, line: str, sink: Any) -> None:
        from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
        from twisted.internet.address import IPv4Address

        client = self

        class Proto(WebSocketClientProtocol):
            def onOpen(self) -> None:
                req = {"jsonrpc": "2.0", "id": 1, "method": "lineOpen", "params": {"line": line}}
                self.sendMessage(json.dumps(req).encode())

            def onMessage(self, payload: bytes, isBinary: bool) -> None:
                client.sink(client, payload, client.now)

        class SocketTransport:  # what the protocol writes to: this process's plain socket
            def write(self, data: bytes) -> None:
                client.sock.setblocking(True)
                client.sock.sendall(data)
                client.sock.setblocking(False)

            def writeSequence(self, seq: list[bytes]) -> None:
                self.write(b"".join(seq))

            def getPeer(self) -> Any:
                return IPv4Address("TCP", "127.0.0.1", port)

            getHost = getPeer

            def loseConnection(self) -> None:
                pass

            abortConnection = loseConnection

            def registerProducer(self, producer: Any, streaming: bool) -> None:
                pass

            def unregisterProducer(self) -> None:
                pass

            def setTcpNoDelay(self, enabled: bool) -> None:
                pass

        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.line = line
        self.buf = b""
        self.got = {}
        self.bad = []
        self.open = False
        self.now = 0
        self.sink = sink
        factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}/ws", origin=f"http://127.0.0.1:{port}")
        factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0, autoPingInterval=0,
                                   serverConnectionDropTimeout=0)
        factory.protocol = Proto
        self.proto = factory.buildProtocol(None)
        self.proto.makeConnection(SocketTransport())


class Bench:
    def __init__(self, n: int, transport: str = "tcp") -> None:
        self.ami = ScriptedAsterisk()
        self.transport = transport
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", str(self.ami.port), "--transport", transport],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=ROOT)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ, "ctl")
        self.ami.listener.settimeout(20)
        conn = self.ami.accept()
        self.sel.register(conn, selectors.EVENT_READ, "ami")
        self.ctl_buf = b""
        self.ctl: list[str] = []
        self.sent: dict[tuple[str, str], int] = {}  # (uniqueid, tapi key) -> monotonic_ns of the write
        self.latencies: list[int] = []
        self.pump_until(lambda: any(x.startswith("PORT ") for x in self.ctl), 30)
        self.port = int(self.ctl.pop().split()[1])
        self.clients: list[Client] = []
        for i in range(n):
            c = WSClient(self.port, f"line_{i}", self.message) if transport == "websocket" else Client(self.port, f"line_{i}")
            self.clients.append(c)
            self.sel.register(c.sock, selectors.EVENT_READ, c)
            if i % 50 == 49:
                self.pump_until(lambda: all(x.open for x in self.clients), 30)
        self.pump_until(lambda: all(x.open for x in self.clients), 30)

    def stat(self) -> dict:
        self.proc.stdin.write(b"stat\n")
        self.proc.stdin.flush()
        self.pump_until(lambda: bool(self.ctl), 10)
        return json.loads(self.ctl.pop()[5:])

    def pump(self, timeout: float) -> None:
        for key, _ in self.sel.select(timeout):
            if key.data == "ctl":
                self.ctl_buf += os.read(self.proc.stdout.fileno(), 65536)
                if not self.ctl_buf:
                    raise RuntimeError("the server process exited")
                while b"\n" in self.ctl_buf:
                    ln, self.ctl_buf = self.ctl_buf.split(b"\n", 1)
                    self.ctl.append(ln.decode())
            elif key.data == "ami":
                self.ami.readable()
            else:
                self.read(key.data)

    def pump_until(self, done: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError("benchmark step timed out")
            self.pump(0.05)

    def read(self, c: Client) -> None:
        try:
            data = c.sock.recv(262144)
        except BlockingIOError:
            return
        now = time.monotonic_ns()
        if not data:
            c.bad.append("connection closed")
            self.sel.unregister(c.sock)
            return
        if isinstance(c, WSClient):
            c.now = now
            c.proto.dataReceived(data)  # calls self.message for each whole frame
            return
        *lines, c.buf = (c.buf + data).split(b"\n")
        for ln in lines:
            self.message(c, ln, now)

    def message(self, c: Client, data: bytes, now: int) -> None:
        """One JSON-RPC message (a line, or a WebSocket frame) read at ``now``."""
        msg = json.loads(data)
        method = msg.get("method")
        if method is None:
            if msg.get("id") == 1 and "result" in msg:
                c.open = True
            else:
                c.bad.append(f"unexpected {msg}")
            return
        if method == "hello":
            return
        p = msg["params"]
        if p.get("line") != c.line:
            c.bad.append(f"event of {p.get('line')} on {c.line}")
            return
        key = (p["callinfo"]["uniqueid"], method if method == "LINE_NEWCALL" else p.get("state") or p.get("infostate"))
        c.got[key] = c.got.get(key, 0) + 1
        t = self.sent.get(key)
        if t is None:
            c.bad.append(f"event nobody sent: {key}")
        else:
            self.latencies.append(now - t)

    def play(self, n: int, cps: float, duration: float) -> int:
        """Write calls at ``cps`` for ``duration`` s; returns the number of calls."""
        template = call_template()
        keys = [[_tapi_key(b) for b in phase] for phase in template]
        calls = int(cps * duration)
        # (due, call, phase) in time order
        start = time.monotonic() + 0.05
        schedule = sorted((start + k / cps + PHASES[ph], k, ph) for k in range(calls) for ph in range(3))
        conn = self.ami.conn
        assert conn is not None
        base = 1_800_000_000
        for due, k, ph in schedule:
            while True:
                wait = due - time.monotonic()
                if wait <= 0:
                    break
                self.pump(wait)
            prefix = b"%d." % (base + k)
            line = f"line_{k % n}".encode()
            uid = f"{base + k}.1"
            for block, key in zip(template[ph], keys[ph]):
                data = block.replace(CAPTURE_ID, prefix).replace(b"line_1", line)
                if key is not None:
                    self.sent[(uid, key)] = time.monotonic_ns()
                conn.sendall(data)
        return calls

    def close(self) -> None:
        stop_server(self.proc)
        for c in self.clients:
            c.sock.close()
        if self.ami.conn is not None:
            self.ami.conn.close()
        self.ami.listener.close()
        self.sel.close()


def _pct(values: list[int], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))] / 1e6


def run_one(n: int, cps: float = 100.0, duration: float = 10.0, transport: str = "tcp") -> dict:
    b = Bench(n, transport)
    try:
        connected = b.stat()
        t0 = time.monotonic()
        calls = b.play(n, cps, duration)
        per_line = [0] * n
        for k in range(calls):
            per_line[k % n] += 1
        expected = [p * EXPECTED_PER_CALL for p in per_line]
        try:
            b.pump_until(lambda: all(sum(c.got.values()) >= e for c, e in zip(b.clients, expected)), 20)
        except TimeoutError:
            pass
        elapsed = time.monotonic() - t0
        done = b.stat()
        bad = [(c.line, c.bad[:3]) for c in b.clients if c.bad]
        wrong = [(c.line, sum(c.got.values()), e) for c, e in zip(b.clients, expected)
                 if sum(c.got.values()) != e or any(v != 1 for v in c.got.values())]
        if bad or wrong:
            raise AssertionError(f"delivery broken: {bad[:5]} {wrong[:5]}")
        lat = b.latencies
        return {
            "transport": transport,
            "clients": n,
            "calls_per_s": cps,
            "calls": calls,
            "ami_events_per_call": sum(len(p) for p in call_template()),
            "client_events": len(lat),
            "client_events_per_s": round(len(lat) / elapsed, 1),
            "p50_ms": round(_pct(lat, 50), 3),
            "p99_ms": round(_pct(lat, 99), 3),
            "max_ms": round(_pct(lat, 100), 3),
            "server_rss_mib_idle": round(connected["baseline"]["VmRSS"] / 1024, 1),
            "server_rss_mib_connected": round(connected["rss"]["VmRSS"] / 1024, 1),
            "server_rss_mib_end": round(done["rss"]["VmRSS"] / 1024, 1),
            "server_rss_mib_peak": round(done["rss"]["VmHWM"] / 1024, 1),
            "server_errors_logged": done["logs"].get("error", 0) + done["logs"].get("critical", 0),
        }
    finally:
        b.close()


def run(clients: tuple[int, ...] = (10, 100, 1000), cps: float = 100.0, duration: float = 10.0) -> list[dict]:
    """One dict of figures per client count."""
    return [run_one(n, cps, duration) for n in clients]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--set", action="append", default=[], help=argparse.SUPPRESS)  # KEY=JSON, for --serve
    ap.add_argument("--clients", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--rate", type=float, default=100.0, help="calls per second")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of calls per client count")
    ap.add_argument("--transport", choices=["tcp", "websocket", "both"], default="tcp",
                    help="JSON lines over TCP, JSON-RPC over WebSocket (/ws), or both, one after the other")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.serve, args.transport, {k: json.loads(v) for k, _, v in (x.partition("=") for x in args.set)})
        return 0
    transports = ["tcp", "websocket"] if args.transport == "both" else [args.transport]
    for n in args.clients:
        for transport in transports:
            row = run_one(n, args.rate, args.duration, transport)
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                print(f"{row['transport']:>9} {row['clients']:>5} clients  {row['calls_per_s']:g} calls/s "
                      f"({row['ami_events_per_call']} AMI events/call): {row['client_events']} client events, p50 {row['p50_ms']:.3f} ms  "
                      f"p99 {row['p99_ms']:.3f} ms  max {row['max_ms']:.2f} ms | server RSS idle "
                      f"{row['server_rss_mib_idle']} MiB, connected {row['server_rss_mib_connected']} MiB, "
                      f"peak {row['server_rss_mib_peak']} MiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
