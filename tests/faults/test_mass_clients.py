"""1,000 clients connect and drop at once, against the full server (real reactor, loopback).

The server (make_service on the demo PBX) runs in its own process; the clients
are plain sockets here. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
N = 1000


class Server:
    def __init__(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.faults.serve_full"], cwd=ROOT, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("PORT "), line
        self.port = int(line.split()[1])

    def stat(self, gc: bool = False) -> dict:
        self.proc.stdin.write("stat gc\n" if gc else "stat\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line.startswith("STAT "), line
        return json.loads(line[5:])

    def wait_for(self, predicate, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            st = self.stat()
            if predicate(st) or time.monotonic() > deadline:
                return st
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc.stdout.close()


def _enough_file_descriptors(need: int = N + 200) -> bool:
    """Raise the soft fd limit toward the hard one (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need <= hard or (soft < need and hard == resource.RLIM_INFINITY):
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        soft = need
    return soft >= need


@pytest.fixture
def server():
    if not _enough_file_descriptors():
        pytest.skip(f"needs {N + 200} file descriptors (ulimit -n)")
    s = Server()
    yield s
    s.stop()


def connect_all(port: int, n: int) -> list[socket.socket]:
    """n clients, each opening its own line; returns once every lineOpen is answered."""
    socks, sel, answered = [], selectors.DefaultSelector(), 0
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "lineOpen",
                              "params": {"line": f"mass_{i}"}}).encode() + b"\n")
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, [b""])
        socks.append(s)
    deadline = time.monotonic() + 60
    while answered < n:
        assert time.monotonic() < deadline, f"only {answered}/{n} lineOpen answers"
        for key, _ in sel.select(0.5):
            buf = key.data[0] + key.fileobj.recv(65536)
            key.data[0] = buf
            if b'"id":1' in buf.replace(b" ", b"") and b"result" in buf:
                answered += 1
                sel.unregister(key.fileobj)
    sel.close()
    return socks


def drop_all(socks: list[socket.socket]) -> None:
    """Half close politely, half reset (SO_LINGER 0), all in one go."""
    for i, s in enumerate(socks):
        if i % 2:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()


def test_thousand_clients_connect_and_drop_at_once(server):
    base = server.stat(gc=True)
    assert base["connections"] == 0
    rss = []
    for _cycle in range(3):
        socks = connect_all(server.port, N)
        st = server.stat()
        assert st["connections"] == N and st["open_lines"] == N
        drop_all(socks)
        st = server.wait_for(lambda s: s["connections"] == 0 and s["open_lines"] == 0, 30)
        assert st["connections"] == 0, st
        assert st["open_lines"] == 0, "the hub kept subscriptions of dropped clients"
        rss.append(server.stat(gc=True)["rss_kib"])
    # memory (live objects, after a GC in the server): near the baseline, and the
    # later thousands reuse what the first left; nothing accumulates per cycle
    assert rss[2] - rss[0] < 2 * 1024, (base["rss_kib"], rss)
    assert rss[0] - base["rss_kib"] < 16 * 1024, (base["rss_kib"], rss)
    # and the server still serves: a new client sees a whole call
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as c:
        c.sendall(b'{"jsonrpc":"2.0","id":1,"method":"lineOpen","params":{"line":"line_1"}}\n')
        server.proc.stdin.write("play\n")
        server.proc.stdin.flush()
        buf = b""
        deadline = time.monotonic() + 15
        while b"LINECALLSTATE_IDLE" not in buf:
            assert time.monotonic() < deadline, buf[-500:]
            buf += c.recv(65536)
        assert b"LINE_NEWCALL" in buf
