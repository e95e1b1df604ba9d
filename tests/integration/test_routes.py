"""One route per event (issue 25 item 4): the bridge's route table, built once at composition.

One entry per event name (under the one case rule), the core's handler and the
plugins' mappings in it; its names are the link's event filter; ``now`` reaches
the mapping hook; a plugin whose implementation omits ``now`` still works.
"""

from __future__ import annotations

from asttapi_server.hookspecs import hookimpl
from asttapi_server.core.control import CORE_EVENTS
from asttapi_server.idents import wanted_name
from asttapi_server.plugin_host import build_plugin_manager
from asttapi_server.routes import Routes
from asttapi_server.service import wanted_events

from .fakes import base_config, make_bridge
from .test_bridge import user_event


class _Clocked:
    """Maps Newchannel and records the ``now`` it was given."""

    def __init__(self):
        self.seen: list[float] = []

    @hookimpl
    def asttapi_ami_event_names(self):
        return ("newchannel", "VarSet", " Hangup ")

    @hookimpl
    def asttapi_map_ami_event(self, message, now):
        self.seen.append(now)
        return None


class _Old:
    """A third-party plugin written before ``now``: takes (message, app) only."""

    def __init__(self):
        self.apps: list = []

    @hookimpl
    def asttapi_ami_event_names(self):
        return ("VarSet",)

    @hookimpl
    def asttapi_map_ami_event(self, message, app):
        self.apps.append(app)
        return []


def _host(*plugins):
    config = base_config()
    host = build_plugin_manager(config.plugins, config=config)
    for n, plugin in enumerate(plugins):
        host.register(plugin, f"p{n}")
    return host


def test_one_entry_per_name_whatever_its_case_or_who_wants_it():
    clocked = _Clocked()
    bridge, hub, clock, ami = make_bridge(plugins=_host(clocked, _Old()))
    routes = bridge.routes
    names = sorted(routes.names)
    assert names == sorted(set(names)) == sorted(
        {"hangup", "newchannel", "originateresponse", "userevent", "usereventtapi", "varset"})
    assert len(routes) == len(names)
    # Hangup: the core's handler and the plugin's mapping in one route
    hangup = routes.get("HANGUP")
    assert hangup.core is not None and [i.plugin_name for i in hangup.mappers] == ["p0"]
    assert routes.get("Newchannel").core is not None
    assert [i.plugin_name for i in routes.get("varset").mappers] == ["p1", "p0"]  # hook order
    assert routes.get("UserEvent").core is None
    assert routes.get("VarGet") is None


def test_the_link_keeps_exactly_the_routed_names():
    bridge, hub, clock, ami = make_bridge(plugins=_host(_Clocked()))
    assert ami.event_filter == set(bridge.routes.names)
    assert wanted_events(bridge) == bridge.routes.names
    assert {wanted_name(n) for n in CORE_EVENTS} <= bridge.routes.names


def test_now_reaches_the_mapping_hook():
    clocked = _Clocked()
    bridge, hub, clock, ami = make_bridge(plugins=_host(clocked))
    clock.advance(12.5)
    ami.event(Event="Newchannel", Channel="PJSIP/201-00000001", Uniqueid="1.1")
    assert clocked.seen == [clock.seconds()]


def test_a_plugin_without_now_still_works_and_gets_the_plugin_context():
    old = _Old()
    bridge, hub, clock, ami = make_bridge(plugins=_host(old))
    ami.event(Event="VarSet", Variable="X", Value="1")
    assert len(old.apps) == 1


def test_the_table_is_built_again_when_the_plugins_change():
    bridge, hub, clock, ami = make_bridge()
    assert bridge.routes.get("VarSet") is None
    bridge.use_plugins(_host(_Old()))
    assert [i.plugin_name for i in bridge.routes.get("VarSet").mappers] == ["p0"]


def test_assigning_the_plugins_is_refused_use_plugins_says_what_it_does():
    bridge, hub, clock, ami = make_bridge()
    try:
        bridge.plugins = _host()
    except AttributeError:
        pass
    else:  # pragma: no cover
        raise AssertionError("bridge.plugins must be read-only: use_plugins() rebuilds the route table")


def test_two_core_handlers_for_one_name_are_refused():
    import pytest

    with pytest.raises(ValueError):
        Routes({"Hangup": print, "hangup": print}, {})


def test_user_events_still_map(tmp_path):
    bridge, hub, clock, ami = make_bridge()
    user_event(ami, "LINE_NEWCALL line_1", "300.1")
    assert [e.msg for e in hub.events] == ["LINE_NEWCALL"]


def test_the_cores_declared_events_are_its_handlers():
    bridge, hub, clock, ami = make_bridge()
    assert set(bridge.control.event_handlers()) == set(CORE_EVENTS)
