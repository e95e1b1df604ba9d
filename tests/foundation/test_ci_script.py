"""``.ci/run`` installs what the tests need and then runs exactly ``make test``.

Run with stand-ins on PATH (``make``, ``apt-get``, ``debconf-set-selections``
and the tools it looks for), so nothing is installed or tested: what the
script would run is what the stand-ins record. A merge once left a comment's
half as a command, and CI ran ``make test skips them without, ...``.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("chromium", "chromedriver", "promtool", "ldapmodify", "radicale", "redis-server",
         "desktop-file-validate", "xdg-mime")


def _stub(folder: Path, name: str, log: Path) -> None:
    path = folder / name
    path.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _run(tmp_path: Path, present: tuple[str, ...]) -> list[str]:
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    log = tmp_path / "log"
    log.touch()
    for name in ("make", "apt-get", "debconf-set-selections", *present):
        _stub(bin_, name, log)
    # Only the stand-ins and the shell's own basics: none of this machine's real tools.
    env = {"PATH": f"{bin_}:/usr/bin:/bin", "HOME": str(tmp_path)}
    hidden = [t for t in TOOLS if t not in present and any(
        Path(d, t).exists() for d in ("/usr/bin", "/bin"))]
    if hidden:
        pytest.skip(f"cannot hide this machine's {', '.join(hidden)} from the script")
    run = subprocess.run(["bash", str(ROOT / ".ci" / "run")], env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    return log.read_text().splitlines()


def test_with_everything_present_it_only_runs_make_test(tmp_path):
    if Path("/usr/sbin/slapd").exists() is False:
        pytest.skip("the script looks for /usr/sbin/slapd by path")
    assert _run(tmp_path, TOOLS) == ["make test"]


def test_the_script_parses_and_ends_with_make_test():
    text = (ROOT / ".ci" / "run").read_text()
    subprocess.run(["bash", "-n", str(ROOT / ".ci" / "run")], check=True)
    commands = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert commands[-1] == "make test"
    assert sum(1 for line in commands if line.strip().startswith("make")) == 1
    assert os.access(ROOT / ".ci" / "run", os.X_OK)
