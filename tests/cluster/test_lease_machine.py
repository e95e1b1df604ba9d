"""The lease holder's state machine, pure: every transition, and the safety rule."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from asttapi_server.cluster.lease import HELD, IDLE, TABLE, TRYING, LeaseMachine, Tenure

T = Tenure(7, "a/x")


def held(now=0.0):
    m = LeaseMachine(2.0, 0.5)
    step = m.want(now)
    assert step.send == "acquire"
    step = m.acquired(T, now + 0.01)
    assert step.active is True and m.state == HELD
    return m


def test_acquire_renew_release():
    m = held()
    assert m.may_act(0.5) and m.valid_until == pytest.approx(2.0 - 0.1)
    step = m.tick(0.5)
    assert step.send == "renew" and step.tenure == T
    m.renewed(0.51)
    assert m.valid_until == pytest.approx(0.5 + 1.9)
    step = m.unwant(0.6)
    assert (step.send, step.tenure, step.active) == ("release", T, False)
    assert m.state == IDLE and not m.may_act(0.6)


def test_the_holder_stops_before_the_lease_can_expire_even_if_no_timer_ran():
    m = held()
    assert m.may_act(1.89) and not m.may_act(1.9)  # sent at 0: Redis expires it at >= 2.0
    step = m.tick(30.0)  # SIGSTOP'd for half a minute
    assert step.active is False and step.send == "acquire" and m.state == TRYING


def test_a_refused_renewal_stops_at_once_and_a_late_one_does_not_revive():
    m = held()
    m.tick(0.5)
    step = m.refused(0.52, "8 b/y")
    assert step.active is False and m.state == TRYING and m.holder_seen == "8 b/y"
    assert m.highest_token == 7
    m2 = held()
    m2.tick(0.5)
    step = m2.renewed(2.5)  # the answer came after the lease could have expired
    assert step.active is False and not m2.may_act(2.5)


def test_standby_retries_when_the_holders_lease_runs_out():
    m = LeaseMachine(2.0, 0.5)
    m.want(0.0)
    step = m.taken("9 b/y", 0.2, 0.01)
    assert step.wake == pytest.approx(0.21) and m.highest_token == 9
    assert m.tick(0.1).send is None
    assert m.tick(0.211).send == "acquire"
    step = m.taken("9 b/y", 5.0, 0.22)
    assert step.wake == pytest.approx(0.72)  # never waits longer than renew_every


def test_unreachable_redis_retries_then_gives_up_the_lease_in_time():
    m = held()
    m.tick(0.5)
    step = m.failed(0.6)
    assert step.wake == pytest.approx(0.85) and m.may_act(0.85)
    m.tick(0.85)
    step = m.failed(1.95)
    assert step.active is False and not m.may_act(1.95)


def test_an_acquire_answered_after_unwant_is_released():
    m = LeaseMachine(2.0, 0.5)
    m.want(0.0)
    m.unwant(0.1)
    step = m.acquired(T, 0.2)
    assert step.send == "release" and step.tenure == T and m.state == IDLE


def test_every_state_lists_its_inputs():
    inputs = {"want", "unwant", "tick", "acquired", "taken", "renewed", "refused", "failed", "released"}
    for state, moves in TABLE.items():
        assert inputs <= set(moves), state
    assert set(TABLE) == {IDLE, TRYING, HELD}


def test_bad_timings_are_refused():
    with pytest.raises(ValueError):
        LeaseMachine(1.0, 1.0)
    with pytest.raises(ValueError):
        LeaseMachine(1.0, 0.9, safety=0.2)


@given(st.lists(st.tuples(st.sampled_from(["tick", "acquired", "taken", "renewed", "refused", "failed", "want",
                                           "unwant"]), st.floats(0, 3)), max_size=40))
def test_may_act_never_outlives_the_last_successful_send_plus_ttl(script):
    """Whatever happens, the holder acts only within ttl of a send Redis confirmed."""
    m = LeaseMachine(2.0, 0.5)
    now = 0.0
    confirmed_send = None
    for what, dt in script:
        now += dt
        sent_at = m._sent_at
        if what == "acquired":
            m.acquired(T, now)
            if m.state == HELD:
                confirmed_send = sent_at
        elif what == "taken":
            m.taken("9 b/y", 1.0, now)
        elif what == "renewed":
            was_held = m.state == HELD
            m.renewed(now)
            if was_held and m.state == HELD:
                confirmed_send = sent_at
        elif what == "refused":
            m.refused(now)
        elif what == "failed":
            m.failed(now)
        elif what == "want":
            m.want(now)
        elif what == "unwant":
            m.unwant(now)
        else:
            m.tick(now)
        if m.may_act(now):
            assert confirmed_send is not None and now < confirmed_send + 2.0


def test_wanted_again_while_a_release_is_out_it_acquires_once_the_release_is_answered():
    m = held()
    assert m.unwant(0.5).send == "release"
    assert m.want(0.6).send is None  # the release is still out
    assert m.released(0.7).send == "acquire"
    m2 = held()
    m2.unwant(0.5)
    m2.want(0.6)
    step = m2.failed(0.7)  # the release got no answer (Redis away): it expires by itself
    assert m2.tick(step.wake).send == "acquire"
