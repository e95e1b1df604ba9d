"""``asttapi watch``: a closed stdout ends it quietly; only a lost server connection reconnects.

Against a hand-written server speaking the protocol as docs/protocol.md has
it, so each connection does exactly what the case needs, and the real
command run through a real shell pipe (``| head -1``), as a user types it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from asttapi_server import __version__


def _event(n: int) -> dict:
    return {"jsonrpc": "2.0", "method": "LINE_CALLSTATE",
            "params": {"line": "line_1", "call": 1, "state": "LINECALLSTATE_OFFERING", "seq": n + 1}}


class ScriptedServer:
    """Serves connections one after the other; ``script(n)`` says what the n-th one does after its opens:
    ``"stream"`` (an event every 20 ms until the client goes) or ``"hang up"`` (one event, then close)."""

    def __init__(self, script) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.script = script
        self.connections = 0
        self.opens: list[dict] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            try:
                self._one(conn, self.script(self.connections))
            except OSError:
                pass
            finally:
                conn.close()

    def _one(self, conn: socket.socket, what: str) -> None:
        f = conn.makefile("rwb")
        hello = {"server": "asttapi-server", "version": __version__, "protocol": 1, "login_required": False,
                 "epoch": "e", "pbx": "up"}
        f.write(json.dumps({"jsonrpc": "2.0", "method": "hello", "params": hello}).encode() + b"\n")
        f.flush()
        conn.settimeout(0.2)
        n = 0
        while True:
            try:
                line = f.readline()
            except (TimeoutError, socket.timeout):
                line = None
            if line == b"":
                return
            if line:
                req = json.loads(line)
                self.opens.append(req["params"])
                result = {"calls": [], "seq": 1, "epoch": "e", "devstate": "LINEDEVSTATE_INSERVICE"}
                if "seq" in req["params"]:
                    result.update(replay="ok", replayed=0)
                f.write(json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": result}).encode() + b"\n")
                f.flush()
                continue
            n += 1
            f.write(json.dumps(_event(n)).encode() + b"\n")
            f.flush()
            if what == "hang up":
                return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server():
    servers = []

    def start(script) -> ScriptedServer:
        servers.append(ScriptedServer(script))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def _asttapi() -> str:
    script = Path(sys.executable).with_name("asttapi")
    return str(script) if script.exists() else f"{sys.executable} -m asttapi_server.cli"


def test_watch_piped_into_head_exits_at_once_quietly_and_never_reconnects(server):
    srv = server(lambda n: "stream")
    started = time.monotonic()
    run = subprocess.run(
        ["bash", "-c", f'{_asttapi()} --port {srv.port} watch line_1 | head -1; echo "status ${{PIPESTATUS[0]}}" >&2'],
        capture_output=True, text=True, timeout=30)
    took = time.monotonic() - started
    assert run.stdout == "-- watching line_1 (0 calls now)\n"
    assert run.stderr == "status 0\n"  # no traceback, no "connection lost", no "Exception ignored"
    assert took < 3, took
    assert srv.connections == 1


def test_the_first_open_of_several_lines_is_no_reopen(server):
    srv = server(lambda n: "hang up" if n == 1 else "stream")
    proc = subprocess.Popen(
        [*_asttapi().split(), "--port", str(srv.port), "watch", "line_1", "line_2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(5)]
    finally:
        proc.kill()
        proc.wait()
    assert lines[0] == "-- watching line_1 (0 calls now)\n"
    assert lines[1] == "-- watching line_2 (0 calls now)\n"
    assert "OFFERING" in lines[2]
    # The server hung up: both lines are reopened from where the watch was, and only then said so.
    assert lines[3:] == ["-- reopened line_1: replaying 0 missed events\n",
                         "-- reopened line_2: replaying 0 missed events\n"]
    assert [o.get("seq") for o in srv.opens] == [None, None, 2, 2]
