"""Redis restarting under a running cluster: what happens to the leases and the event log.

With an append-only file (what docs/scaling.md recommends) the keys come back; with no
persistence at all they are gone. Either way the log's epoch changes (a new Redis run may
have lost the last writes), every node starts its numbering afresh under the new epoch, a
resume from the old epoch rebuilds, the holder keeps or takes the PBX back, and fencing
tokens never go back.
"""

from __future__ import annotations

import pytest

from asttapi_server.core.events import TapiEvent

from .nodes import Watched
from .reactor import run, until
from .redis_server import RedisServer, needs_redis

pytestmark = [needs_redis, pytest.mark.slow]


async def publish_some(watched: Watched, n: int, first: int) -> list[int]:
    seqs = []
    for i in range(first, first + n):
        event = TapiEvent(msg="LINE_CALLSTATE", line="line_1", call=i, param="LINECALLSTATE_OFFERING")
        seqs.append(await watched.node.publish("p1", event))
    return seqs


@pytest.mark.parametrize("persistence", ["aof", "none"])
def test_redis_restarting_mid_stream(tmp_path, persistence):
    conf = ["appendonly yes", "appendfsync always"] if persistence == "aof" else []
    server = RedisServer(tmp_path / "redis", *conf).start()

    async def go(reactor):
        a = await Watched(reactor, server.url, "a", ["p1"], want=["p1"]).start()
        c = await Watched(reactor, server.url, "c", ["p1"]).start()
        try:
            await until(reactor, lambda: a.node.holds("p1"), what="a holding p1")
            token = a.node.tenure("p1").token
            before = await publish_some(a, 20, 1)
            await until(reactor, lambda: c.seen and c.seen[-1][0] == before[-1], what="c hearing the events")
            old_epoch = c.hub.epoch
            server.restart(kill=True)
            await until(reactor, lambda: len(c.restarts) == 2 and len(a.restarts) == 2, what="a new epoch")
            assert c.hub.epoch == a.hub.epoch != old_epoch
            if persistence == "none":  # the lease is gone with the data: a finds out at its next renewal
                await until(reactor, lambda: (a.node.tenure("p1") or token).token > token if a.node.tenure("p1")
                            else False, timeout=10, what="a holding p1 under a new token")
            await until(reactor, lambda: a.node.holds("p1"), timeout=10, what="a holding p1 again")
            after = await a.publish_steadily("p1", range(100, 120))
            await until(reactor, lambda: c.seen and c.seen[-1][0] == after[-1], what="c hearing the new events")
            if persistence == "aof":
                assert after[0] > before[-1]  # the counter came back with the data
            else:
                # The counter was lost with the data (numbering starts again, under a new epoch),
                # yet tokens still grow (every acquire passes the highest token the node saw).
                assert after[0] < before[-1] and a.node.tenure("p1").token > token
            new = [(seq, e.call) for seq, _p, e in c.seen[c.seen_at_restart:]]
            assert [call for _seq, call in new] == list(range(100, 120))  # once each, in order
            assert c.hub.missed("line_1", before[5], old_epoch) is None  # the old epoch: rebuild
            replay = c.hub.missed("line_1", after[4], c.hub.epoch)
            assert replay is not None and len(replay) == 15
        finally:
            await a.stop()
            await c.stop()

    try:
        run(go)
    finally:
        server.stop(kill=True)
