"""The package an admin installs: built as they would build it, run with no source tree.

``python -m build`` makes the sdist and, from it, the wheel; ``twine check``
reads both. The wheel then goes into a fresh virtual environment and runs
the demo from a directory far from this checkout: the ``asttapi`` command,
the twistd dropin, the page and the bundled plugins' data must all come from
the wheel.

What is not done as an admin would: the test must not download, so the build
runs without build isolation (setuptools and wheel come from the test extra)
and the fresh venv gets its dependencies (Twisted, autobahn, ...) from this
test environment's site-packages through a ``.pth`` path line, not from PyPI.
A path line only extends ``sys.path``: the ``.pth`` files *inside* that
folder (the editable install's import hook, the checkout's path) do not run,
so nothing of this checkout is importable there; the test checks that.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from asttapi_server import __version__
from asttapi_server.rpc_client import Client

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

_SKIP = shutil.ignore_patterns(".venv", ".git", "__pycache__", "build", "dist", "*.egg-info", ".hypothesis",
                               ".pytest_cache", "_trial_temp*", "twistd.*", "asttapi-calls.json")


def _run(argv: list, **kwargs) -> subprocess.CompletedProcess:
    run = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=300, **kwargs)
    assert run.returncode == 0, f"{argv}:\n{run.stdout}\n{run.stderr}"
    return run


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """The sdist and the wheel built from it, by ``python -m build`` on a copy of the tree."""
    pytest.importorskip("build", reason="the test extra's `build` is not installed")
    src = tmp_path_factory.mktemp("src") / "asttapi-server"
    shutil.copytree(ROOT, src, ignore=_SKIP)
    out = src.parent / "dist"
    run = _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, src])
    # setuptools' 45-line "Package would be ignored" warning (issue 23) must stay gone.
    assert "would be ignored" not in run.stdout + run.stderr
    assert "absent from the `packages` configuration" not in run.stdout + run.stderr
    return out


def test_build_makes_an_sdist_and_a_wheel_that_twine_accepts(dist):
    sdist, = dist.glob("*.tar.gz")
    wheel, = dist.glob("*.whl")
    assert sdist.name == f"asttapi_server-{__version__}.tar.gz"
    assert wheel.name == f"asttapi_server-{__version__}-py3-none-any.whl"
    run = _run([sys.executable, "-m", "twine", "check", "--strict", sdist, wheel])
    assert run.stdout.count("PASSED") == 2, run.stdout


def test_the_wheel_holds_the_command_the_dropin_the_page_and_the_plugin_data(dist):
    wheel, = dist.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in ("twisted/plugins/asttapi_plugin.py",
                 "asttapi_plugins/crm_sql.py", "asttapi_plugins/demo_crm.sql",
                 "asttapi_plugins/outlook_contacts.py", "asttapi_plugins/demo_contacts.csv",
                 "asttapi_plugins/demo_contacts.vcf", "asttapi_server/py.typed"):
        assert path in names, path
    page = {n.rsplit("/", 1)[1] for n in names if n.startswith("asttapi_server/web/static/")}
    shipped = {p.name for p in (ROOT / "asttapi_server" / "web" / "static").iterdir()}
    assert page == shipped
    # Twisted's plugin folder must stay a namespace: an __init__.py would shadow Twisted's own.
    assert not {n for n in names if n.startswith("twisted/") and n.endswith("__init__.py")}
    entry_points = zipfile.ZipFile(wheel).read(f"asttapi_server-{__version__}.dist-info/entry_points.txt").decode()
    assert "asttapi = asttapi_server.cli:main" in entry_points
    assert "crm_sql = asttapi_plugins.crm_sql" in entry_points
    meta = zipfile.ZipFile(wheel).read(f"asttapi_server-{__version__}.dist-info/METADATA").decode()
    assert f"Version: {__version__}" in meta


def test_the_sdist_brings_what_the_install_steps_copy(dist):
    import tarfile

    sdist, = dist.glob("*.tar.gz")
    top = f"asttapi_server-{__version__}/"
    names = {n.removeprefix(top) for n in tarfile.open(sdist).getnames()}
    for path in ("asttapi.example.toml", "contrib/asttapi.service", "CHANGELOG.md", "LICENSE", "README.md",
                 "docs/operations.md", "docs/security.md", "pyproject.toml"):
        assert path in names, path


def _fresh_venv(where: Path, wheel: Path) -> Path:
    """A venv holding only the wheel; its dependencies from this environment (see the module doc)."""
    _run([sys.executable, "-m", "venv", "--without-pip", where])
    python = where / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-index",
          "--no-cache-dir", wheel])
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (purelib / "zz_test_dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    return python


_CLIENTS = re.compile(r"Clients may connect on tcp:0:interface=127\.0\.0\.1 \(127\.0\.0\.1:(\d+)\)")
_PAGE = re.compile(r"Web page: open (http://127\.0\.0\.1:\d+/)\S* in a browser")


def test_the_installed_wheel_runs_the_demo_with_no_source_tree(dist, tmp_path):
    wheel, = dist.glob("*.whl")
    python = _fresh_venv(tmp_path / "venv", wheel)
    here = tmp_path / "elsewhere"
    here.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}

    where = _run([python, "-c", "import asttapi_server, asttapi_plugins, twisted.plugins.asttapi_plugin as d; "
                  "print(asttapi_server.__file__, asttapi_plugins.__file__, d.__file__, sep='\\n')"],
                 cwd=here, env=env).stdout.split()
    assert all(path.startswith(str(tmp_path / "venv")) for path in where), where
    assert not any(path.startswith(str(ROOT)) for path in where), where
    assert "watch" in _run([tmp_path / "venv" / "bin" / "asttapi", "--help"], cwd=here, env=env).stdout

    token = "package-test-token-0123456789"
    (here / "asttapi.toml").write_text(
        'demo = true\n[server]\nlisten = "tcp:0:interface=127.0.0.1"\n[web]\nlisten = "tcp:0:interface=127.0.0.1"\n'
        f'[users.crm]\ntoken = "{token}"\n')
    proc = subprocess.Popen(
        [python, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=", "asttapi",
         "--config", "asttapi.toml"],
        cwd=here, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    threading.Thread(target=lambda: log.extend(proc.stdout), daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        while not (ports := [m.group(1) for line in list(log) if (m := _CLIENTS.search(line))]) \
                or not any(_PAGE.search(line) for line in list(log)):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(log)
            time.sleep(0.05)
        page = next(m.group(1) for line in list(log) if (m := _PAGE.search(line)))
        with urllib.request.urlopen(page, timeout=10) as answer:
            assert b"<html" in answer.read().lower()
        with Client("127.0.0.1", int(ports[0]), timeout=30) as client:
            assert client.hello["version"] == __version__ and client.hello["login_required"]
            client.login("crm", token)
            client.line_open("line_1")
            # The demo's first caller, named by the bundled sample CRM read from the wheel's data.
            contact, deadline = None, time.monotonic() + 30
            while not contact and (event := client.next_event(max(0.0, deadline - time.monotonic()))):
                contact = (event["params"].get("callinfo") or {}).get("contact")
            assert contact and contact["name"] == "Ext Caller", "".join(log)
    finally:
        proc.terminate()
        proc.wait(20)
    assert not any("Traceback" in line for line in log), "".join(log)
