"""Redis failing over under Sentinel: the client follows the new master (sentinel:// URL), the
log's epoch changes, and the PBX's holder keeps publishing. One master, one replica, one
Sentinel (quorum 1), a forced fail-over (SENTINEL FAILOVER)."""

from __future__ import annotations

import pytest

from asttapi_server.core.events import TapiEvent

from .nodes import Watched
from .reactor import run, until
from .redis_server import RedisServer, needs_redis, raw_command

pytestmark = [needs_redis, pytest.mark.slow]


def wait(predicate, what, timeout=30.0):
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)  # polling a server started here, before the test's reactor runs


def test_the_cluster_follows_a_sentinel_fail_over(tmp_path):
    master = RedisServer(tmp_path / "m").start()
    replica = sentinel = None
    try:
        replica = RedisServer(tmp_path / "r", f"replicaof 127.0.0.1 {master.port}").start()
        wait(lambda: b"master_link_status:up" in replica.cli("INFO", "replication"), "the replica to sync")
        sentinel = RedisServer(tmp_path / "s", f"sentinel monitor mymaster 127.0.0.1 {master.port} 1",
                               "sentinel down-after-milliseconds mymaster 1000",
                               "sentinel failover-timeout mymaster 10000", sentinel=True).start()
        wait(lambda: raw_command(sentinel.port, "SENTINEL", "REPLICAS", "mymaster"), "Sentinel to see the replica")
        url = f"sentinel://127.0.0.1:{sentinel.port}/mymaster"

        async def go(reactor):
            a = await Watched(reactor, url, "a", ["p1"], want=["p1"]).start()
            c = await Watched(reactor, url, "c", ["p1"]).start()
            try:
                await until(reactor, lambda: a.node.holds("p1"), what="a holding p1")
                for i in range(10):
                    await a.node.publish("p1", TapiEvent("LINE_CALLSTATE", "line_1", i, "LINECALLSTATE_OFFERING"))
                await until(reactor, lambda: len(c.seen) == 10, what="c hearing 10 events")
                old_epoch = c.hub.epoch
                raw_command(sentinel.port, "SENTINEL", "FAILOVER", "mymaster")
                await until(reactor, lambda: raw_command(sentinel.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME",
                                                          "mymaster")[1] == str(replica.port).encode(),
                            timeout=30, what="Sentinel naming the replica master")
                await until(reactor, lambda: c.hub.epoch != old_epoch, timeout=30, what="c on the new master")
                await until(reactor, lambda: a.node.holds("p1"), timeout=30, what="a holding p1 on the new master")
                seqs = await a.publish_steadily("p1", range(10, 20))
                await until(reactor, lambda: c.seen and c.seen[-1][0] == seqs[-1], timeout=30,
                            what="c hearing the events written to the new master")
                assert [e.call for _s, _p, e in c.seen[c.seen_at_restart:]] == list(range(10, 20))
                role = raw_command(replica.port, "ROLE")
                assert role[0] == b"master"
            finally:
                await a.stop()
                await c.stop()

        run(go, timeout=90)
    finally:
        for server in (sentinel, replica, master):
            if server is not None:
                server.stop(kill=True)
