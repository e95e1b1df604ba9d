"""Cluster nodes for the tests: in this process (:class:`Watched`, on the test's reactor, each
with its own Hub) or in a child process (:class:`Child`, to be killed or stopped)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from asttapi_server.clients.hub import Hub
from asttapi_server.cluster.address import parse_redis_url
from asttapi_server.cluster.client import RedisClient
from asttapi_server.cluster.node import ClusterNode

from .reactor import until

ROOT = Path(__file__).resolve().parents[2]


def connector(reactor: Any, url: str, **kw: Any):
    address = parse_redis_url(url)
    return lambda name: RedisClient(reactor, address, name=name, **kw)


class Watched:
    """A ClusterNode in this process feeding a Hub the way a server node will: what it handed on
    is recorded (``seen``: (seq, pbx, event); ``gaps``; ``restarts``: (epoch, seq))."""

    def __init__(self, reactor: Any, url: str, name: str, pbxs: list[str], *, want: list[str] = (),
                 ttl: float = 1.0, renew: float = 0.25, handler: Any = None, **kw: Any) -> None:
        self.hub = Hub(ring_size=100_000, ring_bytes=64 << 20)
        self.seen: list[tuple[int, str, Any]] = []
        self.gaps: list[tuple[str, int]] = []
        self.restarts: list[tuple[str, int]] = []
        self.seen_at_restart = 0
        self.active: dict[str, float] = {}
        self.inactive: list[tuple[str, str]] = []
        self.node = ClusterNode(reactor, connector(reactor, url), node=name, pbxs=pbxs, want=want, lease_ttl=ttl,
                                lease_renew=renew, handler=handler, on_restart=self._restart,
                                on_event=self._event, on_gap=self._gap, block=0.2,
                                on_active=lambda pbx, t: self.active.__setitem__(pbx, time.monotonic()),
                                on_inactive=lambda pbx, why: self.inactive.append((pbx, why)), **kw)

    def _restart(self, epoch: str, seq: int) -> None:
        self.restarts.append((epoch, seq))
        self.seen_at_restart = len(self.seen)
        self.hub.restart(epoch, seq)

    def _event(self, pbx: str, seq: int, event: Any) -> None:
        self.seen.append((seq, pbx, event))
        assert self.hub.publish(event, seq) == seq

    def _gap(self, pbx: str, seq: int) -> None:
        self.gaps.append((pbx, seq))
        self.hub.lose(seq - 1)

    async def publish_steadily(self, pbx: str, calls: range) -> list[int]:
        """Publish one event per call number; while the lease settles (Redis just restarted or
        failed over), wait until this node holds the PBX again and go on. The seqs given."""
        from asttapi_server.core.events import TapiEvent
        from asttapi_server.errors import StaleLease

        seqs = []
        for call in calls:
            while True:
                try:
                    seqs.append(await self.node.publish(pbx, TapiEvent("LINE_CALLSTATE", "line_1", call,
                                                                       "LINECALLSTATE_OFFERING")))
                    break
                except StaleLease:
                    await until(self.node.reactor, lambda: self.node.holds(pbx), 30, f"{pbx} held again")
        return seqs

    async def start(self) -> "Watched":
        self.node.startService()
        await self.node.started(timeout=10)
        return self

    async def stop(self) -> None:
        await self.node.stopService()


class Child:
    """``python -m tests.cluster.child_node URL NODE PBX ARGS``: its output lines are read by a thread
    (subprocess, not the reactor's spawnProcess: that needs the reactor's SIGCHLD handler, which is
    process-wide)."""

    def __init__(self, reactor: Any, url: str, node: str, pbx: str, *args: str) -> None:
        self.reactor = reactor
        self.lines: list[str] = []
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen([sys.executable, "-m", "tests.cluster.child_node", url, node, pbx, *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(ROOT))
        self._stderr = b""
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.decode().rstrip("\n"))

    def _read_err(self) -> None:
        self._stderr = self.process.stderr.read()

    async def line(self, prefix: str, timeout: float = 20.0, after: int = 0) -> str:
        return await until(self.reactor, lambda: next((l for l in self.lines[after:] if l.startswith(prefix)), None),
                           timeout, f"child line {prefix!r} (last lines {self.lines[-5:]}, stderr {self._stderr[-500:]!r})")

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    async def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        await until(self.reactor, lambda: self.process.poll() is not None, 10, "the child to exit")
