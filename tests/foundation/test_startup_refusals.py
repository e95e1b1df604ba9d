"""Every refusal at start is one line and exit status 1, in a real ``twistd``.

Each case runs ``twistd asttapi`` in a subprocess, as an admin would: a bad
config, a plugin that cannot run, a client port already taken (in the
foreground and as a daemon, which must leave no process and no pidfile).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = (ROOT / "asttapi.example.toml").read_text()

pytestmark = pytest.mark.slow


def twistd(*argv: str, cwd: Path = ROOT, path: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), path) if p))
    return subprocess.run(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", *argv],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
    )


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.parametrize("config, expected", [
    # Copied from the example for a real PBX, plugins left as they are.
    (EXAMPLE.replace('# host = "pbx.example.org"', 'host = "127.0.0.1"'),
     "asttapi: plugin 'crm_sql': no data to read: set database (an SQLite file) or driver and connect in "
     "[plugins.crm_sql], or demo = true for the bundled invented demo contacts"),
    ('[server]\nlisten = "tcp:5039:interface=0.0.0.0"\n',
     "asttapi: server.listen: 'tcp:5039:interface=0.0.0.0' accepts connections from other machines, "
     "but no [users.NAME] are configured"),
    ('[plugins]\nenabled = ["no_such_plugin"]\n', "asttapi: plugin 'no_such_plugin' not found: "),
    ('[plugins]\nenabled = ["crm_sql"]\n[plugins.crm_sql]\ndatabase = "missing.sqlite"\n',
     "asttapi: plugin 'crm_sql': setting 'database': SQLite file "),
    ("[ami]\nport = 'abc'\n", "key 'ami.port': expected an integer 1-65535, got 'abc'"),
    ('[lines.a]\ncontext = "x"\n', "lines.a.channel"),
])
def test_bad_config_refuses_in_one_line(tmp_path, config, expected):
    path = tmp_path / "asttapi.toml"
    path.write_text(config)
    proc = twistd("-n", "--pidfile", str(tmp_path / "twistd.pid"), "asttapi", "--config", str(path))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    line = one_line(proc.stderr)
    assert line.startswith("asttapi: ") and expected in line, line
    assert proc.stdout == ""
    assert not (tmp_path / "twistd.pid").exists()


@pytest.fixture
def taken_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def test_port_in_use_stops_the_foreground_server(tmp_path, taken_port):
    pidfile = tmp_path / "twistd.pid"
    proc = twistd("-n", "--pidfile", str(pidfile), "asttapi",
                  "--listen", f"tcp:{taken_port}:interface=127.0.0.1")
    assert proc.returncode == 1
    output = proc.stdout + proc.stderr  # twistd -n logs stderr to stdout
    assert "Traceback" not in output
    expected = f"asttapi: cannot listen on tcp:{taken_port}:interface=127.0.0.1: Address already in use"
    assert one_line("\n".join(line for line in output.splitlines() if "cannot listen" in line)).endswith(expected)
    assert "Clients may connect" not in output
    assert not pidfile.exists()
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert expected.replace(f"tcp:{taken_port}:interface=127.0.0.1", "tcp:5039:interface=0.0.0.0") in readme


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_port_in_use_stops_the_daemon(tmp_path, taken_port):
    pidfile, logfile = tmp_path / "asttapi.pid", tmp_path / "asttapi.log"
    proc = twistd("--pidfile", str(pidfile), "--logfile", str(logfile), "asttapi",
                  "--listen", f"tcp:{taken_port}:interface=127.0.0.1", cwd=tmp_path)
    assert proc.returncode == 1
    # twistd's own two-line report from the daemon's parent; our line in it:
    assert f"StartupError: asttapi: cannot listen on tcp:{taken_port}:interface=127.0.0.1" in proc.stderr
    # ... as the README quotes it.
    report = "An error has occurred: b'StartupError: asttapi: cannot listen on "
    assert report in proc.stderr
    assert report in " ".join((ROOT / "README.md").read_text().split())
    for _ in range(50):  # the daemon child is exiting (its report reached the parent first): give it up to 5 s
        if not _processes_mentioning(str(pidfile)) and not pidfile.exists():
            break
        time.sleep(0.1)
    assert _processes_mentioning(str(pidfile)) == []
    assert not pidfile.exists()
    log = logfile.read_text()
    assert f"asttapi: cannot listen on tcp:{taken_port}:interface=127.0.0.1: Address already in use" in log
    assert "Traceback" not in log


def test_a_plugin_that_fails_to_start_stops_start_up_in_one_line(tmp_path):
    # An installed plugin (an entry point, as pip would install it) whose
    # asttapi_startup raises: start-up stops, the reason in one line.
    (tmp_path / "boom_plugin.py").write_text(
        "from asttapi_server.hookspecs import hookimpl\n\n"
        "@hookimpl\ndef asttapi_startup(config, app):\n    raise ConnectionError('cannot reach the CRM')\n")
    dist = tmp_path / "boom_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: boom-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[asttapi_server.plugins]\nboom = boom_plugin\n")
    config = tmp_path / "asttapi.toml"
    config.write_text('[plugins]\nenabled = ["boom"]\n')
    proc = twistd("-n", "--pidfile", str(tmp_path / "twistd.pid"), "asttapi", "--config", str(config),
                  "--listen", "tcp:0:interface=127.0.0.1", path=str(tmp_path))
    assert proc.returncode == 1
    output = proc.stdout + proc.stderr
    (line,) = [line for line in output.splitlines() if "asttapi: " in line]
    assert line.endswith("asttapi: plugin 'boom' failed to start: cannot reach the CRM"), output
    assert "Clients may connect" not in output
    assert not (tmp_path / "twistd.pid").exists()
