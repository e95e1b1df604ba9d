"""Issue 22 item 4: nobody but the user and their own address can keep a user out.

The login throttle counted failures per address and per user, and a user or
address in backoff was refused without the token being looked at. So:

1. five wrong tokens for ``alice`` from one address blocked her correct
   token from another;
2. one stranger's try each time the wait expired kept her out 20 of 20 times
   over 40 s (the wait doubles to 300 s, and her right token was never
   checked while blocked, so "a right token clears" could not happen);
3. bob's six typos refused admin's correct token from the same address (a
   shared NAT).

The throttle now waits per user *and* address; a right token from an address
with no failures for that user is always checked. Guessing is still slowed:
across users from one address, and across addresses for one user.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from asttapi_server.clients import codec
from asttapi_server.clients.auth import LoginGuard, LoginLimits

from .helpers import USERS, NetHarness

ADMIN_TOKEN = "admin-0123456789abcdef"
OFFICE = {**USERS, "admin": {"token": ADMIN_TOKEN, "lines": ["*"]}}
STRANGER, ALICE_HOME, NAT = "203.0.113.66", "198.51.100.7", "192.0.2.10"


def login(h: NetHarness, host: str, user: str, token: str | None = None) -> dict:
    """One login on a fresh connection (three failures close a connection, so a guesser reconnects)."""
    c = h.open(host)
    c.read()
    if token is None:
        token = OFFICE[user]["token"]
    r = c.call("login", username=user, token=token)
    if "error" in r:
        c.proto.connectionLost(None)
    return r


def refused_unchecked(r: dict) -> bool:
    return "error" in r and "retry_after" in (r["error"].get("data") or {})


def test_attack_1_a_strangers_wrong_tokens_do_not_block_the_user_elsewhere():
    h = NetHarness(OFFICE)
    for _ in range(5):
        assert "error" in login(h, STRANGER, "alice", "guess-0123456789abcdef")
    assert refused_unchecked(login(h, STRANGER, "alice", "guess-0123456789abcdef"))  # the guesser waits
    assert login(h, ALICE_HOME, "alice")["result"]["user"] == "alice"


def test_attack_2_a_stranger_trying_each_time_the_wait_ends_never_keeps_the_user_out():
    h = NetHarness(OFFICE, login_limits=LoginLimits(free_failures=5, backoff=1.0, backoff_max=300.0))
    for _ in range(5):
        login(h, STRANGER, "alice", "guess-0123456789abcdef")
    let_in = 0
    for _ in range(20):  # 40 s: the stranger tries whenever the wait is over, alice logs in right after
        h.clock.advance(2.0)
        r = login(h, STRANGER, "alice", "guess-0123456789abcdef")
        if refused_unchecked(r):
            h.clock.advance(r["error"]["data"]["retry_after"])
            login(h, STRANGER, "alice", "guess-0123456789abcdef")
        ok = login(h, ALICE_HOME, "alice")
        let_in += "result" in ok
    assert let_in == 20


def test_attack_3_a_colleagues_typos_behind_the_same_nat_never_refuse_another_users_token():
    h = NetHarness(OFFICE)
    for _ in range(6):
        assert "error" in login(h, NAT, "bob", "typo-0123456789abcdef")
    assert login(h, NAT, "admin", ADMIN_TOKEN)["result"]["user"] == "admin"
    assert login(h, NAT, "alice")["result"]["user"] == "alice"
    # bob himself waits at that address: his own typos, his own wait
    assert refused_unchecked(login(h, NAT, "bob"))


def test_a_right_token_clears_that_pairs_backoff():
    h = NetHarness(OFFICE, login_limits=LoginLimits(free_failures=2, backoff=10.0))
    for _ in range(2):
        login(h, ALICE_HOME, "alice", "typo-0123456789abcdef")
    r = login(h, ALICE_HOME, "alice")
    assert refused_unchecked(r) and r["error"]["data"]["retry_after"] == 10  # her own typos: she waits
    h.clock.advance(10)
    assert login(h, ALICE_HOME, "alice")["result"]["user"] == "alice"
    guard = h.factory.login_gate.guard
    assert guard.pair_failures(ALICE_HOME, "alice") == 0
    login(h, ALICE_HOME, "alice", "typo-0123456789abcdef")  # one typo later: no wait again (free)
    assert "result" in login(h, ALICE_HOME, "alice")


def test_guessing_one_user_from_one_address_is_still_slowed_to_a_handful_per_five_minutes():
    h = NetHarness(OFFICE, login_limits=LoginLimits(free_failures=5, backoff=1.0, backoff_max=300.0))
    checked = 0
    for _ in range(2000):  # 10 minutes, a try every 0.3 s
        r = login(h, STRANGER, "alice", "guess-0123456789abcdef")
        checked += not refused_unchecked(r)
        h.clock.advance(0.3)
    # 5 free, then one after each wait of 1, 2, 4, ..., 256 s: 14 within 600 s (docs/security.md)
    assert checked == 14, checked


def test_guessing_many_users_from_one_address_is_slowed_per_user_and_invented_names_per_address():
    users = {**OFFICE, **{f"u{i}": {"token": f"u{i}-0123456789abcdef", "lines": ["*"]} for i in range(20)}}
    h = NetHarness(users, login_limits=LoginLimits(free_failures=5, backoff=30.0, backoff_max=300.0))
    for i in range(5):  # the address has used its free failures on invented names
        login(h, STRANGER, f"nobody{i}", "guess-0123456789abcdef")
    assert refused_unchecked(login(h, STRANGER, "nobody9", "guess-0123456789abcdef"))
    # each configured user gets one check from this address, then that pair waits
    for i in range(20):
        assert not refused_unchecked(login(h, STRANGER, f"u{i}", "guess-0123456789abcdef"))
        assert refused_unchecked(login(h, STRANGER, f"u{i}", "guess-0123456789abcdef"))
    # ... while every one of them logs in from the same address with the right token
    assert login(h, STRANGER, "alice")["result"]["user"] == "alice"


def test_guessing_one_user_from_many_addresses_costs_each_address_its_free_tries_only_once():
    h = NetHarness(OFFICE, login_limits=LoginLimits(free_failures=5, backoff=30.0))
    for i in range(5):
        login(h, f"10.0.0.{i}", "alice", "guess-0123456789abcdef")
    # alice is being guessed at: a fresh address gets one check for her, then waits
    for i in range(5, 50):
        assert not refused_unchecked(login(h, f"10.0.0.{i}", "alice", "guess-0123456789abcdef"))
        assert refused_unchecked(login(h, f"10.0.0.{i}", "alice", "guess-0123456789abcdef"))
    assert login(h, ALICE_HOME, "alice")["result"]["user"] == "alice"
    r = login(h, "10.0.0.7", "alice")  # the right token from a guessing address waits like a guess
    assert r["error"]["code"] == codec.AUTH_ERROR and refused_unchecked(r)


ADDRESSES = ["a1", "a2", "a3", "nat"]
USERS_SEEN = ["alice", "bob", "admin", None]  # None: an invented name


@given(st.lists(st.tuples(st.sampled_from(ADDRESSES), st.sampled_from(USERS_SEEN),
                          st.floats(min_value=0.0, max_value=400.0)), max_size=200),
       st.sampled_from(["alice", "bob", "admin"]), st.sampled_from(ADDRESSES + ["clean"]))
def test_whatever_others_do_a_pair_without_failures_is_always_checked(failures, user, address):
    g = LoginGuard(LoginLimits(free_failures=3, backoff=1.0, backoff_max=300.0, forget_after=900.0))
    now = 0.0
    for addr, name, dt in failures:
        now += dt
        if (addr, name) == (address, user):
            continue  # only the user (or someone at their address guessing them) fails this pair
        if g.retry_after(addr, name, now) is None:
            g.failed(addr, name, now)
    assert g.retry_after(address, user, now) is None
