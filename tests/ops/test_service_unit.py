"""README's "Install as a service" run as written, then the server run the way contrib/asttapi.service runs it.

What cannot be systemd itself here (a test may not install and start units),
and what stands in for it:

* The README's two ``<!-- service -->`` blocks run in bash with ``/etc`` under
  a temporary folder; their ``python3 -m venv``/``pip install`` line is left
  out (tests/foundation/test_package.py installs the wheel) and so are the
  ``systemctl`` lines: the test applies the unit's settings itself, read from
  the installed unit and its drop-in:
* ``DynamicUser=yes``: uid and gid 65534 (nobody), no supplementary groups,
  ``HOME=/``, ``UMask=`` as the unit says.
* ``LoadCredential=ID:PATH``: each file copied by root into a folder named by
  ``$CREDENTIALS_DIRECTORY``, the folder 0500 and the files 0400, owned by
  that uid, as systemd makes them.
* ``StateDirectory=``: a folder owned by that uid with ``StateDirectoryMode=``,
  named by ``$STATE_DIRECTORY``.
* ``ProtectSystem=strict``: not a read-only mount namespace; the uid may write
  nowhere the unit could not (every file here is root's), and the test checks
  that the only files the server made are in the state folder.
* The interpreter is Debian's ``/usr/bin/python3`` with this test
  environment's site-packages (the test venv's own interpreter may live under
  ``/root``, which that uid may not enter, as a real ``/opt/asttapi/.venv``'s
  may be entered).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

import pytest

from asttapi_server.rpc_client import Client
from tests.security.tlsutil import make_cert

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="running the server as another user needs root"),
    pytest.mark.skipif(not os.access(SYSTEM_PYTHON, os.X_OK) or shutil.which("openssl") is None,
                       reason="needs /usr/bin/python3 and openssl"),
]


def _block(name: str) -> str:
    match = re.search(rf"<!-- service: {name} -->\n```sh\n(.*?)```\n<!-- /service -->", README, re.S)
    assert match, f"README has no <!-- service: {name} --> block"
    return match.group(1)


def _run_block(name: str, root: Path, cwd: Path) -> list[str]:
    """The block's commands with /etc under ``root``; returns the lines left to systemd (not run)."""
    script, skipped = [], []
    for line in _block(name).replace("\\\n", " ").splitlines():
        if line.startswith("python3 -m venv") or line.startswith("systemctl"):
            skipped.append(line)
            continue
        line = line.replace("/opt/asttapi/.venv/bin/", str(Path(sys.executable).parent) + "/")
        script.append(line.replace(" /etc/", f" {root}/etc/").replace("'LoadCredential=", "'LoadCredential="))
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(script)], cwd=cwd, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    return skipped


def _unit_settings(root: Path) -> dict[str, list[str]]:
    """``Key=value`` lines of the installed unit and its drop-ins, in systemd's order."""
    settings: dict[str, list[str]] = {}
    unit = root / "etc/systemd/system/asttapi.service"
    files = [unit, *sorted((root / "etc/systemd/system/asttapi.service.d").glob("*.conf"))]
    for path in files:
        for line in path.read_text().splitlines():
            if "=" in line and not line.startswith(("#", ";")):
                key, _, value = line.partition("=")
                settings.setdefault(key.strip(), []).append(value.strip())
    return settings


_DEMO_PBX = """
from twisted.internet import reactor
from asttapi_server.demo.server import DemoPBX
pbx = DemoPBX(reactor, port=0, username="asttapi", secret="asttapi-secret", autoplay=False)
pbx.startService()
print(pbx.listening_port(), flush=True)
reactor.run()
"""

_CLIENTS = re.compile(r"Clients may connect on ssl:\S+ \(127\.0\.0\.1:(\d+)\)")


def _readable_by_nobody() -> str | None:
    """Why uid 65534 cannot run this checkout with this environment's packages, or None."""
    site = sysconfig.get_paths()["purelib"]
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-S", "-c", f"import site; site.addsitedir({site!r}); import twisted, asttapi_server, "
         "asttapi_plugins, twisted.plugins.asttapi_plugin"],
        cwd="/", env={"PATH": "/usr/bin:/bin", "HOME": "/"}, user=NOBODY, group=NOBODY, extra_groups=[],
        capture_output=True, text=True, timeout=60)
    if probe.returncode == 0:
        return None
    last = (probe.stderr.strip().splitlines() or ["?"])[-1]
    return f"this checkout or its venv is not readable by uid {NOBODY} ({last})"


def test_the_readme_service_steps_and_the_unit_as_an_unprivileged_user():
    why = _readable_by_nobody()
    if why:
        pytest.skip(why)
    # Not pytest's tmp_path: its /tmp/pytest-of-root is 0700, which uid 65534 may not enter.
    base = Path(tempfile.mkdtemp(prefix="asttapi-unit-"))
    base.chmod(0o755)
    pbx = server = None
    try:
        root = base / "root"
        (root / "etc/systemd/system").mkdir(parents=True)
        skipped = _run_block("install", root, cwd=ROOT)
        assert any("pip install ." in line for line in skipped) and any("enable --now" in line for line in skipped)
        tls = base / "host"
        tls.mkdir()
        key, cert = make_cert(tls)
        key.rename(tls / "host.key")
        cert.rename(tls / "host.crt")
        _run_block("secrets", root, cwd=tls)
        etc = root / "etc/asttapi"
        assert stat.S_IMODE((etc / "asttapi.toml").stat().st_mode) == 0o644
        for secret in ("ami.secret", "crm.token", "tls.key"):
            assert stat.S_IMODE((etc / secret).stat().st_mode) == 0o600, secret

        # The admin's edits, as the README and the file's comments say: the PBX, the user, TLS.
        pbx = subprocess.Popen([sys.executable, "-c", _DEMO_PBX], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                               stdout=subprocess.PIPE, text=True)
        ami_port = int(pbx.stdout.readline())
        text = (etc / "asttapi.toml").read_text()
        text = text.replace('host = "pbx.example.org"', f'host = "127.0.0.1"\nport = {ami_port}')
        text = text.replace('listen = ["tcp:5039:interface=127.0.0.1"]\n', "")
        text = text.replace('# listen = ["ssl:5040:interface=0.0.0.0:', 'listen = ["ssl:0:interface=127.0.0.1:')
        text = re.sub(r"^# (\[users\.crm\]|token_file|lines)", r"\1", text, flags=re.M)
        (etc / "asttapi.toml").write_text(text)

        unit = _unit_settings(root)
        assert unit["DynamicUser"] == ["yes"] and unit["Type"] == ["notify"]
        run = base / "run"
        credentials = run / "credentials" / "asttapi.service"
        credentials.mkdir(parents=True)
        for spec in unit["LoadCredential"]:
            name, _, source = spec.partition(":")
            copy = credentials / name
            shutil.copyfile(source.replace("/etc/", f"{root}/etc/", 1), copy)
            copy.chmod(0o400)
            os.chown(copy, NOBODY, NOBODY)
        assert {p.name for p in credentials.iterdir()} == {"ami.secret", "crm.token", "tls.key", "tls.crt"}
        credentials.chmod(0o500)
        os.chown(credentials, NOBODY, NOBODY)
        (state := base / "var/lib" / unit["StateDirectory"][0]).mkdir(parents=True)
        state.chmod(int(unit["StateDirectoryMode"][0], 8))
        os.chown(state, NOBODY, NOBODY)
        notify_path = run / "notify"
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(notify_path))
        notify.settimeout(20)
        notify_path.chmod(0o777)
        (exec_start,) = unit["ExecStart"]
        argv = shlex.split(exec_start.replace("/etc/", f"{root}/etc/"))
        assert argv[0] == "/opt/asttapi/.venv/bin/twistd"
        site = sysconfig.get_paths()["purelib"]
        launcher = (f"import site; site.addsitedir({site!r}); "
                    "from twisted.scripts.twistd import run; run()")
        env = {"PATH": "/usr/bin:/bin", "HOME": "/", "LANG": "C.UTF-8", "NOTIFY_SOCKET": str(notify_path),
               "CREDENTIALS_DIRECTORY": str(credentials), "STATE_DIRECTORY": str(state)}
        before = {p for p in base.rglob("*")}
        server = subprocess.Popen(
            [SYSTEM_PYTHON, "-S", "-c", launcher, *argv[1:]], cwd="/", env=env, user=NOBODY, group=NOBODY,
            extra_groups=[], umask=int(unit["UMask"][0], 8), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        log: list[str] = []
        threading.Thread(target=lambda: log.extend(server.stdout), daemon=True).start()

        def expect(prefix: str) -> str:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    got = notify.recv(4096).decode()
                except TimeoutError:
                    break
                if got.startswith(prefix):
                    return got
            raise AssertionError(f"no {prefix}; the log:\n" + "".join(log))

        ready = expect("READY=1")
        if "PBX link up" not in ready:
            ready = expect("STATUS=serving clients; PBX link up")
        assert f"PBX link up (127.0.0.1:{ami_port})" in ready
        deadline = time.monotonic() + 20
        while not (ports := [int(m.group(1)) for line in list(log) if (m := _CLIENTS.search(line))]):
            assert time.monotonic() < deadline, "".join(log)  # the log line is read by another thread
            time.sleep(0.02)
        port = ports[0]
        token = (etc / "crm.token").read_text().strip()
        with Client("127.0.0.1", port, tls=True, cafile=str(tls / "host.crt"), timeout=20) as client:
            client.login("crm", token)  # the token from the credential, over the key from the credential
            client.line_open("line_1")
            handle = client.make_call("line_1", "95551234")
            deadline = time.monotonic() + 20
            while not (state / "asttapi-calls.json").exists():  # the call store, in the state directory
                assert time.monotonic() < deadline, "".join(log)
                client.next_event(0.2)
        server.send_signal(signal.SIGHUP)  # reload: the configuration is read again by that user
        expect("RELOADING=1")
        assert "PBX link up" in expect("READY=1")
        server.send_signal(signal.SIGTERM)
        expect("STOPPING=1")
        # twistd ends by the signal it was sent, which systemd counts as a clean stop.
        assert server.wait(20) in (0, -signal.SIGTERM), "".join(log)
        stored = state / "asttapi-calls.json"
        assert stored.stat().st_uid == NOBODY and stat.S_IMODE(stored.stat().st_mode) == 0o600
        assert handle in [c["handle"] for c in json.loads(stored.read_text())["calls"]]
        made = {p for p in base.rglob("*")} - before
        assert made and all(state in p.parents for p in made), sorted(map(str, made))
        output = "".join(log)
        for trouble in ("Permission denied", "Unable to write to plugin cache", "Traceback", "cannot read"):
            assert trouble not in output, output
    finally:
        for proc in (server, pbx):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(base, ignore_errors=True)
