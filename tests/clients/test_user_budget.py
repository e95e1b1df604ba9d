"""Issue 22: a request budget per user (per address before login), shared by all its connections.

One user flooding from 50 connections (the per-address cap), each within
its own ``request_rate``, moved another user's ping p99 to 101-552 ms:
limits were per connection only.
"""

from __future__ import annotations

import json

from tests.security.helpers import USERS, NetHarness

PING = b'{"jsonrpc":"2.0","id":%d,"method":"ping"}\n'


def answered(c) -> int:
    return sum(1 for m in c.read() if "result" in m)


def test_one_users_connections_share_one_budget_and_another_user_never_waits_for_it():
    h = NetHarness(USERS, user_request_rate=10, user_request_burst=20)
    alice = [h.open("192.0.2.1") for _ in range(5)]
    for c in alice:
        c.read()
        assert "result" in h.login(c, "alice")  # spent from the address's budget: not logged in yet
    for c in alice:
        c.send_raw(b"".join(PING % i for i in range(10)))
    assert sum(answered(c) for c in alice) == 20  # alice's burst, not 50
    assert all(not c.closed for c in alice)  # waiting is not an error: no -32003, nobody closed
    bob = h.open("192.0.2.1")
    bob.read()
    assert "result" in h.login(bob, "bob")
    bob.send_raw(PING % 1)
    assert answered(bob) == 1
    h.clock.advance(1.0)  # ten more tokens for alice, handed in turn to the connections still waiting
    counts = [answered(c) for c in alice]
    assert counts[:2] == [0, 0] and sorted(counts[2:]) == [3, 3, 4], counts
    h.clock.advance(10.0)
    assert sum(answered(c) for c in alice) == 50 - 30


def test_a_waiting_connection_that_closes_gives_its_turn_to_the_next():
    h = NetHarness(USERS, user_request_rate=10, user_request_burst=2)
    a, b = h.open(), h.open()
    for c in (a, b):
        c.read()
        h.login(c, "alice")  # the burst of 2 is spent
    a.send_raw(PING % 1)
    b.send_raw(PING % 2)
    a.proto.connectionLost(None)
    h.clock.advance(0.1)
    assert [m["id"] for m in b.read()] == [2]
    assert a.proto._shared is None  # its place in the queue went with it


def test_before_login_the_address_shares_one_budget():
    h = NetHarness(USERS, user_request_rate=10, user_request_burst=30)
    strangers = [h.open("192.0.2.7") for _ in range(10)]
    for c in strangers:
        c.read()
        c.send_raw(b"".join(PING % i for i in range(10)))
    assert sum(answered(c) for c in strangers) == 30
    elsewhere = h.open("192.0.2.8")
    elsewhere.read()
    elsewhere.send_raw(PING % 1)
    assert answered(elsewhere) == 1


def test_a_batch_spends_a_token_per_request_of_the_shared_budget_too():
    h = NetHarness(USERS, user_request_rate=10, user_request_burst=20)
    a, b = h.open(), h.open()
    for c in (a, b):
        c.read()
        h.login(c, "alice")
    batch = json.dumps([{"jsonrpc": "2.0", "id": i, "method": "ping"} for i in range(20)]).encode() + b"\n"
    a.send_raw(batch)
    assert len(json.loads(a.transport.value().split(b"\n")[0])) == 20
    b.send_raw(PING % 1)  # the batch spent alice's 20
    assert answered(b) == 0
    h.clock.advance(0.1)
    assert answered(b) == 1


def test_without_users_every_connection_keeps_its_own_budget_only():
    h = NetHarness(user_request_rate=10, user_request_burst=20)
    conns = [h.open() for _ in range(5)]
    for c in conns:
        c.read()
        c.send_raw(b"".join(PING % i for i in range(30)))
    assert sum(answered(c) for c in conns) == 150


def test_a_request_costs_a_token_more_for_every_50_microseconds_it_took():
    ticks = iter(range(10**6))
    h = NetHarness(USERS, user_request_rate=10, user_request_burst=100,
                   work_clock=lambda: next(ticks) * 0.001)  # each request is measured at 1 ms: 1 + 20 tokens
    a, b = h.open(), h.open()
    for c in (a, b):
        c.read()
        h.login(c, "alice")
    a.send_raw(b"".join(PING % i for i in range(50)))
    assert answered(a) == 5  # 100 tokens, 21 a ping (the fifth runs the bucket into debt)
    b.send_raw(PING % 1)
    assert answered(b) == 0  # alice's other connection waits for her budget too


def test_closing_every_connection_buys_no_fresh_burst_and_idle_budgets_are_forgotten():
    from twisted.internet.task import Clock

    from asttapi_server.clients.budgets import SharedBudgets

    clock = Clock()
    budgets = SharedBudgets(10, 20, clock)
    alice = budgets.acquire(("user", "alice"))
    assert all(alice.take() for _ in range(20))
    budgets.release(alice)
    again = budgets.acquire(("user", "alice"))
    assert again is alice and not again.take()  # reconnecting does not refill it
    budgets.release(again)
    for second in range(10):  # a thousand addresses come and go, a hundred a second
        for i in range(100):
            budgets.release(budgets.acquire(("address", f"10.0.{second}.{i}")))
        clock.advance(0.5 if second == 0 else 1)
        assert len(budgets) <= 250  # swept once a second: about two seconds of newcomers at most
        if second == 0:
            assert budgets.acquire(("user", "alice")) is alice  # half refilled: kept through the sweep
            budgets.release(alice)
    assert ("user", "alice") not in budgets._buckets  # full again, and forgotten
