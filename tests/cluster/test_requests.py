"""Forwarded requests with a real redis-server: the answer comes back; a request is sent to the
PBX at most once even when the node carrying it out is killed in the middle."""

from __future__ import annotations

import pytest

from asttapi_server.errors import ActionTimeout, LinkDown, TelephonyError

from .nodes import Child, Watched
from .reactor import run, until
from .redis_server import needs_redis

pytestmark = [needs_redis, pytest.mark.slow]


def recording_handler(log, result=None, error=None):
    def handler(pbx, op, args):
        log.append((pbx, op, dict(args)))
        if error is not None:
            raise error
        return result

    return handler


def test_a_request_goes_to_the_active_node_and_its_answer_or_lineerr_comes_back(redis_server):
    async def go(reactor):
        acted = []
        a = await Watched(reactor, redis_server.url, "a", ["p1", "p2"], want=["p1"],
                          handler=recording_handler(acted, {"handle": 5})).start()
        c = await Watched(reactor, redis_server.url, "c", ["p1", "p2"]).start()
        try:
            await until(reactor, lambda: a.node.holds("p1"), what="a holding p1")
            args = {"line": "line_1", "number": "200", "owner": "c/1"}
            assert await c.node.request("p1", "make_call", args, timeout=5) == {"handle": 5}
            assert acted == [("p1", "make_call", args)]
            # On the holder itself: no round trip through Redis, same handler.
            assert await a.node.request("p1", "drop", {"handle": 5}, timeout=5) == {"handle": 5}
            # Nobody holds p2: the client hears the link is down, at once.
            with pytest.raises(LinkDown):
                await c.node.request("p2", "drop", {"handle": 1}, timeout=5)
            # The active node's refusal reaches the client as the same LINEERR.
            a.node.handler = recording_handler(acted, error=TelephonyError("LINEERR_INVALCALLHANDLE", "No call 9."))
            with pytest.raises(TelephonyError) as e:
                await c.node.request("p1", "drop", {"handle": 9}, timeout=5)
            assert e.value.lineerr == "LINEERR_INVALCALLHANDLE" and str(e.value) == "No call 9."
            assert len(acted) == 3
        finally:
            await a.stop()
            await c.stop()

    run(go)


def test_killed_mid_request_the_action_is_never_sent_twice_and_waiting_requests_are_carried_out(redis_server):
    async def go(reactor):
        a = Child(reactor, redis_server.url, "a", "p1", "--act-delay", "30", "--ttl", "1.0")
        acted = []
        b = c = None
        try:
            await a.line("ACTIVE")
            b = await Watched(reactor, redis_server.url, "b", ["p1"], want=["p1"], ttl=1.0,
                              handler=recording_handler(acted, {"handle": 8})).start()
            c = await Watched(reactor, redis_server.url, "c", ["p1"]).start()
            first = c.node.request("p1", "drop", {"handle": 1}, timeout=10)
            from twisted.internet import defer

            first = defer.ensureDeferred(first)
            await a.line("ACT drop")
            await a.kill()  # claimed, sent to "Asterisk", never answered
            # Sent while nobody runs the PBX (a's lease has not run out yet): carried out by b.
            second = defer.ensureDeferred(c.node.request("p1", "blind_transfer", {"handle": 1, "number": "300"},
                                                         timeout=10))
            with pytest.raises(TelephonyError) as e:
                await first
            assert e.value.lineerr == "LINEERR_OPERATIONFAILED" and "may or may not" in str(e.value)
            assert await second == {"handle": 8}
            assert acted == [("p1", "blind_transfer", {"handle": 1, "number": "300"})]  # never the drop
            assert b.node.server.orphaned == 1
        finally:
            await a.kill()
            for n in (b, c):
                if n is not None:
                    await n.stop()

    run(go)


def test_no_answer_in_time_is_a_timeout_and_a_late_claim_is_refused(redis_server):
    async def go(reactor):
        a = Child(reactor, redis_server.url, "a", "p1", "--act-delay", "0", "--ttl", "1.0")
        c = None
        try:
            await a.line("ACTIVE")
            c = await Watched(reactor, redis_server.url, "c", ["p1"]).start()
            a.signal(__import__("signal").SIGSTOP)  # holds the lease, answers nothing
            with pytest.raises(ActionTimeout):
                await c.node.request("p1", "drop", {"handle": 1}, timeout=1.5)
            mark = len(a.lines)
            a.signal(__import__("signal").SIGCONT)
            await a.line("WOKE", after=mark)
            await a.line("INACTIVE", after=mark)
            # a came back without its lease: the request it never claimed stays unsent.
            assert not [l for l in a.lines if l.startswith("ACT ")]
        finally:
            await a.kill()
            if c is not None:
                await c.stop()

    run(go)
