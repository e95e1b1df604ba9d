"""``asttapi_call_finished`` fires exactly once per call, whatever ``linger`` is and however the call ends.

Through the real plugin host and the real bridge: a plugin implementing the
hook records what it is told. Before issue 13 the bridge asked the model for
a call it had already freed when ``[calls] linger = 0``, so the hook never
fired; calls freed by ``max_calls`` never fired it either.
"""

from __future__ import annotations

import pytest

from asttapi_server.ami.message import Message
from asttapi_server.hookspecs import hookimpl
from asttapi_server.plugin_host import build_plugin_manager

from .fakes import base_config, make_bridge

LINGERS = [0.0, 30.0]


class Recorder:
    def __init__(self) -> None:
        self.finished: list[tuple[int, float | None, tuple]] = []

    @hookimpl
    def asttapi_call_finished(self, call, app):
        # The call is over when the hook runs: ended, every line IDLE.
        self.finished.append((call.handle, call.ended, call.lines))


def wired(**calls):
    config = base_config(**calls)
    host = build_plugin_manager(config.plugins, config=config)
    recorder = Recorder()
    host.register(recorder, "recorder")
    bridge, hub, clock, ami = make_bridge(plugins=host, **calls)
    return bridge, hub, clock, ami, recorder


def user_event(ami, text: str, uniqueid: str, channel: str = "PJSIP/trunk-0001") -> None:
    ami.event(Event="UserEvent", Channel=channel, Uniqueid=uniqueid, UserEvent="TAPI", TAPIEVENT=text)


def ring(ami, uniqueid: str, *lines: str) -> None:
    for line in lines or ("line_1",):
        user_event(ami, f"LINE_NEWCALL {line}", uniqueid)
    user_event(ami, "LINE_CALLSTATE LINECALLSTATE_OFFERING", uniqueid)


def handles(recorder: Recorder) -> list[int]:
    return [handle for handle, _ended, _lines in recorder.finished]


@pytest.mark.parametrize("linger", LINGERS)
def test_pbx_idle_finishes_the_call_once(linger):
    bridge, hub, clock, ami, recorder = wired(linger=linger)
    ring(ami, "900.1", "line_1", "line_2")
    handle = bridge.model.by_uniqueid("900.1").handle
    user_event(ami, "[~900.1&line_2] LINE_CALLSTATE LINECALLSTATE_IDLE", "900.1")
    assert recorder.finished == []  # line_1 still tracks it
    user_event(ami, "LINE_CALLSTATE LINECALLSTATE_CONNECTED", "900.1")
    user_event(ami, "LINE_CALLSTATE LINECALLSTATE_IDLE", "900.1")
    assert handles(recorder) == [handle]
    _h, ended, lines = recorder.finished[0]
    assert ended == clock.seconds() and lines == ()
    # A late IDLE (the h extension), the linger and its expiry add nothing.
    user_event(ami, "LINE_CALLSTATE LINECALLSTATE_IDLE", "900.1")
    clock.advance(linger + 1)
    assert handles(recorder) == [handle]


@pytest.mark.parametrize("linger", LINGERS)
def test_hangup_grace_finishes_the_call_once(linger):
    bridge, hub, clock, ami, recorder = wired(linger=linger, hangup_grace=5.0)
    ring(ami, "901.1")
    handle = bridge.model.by_uniqueid("901.1").handle
    ami.event(Event="Hangup", Uniqueid="901.1", Cause="16", Channel="PJSIP/trunk-0001")
    assert recorder.finished == []
    clock.advance(6)
    assert handles(recorder) == [handle]
    clock.advance(linger + 1)
    assert handles(recorder) == [handle]


@pytest.mark.parametrize("linger", LINGERS)
def test_hangup_without_grace_finishes_the_call_once(linger):
    bridge, hub, clock, ami, recorder = wired(linger=linger, hangup_grace=0.0)
    ring(ami, "902.1")
    handle = bridge.model.by_uniqueid("902.1").handle
    ami.event(Event="Hangup", Uniqueid="902.1", Cause="16", Channel="PJSIP/trunk-0001")
    assert handles(recorder) == [handle]
    clock.advance(linger + 1)
    assert handles(recorder) == [handle]


@pytest.mark.parametrize("linger", LINGERS)
def test_max_age_finishes_the_call_once(linger):
    bridge, hub, clock, ami, recorder = wired(linger=linger, max_age=60.0)
    ring(ami, "903.1")
    handle = bridge.model.by_uniqueid("903.1").handle
    clock.advance(61)
    assert handles(recorder) == [handle]
    clock.advance(linger + 1)
    assert handles(recorder) == [handle]


@pytest.mark.parametrize("linger", LINGERS)
def test_max_calls_eviction_finishes_the_evicted_call_once(linger):
    bridge, hub, clock, ami, recorder = wired(linger=linger, max_calls=1)
    ring(ami, "904.1")
    first = bridge.model.by_uniqueid("904.1").handle
    ring(ami, "904.2")  # no room: the oldest live call is ended
    assert handles(recorder) == [first]
    second = bridge.model.by_uniqueid("904.2").handle
    user_event(ami, "LINE_CALLSTATE LINECALLSTATE_IDLE", "904.2")
    assert handles(recorder) == [first, second]


@pytest.mark.parametrize("linger", LINGERS)
def test_max_calls_eviction_by_a_click_to_dial_finishes_the_evicted_call_once(linger):
    bridge, hub, clock, ami, recorder = wired(linger=linger, max_calls=1)
    ring(ami, "905.1")
    first = bridge.model.by_uniqueid("905.1").handle
    bridge.make_call("line_1", "201", owner=1)
    assert handles(recorder) == [first]


@pytest.mark.parametrize("linger", LINGERS)
def test_resync_finishes_the_dead_calls_once(linger):
    bridge, hub, clock, ami, recorder = wired(linger=linger)
    ring(ami, "906.1")
    ring(ami, "906.2")
    dead = bridge.model.by_uniqueid("906.1").handle
    ami.link(False)
    ami.link(True)
    _h, d = ami.pop("CoreShowChannels")
    d.callback([
        Message.from_items([("Response", "Success"), ("EventList", "start")]),
        Message.from_items([("Event", "CoreShowChannel"), ("Channel", "PJSIP/x-1"), ("Uniqueid", "906.2")]),
        Message.from_items([("Event", "CoreShowChannelsComplete"), ("ListItems", "1")]),
    ])
    assert handles(recorder) == [dead]
    clock.advance(linger + 1)
    assert handles(recorder) == [dead]


@pytest.mark.parametrize("linger", LINGERS)
def test_failed_originate_finishes_the_call_once(linger):
    bridge, hub, clock, ami, recorder = wired(linger=linger)
    d = bridge.make_call("line_1", "95551234", owner=7)
    headers, action = ami.pop("Originate")
    action.callback(Message.from_items([("Response", "Success")]))
    handles_made = []
    d.addCallback(handles_made.append)
    ami.event(Event="OriginateResponse", ActionID="fake-1", Response="Failure",
              Channel="Local/alice@phones", Reason="5", Uniqueid=dict(headers)["ChannelId"])
    assert handles(recorder) == handles_made
    clock.advance(linger + 1)
    assert handles(recorder) == handles_made
