"""README's quick start, run as a newcomer runs it: the demo server, then the CLI.

Starts ``twistd -n asttapi`` (what ``make run`` runs) on a free port, then
runs each ``$ .venv/bin/asttapi ...`` line of README's ``<!-- quickstart -->``
blocks and checks it prints the lines shown there. Times, call handles and
sequence numbers may differ; everything else must match, so the README cannot
drift from the code. Also checks the server's log is as quiet as promised.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"<!-- quickstart: ([\w-]+) -->\n```console\n(.*?)```\n<!-- /quickstart -->", re.S)

pytestmark = pytest.mark.slow


def sessions(text: str) -> dict[str, list[tuple[str, list[str]]]]:
    """Each block's ``(command, expected output lines)`` pairs."""
    out: dict[str, list[tuple[str, list[str]]]] = {}
    for name, body in BLOCK.findall(text):
        steps: list[tuple[str, list[str]]] = []
        for line in body.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                steps[-1][1].append(line)
        out[name] = steps
    return out


def normalise(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        line = re.sub(r"^\d\d:\d\d:\d\d(?=  )", "HH:MM:SS", line)
        line = re.sub(r"#\d+\b", "#N", line)
        out.append(re.sub(r"\[seq \d+\]", "[seq N]", line))
    return out


def factory_noise(log: list[str]) -> list[str]:
    """Twisted's per-connection factory lines (the client listener's one pair per run is fine)."""
    return [line for line in log if re.search(r"(Starting|Stopping) factory", line) and "ClientFactory" not in line]


def asttapi_command() -> list[str]:
    script = Path(sys.executable).with_name("asttapi")  # what the install put into .venv/bin
    return [str(script)] if script.exists() else [sys.executable, "-m", "asttapi_server.cli"]


_TWISTD = "from twisted.scripts.twistd import run; run()"
# The demo's flows played at a quarter of their delays: the transcript's times are
# normalised anyway, and most of the ~21 s this test spent was waiting for
# rings and talk. The first call (2 s) and the gap between flows (1.5 s) stay
# as shipped: README promises the first, and `calls` runs inside the second.
_TWISTD_FAST_FLOWS = (
    "import functools; from asttapi_server.demo import engine, scenarios; "
    "engine.Timing = functools.partial(scenarios.Timing, scale=0.25); " + _TWISTD
)


_CLIENTS_PORT = re.compile(r"Clients may connect on tcp:0:interface=127\.0\.0\.1 \(127\.0\.0\.1:(\d+)\)")


class DemoServer:
    """``twistd -n asttapi`` with its log collected."""

    def __init__(self, *args: str, cwd: Path = ROOT, fast_flows: bool = False) -> None:
        # Port 0 for clients and the page, the port read back from the log:
        # a port picked free beforehand may be taken by a parallel run first.
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _TWISTD_FAST_FLOWS if fast_flows else _TWISTD, "-n", "--pidfile", "",
             "asttapi", "--listen", "tcp:0:interface=127.0.0.1", "--web-listen", "tcp:0:interface=127.0.0.1",
             *args],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.log: list[str] = []
        threading.Thread(target=lambda: self.log.extend(self.proc.stdout), daemon=True).start()
        deadline = time.monotonic() + 30
        while True:
            found = [m for line in list(self.log) if (m := _CLIENTS_PORT.search(line))]
            if found:
                self.port = int(found[0].group(1))
                return
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("the demo server did not start:\n" + "".join(self.log))
            time.sleep(0.02)

    def run(self, command: str, expected: list[str]) -> subprocess.CompletedProcess:
        argv = shlex.split(command)
        assert argv[0] == ".venv/bin/asttapi", command
        argv = [*asttapi_command(), "--port", str(self.port), *argv[1:]]
        if argv[-2:] == ["watch", "line_1"] or "watch" in argv:
            argv += ["--count", str(sum(1 for line in expected if not line.startswith("--")))]
        return subprocess.run(argv, capture_output=True, text=True, timeout=90)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


def test_the_quick_start_prints_what_the_readme_shows():
    assert "`[seq N]` numbers will differ" in README  # the blocks' numbers are one run's, not a promise
    blocks = sessions(README)
    assert set(blocks) == {"watch", "calls-dial"}
    server = DemoServer(fast_flows=True)
    try:
        for name in ("watch", "calls-dial"):
            for command, expected in blocks[name]:
                proc = server.run(command, expected)
                assert proc.returncode == 0, (command, proc.stderr)
                assert normalise(proc.stdout.splitlines()) == normalise(expected), command
                # The numbers themselves vary (README says so); their order is the promise.
                seqs = [int(n) for n in re.findall(r"\[seq (\d+)\]", proc.stdout)]
                assert seqs == sorted(set(seqs)), (command, seqs)
    finally:
        server.stop()
    log = "".join(server.log)
    # One demo banner per start, no factory noise, nothing broken.
    assert len([line for line in server.log if "SIMULATED" in line]) == 1, log
    assert factory_noise(server.log) == [], log
    assert "Traceback" not in log and "#error" not in log and "#critical" not in log, log


def test_with_the_pbx_down_the_cli_says_so(tmp_path):
    dead = socket.socket()  # bound, never listening: connections are refused while it is held
    dead.bind(("127.0.0.1", 0))
    dead_ami = dead.getsockname()[1]
    # A real-PBX run keeps its call store in the working directory: not the checkout.
    server = DemoServer("--ami-host", "127.0.0.1", "--ami-port", str(dead_ami), cwd=tmp_path)
    try:
        calls = server.run(".venv/bin/asttapi calls line_1", [])
        dial = server.run(".venv/bin/asttapi dial line_1 95551234", [])
        deadline = time.monotonic() + 20
        while "".join(server.log).count("AMI: cannot connect to") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # a reconnect attempt or two, to see they are quiet
    finally:
        server.stop()
        dead.close()
    assert (calls.returncode, calls.stdout) == (3, "")
    assert calls.stderr == ("asttapi: the PBX is not connected (asttapi-server has no link to Asterisk), "
                            "so line_1's calls are unknown\n")
    assert (dial.returncode, dial.stdout) == (3, "")
    assert dial.stderr == ("asttapi: the PBX is not connected (asttapi-server has no link to Asterisk); "
                           "no call placed, try again when it is back\n")
    for text in (calls.stderr, dial.stderr):
        assert text.replace("\n", " ").replace("  ", " ").strip()[:60] in README.replace("\n", " ")
    log = "".join(server.log)
    assert log.count("AMI: cannot connect to 127.0.0.1") >= 2, log
    assert factory_noise(server.log) == [], log
