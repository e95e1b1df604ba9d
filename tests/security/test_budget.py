"""Issue 22, item 1: one connection budget for every listener (clients/limits.py, pure)."""

from __future__ import annotations

import pytest

from asttapi_server.clients.limits import FD_RESERVE, ConnectionBudget, ConnectionLimits, Slot, fd_capacity


def admit(budget: ConnectionBudget, address: str, *, web: bool = False, closed: list | None = None) -> Slot | str:
    slot: list[Slot] = []
    result = budget.admit(address, web=web, displace=lambda: closed.append(slot[0]) if closed is not None else None)
    if isinstance(result, Slot):
        slot.append(result)
    return result


def test_the_per_address_cap_counts_every_listener_together():
    budget = ConnectionBudget(ConnectionLimits(max_clients=100, max_clients_per_address=3))
    assert isinstance(admit(budget, "192.0.2.1", web=True), Slot)  # an HTTP connection
    assert isinstance(admit(budget, "192.0.2.1"), Slot)  # a JSON-lines one
    assert isinstance(admit(budget, "192.0.2.1", web=True), Slot)
    refusal = admit(budget, "192.0.2.1")
    assert refusal == "3 connections from your address are open already (server.max_clients_per_address)"
    assert isinstance(admit(budget, "192.0.2.2"), Slot)


@pytest.mark.parametrize("open_files, max_clients, capacity", [
    (-1, 1000, 1000),  # unknown / unlimited
    (1064, 1000, 1000),  # what start-up raises the limit to
    (1024, 1000, 1024 - FD_RESERVE),  # the hard limit kept it lower: fewer clients, never EMFILE
    (48, 1000, 24),  # a tiny limit keeps half of itself back
    (20_000, 1000, 1000),
])
def test_the_capacity_fits_the_open_files_limit(open_files, max_clients, capacity):
    assert fd_capacity(open_files, max_clients) == capacity
    budget = ConnectionBudget(ConnectionLimits(max_clients=max_clients), open_files=open_files)
    assert budget.capacity == capacity


def test_the_web_port_leaves_a_tenth_for_the_other_listeners():
    budget = ConnectionBudget(ConnectionLimits(max_clients=100, max_clients_per_address=100))
    members = []
    for i in range(90):
        slot = admit(budget, f"10.0.0.{i}", web=True)
        budget.promote(slot)  # logged-in WebSockets: nobody to displace
        members.append(slot)
    assert budget.web_capacity == 90
    assert admit(budget, "10.0.1.1", web=True) == (
        "the web listener has its maximum of 90 connections (server.max_clients)")
    for i in range(10):  # the JSON-lines and metrics ports still get in
        assert isinstance(admit(budget, f"10.0.2.{i}"), Slot)
    assert budget.total == 100


def test_a_newcomer_displaces_the_oldest_stranger_of_the_address_holding_the_most():
    budget = ConnectionBudget(ConnectionLimits(max_clients=6, max_clients_per_address=5))
    closed: list[Slot] = []
    a = [admit(budget, "10.0.0.1", closed=closed) for _ in range(4)]
    b = admit(budget, "10.0.0.2", closed=closed)
    member = admit(budget, "10.0.0.3", closed=closed)
    budget.promote(member)
    newcomer = admit(budget, "10.0.0.4", closed=closed)
    assert isinstance(newcomer, Slot) and closed == [a[0]] and budget.displaced == 1
    assert budget.total == 6 and budget.per_address["10.0.0.1"] == 3
    budget.release(a[0])  # the displaced connection's own close later: no double count
    assert budget.total == 6
    # 10.0.0.1 (3) > 10.0.0.2 (1): it pays again
    assert isinstance(admit(budget, "10.0.0.5", closed=closed), Slot) and closed[-1] is a[1]
    # an address holding as many strangers as the fullest is refused, not served by displacing its peer
    budget2 = ConnectionBudget(ConnectionLimits(max_clients=2, max_clients_per_address=5))
    admit(budget2, "10.0.0.1")
    admit(budget2, "10.0.0.2")
    assert admit(budget2, "10.0.0.1") == "the server has its maximum of 2 clients (server.max_clients)"
    assert b not in closed


def test_logged_in_clients_are_never_displaced():
    budget = ConnectionBudget(ConnectionLimits(max_clients=3, max_clients_per_address=5))
    closed: list[Slot] = []
    slots = [admit(budget, "10.0.0.1", closed=closed) for _ in range(3)]
    for slot in slots:
        budget.promote(slot)
    assert admit(budget, "10.0.0.9", closed=closed) == "the server has its maximum of 3 clients (server.max_clients)"
    assert closed == [] and budget.refused == 1


def test_a_web_newcomer_displaces_only_web_strangers_when_the_web_share_is_full():
    budget = ConnectionBudget(ConnectionLimits(max_clients=20, max_clients_per_address=20))
    closed: list[Slot] = []
    tcp = [admit(budget, "10.0.0.1", closed=closed) for _ in range(2)]  # strangers on the JSON-lines port
    web = [admit(budget, "10.0.0.2", web=True, closed=closed) for _ in range(budget.web_capacity)]
    newcomer = admit(budget, "10.0.0.3", web=True, closed=closed)
    assert isinstance(newcomer, Slot) and closed == [web[0]]
    assert not any(slot in closed for slot in tcp)
    assert budget.web == budget.web_capacity


def test_thousands_of_addresses_churn_in_bounded_memory():
    budget = ConnectionBudget(ConnectionLimits(max_clients=100, max_clients_per_address=50))
    closed: list[Slot] = []
    for i in range(20_000):
        slot = admit(budget, f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", web=i % 2 == 0, closed=closed)
        assert isinstance(slot, Slot)
        for gone in closed:
            budget.release(gone)
        closed.clear()
    assert budget.total == 100
    assert len(budget.per_address) == 100
    assert sum(len(v) for v in budget._strangers.by_address.values()) == 100
