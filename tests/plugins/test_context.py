"""The plugin context (issue 25 item 5): plugins get a narrow ``app``, not the bridge.

What docs/plugins.md promises ("The plugin context") is what these tests use:
config (following reloads), clock and now(), call(handle), drop and
blind_transfer through the core, and the ``model`` older plugins read.
"""

from __future__ import annotations

import dataclasses

import pytest
from twisted.internet.defer import Deferred

from asttapi_server.errors import TelephonyError
from asttapi_server.hookspecs import hookimpl
from asttapi_server.plugin_context import PluginContext
from asttapi_server.plugin_host import build_plugin_manager
from tests.integration.fakes import base_config, make_bridge
from tests.integration.test_bridge import failure_of, user_event


class Seen:
    def __init__(self):
        self.apps: list = []

    @hookimpl
    def asttapi_startup(self, config, app):
        self.apps.append(app)

    @hookimpl
    def asttapi_call_finished(self, call, app):
        self.apps.append(app)


def _ringing(ami, uid="300.1"):
    user_event(ami, "LINE_NEWCALL line_1", uid, channel="PJSIP/trunk-0001")
    user_event(ami, "LINE_CALLSTATE LINECALLSTATE_OFFERING", uid, channel="PJSIP/trunk-0001")


def test_startup_gets_the_context_not_the_bridge():
    from twisted.internet.testing import MemoryReactorClock

    from asttapi_server.service import make_service

    config = base_config()
    config = dataclasses.replace(config, plugins=dataclasses.replace(config.plugins, enabled=()))
    app = make_service(config, MemoryReactorClock())
    seen = Seen()
    app.plugins.register(seen, "seen")
    app.startService()
    app.stopService()
    (ctx,) = seen.apps
    assert isinstance(ctx, PluginContext) and ctx is app.bridge.plugin_context
    assert ctx.config is app.config and ctx.clock is app.reactor


def test_what_the_docs_promise():
    bridge, hub, clock, ami = make_bridge()
    ctx = bridge.plugin_context
    _ringing(ami)
    (handle,) = {e.call for e in hub.events}
    assert ctx.now() == clock.seconds()
    assert ctx.call(handle) is bridge.model.get(handle) and ctx.call(99999) is None
    # the names older plugins read still work
    assert ctx.config is bridge.config and ctx.clock is clock and ctx.model is bridge.model
    # nothing else of the bridge
    for name in ("hub", "ami", "control", "plugins", "carry", "make_call"):
        with pytest.raises(AttributeError):
            getattr(ctx, name)


def test_drop_goes_through_the_core_like_a_clients_request():
    bridge, hub, clock, ami = make_bridge()
    ctx = bridge.plugin_context
    assert failure_of(ctx.drop(99999)).lineerr == "LINEERR_INVALCALLHANDLE"
    _ringing(ami)
    (handle,) = {e.call for e in hub.events}
    d = ctx.drop(handle)
    headers, answer = ami.pop("Hangup")
    assert ("Channel", "PJSIP/trunk-0001") in headers
    answer.callback(None)
    assert d.called


def test_blind_transfer_fails_as_a_client_request_would():
    bridge, hub, clock, ami = make_bridge()
    d: Deferred = bridge.plugin_context.blind_transfer(12345, "200")
    assert isinstance(failure_of(d), TelephonyError)


def test_config_follows_a_reload():
    bridge, hub, clock, ami = make_bridge()
    ctx = bridge.plugin_context
    new = dataclasses.replace(bridge.config, source="reloaded")
    bridge.reconfigure(new)
    assert ctx.config is new


def test_call_finished_plugins_get_the_same_context():
    config = base_config()
    host = build_plugin_manager(config.plugins, config=config)
    seen = Seen()
    host.register(seen, "seen")
    bridge, hub, clock, ami = make_bridge(plugins=host)
    _ringing(ami)
    user_event(ami, "LINE_CALLSTATE LINECALLSTATE_IDLE", "300.1", channel="PJSIP/trunk-0001")
    assert seen.apps == [bridge.plugin_context]


def test_the_context_names_the_pbx_of_a_call():
    """app.pbx(handle): a Uniqueid names a call only with its PBX (several PBXs, issue 25)."""
    bridge, hub, clock, ami = make_bridge()
    ctx = bridge.plugin_context
    _ringing(ami)
    (call,) = bridge.model.live_calls()
    assert ctx.pbx(call.handle) == "default" and ctx.pbx(call.handle + 99) is None
