"""Cluster nodes for the tests: in this process (:class:`Watched`, on the test's reactor, each
with its own Hub) or in a child process (:class:`Child`, to be killed or stopped)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet import defer, protocol

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

    async def start(self) -> "Watched":
        self.node.startService()
        await self.node.started(timeout=10)
        return self

    async def stop(self) -> None:
        await self.node.stopService()


class _Lines(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.buffer = b""
        self.err = b""
        self.ended = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.buffer += data
        *whole, self.buffer = self.buffer.split(b"\n")
        self.lines += [line.decode() for line in whole]

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)


class Child:
    """``python -m tests.cluster.child_node URL NODE PBX ARGS`` on the test's reactor."""

    def __init__(self, reactor: Any, url: str, node: str, pbx: str, *args: str) -> None:
        self.reactor = reactor
        self.out = _Lines()
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self.process = reactor.spawnProcess(self.out, sys.executable,
                                            [sys.executable, "-m", "tests.cluster.child_node", url, node, pbx, *args],
                                            env=env, path=str(ROOT))

    async def line(self, prefix: str, timeout: float = 20.0, after: int = 0) -> str:
        found = await until(self.reactor, lambda: next((l for l in self.out.lines[after:] if l.startswith(prefix)),
                                                       None), timeout, f"child line {prefix!r} (stderr: "
                                                       f"{self.out.err[-500:]!r}; last lines {self.out.lines[-5:]})")
        return found

    def signal(self, sig: int) -> None:
        os.kill(self.process.pid, sig)

    async def kill(self) -> None:
        if self.process.pid is not None:
            try:
                self.signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
        await self.out.ended
