"""The built-in TAPI UserEvent mapping, on real AMI captures."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.defer import maybeDeferred

from asttapi_server.mappings import tapi_userevent
from asttapi_server.hookspecs import hookimpl
from asttapi_server.plugin_host import PluginHost

from .conftest import FakePluginsConfig

DATA = Path(__file__).resolve().parents[1] / "data"


def messages(path: Path):
    from asttapi_server.ami.parser import AMIParser

    return AMIParser().feed(path.read_bytes())


def host():
    from asttapi_server.plugin_host import build_plugin_manager

    return build_plugin_manager(FakePluginsConfig(), entry_points=[], search_paths=[],
                                run_in_thread=maybeDeferred)


def test_inbound_call_capture_maps_every_tapi_userevent():
    h = host()
    events = messages(DATA / "ami" / "05_inbound_call.monitor.raw")
    wanted = [m for m in events if m.kind == "event" and m.name in h.wanted_event_names()]
    signals = [s for m in wanted for s in h.map_ami_event(m)]
    verbs = [s.command.verb for s in signals]
    assert verbs[:4] == ["LINE_NEWCALL", "LINE_CALLSTATE", "SET", "LINE_CALLINFO"]
    assert "line_1" in signals[0].command.lines + signals[0].command.args
    assert signals[0].uniqueid and signals[0].channel.startswith("Local/100@inbound")
    assert signals[2].command.args == ("CALLERID", "0301234567")
    connected = [s for s in signals if s.command.args[:1] == ("LINECALLSTATE_CONNECTED",)]
    assert connected and connected[0].command.call_id


def test_only_user_events_are_wanted():
    assert host().wanted_event_names() == frozenset({"UserEvent", "UserEventTAPI"})


@pytest.mark.parametrize("capture", sorted(p.name for p in (DATA / "ami-legacy").glob("*.raw")))
def test_legacy_dialects_map(capture):
    h = host()
    signals = [s for m in messages(DATA / "ami-legacy" / capture) if m.kind == "event"
               for s in h.map_ami_event(m)]
    assert signals, capture


def make_message(body_lines):
    from asttapi_server.ami.parser import AMIParser

    raw = "Asterisk Call Manager/11.0.0\r\n" + "\r\n".join(body_lines) + "\r\n\r\n"
    return AMIParser().feed(raw.encode())[0]


def test_malformed_tapievent_is_reported_with_its_text_and_mapped_to_no_signal(logged):
    from asttapi_server.core.effects import Diagnostic

    msg = make_message(["Event: UserEvent", "Channel: Local/100@inbound-00000000;2", "Uniqueid: 1.1",
                        "UserEvent: TAPI", "TAPIEVENT: LINE_BOGUS nonsense"])
    (report,) = host().map_ami_event(msg)
    assert isinstance(report, Diagnostic) and report.fields["raw"] == "LINE_BOGUS nonsense"
    # Keyed by the kind of problem, never by the PBX's text; the server logs it (throttled).
    assert report.key == ("tapi_userevent", "unknown verb")
    assert logged == []


def test_other_user_events_are_left_to_other_plugins():
    msg = make_message(["Event: UserEvent", "UserEvent: CRMNOTE", "Note: hello"])
    assert tapi_userevent.asttapi_map_ami_event(msg, None) is None
    assert host().map_ami_event(msg) == []


def test_a_site_plugin_overrides_the_builtin_mapping():
    class Override:
        @hookimpl
        def asttapi_ami_event_names(self):
            return ["UserEvent"]

        @hookimpl
        def asttapi_map_ami_event(self, message):
            return ["site signal"]

    h = host()
    h.register(Override(), "site")
    msg = make_message(["Event: UserEvent", "Uniqueid: 1.1", "UserEvent: TAPI",
                        "TAPIEVENT: LINE_CALLSTATE LINECALLSTATE_OFFERING"])
    assert h.map_ami_event(msg) == ["site signal"]

