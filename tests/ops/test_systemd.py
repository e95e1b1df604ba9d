"""The systemd unit, sd_notify over a real datagram socket, SIGHUP to a real twistd, JSON-lines logs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from twisted.logger import LogLevel
from twisted.python.failure import Failure

from asttapi_server.jsonlog import format_event
from asttapi_server.sdnotify import Notifier

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "contrib" / "asttapi.service"


def test_the_unit_has_what_a_network_daemon_needs():
    text = UNIT.read_text()
    for setting in ("Type=notify", "Restart=on-failure", "DynamicUser=yes", "StateDirectory=asttapi",
                    "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes",
                    "ExecReload=/bin/kill -HUP $MAINPID",
                    "ExecStart=/opt/asttapi/.venv/bin/twistd -n --pidfile= asttapi --config /etc/asttapi/asttapi.toml"):
        assert setting in text.splitlines(), setting


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    # The one thing this machine lacks is /opt/asttapi: point ExecStart at this venv's twistd.
    twistd = Path(sys.executable).with_name("twistd")
    unit = tmp_path / "asttapi.service"
    unit.write_text(UNIT.read_text().replace("/opt/asttapi/.venv/bin/twistd", str(twistd)))
    run = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (run.stdout + run.stderr).splitlines()
                if line.strip() and "asttapi.service" in line]
    assert run.returncode == 0 and not problems, run.stdout + run.stderr


def _listen(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(10)
    return sock


def test_sd_notify_on_a_path_and_in_the_abstract_namespace(tmp_path):
    path = str(tmp_path / "notify")
    with _listen(path) as sock:
        assert Notifier({"NOTIFY_SOCKET": path}).ready("serving")
        assert sock.recv(4096) == b"READY=1\nSTATUS=serving"
    name = f"asttapi-test-{os.getpid()}"
    with _listen("\0" + name) as sock:
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert n.reloading()
        got = sock.recv(4096).decode().split("\n")
        assert got[0] == "RELOADING=1" and got[1].startswith("MONOTONIC_USEC=")
        assert n.stopping()
        assert sock.recv(4096) == b"STOPPING=1\nSTATUS=stopping"
    assert not Notifier({}).ready()  # not under systemd: nothing, quietly
    assert not Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")}).status("x")  # logged once, never raised


def test_json_lines_log_format():
    try:
        1 / 0
    except ZeroDivisionError:
        failure = Failure()
    line = format_event({"log_time": 0.5, "log_level": LogLevel.warn, "log_namespace": "asttapi_server.x",
                         "log_format": "peer {peer} said {what!r}", "peer": "1.2.3.4", "what": "a\nb",
                         "log_failure": failure})
    assert line.endswith("\n") and line.count("\n") == 1
    record = json.loads(line)
    assert record["time"] == "1970-01-01T00:00:00.500Z"
    assert record["level"] == "warn"
    assert record["namespace"] == "asttapi_server.x"
    assert record["message"] == "peer 1.2.3.4 said 'a\\nb'"
    assert "ZeroDivisionError" in record["error"]
    assert set(record) == {"time", "level", "namespace", "message", "error"}


def test_a_real_twistd_tells_systemd_and_reloads_on_sighup(tmp_path):
    """Foreground twistd as the unit runs it: READY=1, SIGHUP -> RELOADING=1, READY=1; SIGTERM -> STOPPING=1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "asttapi.toml"
    config.write_text(f'demo = true\n[server]\nlisten = ["tcp:{port}:interface=127.0.0.1"]\n[web]\nlisten = []\n')
    notify = str(tmp_path / "notify")
    sock = _listen(notify)
    env = dict(os.environ, NOTIFY_SOCKET=notify, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
         "--logger=asttapi_server.jsonlog.logger", "asttapi", "--config", str(config)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        messages = []

        def expect(prefix: str) -> str:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                got = sock.recv(4096).decode()
                messages.append(got)
                if got.startswith(prefix):
                    return got
            raise AssertionError(messages)

        assert "STATUS=serving clients" in expect("READY=1")
        config.write_text(config.read_text() + '[users.dave]\ntoken = "dave-token-0123456789"\nlines = ["*"]\n')
        proc.send_signal(signal.SIGHUP)
        expect("RELOADING=1")
        assert "configuration reloaded" in expect("READY=1")
        proc.send_signal(signal.SIGTERM)
        expect("STOPPING=1")
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert records and len(records) == len(out.splitlines()), out  # every line is one JSON object
    assert any("Configuration reloaded from" in r["message"] and "users added: dave" in r["message"]
               for r in records), out
