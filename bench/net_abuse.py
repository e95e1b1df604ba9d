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

    def run(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
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


PINGER = (
    "import json, socket, sys, time\n"
    "port, token, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])\n"
    "s = socket.create_connection(('127.0.0.1', port)); f = s.makefile('rb'); f.readline()\n"
    "req = lambda i, m, **p: (json.dumps({'jsonrpc': '2.0', 'id': i, 'method': m, 'params': p}) + '\\n').encode()\n"
    "s.sendall(req(1, 'login', username='alice', token=token)); f.readline()\n"
    "print('READY', flush=True); times = []; end = time.monotonic() + seconds; cut = False\n"
    "while time.monotonic() < end:\n"
    "    t = time.monotonic(); s.sendall(req(2, 'ping')); line = f.readline()\n"
    "    if not line: cut = True; break\n"
    "    times.append(time.monotonic() - t); time.sleep(0.02)\n"
    "times.sort(); pct = lambda p: round(times[min(len(times) - 1, int(len(times) * p))] * 1000, 2)\n"
    "print(json.dumps({'pings': len(times), 'ping_p50_ms': pct(0.5), 'ping_p99_ms': pct(0.99), 'pinger_cut_off': cut}))\n"
)


class _Pinger:
    """A logged-in client in its own process, pinging every 20 ms: round trips not skewed by the flood's loop."""

    def __init__(self, port: int, seconds: float) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", PINGER, str(port), TOKEN, str(seconds)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "READY"

    def result(self) -> dict:
        out, _ = self.proc.communicate(timeout=60)
        return json.loads(out)


def login_flood(root: Path, workdir: Path, conns: int, token: str, seconds: float, ping: bool) -> dict:
    srv = Server(root, "tcp:0:interface=127.0.0.1", workdir / f"login-{conns}.log")
    try:
        pinger = _Pinger(srv.port, seconds) if ping else None
        before = srv.log_size()
        flood = _Flooder(srv.port, conns, token)
        flood.run(seconds)
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
            out.update(pinger.result())
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
