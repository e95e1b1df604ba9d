"""Fail-over with a real redis-server and a holder in a child process: SIGKILL and SIGSTOP/SIGCONT.

The checker: every node hands on the same events under the same seqs, in order, once;
a client that moves to another node resumes with exactly what it missed; a resume from
before a fail-over's gap marker rebuilds; a stopped-then-resumed holder's writes are refused.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from asttapi_server.cluster.entries import GAP

from .nodes import Child, Watched
from .reactor import run, until
from .redis_server import needs_redis

pytestmark = [needs_redis, pytest.mark.slow]

TTL = 1.0


def events_after(watched: Watched, since: int) -> list[tuple[int, str, int]]:
    return [(seq, pbx, event.call) for seq, pbx, event in watched.seen if seq > since]


def check_same_order(*nodes: Watched) -> int:
    """Every node handed on the same (seq, event) from the latest start on; seqs strictly increase."""
    start = max(n.restarts[-1][1] for n in nodes)
    lists = [events_after(n, start) for n in nodes]
    for got in lists:
        seqs = [seq for seq, _pbx, _call in got]
        assert seqs == sorted(set(seqs)), "seqs not strictly increasing"
    assert all(got == lists[0] for got in lists), "nodes disagree on the events or their order"
    return start


async def publish(watched: Watched, pbx: str, n: int, first: int) -> list[int]:
    from asttapi_server.core.events import TapiEvent

    seqs = []
    for i in range(first, first + n):
        event = TapiEvent(msg="LINE_CALLSTATE", line="line_1", call=i, param="LINECALLSTATE_OFFERING",
                          callinfo={"n": i})
        seqs.append(await watched.node.publish(pbx, event))
    return seqs


def resume_bytes(hub, since, epoch):
    out = hub.missed("line_1", since, epoch, limit=100_000)
    return None if out is None else [json.loads(line)["params"]["seq"] for line in out]


def test_sigkill_of_the_holder_fails_over_within_the_ttl_and_no_event_is_lost_or_doubled(redis_server):
    async def go(reactor):
        a = Child(reactor, redis_server.url, "a", "pbx1", "--publish", "0.01", "--ttl", str(TTL), "--renew", "0.25")
        b = c = None
        try:
            await a.line("ACTIVE")
            b = await Watched(reactor, redis_server.url, "b", ["pbx1"], want=["pbx1"], ttl=TTL).start()
            c = await Watched(reactor, redis_server.url, "c", ["pbx1"]).start()
            for n in (b, c):
                n.hub.subscribe(type("S", (), {"sid": 1, "send": lambda self, d: None})(), "line_1")
            await until(reactor, lambda: len(c.seen) >= 30 and len(b.seen) >= 30, what="30 events from a")
            killed = time.monotonic()
            await a.kill()
            await until(reactor, lambda: "pbx1" in b.active, timeout=10, what="b taking over")
            took = b.active["pbx1"] - killed
            assert took < TTL + 0.5, f"fail-over took {took:.2f}s"
            acked = [int(line.split()[1]) for line in a.lines if line.startswith("PUBLISHED")]
            mine = await publish(b, "pbx1", 30, 10_000)
            # (b hears its own appends through its follower too, as every node does)
            await until(reactor, lambda: all(n.seen and n.seen[-1][0] == mine[-1] for n in (b, c)),
                        what="b and c hearing b's events")
            start = check_same_order(b, c)
            heard = [seq for seq, _pbx, _e in c.seen]
            for seq in acked + mine:  # every acknowledged append, exactly once
                if seq > start:
                    assert heard.count(seq) == 1, seq
            gap = [seq for pbx, seq in c.gaps]
            assert gap and gap == [seq for pbx, seq in b.gaps] and mine[0] > gap[-1] > max(acked)
            epoch = c.hub.epoch
            assert b.hub.epoch == epoch
            # A client of c moves to b: it resumes with what it missed, once, in order.
            middle = mine[10]
            assert resume_bytes(b.hub, middle, epoch) == [s for s, _p, _c in events_after(c, middle)]
            # From before the fail-over: b cannot know what a did not append: a rebuild.
            before = max(acked) - 1
            assert resume_bytes(b.hub, before, epoch) is None
            assert resume_bytes(b.hub, middle, "another-epoch") is None
            return took
        finally:
            await a.kill()
            for n in (b, c):
                if n is not None:
                    await n.stop()

    took = run(go)
    print(f"fail-over after SIGKILL: {took:.3f}s (lease ttl {TTL}s)")


def test_a_stopped_holder_that_wakes_up_is_refused_and_stops_acting(redis_server):
    async def go(reactor):
        a = Child(reactor, redis_server.url, "a", "pbx1", "--publish", "0.02", "--ttl", str(TTL), "--renew", "0.25")
        b = None
        try:
            first = await a.line("ACTIVE")
            b = await Watched(reactor, redis_server.url, "b", ["pbx1"], want=["pbx1"], ttl=TTL).start()
            await until(reactor, lambda: len(b.seen) >= 5, what="events from a")
            a.signal(signal.SIGSTOP)
            stopped = time.monotonic()
            await until(reactor, lambda: "pbx1" in b.active, timeout=10, what="b taking over")
            assert b.active["pbx1"] - stopped < TTL + 0.5
            await publish(b, "pbx1", 5, 10_000)
            mark = len(a.lines)
            a.signal(signal.SIGCONT)
            await a.line("WOKE", after=mark)
            assert await a.line("ROGUE", after=mark) == "ROGUE refused"
            await a.line("INACTIVE", after=mark)
            await publish(b, "pbx1", 5, 20_000)
            # In the log: once b's tenure began (its gap marker), nothing of a's tenure follows.
            token_a = int(first.split()[1])
            entries = redis_server.cli("XRANGE", "asttapi:{pbx1}:events", "-", "+")
            fields = [dict(zip(e[1][::2], e[1][1::2])) for e in entries]
            tokens = [int(f[b"t"]) for f in fields]
            first_b = next(i for i, f in enumerate(fields) if f[b"k"] == GAP.encode() and int(f[b"t"]) > token_a)
            assert all(t > token_a for t in tokens[first_b:])
            assert max(tokens) > token_a
            after_wake = [l for l in a.lines[mark:] if l.startswith("ACTIVE")]
            assert after_wake == []  # it did not take the PBX back from b
        finally:
            await a.kill()
            if b is not None:
                await b.stop()

    run(go)
