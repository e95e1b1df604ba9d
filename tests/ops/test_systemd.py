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
                    "ExecReload=/bin/kill -HUP $MAINPID", "LoadCredential=ami.secret:/etc/asttapi/ami.secret",
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


class Twistd:
    """Foreground twistd as the unit runs it (``-n --pidfile=``), its sd_notify datagrams collected."""

    def __init__(self, tmp_path: Path, config: Path, *, logger: str = "asttapi_server.jsonlog.logger") -> None:
        self.notify = _listen(str(tmp_path / "notify"))
        env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify"), PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
             f"--logger={logger}", "asttapi", "--config", str(config)],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.messages: list[str] = []

    def expect(self, predicate, what: str) -> str:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            got = self.notify.recv(4096).decode()
            self.messages.append(got)
            if predicate(got):
                return got
        raise AssertionError(f"no {what} in {self.messages}")

    def stop(self) -> str:
        """SIGTERM; waits for the exit, then checks that STOPPING=1 was the last word."""
        self.proc.send_signal(signal.SIGTERM)
        self.expect(lambda m: m.startswith("STOPPING=1"), "STOPPING=1")
        out, _ = self.proc.communicate(timeout=20)
        self.notify.setblocking(False)
        late = []
        while True:
            try:
                late.append(self.notify.recv(4096).decode())
            except BlockingIOError:
                break
        assert late == [], f"sent after STOPPING=1: {late}"
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
        self.notify.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(message: str) -> str:
    return next(line[len("STATUS="):] for line in message.split("\n") if line.startswith("STATUS="))


def test_a_real_twistd_tells_systemd_and_reloads_on_sighup(tmp_path):
    """READY=1 with the link state; SIGHUP -> RELOADING=1, READY=1 with the link state still; SIGTERM ->
    STOPPING=1 and nothing after it."""
    port = _free_port()
    config = tmp_path / "asttapi.toml"
    config.write_text(f'demo = true\n[server]\nlisten = ["tcp:{port}:interface=127.0.0.1"]\n[web]\nlisten = []\n')
    server = Twistd(tmp_path, config)
    try:
        server.expect(lambda m: m.startswith("READY=1"), "READY=1")
        up = server.expect(lambda m: "PBX link up (" in m, "link up")
        assert _status(up).startswith("serving clients; PBX link up (127.0.0.1")
        config.write_text(config.read_text() + '[users.dave]\ntoken = "dave-token-0123456789"\nlines = ["*"]\n')
        server.proc.send_signal(signal.SIGHUP)
        server.expect(lambda m: m.startswith("RELOADING=1"), "RELOADING=1")
        ready = server.expect(lambda m: m.startswith("READY=1"), "READY=1 after the reload")
        assert _status(ready) == _status(up)  # the reload keeps the link state in `systemctl status`
        out = server.stop()
    finally:
        server.close()
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert records and len(records) == len(out.splitlines()), out  # every line is one JSON object
    assert any("Configuration reloaded from" in r["message"] and "users added: dave" in r["message"]
               for r in records), out


_DEMO_PBX = """
from twisted.internet import reactor
from asttapi_server.demo.server import DemoPBX
pbx = DemoPBX(reactor, port=0, username="asttapi", secret="the-right-secret", autoplay=False)
pbx.startService()
print(pbx.listening_port(), flush=True)
reactor.run()
"""


def test_a_wrong_ami_secret_shows_in_systemctl_status_and_readyz_through_a_reload(tmp_path):
    """With a wrong secret the status names the refused login (not "connecting" forever), /readyz says
    the same words, a reload keeps them and a refused reload adds that it was refused."""
    pbx = subprocess.Popen([sys.executable, "-c", _DEMO_PBX], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                           stdout=subprocess.PIPE, text=True)
    server = None
    try:
        ami_port = int(pbx.stdout.readline())
        metrics = _free_port()
        config = tmp_path / "asttapi.toml"
        config.write_text(f'[ami]\nhost = "127.0.0.1"\nport = {ami_port}\nsecret = "a-wrong-secret"\n'
                          '[server]\nlisten = "tcp:0:interface=127.0.0.1"\n'
                          f'[metrics]\nlisten = "tcp:{metrics}:interface=127.0.0.1"\n[calls]\nstate_file = ""\n')
        server = Twistd(tmp_path, config)
        refused = _status(server.expect(lambda m: "refused the AMI login" in m, "the refused login"))
        assert refused == (f"serving clients; PBX link DOWN: Asterisk at 127.0.0.1:{ami_port} refused the AMI "
                           "login as 'asttapi': 'Authentication failed' (check username, secret and permit/deny "
                           "in manager.conf)")
        assert "a-wrong-secret" not in "".join(server.messages)
        import urllib.error
        import urllib.request

        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(f"http://127.0.0.1:{metrics}/readyz", timeout=10)
        assert answer.value.code == 503
        assert answer.value.read().decode() == refused.removeprefix("serving clients; ") + "\n"

        server.proc.send_signal(signal.SIGHUP)  # the same file: nothing changes, the reason stays
        assert _status(server.expect(lambda m: m.startswith("READY=1"), "READY=1")) == refused
        config.write_text(config.read_text() + "[server.nonsense]\n")
        server.proc.send_signal(signal.SIGHUP)  # a file that does not load: refused, and said so
        assert _status(server.expect(lambda m: "reload was refused" in m, "the refusal")) == (
            refused + "; the last reload was refused, see the log")
        server.stop()
    finally:
        if server is not None:
            server.close()
        pbx.kill()
        pbx.communicate()
