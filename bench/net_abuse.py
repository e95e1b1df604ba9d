"""Hostile-network figures for issue 11: login floods, silent, slowloris and no-handshake sockets.

The server is ``tests.clients.serve`` (hub + client protocol + a fake bridge,
listening through the project's own endpoint code) in a child process, with
its log written to a file so its size can be reported. ``--root`` points at
another checkout (e.g. ``/work/main``) to measure the code before a change
with the same script.

    .venv/bin/python bench/net_abuse.py                    # this checkout
    .venv/bin/python bench/net_abuse.py --root ../main     # another one
    .venv/bin/python bench/net_abuse.py --quick            # shorter phases

Figures (printed as JSON and as a table):

* login tries/s whose token the server actually checked, with a wrong token,
  on 1 connection and on 50 (a closed connection is reopened at once);
  odd-token (``"\\ud800"``) tries/s, and log bytes per second during them;
* ping p50/p99 of a logged-in client during the 50-connection flood;
* silent, slowloris (one byte a second, never a newline) and TLS
  never-handshaking connections still open after 15 s (login required).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token-0123456789abcdef"
USERS = {"alice": {"token": TOKEN, "lines": ["line_*"]}}
CHILD = (
    "import sys\n"
    "from twisted.logger import globalLogBeginner, textFileLogObserver\n"
    "globalLogBeginner.beginLoggingTo([textFileLogObserver(open(sys.argv[1], 'w'))], redirectStandardIO=False)\n"
    "sys.argv = ['serve'] + sys.argv[2:]\n"
    "from tests.clients.serve import main\n"
    "main()\n"
)


class Server:
    def __init__(self, root: Path, endpoint: str, log: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(root))
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(log), endpoint, json.dumps(USERS)],
            cwd=root, env=env, stdout=subprocess.PIPE, text=True,
        )
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"server did not start: {line!r}")
        self.port = int(line.split()[1])

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _request(rid: int, method: str, **params: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}).encode() + b"\n"


class _Flooder:
    """N non-blocking connections sending login after login; counts the answers."""

    def __init__(self, port: int, n: int, token: str) -> None:
        self.port, self.token = port, token
        self.sel = selectors.DefaultSelector()
        self.checked = self.refused = self.other = self.reconnects = 0
        for _ in range(n):
            self._open()

    def _open(self) -> None:
        s = socket.create_connection(("127.0.0.1", self.port))
        s.setblocking(False)
        self.sel.register(s, selectors.EVENT_READ, {"buf": b"", "hello": False})

    def _send(self, s: socket.socket) -> None:
        try:
            s.send(_request(1, "login", username="alice", token=self.token))
        except OSError:
            pass

    def run(self, seconds: float, on_tick=None) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if on_tick:
                on_tick()
            for key, _ in self.sel.select(0.01):
                s, st = key.fileobj, key.data
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self.sel.unregister(s)
                    s.close()
                    self.reconnects += 1
                    self._open()
                    continue
                st["buf"] += data
                *lines, st["buf"] = st["buf"].split(b"\n")
                for line in lines:
                    if not line:
                        continue
                    msg = json.loads(line)
                    if msg.get("method") == "hello":
                        self._send(s)
                        continue
                    err = msg.get("error") or {}
                    if msg.get("id") is None:
                        continue  # the goodbye before a close
                    if "retry_after" in (err.get("data") or {}):
                        self.refused += 1
                    elif err.get("message") == "Login failed: unknown user or wrong token":
                        self.checked += 1
                    else:
                        self.other += 1
                    self._send(s)

    def close(self) -> None:
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()


class _Pinger:
    """A logged-in client pinging every 20 ms; collects round trips."""

    def __init__(self, port: int) -> None:
        self.s = socket.create_connection(("127.0.0.1", port))
        self.f = self.s.makefile("rb")
        self.f.readline()
        self.s.sendall(_request(1, "login", username="alice", token=TOKEN))
        self.f.readline()
        self.s.setblocking(False)
        self.times: list[float] = []
        self.sent_at: float | None = None
        self.next_at = time.monotonic()
        self.buf = b""
        self.cut = False

    def tick(self) -> None:
        now = time.monotonic()
        try:
            data = self.s.recv(65536)
            if not data:
                self.cut = True
            self.buf += data
        except BlockingIOError:
            pass
        except OSError:
            self.cut = True
        if self.sent_at is not None and b"\n" in self.buf:
            self.buf = self.buf.split(b"\n", 1)[1]
            self.times.append(now - self.sent_at)
            self.sent_at = None
        if self.sent_at is None and now >= self.next_at and not self.cut:
            self.s.send(_request(2, "ping"))
            self.sent_at, self.next_at = now, now + 0.02

    def percentile(self, p: float) -> float | None:
        if not self.times:
            return None
        t = sorted(self.times)
        return round(t[min(len(t) - 1, int(len(t) * p))] * 1000, 2)


def login_flood(root: Path, workdir: Path, conns: int, token: str, seconds: float, ping: bool) -> dict:
    srv = Server(root, "tcp:0:interface=127.0.0.1", workdir / f"login-{conns}.log")
    try:
        pinger = _Pinger(srv.port) if ping else None
        before = srv.log_size()
        flood = _Flooder(srv.port, conns, token)
        flood.run(seconds, pinger.tick if pinger else None)
        flood.close()
        time.sleep(0.3)
        out = {
            "connections": conns,
            "token": "lone surrogate" if token == "\ud800" else "wrong",
            "checked_per_s": round(flood.checked / seconds, 1),
            "refused_with_retry_after_per_s": round(flood.refused / seconds, 1),
            "other_errors_per_s": round(flood.other / seconds, 1),
            "log_bytes_per_s": round((srv.log_size() - before) / seconds),
        }
        if pinger:
            out.update(ping_p50_ms=pinger.percentile(0.5), ping_p99_ms=pinger.percentile(0.99),
                       pinger_cut_off=pinger.cut)
        return out
    finally:
        srv.stop()


def idle_sockets(root: Path, workdir: Path, kind: str, n: int, wait: float) -> dict:
    if kind == "tls":
        from tests.security.tlsutil import make_cert

        key, cert = make_cert(workdir)
        endpoint = f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    else:
        endpoint = "tcp:0:interface=127.0.0.1"
    srv = Server(root, endpoint, workdir / f"{kind}.log")
    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", srv.port))
            s.setblocking(False)
            if kind == "slowloris":
                s.send(b'{"jsonrpc":"2.0",')
            socks.append(s)
        end = time.monotonic() + wait
        while time.monotonic() < end:
            time.sleep(1)
            if kind == "slowloris":
                for s in socks:
                    try:
                        s.send(b" ")
                    except OSError:
                        pass
        open_ = 0
        for s in socks:
            try:
                while True:
                    if s.recv(65536) == b"":
                        break  # closed by the server
            except BlockingIOError:
                open_ += 1  # nothing more to read and not closed
            except OSError:
                pass
        return {"kind": kind, "connections": n, "after_s": wait, "still_open": open_,
                "log_bytes": srv.log_size()}
    finally:
        for s in socks:
            s.close()
        srv.stop()


def run(root: Path = ROOT, quick: bool = False) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 2,000 sockets here and there
    seconds = 3.0 if quick else 5.0
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        out = {"root": str(root), "login": [], "idle": []}
        out["login"].append(login_flood(root, workdir, 1, "wrong-token", seconds, ping=False))
        out["login"].append(login_flood(root, workdir, 50, "wrong-token", seconds, ping=True))
        out["login"].append(login_flood(root, workdir, 1, "\ud800", seconds, ping=False))
        n_slow = 500 if quick else 2000
        out["idle"].append(idle_sockets(root, workdir, "silent", 100, 15.0))
        out["idle"].append(idle_sockets(root, workdir, "slowloris", n_slow, 15.0))
        out["idle"].append(idle_sockets(root, workdir, "tls", 20, 15.0))
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=ROOT, help="checkout whose server to measure")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    out = run(args.root.resolve(), args.quick)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
