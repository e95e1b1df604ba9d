"""Property tests: random interleavings of dialplan signals, hangups, originates,
resyncs and ticks never raise, obey the transition table per line, never
leave a call tracked after its IDLE + linger (nor a hung-up call past its grace),
and report every call as finished exactly once, with ``linger = 0`` too."""

from hypothesis import given
from hypothesis import strategies as st

from asttapi_server.core import CallModel, TapiSignal, parse_tapievent
from asttapi_server.core import constants as C
from asttapi_server.core.transitions import EMIT, NEW, verdict

UIDS = ["1.1", "1.2", "1.3", "asttapi-p-1", "asttapi-p-2"]
LINES = ["line_1", "sip/bob", "PJSIP/bob-0001"]
STATES = sorted(C.LINECALLSTATE) + ["LINECALLSTATE_HANGUP"]
GRACE, LINGER, MAX_AGE = 2.0, 3.0, 60.0

spec = st.one_of(
    st.just(""),
    st.builds(lambda u: f"[~{u}] ", st.sampled_from(UIDS)),
    st.builds(lambda u, l: f"[~{u}&{l}] ", st.sampled_from(UIDS), st.sampled_from(LINES)),
    st.builds(lambda u, l: f"[~{u}&!{l}] ", st.sampled_from(UIDS), st.sampled_from(LINES)),
    st.builds(lambda l: f"[{l}] ", st.sampled_from(LINES)),
)
body = st.one_of(
    st.builds(lambda l: f"LINE_NEWCALL {l}", st.sampled_from(LINES)),
    st.builds(lambda s: f"LINE_CALLSTATE {s}", st.sampled_from(STATES)),
    st.builds(lambda s: f"LINE_CALLSTATE {s}", st.sampled_from(STATES)),  # weight states up
    st.just("LINE_CALLINFO LINECALLINFOSTATE_CALLERID"),
    st.builds(lambda v: f"SET CALLERID {v}", st.sampled_from(["", "100", "0301234567"])),
    st.just("LINE_LINEDEVSTATE LINEDEVSTATE_RINGING"),
)
op = st.one_of(
    st.tuples(st.just("tapi"), spec, body, st.sampled_from(UIDS + [None])),
    st.tuples(st.just("tapi"), spec, body, st.sampled_from(UIDS + [None])),
    st.tuples(st.just("hangup"), st.sampled_from(UIDS), st.sampled_from([None, 0, 16, 17, 19, 26])),
    st.tuples(st.just("tick"), st.floats(0, 8)),
    st.tuples(st.just("make"), st.sampled_from(LINES), st.sampled_from(["alice", "bob"])),
    st.tuples(st.just("orig"), st.integers(0, 3), st.booleans(), st.sampled_from([None, "1.2", "1.3"])),
    st.tuples(st.just("resync"), st.frozensets(st.sampled_from(UIDS))),
    st.tuples(st.just("annotate"), st.integers(1, 6), st.integers(0, 2)),
)


class Checker:
    """Checks every event against the transition table, per (call, line)."""

    def __init__(self):
        self.state = {}  # (call, line) -> internal state
        self.finished = {}  # handle -> times reported finished
        self.born = set()  # handles of every call the model created

    def check(self, events, model):
        for call in events.finished:
            assert call.ended is not None and call.lines == ()
            self.finished[call.handle] = self.finished.get(call.handle, 0) + 1
            assert self.finished[call.handle] == 1, f"call {call.handle} finished twice"
        for e in events:
            assert e.msg in C.MESSAGES
            if e.msg == "LINE_LINEDEVSTATE":
                assert e.param in C.LINEDEVSTATE and e.call is None
                continue
            assert isinstance(e.call, int) and e.call < model._next_handle
            key = (e.call, e.line)
            self.born.add(e.call)
            if e.msg == "LINE_NEWCALL":
                assert self.state.get(key, C.IDLE) in (C.IDLE, NEW) or e.owner is not None
                self.state[key] = NEW
            elif e.msg == "LINE_CALLSTATE":
                assert e.param in C.LINECALLSTATE
                old = self.state.get(key, NEW)  # an app-made call's owner line starts NEW unannounced
                assert verdict(old, e.param) == EMIT, (old, e.param)
                if e.param == C.DISCONNECTED:
                    assert e.mode in C.LINEDISCONNECTMODE
                self.state[key] = e.param
            else:
                assert e.msg == "LINE_CALLINFO" and e.param in C.LINECALLINFOSTATE
                assert self.state.get(key, NEW) != C.IDLE


def no_overdue(m, now):
    for call in m._by_handle.values():
        if call.ended is not None:
            assert now < call.ended + LINGER
        else:
            assert call.lines, call  # a live call always has a line tracking it
            if call.hangup_at is not None:
                assert now < call.hangup_at + GRACE
            assert now < call.created + MAX_AGE


@given(st.lists(op, max_size=60), st.sampled_from([0.0, LINGER]))
def test_random_interleavings(ops, linger):
    m = CallModel(hangup_grace=GRACE, linger=linger, max_age=MAX_AGE, boot_id="p")
    checker = Checker()
    made = []
    now = 0.0
    for o in ops:
        kind = o[0]
        if kind == "tapi":
            events = m.apply(TapiSignal(parse_tapievent(o[1] + o[2]), o[3], None), now)
        elif kind == "hangup":
            events = m.channel_hangup(o[1], o[2], now)
        elif kind == "tick":
            now += o[1]
            events = m.tick(now)
            checker.check(events, m)
            no_overdue(m, now)
            continue
        elif kind == "make":
            made.append(m.make_call(o[1], "200", o[2], now))
            checker.born.add(made[-1].handle)
            events = m.take_events()
        elif kind == "orig":
            if not made:
                continue
            call = made[o[1] % len(made)]
            events = m.originate_response(call.channel_id, o[3], "SIP/x", o[2], now, reason=5)
        elif kind == "resync":
            events = m.resync(o[1], now)
        else:
            events = m.annotate(o[1], "contact", o[2], now)
        checker.check(events, m)
        for call in m._by_handle.values():
            assert (call.ended is None) == bool(call.lines)
    # whatever happened, time alone empties the model
    for _ in range(3):
        nxt = m.next_deadline()
        if nxt is None:
            break
        now = max(now, nxt)
        checker.check(m.tick(now), m)
    now += MAX_AGE + GRACE + LINGER + 1
    checker.check(m.tick(now), m)
    checker.check(m.tick(now + LINGER + 1), m)
    assert m.tracked == 0 and m.next_deadline() is None
    assert not m._by_uid and not m._by_line
    # Every call the model ever made was reported finished, exactly once.
    assert set(checker.finished) == checker.born


@given(st.lists(st.tuples(st.sampled_from(UIDS), st.sampled_from(LINES), st.sampled_from(STATES)), max_size=40))
def test_every_call_that_went_idle_is_freed_after_linger(steps):
    m = CallModel(linger=LINGER, boot_id="p")
    now = 0.0
    idle_at = {}
    for uid, line, state in steps:
        now += 1.0
        m.apply(TapiSignal(parse_tapievent(f"LINE_NEWCALL {line}"), uid, None), now)
        for e in m.apply(TapiSignal(parse_tapievent(f"LINE_CALLSTATE {state}"), uid, None), now):
            if e.param == C.IDLE:
                idle_at[e.call] = now
        m.tick(now)
        for handle, t in idle_at.items():
            call = m.get(handle)
            if now >= t + LINGER:
                assert call is None
            elif call is not None and call.ended is not None:
                assert call.ended <= now
