"""Call state in Redis (the call store's records), run-once claims, and every fenced write
refused with a stale tenure, against a real redis-server."""

from __future__ import annotations

import pytest

from asttapi_server.cluster import scripts
from asttapi_server.cluster.keys import Keys
from asttapi_server.cluster.lease import Tenure
from asttapi_server.cluster.leases import run_fenced
from asttapi_server.cluster.state import state_of
from asttapi_server.core import CallModel
from asttapi_server.errors import StaleLease
from tests.core.helpers import sig

from .nodes import Watched
from .reactor import run, until
from .redis_server import needs_redis

pytestmark = needs_redis

UID = "1795674354.1"


def test_the_holders_calls_are_taken_over_with_their_handles(redis_server):
    async def go(reactor):
        a = await Watched(reactor, redis_server.url, "a", ["p1"], want=["p1"]).start()
        b = None
        try:
            await until(reactor, lambda: a.node.holds("p1"), what="a holding p1")
            model = CallModel()
            model.apply(sig("LINE_NEWCALL line_1", UID, "PJSIP/trunk-00000001"), 1.0)
            model.apply(sig("LINE_CALLSTATE LINECALLSTATE_CONNECTED", UID), 1.0)
            model.apply(sig('SET CALLERIDNAME Müller, "Jörg"', UID), 1.0)
            for n in range(2, 5):
                model.apply(sig("LINE_NEWCALL line_2", f"1795674354.{n}"), 1.0)
            state = a.node.call_state("p1", model, delay=0.01)
            state.changed()
            await until(reactor, lambda: state.writes == 1, what="the first write")
            state.changed()
            await state.flush()
            assert state.writes == 1  # nothing changed: nothing written
            model.apply(sig("LINE_CALLSTATE LINECALLSTATE_IDLE", "1795674354.4"), 2.0)  # one ends
            model.apply(sig("LINE_CALLSTATE LINECALLSTATE_ONHOLD", UID), 2.0)
            await state.flush()
            assert state.writes == 2
            stored = state_of(redis_server.cli("HGETALL", "asttapi:{p1}:calls"))
            assert stored["format"] == "asttapi-calls" and len(stored["calls"]) == 3
            # The same records the call store writes: the file and the hash restore alike.
            assert sorted(stored["calls"], key=lambda c: c["handle"]) == model.save_state()["calls"]
            await a.stop()
            b = await Watched(reactor, redis_server.url, "b", ["p1"], want=["p1"]).start()
            await until(reactor, lambda: b.node.holds("p1"), what="b taking over")
            fresh = CallModel()
            restored = await b.node.call_state("p1", fresh).restore(3.0)
            old = model.by_uniqueid(UID)
            new = fresh.by_uniqueid(UID)
            assert len(restored) == 3 and new.handle == old.handle
            assert fresh.snapshot(new, "line_1") == model.snapshot(old, "line_1")
        finally:
            for n in (a, b):
                if n is not None and n.node.running:
                    await n.stop()

    run(go)


def test_work_runs_once_on_the_holder_only(redis_server):
    async def go(reactor):
        a = await Watched(reactor, redis_server.url, "a", ["p1"], want=["p1"]).start()
        c = await Watched(reactor, redis_server.url, "c", ["p1"]).start()
        try:
            await until(reactor, lambda: a.node.holds("p1"), what="a holding p1")
            assert await c.node.once("p1", "lookup:" + UID) is False  # not the holder
            assert await a.node.once("p1", "lookup:" + UID) is True
            assert await a.node.once("p1", "lookup:" + UID) is False  # done already
            assert await a.node.once("p1", "webhook:7:hangup") is True
        finally:
            await a.stop()
            await c.stop()

    run(go)


def test_every_fenced_write_is_refused_with_a_stale_tenure(redis_server):
    async def go(reactor):
        a = await Watched(reactor, redis_server.url, "a", ["p1"], want=["p1"]).start()
        try:
            await until(reactor, lambda: a.node.holds("p1"), what="a holding p1")
            k, client = Keys(), a.node.client
            good = a.node.tenure("p1")
            stale = [Tenure(good.token - 1, good.holder), Tenure(good.token, "other/1"),
                     Tenure(good.token + 1, good.holder)]
            writes = [
                (scripts.APPEND, [k.lease("p1"), k.events("p1"), k.log("p1"), k.seq], ["b1", 1000, 0, 1, "e", "{}"]),
                (scripts.SAVE_CALLS, [k.lease("p1"), k.calls("p1")], ["{}", 0]),
                (scripts.CLAIM, [k.lease("p1"), k.claim("p1", "x/1")], [0, 10**15, 1000]),
                (scripts.ONCE, [k.lease("p1"), k.once("p1", "x")], [1000]),
                (scripts.ORPHAN, [k.lease("p1"), k.claim("p1", "x/1"), k.replies("c")], ["x/1", "{}", 10]),
            ]
            before = redis_server.cli("DBSIZE")
            for script, keys, args in writes:
                for tenure in stale:
                    with pytest.raises(StaleLease, match="STALE|held by"):
                        await run_fenced(client, script, keys, [tenure.value, *args])
            assert redis_server.cli("DBSIZE") == before  # nothing was written
            # And with the good tenure they do write.
            assert await run_fenced(client, scripts.ONCE, [k.lease("p1"), k.once("p1", "x")], [good.value, 1000]) == 1
        finally:
            await a.stop()

    run(go)


def test_a_node_built_from_the_config_file_with_an_acl_user_and_a_password_file(tmp_path):
    from asttapi_server.cluster.node import ClusterNode
    from asttapi_server.config import load_config

    from .redis_server import RedisServer

    server = RedisServer(tmp_path / "r", "user default off", "user agent on >agentpass-long-enough ~asttapi:* &* +@all").start()
    (tmp_path / "pw").write_text("agentpass-long-enough\n")
    (tmp_path / "asttapi.toml").write_text(f'''[ami]\nhost = "pbx"\n[cluster]\nredis = "redis://127.0.0.1:{server.port}/2"
node = "n1"\nusername = "agent"\npassword_file = "{tmp_path / 'pw'}"\nprefix = "asttapi"\n''')
    config = load_config(str(tmp_path / "asttapi.toml"))

    async def go(reactor):
        node = ClusterNode.from_config(reactor, config.cluster, ["p1"])
        node.startService()
        try:
            await node.started(timeout=10)
            await until(reactor, lambda: node.holds("p1"), what="n1 holding p1")
            assert await node.client.execute("ACL", "WHOAMI") == b"agent"
            assert (await node.client.execute("CLIENT", "INFO")).count(b"db=2") == 1
        finally:
            await node.stopService()

    try:
        run(go)
    finally:
        server.stop(kill=True)


def test_a_node_that_fell_behind_the_trimming_marks_a_gap(redis_server):
    """The log keeps about stream_max_len entries; a node that read nothing while more were
    appended finds a hole, and a resume from before it rebuilds from calls."""
    from asttapi_server.core.events import TapiEvent

    async def go(reactor):
        a = await Watched(reactor, redis_server.url, "a", ["p1"], want=["p1"], stream_max_len=100).start()
        c = await Watched(reactor, redis_server.url, "c", ["p1"]).start()
        try:
            await until(reactor, lambda: a.node.holds("p1"), what="a holding p1")
            first = await a.node.publish("p1", TapiEvent("LINE_CALLSTATE", "line_1", 1, "LINECALLSTATE_OFFERING"))
            await until(reactor, lambda: c.seen and c.seen[-1][0] == first, what="c hearing the first event")
            await c.node.follower.stop()
            for i in range(2, 1000):
                last = await a.node.publish("p1", TapiEvent("LINE_CALLSTATE", "line_1", i, "LINECALLSTATE_OFFERING"))
            assert int(redis_server.cli("XLEN", "asttapi:{p1}:events")) < 300
            c.node.follower.start()
            await until(reactor, lambda: c.seen[-1][0] == last, what="c catching up")
            assert c.gaps and c.gaps[-1][1] > first
            assert c.hub.missed("line_1", first, c.hub.epoch) is None  # a rebuild
            kept = c.hub.missed("line_1", c.gaps[-1][1] - 1, c.hub.epoch)
            assert kept is not None and len(kept) == last - c.gaps[-1][1] + 1
        finally:
            await a.stop()
            await c.stop()

    run(go)
