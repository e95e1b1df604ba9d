"""CallModel.save_state / restore_state: a restart in the middle of real calls changes nothing.

The strongest check: cut a real capture at every point, carry the model's
state across a JSON round trip into a fresh model (a new server process),
feed it the rest of the capture, and compare with a model that never
stopped. Then the edges: what is not saved, and stores that must be refused
whole (the adapter turns the ValueError into one log line).
"""

from __future__ import annotations

import copy
import json

import pytest

from asttapi_server.core import CallModel
from tests.core.helpers import brief, replay, sig, transcribe

UID = "1795674354.1"


def json_round_trip(data):
    return json.loads(json.dumps(data))


def restarted(model: CallModel, now: float, **kw) -> CallModel:
    fresh = CallModel(hangup_grace=model.hangup_grace, max_age=model.max_age, linger=model.linger, **kw)
    fresh.restore_state(json_round_trip(model.save_state()), now)
    return fresh


def views(model: CallModel) -> list:
    """What clients can read: every live call's snapshot on every line it tracks."""
    out = []
    for handle in sorted(model._by_handle):
        call = model.get(handle)
        if call.ended is None:
            out += [model.snapshot(call, line) for line in call.seen_lines]
    return out


def renumbered(events) -> list[tuple]:
    """brief(), with handles numbered by first appearance."""
    order: dict = {}
    return [(msg, line, order.setdefault(call, len(order)) if call else call, param, mode)
            for msg, line, call, param, mode in brief(events)]


def ring_group_05():
    items = transcribe("ami/05_inbound_call.monitor.raw")
    first = next(i for i in items if i[0] == "tapi")
    items.insert(items.index(first) + 1, ("tapi", "LINE_NEWCALL line_2", first[2], first[3]))
    return items


@pytest.mark.parametrize("capture", ["05", "05-ring-group", "07"])
def test_a_restart_at_any_point_of_a_real_call_changes_nothing_clients_see(capture):
    if capture == "05-ring-group":
        items = ring_group_05()
    else:
        items = transcribe({"05": "ami/05_inbound_call.monitor.raw", "07": "ami/07_outbound_busy.monitor.raw"}[capture])
    whole = CallModel(hangup_grace=5.0, linger=30.0)
    expected = replay(whole, items, start=100.0)
    for cut in range(len(items) + 1):
        before = CallModel(hangup_grace=5.0, linger=30.0)
        head = replay(before, items[:cut], start=100.0)
        now = 100.0 + 0.01 * cut
        after = restarted(before, now)
        assert views(after) == views(before), cut
        tail = replay(after, items[cut:], start=now)
        # Calls born after the restart get handles past the gap; the rest is identical.
        assert renumbered(head + tail) == renumbered(expected), cut
        assert [e.callinfo for e in head + tail] == [e.callinfo for e in expected], cut


def test_the_old_handle_names_the_call_and_new_handles_never_collide():
    m = CallModel()
    m.apply(sig("LINE_NEWCALL line_1", UID), 1.0)
    m.apply(sig("LINE_CALLSTATE LINECALLSTATE_OFFERING", UID), 1.0)
    handle = m.by_uniqueid(UID).handle
    after = restarted(m, 2.0)
    assert after.get(handle).uniqueid == UID and after.by_uniqueid(UID).handle == handle
    assert [c.handle for c in after.calls_on_line("line_1")] == [handle]
    # A call made just before the crash may hold a handle the store never saw:
    # the next handle is far past anything the old run could have given out.
    after.apply(sig("LINE_NEWCALL line_1", "1795674354.9"), 3.0)
    assert after.by_uniqueid("1795674354.9").handle == handle + 1 + CallModel.RESTART_HANDLE_GAP
    assert after.stats["restored"] == 1


def test_later_events_and_hangups_for_a_restored_call_are_applied():
    m = CallModel(hangup_grace=5.0)
    m.apply(sig("LINE_NEWCALL line_1", UID, "PJSIP/trunk-00000001"), 1.0)
    m.apply(sig("LINE_CALLSTATE LINECALLSTATE_CONNECTED", UID), 1.0)
    after = restarted(m, 2.0)
    handle = after.by_uniqueid(UID).handle
    assert after.get(handle).channel == "PJSIP/trunk-00000001"
    assert brief(after.apply(sig("LINE_CALLSTATE LINECALLSTATE_ONHOLD", UID), 3.0)) == [
        ("LINE_CALLSTATE", "line_1", handle, "LINECALLSTATE_ONHOLD", None)]
    assert after.channel_hangup(UID, 16, 4.0) == []
    late = after.tick(9.0)
    assert [(e.param, e.synthetic) for e in late] == [
        ("LINECALLSTATE_DISCONNECTED", True), ("LINECALLSTATE_IDLE", True)]


def test_a_seen_hangup_keeps_its_grace_deadline_across_the_restart():
    m = CallModel(hangup_grace=5.0)
    m.apply(sig("LINE_NEWCALL line_1", UID), 1.0)
    m.apply(sig("LINE_CALLSTATE LINECALLSTATE_CONNECTED", UID), 1.0)
    m.channel_hangup(UID, 17, 10.0)
    after = restarted(m, 11.0)
    assert after.next_deadline() == 15.0
    assert [e.mode for e in after.tick(15.0)] == ["LINEDISCONNECTMODE_BUSY", None]


def test_resync_ends_restored_calls_whose_channels_are_gone():
    m = CallModel()
    for n, uid in enumerate(("1795674354.1", "1795674354.5")):
        m.apply(sig("LINE_NEWCALL line_1", uid), float(n))
        m.apply(sig("LINE_CALLSTATE LINECALLSTATE_CONNECTED", uid), float(n))
    after = restarted(m, 5.0)
    events = after.resync({"1795674354.5"}, 6.0)
    gone = after.by_uniqueid("1795674354.1").handle
    assert brief(events) == [
        ("LINE_CALLSTATE", "line_1", gone, "LINECALLSTATE_DISCONNECTED", "LINEDISCONNECTMODE_UNKNOWN"),
        ("LINE_CALLSTATE", "line_1", gone, "LINECALLSTATE_IDLE", None),
    ]
    assert [c.uniqueid for c in after.calls_on_line("line_1")] == ["1795674354.5"]


def test_a_made_call_keeps_its_channel_id_but_not_its_owner_session():
    m = CallModel(boot_id="t")
    call = m.make_call("line_1", "95551234", owner=7, now=1.0)
    after = restarted(m, 2.0, boot_id="u")
    again = after.get(call.handle)
    assert (again.channel_id, again.owner_line, again.owner, again.callinfo["calledid"]) == (
        "asttapi-t-1", "line_1", None, "95551234")
    # The dialplan's LINE_NEWCALL on our ChannelId is still absorbed: same handle, no owner to hide it from.
    (newcall,) = after.apply(sig("LINE_NEWCALL line_1", "asttapi-t-1"), 3.0)
    assert (newcall.call, newcall.owner) == (call.handle, None)
    assert after.originate_response("asttapi-t-1", "asttapi-t-1", "Local/alice@phones-00000003;1", True, 3.0) == []


def test_ended_and_lingering_calls_are_not_saved():
    m = CallModel(linger=30.0)
    m.apply(sig("LINE_NEWCALL line_1", UID), 1.0)
    m.apply(sig("LINE_CALLSTATE LINECALLSTATE_IDLE", UID), 2.0)
    assert m.tracked == 1  # lingering
    assert m.save_state()["calls"] == []


def test_restore_keeps_the_most_recent_calls_within_a_limit():
    m = CallModel()
    for n in range(5):
        m.apply(sig("LINE_NEWCALL line_1", f"1795674354.{n}"), float(n))
    fresh = CallModel()
    restored = fresh.restore_state(json_round_trip(m.save_state()), 9.0, limit=2)
    assert [c.handle for c in restored] == [4, 5] and fresh.tracked == 2


def good_state():
    m = CallModel()
    m.apply(sig("LINE_NEWCALL line_1", UID, "PJSIP/trunk-00000001"), 1.0)
    m.apply(sig("LINE_CALLSTATE LINECALLSTATE_OFFERING", UID), 1.0)
    return json_round_trip(m.save_state())


def _set(path, value):
    def change(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


@pytest.mark.parametrize(("change", "reason"), [
    (lambda d: d.clear(), "not an asttapi call store"),
    (_set(("format",), "something-else"), "not an asttapi call store"),
    (_set(("version",), 2), "store version 2, this server reads version 1"),
    (_set(("next_handle",), "7"), "next_handle is '7'"),
    (_set(("calls",), {}), "calls is {}"),
    (_set(("calls", 0), []), "call #0: not an object"),
    (_set(("calls", 0, "handle"), True), "call #0: handle is True"),
    (_set(("calls", 0, "handle"), -3), "call #0: handle is -3"),
    (_set(("calls", 0, "uniqueids"), []), "call #0: uniqueids are not one or two Asterisk Uniqueids"),
    (_set(("calls", 0, "states"), {"line_1": "LINECALLSTATE_WHATEVER"}),
     "call #0: states: 'LINECALLSTATE_WHATEVER' is not a call state"),
    (_set(("calls", 0, "states"), {"line_1": "LINECALLSTATE_IDLE"}), "call #0: no line tracks the call"),
    (_set(("calls", 0, "created"), None), "call #0: created is None"),
    # What lineDrop would hang up: never a /regex/ (every channel) or a second AMI line.
    (_set(("calls", 0, "channel"), "/^/"), "call #0: channel is not a channel name"),
    (_set(("calls", 0, "channel"), "PJSIP/a\r\nAction: Hangup"), "call #0: channel is not a channel name"),
    (lambda d: d["calls"][0].update(uniqueid="/^/", uniqueids=["/^/"]),
     "call #0: uniqueids are not one or two Asterisk Uniqueids"),
    (_set(("calls", 0, "callinfo"), "x" * 100), "call #0: callinfo is 'xxxxxxxx"),
    # Issue 22 item 8: every field by the rules of live input.
    (_set(("calls", 0, "states"), {"\ud800\u2028evil": "LINECALLSTATE_OFFERING"}),
     "call #0: states: '\\ud800\\u2028evil' is not a line name"),
    (_set(("calls", 0, "states"), {"line 1": "LINECALLSTATE_OFFERING"}), "call #0: states: 'line 1' is not a line"),
    (_set(("calls", 0, "states"), {f"l{i}": "LINECALLSTATE_OFFERING" for i in range(65)}),
     "call #0: states name 65 lines (1 to 64 allowed)"),
    (_set(("calls", 0, "owner_line"), "line_1\n"), "call #0: owner_line 'line_1\\n' is not a line name"),
    (_set(("calls", 0, "created"), float("nan")), "call #0: created is nan"),
    (_set(("calls", 0, "updated"), float("inf")), "call #0: updated is inf"),
    (_set(("calls", 0, "handle"), 2**60), "call #0: handle is 1152921504606846976"),
    (_set(("next_handle",), 2**63), "next_handle is 9223372036854775808"),
    (_set(("calls", 0, "uniqueids"), ["1.1", "1.2", UID]), "call #0: uniqueids are not one or two"),
    (_set(("calls", 0, "uniqueids"), [UID, UID]), "call #0: uniqueids are not one or two"),
    (_set(("calls", 0, "uniqueid"), "1.9"), "call #0: uniqueid is not one of uniqueids"),
    (_set(("calls", 0, "channel_id"), "asttapi-x-1"), "call #0: channel_id is not one of uniqueids"),
    (_set(("calls", 0, "channel"), "PJSIP/a b"), "call #0: channel is not a channel name"),
    (_set(("calls", 0, "channel"), "\x01/^/"), "call #0: channel is not a channel name"),
    (_set(("calls", 0, "modes"), {"line_1": "LINEDISCONNECTMODE_EVIL"}), "call #0: modes are not"),
    (_set(("calls", 0, "ci_sent"), {"line_1": ["LINECALLINFOSTATE_X", 0]}), "call #0: ci_sent is not"),
    (_set(("calls", 0, "ci_sent"), {"line_1": ["LINECALLINFOSTATE_CALLERID", 99]}), "call #0: ci_sent is not"),
    (_set(("calls", 0, "hangup_cause"), -1), "call #0: hangup_cause is -1"),
    (_set(("calls", 0, "callinfo", "callerid"), 12345), "call #0: callinfo callerid is 12345"),
    (_set(("calls", 0, "callinfo", "calleridname"), "Bob\ud800"), "call #0: callinfo calleridname is"),
    (_set(("calls", 0, "callinfo", "origin"), "LINECALLORIGIN_EVIL"), "call #0: callinfo origin is"),
    (_set(("calls", 0, "callinfo", "contact"), {"n": float("nan")}), "call #0: callinfo contact is not plain JSON"),
    (_set(("calls", 0, "callinfo", "contact"), "x" * 70_000), "call #0: callinfo contact is 70002 bytes"),
    (_set(("calls", 0, "callinfo", "k\u2028"), 1), "call #0: callinfo key 'k\\u2028' is not allowed"),
])
def test_a_malformed_store_is_refused_whole_and_leaves_the_model_alone(change, reason):
    data = good_state()
    data["calls"].append(copy.deepcopy(data["calls"][0]) | {"handle": 9, "uniqueid": "x.2", "uniqueids": ["x.2"]})
    change(data)
    m = CallModel()
    with pytest.raises(ValueError) as e:
        m.restore_state(data, 5.0)
    assert str(e.value).startswith(reason) and "\n" not in str(e.value) and len(str(e.value)) < 120
    assert m.tracked == 0 and m.calls_on_line("line_1") == [] and m.by_uniqueid(UID) is None


def test_not_a_dict_at_all_is_refused():
    for data in (None, [], "asttapi-calls", 1):
        with pytest.raises(ValueError, match="not a JSON object"):
            CallModel().restore_state(data, 0.0)


def test_save_key_changes_exactly_when_the_saved_record_does():
    """The store skips encoding a call whose save_key is unchanged: over a real
    ring-group call, step by step, the key must change whenever the record does."""
    m = CallModel(hangup_grace=5.0, linger=30.0)
    before: dict = {}
    changes = 0
    for n, item in enumerate(ring_group_05()):
        replay(m, [item], start=100.0 + n * 0.01)
        m.annotate(1, "contact", {"name": "Ext Caller", "n": n // 7}, 100.0 + n * 0.01)
        for call in m.live_calls():
            record, key = m.save_call(call), m.save_key(call)
            if call.handle in before:
                old_record, old_key = before[call.handle]
                assert (record == old_record) == (key == old_key), (n, item)
                changes += record != old_record
            before[call.handle] = (record, key)
    assert changes >= 5  # the call did change along the way; the check was not vacuous


def test_restored_caller_ids_are_cut_like_live_ones():
    data = good_state()
    data["calls"][0]["callinfo"]["calleridname"] = "\u00e9" * 1000
    m = CallModel(max_field_bytes=64)
    (call,) = m.restore_state(data, 5.0)
    name = call.callinfo["calleridname"]
    assert len(name.encode()) <= 64 and name.endswith("[truncated]")
    assert call.callinfo["uniqueid"] == UID and "connectedid" in call.callinfo


def test_restored_calls_wait_for_asterisk_to_confirm_their_channel():
    m = CallModel()
    m.apply(sig("LINE_NEWCALL line_1", UID, "PJSIP/trunk-00000001"), 1.0)
    m.apply(sig("LINE_CALLSTATE LINECALLSTATE_CONNECTED", UID), 1.0)
    assert m.by_uniqueid(UID).confirmed  # live calls are Asterisk's own word
    data = json_round_trip(m.save_state())
    ok, forged = CallModel(), CallModel()
    assert not ok.restore_state(copy.deepcopy(data), 2.0)[0].confirmed
    data["calls"][0]["channel"] = "PJSIP/director-00000007"  # another live call's channel
    (call,) = forged.restore_state(data, 2.0)
    live = {UID: "PJSIP/trunk-00000001", "1795674360.9": "PJSIP/director-00000007"}
    assert ok.resync(live, 3.0) == [] and ok.by_uniqueid(UID).confirmed
    ended = forged.resync(live, 3.0)
    assert [(e.param, e.synthetic) for e in ended] == [
        ("LINECALLSTATE_DISCONNECTED", True), ("LINECALLSTATE_IDLE", True)]
    assert call.ended == 3.0 and forged.endings["unconfirmed"] == 1
    assert [d.key for d in ended.diagnostics] == [("teardown", "unconfirmed")]
