"""Item 7 of issue 11: at the open-files limit the server neither spins nor forgets its clients."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_out_of_file_descriptors_refuses_newcomers_without_spinning_and_keeps_clients():
    limit = 48

    def lower_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.clients.serve", "tcp:0:interface=127.0.0.1"],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE, text=True,
        preexec_fn=lower_limit,
    )
    socks: list[socket.socket] = []
    try:
        port = int(proc.stdout.readline().split()[1])
        good = socket.create_connection(("127.0.0.1", port), timeout=10)
        reader = good.makefile("rb")
        assert json.loads(reader.readline())["method"] == "hello"
        for _ in range(limit + 40):  # far more than the process may open
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        deadline = time.monotonic() + 10
        while _open_files(proc.pid) < limit - 1 and time.monotonic() < deadline:
            time.sleep(0.02)  # until the server meets EMFILE
        assert _open_files(proc.pid) >= limit - 1, "the server never ran out of descriptors"
        cpu_before, wall_before = _cpu_seconds(proc.pid), time.monotonic()
        time.sleep(1.0)
        cpu = _cpu_seconds(proc.pid) - cpu_before
        wall = time.monotonic() - wall_before
        assert cpu < 0.5 * wall, f"server used {cpu:.2f} s of CPU in {wall:.2f} s: it spins"
        for i in range(5):  # the existing client is still served
            good.sendall(json.dumps({"jsonrpc": "2.0", "id": i, "method": "ping"}).encode() + b"\n")
            assert json.loads(reader.readline())["id"] == i
    finally:
        for s in socks:
            s.close()
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("soft, hard, expected, warns", [(256, 4096, 1064, False), (256, 512, 512, True)])
def test_start_up_raises_the_open_files_limit_for_max_clients(soft, hard, expected, warns):
    code = (
        "import resource\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))\n"
        "from twisted.logger import globalLogPublisher, formatEvent\n"
        "seen = []\n"
        "globalLogPublisher.addObserver(seen.append)\n"
        "from asttapi_server.service import ensure_file_descriptors\n"
        "print(ensure_file_descriptors(1000), resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
        "print([formatEvent(e) for e in seen if 'max_clients' in formatEvent(e)])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT))).stdout.splitlines()
    assert out[0] == f"{expected} {expected}"
    assert ("needs about 1064 open files, but the limit is 512" in out[1]) is warns
