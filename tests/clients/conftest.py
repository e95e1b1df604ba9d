from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


class Server:
    def __init__(self, endpoint: str, users: dict | None = None, send_buffer: int = 1 << 20) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), SEND_BUFFER=str(send_buffer))
        args = [sys.executable, "-m", "tests.clients.serve", endpoint]
        if users:
            args.append(json.dumps(users))
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"test server did not start: {line!r} {self.proc.stderr.read()}")
        self.port = int(line.split()[1])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()


@pytest.fixture
def start_server():
    servers: list[Server] = []

    def start(endpoint: str = "tcp:0:interface=127.0.0.1", users: dict | None = None, **kw) -> Server:
        s = Server(endpoint, users, **kw)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()
