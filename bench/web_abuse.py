"""Attacks on every listener (issue 22): the web port, WebSocket frames, probes, big answers, user floods.

The server is the whole application (``service.make_service`` on the demo PBX,
users configured, a JSON-lines, a web and a metrics listener, all on
loopback) in a child process whose soft open-files limit starts at 1,024 (a
common default; the server raises it for ``max_clients`` as at a real start),
logging everything it logs (debug included, as twistd's default observer
does) to a file. Each scenario starts a fresh server, runs its attackers in
processes of their own from 127.0.0.1, and meanwhile, from other addresses:

* a logged-in client (alice, from 127.0.0.2) pings every 25 ms: p50/p99 (a
  ping unanswered for 5 s counts as a 5 s round trip, and reconnects);
* a prober (carol, from 127.0.0.3) opens a new TCP connection every 0.5 s
  and logs in: the slowest login and how many took over 2 s or failed;
* the server's RSS and open descriptors are sampled every 0.5 s, and a
  10 ms tick in its reactor says how late it ran ("late p99": the reactor's
  own stalls plus the machine's, which a loaded machine adds to every figure).

After the attackers leave it waits ``--settle`` seconds and reads the RSS
again. Log growth is bytes per second over the attack.

    .venv/bin/python bench/web_abuse.py                       # every scenario, this checkout
    .venv/bin/python bench/web_abuse.py --root /work/main     # the same attacks on another checkout
    .venv/bin/python bench/web_abuse.py --only http-slowloris ws-ping --seconds 10

Scenarios: see :data:`SCENARIOS` (each names its attack in a comment).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TOKENS = {name: f"bench-{name}-token-0123456789" for name in ("alice", "bob", "carol", "mallory")}

#: name -> (attack, its options). Attacks are the ``attack_*`` functions below.
SCENARIOS: dict[str, tuple[str, dict[str, Any]]] = {
    "quiet": ("none", {}),
    # 1,100 half-sent HTTP requests from one address, one byte every 2 s each (reopened when closed)
    "http-slowloris": ("http_slowloris", {"conns": 1100, "sources": ["127.0.0.1"]}),
    # the same from 40 addresses (127.0.0.10-49), 1,600 sockets: more than max_clients
    "http-slowloris-many": ("http_slowloris", {"conns": 1600, "sources": [f"127.0.0.{i}" for i in range(10, 50)]}),
    # GET /static/%00, pipelined on 4 keep-alive connections
    "static-nul": ("http_flood", {"conns": 4, "path": "/static/%00"}),
    # ordinary 404s, pipelined on 4 keep-alive connections
    "http-404": ("http_flood", {"conns": 4, "path": "/no-such-file"}),
    # /readyz and /metrics probes on the metrics port, 4 keep-alive connections (log bytes per probe)
    "probes": ("http_flood", {"conns": 4, "path": "/readyz", "also": "/metrics", "port": "metrics"}),
    # WebSocket handshakes with a foreign Origin, 4 at a time, one after the other
    "ws-origin": ("ws_loop", {"conns": 4, "kind": "origin"}),
    # WebSocket text frames holding invalid UTF-8, 4 at a time, reconnecting
    "ws-bad-utf8": ("ws_loop", {"conns": 4, "kind": "bad_utf8"}),
    # one unauthenticated WebSocket sending empty continuation frames as fast as it can
    "ws-continuation-1": ("ws_frames", {"conns": 1, "kind": "continuation"}),
    "ws-continuation-3": ("ws_frames", {"conns": 3, "kind": "continuation"}),
    # one WebSocket sending 125-byte pings as fast as it can, never reading the pongs
    "ws-ping": ("ws_frames", {"conns": 1, "kind": "ping", "no_read": True}),
    # lineOpen/lineClose of a line with 1,500 live calls (248-character names), one fast reader
    "big-answer": ("big_answer", {"calls": 1500, "name": 248}),
    # one user (bob) flooding pings from 50 logged-in connections
    "user-flood": ("user_flood", {"conns": 50}),
}

CONFIG = """
[server]
listen = "tcp:0:interface=127.0.0.1"
[web]
listen = "tcp:0:interface=127.0.0.1"
[metrics]
listen = "tcp:0:interface=127.0.0.1"
[lines.line_1]
channel = "Local/bob@phones"
context = "trunklocal"
[lines.line_2]
channel = "Local/bobbett@phones"
context = "trunklocal"
"""

CHILD = r"""
import gc, json, os, sys
from twisted.internet import reactor, stdio, task
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.protocols.basic import LineReceiver
globalLogBeginner.beginLoggingTo([textFileLogObserver(open(sys.argv[1], "w"))], redirectStandardIO=False)
from asttapi_server.config import load_config
from asttapi_server.core import grammar
from asttapi_server.service import make_service

app = make_service(load_config(sys.argv[2]), reactor)
app.startService()

STATUS = open("/proc/self/status", "rb", buffering=0)  # open now: at the file limit no file can be opened

def rss():
    STATUS.seek(0)
    for line in STATUS.read().decode().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

def ghosts(n, length):
    now = reactor.seconds()
    for i in range(n):
        uid = f"77{i}.{i}"
        for text in (f"[~{uid}] LINE_NEWCALL line_1", f"[~{uid}] SET CALLERIDNAME {'N' * length}",
                     f"[~{uid}] SET CONNECTEDIDNAME {'C' * length}", f"[~{uid}] SET CALLEDIDNAME {'D' * length}",
                     f"[~{uid}] LINE_CALLSTATE LINECALLSTATE_OFFERING"):
            app.model.apply(grammar.TapiSignal(grammar.parse_tapievent(text), uid, f"PJSIP/g-{i:08d}"), now)

LATE = []  # how late each 10 ms tick of the reactor ran (s): its stalls, whatever caused them
_tick = {"due": None}

def tick():
    now = reactor.seconds()
    if _tick["due"] is not None:
        LATE.append(max(0.0, now - _tick["due"]))
    _tick["due"] = now + 0.01

class Control(LineReceiver):
    delimiter = b"\n"
    def lineReceived(self, line):
        cmd, *args = line.decode().split()
        if cmd == "stalls":
            late = sorted(LATE)
            LATE.clear()
            p99 = late[min(len(late) - 1, int(len(late) * 0.99))] if late else 0.0
            self.sendLine(("STALLS " + json.dumps({"p99_ms": round(p99 * 1000, 1),
                                                  "max_ms": round(late[-1] * 1000, 1) if late else 0.0})).encode())
            return
        if cmd == "stat":
            try:
                fds = len(os.listdir("/proc/self/fd"))
            except OSError:  # out of descriptors itself
                fds = -1
            self.sendLine(("STAT " + json.dumps({"rss_kib": rss(), "fds": fds})).encode())
        elif cmd == "ghosts":
            ghosts(int(args[0]), int(args[1]))
            self.sendLine(b"OK")
    def connectionLost(self, reason=None):
        if reactor.running:
            reactor.stop()

def ready():
    ports = [getattr(x[0].port, "getHost", None) if x else None
             for x in (app.listeners, app.web_listeners, app.ops_listeners)]
    if None in ports or not app.bridge.link_up:
        return
    loop.stop()
    task.LoopingCall(tick).start(0.01)
    stdio.StandardIO(Control())
    print("PORTS", *(p().port for p in ports), flush=True)

loop = task.LoopingCall(ready)
loop.start(0.02)
reactor.run()
"""


# -- the server (child process) -----------------------------------------------------------


class Server:
    def __init__(self, root: Path, workdir: Path, name: str) -> None:
        config = workdir / f"{name}.toml"
        users = "".join(f'[users.{u}]\ntoken = "{t}"\nlines = ["*"]\n' for u, t in TOKENS.items())
        config.write_text(CONFIG + users)
        self.log = workdir / f"{name}.log"

        def low_limit() -> None:  # a common default soft limit; the server raises it itself
            resource.setrlimit(resource.RLIMIT_NOFILE, (1024, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(self.log), str(config)], cwd=root,
            env=dict(os.environ, PYTHONPATH=str(root)), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, preexec_fn=low_limit,
        )
        line = self.proc.stdout.readline()
        if not line.startswith("PORTS "):
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r}; log: {self.log.read_text()[-2000:]}")
        self.tcp, self.web, self.metrics = map(int, line.split()[1:])
        self._lock = threading.Lock()

    def ask(self, command: str) -> str:
        with self._lock:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
            return self.proc.stdout.readline().strip()

    def stat(self) -> dict[str, int]:
        return json.loads(self.ask("stat").split(" ", 1)[1])

    def stalls(self) -> dict[str, float]:
        """The reactor's lateness since the last call: its own stalls plus the machine's."""
        return json.loads(self.ask("stalls").split(" ", 1)[1])

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def stop(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- helpers ----------------------------------------------------------------------------------


def request(rid: int, method: str, **params: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}).encode() + b"\n"


def connect(port: int, source: str = "127.0.0.1", timeout: float | None = 5.0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """A client-to-server WebSocket frame, masked with a zero key (payload as is)."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


def ws_handshake(port: int, origin: str | None = None) -> bytes:
    lines = [f"GET /ws HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
    if origin:
        lines.append(f"Origin: {origin}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def ws_open(port: int, source: str = "127.0.0.1") -> socket.socket | None:
    """A WebSocket past its handshake (the server's first frames may follow), or None if refused."""
    try:
        s = connect(port, source)
        s.sendall(ws_handshake(port))
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = s.recv(4096)
            if not chunk:
                s.close()
                return None
            got += chunk
        if not got.startswith(b"HTTP/1.1 101"):
            s.close()
            return None
        return s
    except OSError:
        return None


def percentiles(times: list[float]) -> dict[str, float | None]:
    if not times:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    times = sorted(times)
    return {"p50_ms": round(times[len(times) // 2] * 1000, 2),
            "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))] * 1000, 2),
            "max_ms": round(times[-1] * 1000, 2)}


class JsonLines:
    """A blocking JSON-lines client."""

    def __init__(self, port: int, source: str, user: str | None = None, timeout: float = 5.0) -> None:
        self.sock = connect(port, source, timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")
        hello = self.reader.readline()
        if not hello:
            raise ConnectionError("closed before hello")
        self.rid = 0
        if user is not None:
            answer = self.call("login", username=user, token=TOKENS[user])
            if "result" not in answer:
                raise ConnectionError(f"login refused: {answer}")

    def call(self, method: str, **params: Any) -> dict:
        self.rid += 1
        self.sock.sendall(request(self.rid, method, **params))
        while True:
            line = self.reader.readline()
            if not line:
                raise ConnectionError("closed")
            msg = json.loads(line)
            if msg.get("id") == self.rid or (msg.get("id") is None and "error" in msg):
                return msg

    def close(self) -> None:
        self.sock.close()


# -- observers (threads of this process) ---------------------------------------------------------


class Observers:
    """The pinger (alice, 127.0.0.2) and the login prober (carol, 127.0.0.3), until stopped."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.pings: list[float] = []
        self.ping_errors: list[str] = []
        self.logins: list[float | None] = []  # None: failed or over 5 s
        self.threads = [threading.Thread(target=self._ping, daemon=True),
                        threading.Thread(target=self._probe, daemon=True)]
        for t in self.threads:
            t.start()

    def _ping(self) -> None:
        try:
            client = JsonLines(self.port, "127.0.0.2", "alice")
        except Exception as e:
            self.ping_errors.append(f"connect: {e}")
            return
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                answer = client.call("ping")
            except Exception as e:  # a ping not answered in 5 s counts as that long a round trip
                self.pings.append(time.monotonic() - t0)
                self.ping_errors.append(str(e))
                try:
                    client = JsonLines(self.port, "127.0.0.2", "alice")
                except Exception:
                    time.sleep(0.1)
                continue
            if "result" not in answer:
                self.ping_errors.append(json.dumps(answer)[:200])
            else:
                self.pings.append(time.monotonic() - t0)
            self.stop.wait(max(0.0, 0.025 - (time.monotonic() - t0)))

    def _probe(self) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                JsonLines(self.port, "127.0.0.3", "carol").close()
                self.logins.append(time.monotonic() - t0)
            except Exception:
                self.logins.append(None)
            self.stop.wait(max(0.0, 0.5 - (time.monotonic() - t0)))

    def result(self) -> dict[str, Any]:
        self.stop.set()
        for t in self.threads:
            t.join(10)
        ok = [t for t in self.logins if t is not None]
        return {
            "ping": {"pings": len(self.pings), **percentiles(self.pings), "errors": len(self.ping_errors),
                     "first_error": self.ping_errors[0] if self.ping_errors else None},
            "login": {"tries": len(self.logins), "failed_or_over_5s": self.logins.count(None),
                      "over_2s": sum(1 for t in ok if t > 2.0),
                      "slowest_ms": round(max(ok) * 1000, 1) if ok else None},
        }


# -- attacks (each in a process of its own; prints its counts on SIGTERM) --------------------------


def _until_term(counts: dict[str, Any]) -> threading.Event:
    stop = threading.Event()

    def report(*_: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, report)
    return stop


def attack_none(ports: dict[str, int], opts: dict, counts: dict, stop: threading.Event) -> None:
    stop.wait()


def attack_http_slowloris(ports: dict[str, int], opts: dict, counts: dict, stop: threading.Event) -> None:
    """Half-sent requests, one more header byte every 2 s each; closed ones are reopened."""
    port, sources, want = ports["web"], opts["sources"], opts["conns"]
    head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
    socks: list[socket.socket] = []
    counts.update(opened=0, refused=0, closed_later=0, open_at_end=0)

    def fill() -> None:
        """Open the missing sockets all at once (non-blocking connects), then send each its head."""
        pending = []
        for i in range(want - len(socks)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.bind((sources[i % len(sources)], 0))
            s.connect_ex(("127.0.0.1", port))
            pending.append(s)
        sel = selectors.DefaultSelector()
        for s in pending:
            sel.register(s, selectors.EVENT_WRITE)
        deadline = time.monotonic() + 1.5
        while sel.get_map() and time.monotonic() < deadline:
            for key, _ in sel.select(0.1):
                s = key.fileobj
                sel.unregister(s)
                try:
                    if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        raise OSError("refused")
                    s.send(head)
                    socks.append(s)
                    counts["opened"] += 1
                except OSError:
                    counts["refused"] += 1
                    s.close()
        for key in list(sel.get_map().values()):  # not connected in time: the backlog is full
            counts["refused"] += 1
            key.fileobj.close()
        sel.close()

    while not stop.is_set():
        fill()
        stop.wait(2.0)
        alive = []
        for s in socks:
            try:
                if s.recv(65536) == b"":
                    raise OSError("closed")
            except BlockingIOError:
                pass
            except OSError:
                counts["closed_later"] += 1
                s.close()
                continue
            try:
                s.send(b"x")
                alive.append(s)
            except OSError:
                counts["closed_later"] += 1
                s.close()
        socks[:] = alive
    counts["open_at_end"] = len(socks)
    for s in socks:
        s.close()


class _Pump:
    """Non-blocking sockets each sending ``chunk`` over and over, as fast as they take it; reopened when closed.

    ``open_socket()`` gives a connected socket (or None: try again soon);
    ``on_data(bytes)`` sees what the server answers (not read at all with
    ``read=False``: the socket's receive window fills). ``counts`` gets
    ``sent`` (chunks times ``per_chunk``), ``bytes`` and ``reconnects``.
    """

    def __init__(self, open_socket: Any, chunk: bytes, per_chunk: int, counts: dict, *, conns: int,
                 read: bool = True, on_data: Any = None) -> None:
        self.open_socket, self.chunk, self.per_chunk, self.counts = open_socket, chunk, per_chunk, counts
        self.read, self.on_data, self.conns = read, on_data, conns
        self.sel = selectors.DefaultSelector()
        counts.update(sent=0, bytes=0, reconnects=0)

    def _open(self, stop: threading.Event) -> None:
        s = self.open_socket()
        if s is None:
            self.counts["reconnects"] += 1
            stop.wait(0.05)
            return
        s.setblocking(False)
        events = selectors.EVENT_READ | selectors.EVENT_WRITE if self.read else selectors.EVENT_WRITE
        self.sel.register(s, events, {"pending": b""})

    def _drop(self, s: socket.socket) -> None:
        self.sel.unregister(s)
        s.close()
        self.counts["reconnects"] += 1

    def run(self, stop: threading.Event) -> None:
        counts = self.counts
        while not stop.is_set():
            while len(self.sel.get_map()) < self.conns and not stop.is_set():
                self._open(stop)
            for key, mask in self.sel.select(0.1):
                s, st = key.fileobj, key.data
                if mask & selectors.EVENT_WRITE:
                    if not st["pending"]:
                        st["pending"] = self.chunk
                        counts["sent"] += self.per_chunk
                    try:
                        n = s.send(st["pending"])
                        counts["bytes"] += n
                        st["pending"] = st["pending"][n:]
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError:
                        self._drop(s)
                        continue
                if mask & selectors.EVENT_READ:
                    try:
                        data = s.recv(1 << 20)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        self._drop(s)
                    elif self.on_data is not None:
                        self.on_data(data)
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()


def attack_http_flood(ports: dict[str, int], opts: dict, counts: dict, stop: threading.Event) -> None:
    """Pipelined GETs on keep-alive connections, as fast as the sockets take them."""
    port = ports[opts.get("port", "web")]
    paths = [opts["path"]] + ([opts["also"]] if "also" in opts else [])
    batch = b"".join(f"GET {p} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode() for p in paths) * 20
    counts["responses"] = 0

    def opened() -> socket.socket | None:
        try:
            return connect(port)
        except OSError:
            return None

    def answered(data: bytes) -> None:
        counts["responses"] += data.count(b"HTTP/1.1 ")

    _Pump(opened, batch, 20 * len(paths), counts, conns=opts["conns"], on_data=answered).run(stop)


def attack_ws_loop(ports: dict[str, int], opts: dict, counts: dict, stop: threading.Event) -> None:
    """Connect, misbehave once (foreign Origin, or a text frame of invalid UTF-8), repeat."""
    port = ports["web"]
    counts.update(attempts=0, refused=0)

    def one() -> None:
        while not stop.is_set():
            counts["attempts"] += 1
            try:
                if opts["kind"] == "origin":
                    s = connect(port)
                    s.sendall(ws_handshake(port, origin="http://evil.example"))
                else:
                    s = ws_open(port)
                    if s is None:
                        counts["refused"] += 1
                        continue
                    s.sendall(frame(1, b"\xff\xfe\xfd"))
                while s.recv(65536):
                    pass
                s.close()
            except OSError:
                counts["refused"] += 1

    threads = [threading.Thread(target=one, daemon=True) for _ in range(opts["conns"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def attack_ws_frames(ports: dict[str, int], opts: dict, counts: dict, stop: threading.Event) -> None:
    """Open WebSockets (never logged in) and send frames as fast as they are taken."""
    port = ports["web"]
    if opts["kind"] == "continuation":
        first, chunk, per_chunk = frame(1, b"", fin=False), frame(0, b"", fin=False) * 2000, 2000
    else:
        first, chunk, per_chunk = b"", frame(9, b"p" * 125) * 400, 400

    def opened() -> socket.socket | None:
        s = ws_open(port)
        if s is not None:
            s.sendall(first)
        return s

    _Pump(opened, chunk, per_chunk, counts, conns=opts["conns"], read=not opts.get("no_read")).run(stop)
    counts["mb_sent"] = round(counts.pop("bytes") / 1e6, 1)


def attack_big_answer(ports: dict[str, int], opts: dict, counts: dict, stop: threading.Event) -> None:
    """A fast reader opening and closing the line with the ghost calls, over and over."""
    counts.update(answers=0, answer_bytes=0, cut_off=0, events=0)
    while not stop.is_set():
        try:
            c = JsonLines(ports["tcp"], "127.0.0.4", "mallory", timeout=30)
        except Exception:
            counts["cut_off"] += 1
            stop.wait(0.2)
            continue
        try:
            while not stop.is_set():
                c.rid += 1
                c.sock.sendall(request(c.rid, "lineOpen", line="line_1"))
                while True:
                    line = c.reader.readline()
                    if not line:
                        raise ConnectionError("closed")
                    if b'"method":"LINE_' in line[:80]:
                        counts["events"] += 1
                        continue
                    msg = json.loads(line)
                    if msg.get("id") == c.rid:
                        break
                counts["answers"] += 1
                counts["answer_bytes"] = len(line)
                c.call("lineClose", line="line_1")
        except (ConnectionError, OSError, ValueError):
            counts["cut_off"] += 1
        finally:
            c.close()


def attack_user_flood(ports: dict[str, int], opts: dict, counts: dict, stop: threading.Event) -> None:
    """One user's connections, each sending pings as fast as the socket takes them."""
    counts.update(answers=0, limited=0)

    def opened() -> socket.socket | None:
        try:
            return JsonLines(ports["tcp"], "127.0.0.5", "bob").sock
        except Exception:
            return None

    def answered(data: bytes) -> None:
        counts["answers"] += data.count(b"\n")
        counts["limited"] += data.count(b"-32003")

    batch = b"".join(request(i, "ping") for i in range(200))
    _Pump(opened, batch, 200, counts, conns=opts["conns"], on_data=answered).run(stop)


def run_attack(kind: str, ports: dict[str, int], opts: dict) -> None:
    counts: dict[str, Any] = {}
    stop = _until_term(counts)
    worker = threading.Thread(target=globals()["attack_" + kind], args=(ports, opts, counts, stop), daemon=True)
    worker.start()
    stop.wait()
    worker.join(10)
    print(json.dumps(counts), flush=True)
    os._exit(0)


# -- one scenario ---------------------------------------------------------------------------------


def scenario(root: Path, workdir: Path, name: str, seconds: float, settle: float) -> dict[str, Any]:
    attack, opts = SCENARIOS[name]
    server = Server(root, workdir, name)
    attacker = None
    try:
        ports = {"tcp": server.tcp, "web": server.web, "metrics": server.metrics}
        if attack == "big_answer":
            assert server.ask(f"ghosts {opts['calls']} {opts['name']}") == "OK"
        time.sleep(0.5)
        start = server.stat()
        observers = Observers(server.tcp)
        time.sleep(0.5)
        log0 = server.log_size()
        server.stalls()
        attacker = subprocess.Popen(
            [sys.executable, __file__, "--attack", attack, "--ports", json.dumps(ports), "--opts", json.dumps(opts)],
            stdout=subprocess.PIPE, text=True, cwd=ROOT, preexec_fn=_raise_nofile,
        )
        peak = dict(start)
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            time.sleep(0.5)
            s = server.stat()
            peak = {k: max(peak[k], s[k]) for k in peak}
        attacker.terminate()
        out, _ = attacker.communicate(30)
        attack_window = time.monotonic() - t0
        stalls = server.stalls()
        log_rate = (server.log_size() - log0) / attack_window
        figures = observers.result()
        time.sleep(settle)
        after = server.stat()
        attacker = None
        return {
            "scenario": name, "seconds": round(attack_window, 1),
            "attacker": json.loads(out.strip().splitlines()[-1]) if out.strip() else None,
            **figures,
            "reactor_late_ms": stalls,
            "log_bytes_per_s": round(log_rate),
            "rss_mib": {"start": round(start["rss_kib"] / 1024, 1), "peak": round(peak["rss_kib"] / 1024, 1),
                        f"after_{settle:g}s": round(after["rss_kib"] / 1024, 1)},
            "fds": {"start": start["fds"], "peak": peak["fds"], "after": after["fds"]},
        }
    finally:
        if attacker is not None and attacker.poll() is None:
            attacker.kill()
        server.stop()


def _raise_nofile() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=ROOT, help="checkout whose server to measure")
    ap.add_argument("--only", nargs="+", choices=list(SCENARIOS))
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each attack")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds after the attack before RSS is read again")
    ap.add_argument("--attack", help=argparse.SUPPRESS)
    ap.add_argument("--ports", help=argparse.SUPPRESS)
    ap.add_argument("--opts", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.attack:
        run_attack(args.attack, json.loads(args.ports), json.loads(args.opts))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only or SCENARIOS:
            row = scenario(args.root.resolve(), Path(tmp), name, args.seconds, args.settle)
            print(json.dumps(row), flush=True)
            rows.append(row)
    print()
    print(f"{'scenario':<20} {'login max ms':>12} {'>2s/fail':>8} {'ping p50':>9} {'p99':>8} {'late p99':>9}"
          f" {'log B/s':>9} {'RSS start/peak/after MiB':>25} {'fds peak':>8}")
    for r in rows:
        lg, pg, rss = r["login"], r["ping"], list(r["rss_mib"].values())
        print(f"{r['scenario']:<20} {lg['slowest_ms']!s:>12} {lg['over_2s'] + lg['failed_or_over_5s']:>8}"
              f" {pg['p50_ms']!s:>9} {pg['p99_ms']!s:>8} {r['reactor_late_ms']['p99_ms']!s:>9}"
              f" {r['log_bytes_per_s']:>9,} {'/'.join(str(x) for x in rss):>25} {r['fds']['peak']:>8}")


if __name__ == "__main__":
    main()
