"""kill -9 of a real server process mid-call, restarted on the same call store (issue 11 item 9).

Three kinds of process, all on loopback: the demo PBX alone (it outlives the
server, like Asterisk does), the server (``make_service`` on a real reactor,
so the store writes in its thread), and this test as the CRM with a plain
socket. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def spawn(*args: str, tag: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.faults.serve_restart", *args], cwd=ROOT, env=ENV,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith(tag + " "), (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc, int(line.split()[1])


def finish(proc: subprocess.Popen) -> str:
    """Stop a process (SIGKILL if needed) and return its log."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    proc.stdin.close()
    proc.stdout.close()
    log = proc.stderr.read()
    proc.stderr.close()
    return log


class Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self.next_id = 0
        self.notes: list[dict] = []
        self.hello = self.read()

    def read(self) -> dict:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            assert chunk, "server closed the connection"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        rid = self.next_id
        self.sock.sendall(json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}).encode()
                          + b"\n")
        while True:
            msg = self.read()
            if msg.get("id") == rid and "method" not in msg:
                return msg
            self.notes.append(msg)

    def result(self, method: str, **params):
        answer = self.call(method, **params)
        assert "result" in answer, answer
        return answer["result"]

    def wait_for(self, method: str, **params) -> dict:
        deadline = time.monotonic() + 10
        for msg in self.notes:
            if msg.get("method") == method and all(msg["params"].get(k) == v for k, v in params.items()):
                return msg
        while time.monotonic() < deadline:
            msg = self.read()
            self.notes.append(msg)
            if msg.get("method") == method and all(msg["params"].get(k) == v for k, v in params.items()):
                return msg
        raise AssertionError(f"no {method} {params} in {self.notes}")

    def close(self) -> None:
        self.sock.close()


def wait_until_stored(state_file: Path, handle: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if handle in [c["handle"] for c in json.loads(state_file.read_text())["calls"]]:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError("the call never reached the store")


def wait_until_pbx_idle(pbx: subprocess.Popen) -> None:
    """Until the PBX has no live channel: the call it was playing hung up."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pbx.stdin.write("channels\n")
        pbx.stdin.flush()
        if pbx.stdout.readline().split() == ["CHANNELS", "0"]:
            return
        time.sleep(0.05)
    raise AssertionError("the PBX's call never hung up")


def test_kill_9_mid_call_then_the_crm_sees_and_drops_its_call(tmp_path):
    pbx, ami_port = spawn("pbx", tag="AMI")
    servers = []
    try:
        state_file = tmp_path / "calls.json"
        config = tmp_path / "asttapi.toml"
        config.write_text(
            f'[ami]\nhost = "127.0.0.1"\nport = {ami_port}\nsecret = "restart-test"\n'
            '[server]\nlisten = ["tcp:0:interface=127.0.0.1"]\n'
            '[lines.line_1]\nchannel = "Local/bob@phones"\ncontext = "trunklocal"\n'
            f"[calls]\nstate_file = {json.dumps(str(state_file))}\n"
        )
        server, port = spawn("server", str(config), tag="PORT")
        servers.append(server)
        crm = Client(port)
        opened = crm.result("lineOpen", line="line_1")
        pbx.stdin.write("inbound 60\n")
        pbx.stdin.flush()
        handle = crm.wait_for("LINE_NEWCALL", line="line_1")["params"]["call"]
        crm.wait_for("LINE_CALLSTATE", call=handle, state="LINECALLSTATE_CONNECTED")
        seq = crm.result("ping")["seq"]
        wait_until_stored(state_file, handle)
        server.send_signal(signal.SIGKILL)
        crm.close()
        first_log = finish(server)

        server, port = spawn("server", str(config), tag="PORT")
        servers.append(server)
        crm = Client(port)
        resumed = crm.result("lineOpen", line="line_1", seq=seq, epoch=opened["epoch"])
        assert resumed["replay"] == "gap"
        assert [(c["call"], c["state"]) for c in resumed["calls"]] == [(handle, "LINECALLSTATE_CONNECTED")]
        assert [c["call"] for c in crm.result("lineGetCalls", line="line_1")["calls"]] == [handle]
        assert crm.result("lineDrop", call=handle) == {}
        idle = crm.wait_for("LINE_CALLSTATE", call=handle, state="LINECALLSTATE_IDLE")
        assert not idle["params"].get("synthetic")  # the PBX's own dialplan ended it: the drop was real
        assert crm.result("lineGetCalls", line="line_1") == {"calls": []}

        # A second call ends while the server is down: the next start ends it at the resync.
        crm.notes.clear()
        pbx.stdin.write("inbound 1.5\n")
        pbx.stdin.flush()
        second = crm.wait_for("LINE_NEWCALL", line="line_1")["params"]["call"]
        assert second > handle + 1  # never a handle of the old run
        crm.wait_for("LINE_CALLSTATE", call=second, state="LINECALLSTATE_CONNECTED")
        wait_until_stored(state_file, second)
        server.send_signal(signal.SIGKILL)
        crm.close()
        finish(server)
        wait_until_pbx_idle(pbx)  # the call hangs up on the PBX meanwhile

        server, port = spawn("server", str(config), tag="PORT")
        servers.append(server)
        crm = Client(port)
        assert crm.result("lineOpen", line="line_1")["calls"] == []
        info = crm.result("lineGetCallInfo", call=second)  # lingering: it was restored, then ended
        assert info["state"] == "LINECALLSTATE_IDLE"
        crm.close()
        server.send_signal(signal.SIGTERM)  # a clean stop writes the store once more
        assert server.wait(10) == 0
        assert json.loads(state_file.read_text())["calls"] == []
        last_log = finish(server)
        assert "Traceback" not in first_log + last_log
        assert "1 live call(s) restored" in last_log and "ended by the server: resync" in last_log
    finally:
        for proc in servers:
            if proc.poll() is None:
                finish(proc)
        finish(pbx)
