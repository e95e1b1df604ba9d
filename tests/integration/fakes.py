"""Fakes for bridge tests: an AMI link that records actions, a hub that records events."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from asttapi_server.ami.message import Message
from asttapi_server.service import build_bridge
from asttapi_server.config import CallsConfig, Config, LineConfig, load_config
from asttapi_server.core.model import CallModel
from asttapi_server.plugin_host import build_plugin_manager


class FakeAMI:
    """Stands in for AMILink: records actions; the test answers them.

    ``Getvar`` of a presentation (``CALLERID(pres)``, ``CONNECTEDLINE(pres)``, which the core reads
    before it shows a party) is answered at once as Asterisk would, from ``presentation`` (channel ->
    value, default ``allowed_not_screened``), and recorded in ``getvars``; with ``answer_getvar =
    False`` it waits in ``actions`` like any other action.
    """

    def __init__(self) -> None:
        self.event_observers: list = []
        self.link_observers: list = []
        self.actions: list[tuple[str, list[tuple[str, str]], Deferred]] = []
        self.event_filter = None
        self._next_id = 0
        self.presentation: dict[str, str] = {}
        self.getvars: list[tuple[str, str]] = []
        self.answer_getvar = True

    def add_event_observer(self, fn) -> None:
        self.event_observers.append(fn)

    def add_link_observer(self, fn) -> None:
        self.link_observers.append(fn)

    def set_event_filter(self, names) -> None:
        # the real link compares names by idents.wanted_name
        self.event_filter = None if names is None else {n.strip().lower() for n in names}

    def send_action(self, action, *, timeout=None, on_action_id=None):
        action, headers = action  # an ami.actions.Action, as the real link takes
        d: Deferred = Deferred()
        self._next_id += 1
        if on_action_id is not None:
            on_action_id(f"fake-{self._next_id}")
        fields = dict(headers)
        if action == "Getvar" and self.answer_getvar:
            self.getvars.append((fields["Channel"], fields["Variable"]))
            value = self.presentation.get(fields["Channel"], "allowed_not_screened")
            d.callback(Message.from_items([("Response", "Success"), ("Variable", fields["Variable"]),
                                           ("Value", value)]))
            return d
        self.actions.append((action, list(headers), d))
        return d

    def link(self, up: bool) -> None:
        for fn in list(self.link_observers):
            fn(up)

    def event(self, **headers: str) -> None:
        msg = Message.from_items(list(headers.items()))
        for fn in list(self.event_observers):
            fn(msg)

    def pop(self, name: str):
        for i, (action, headers, d) in enumerate(self.actions):
            if action == name:
                del self.actions[i]
                return headers, d
        raise AssertionError(f"no pending {name} action; have {[a for a, _, _ in self.actions]}")


class RecordingHub:
    def __init__(self) -> None:
        self.events: list = []

    def publish(self, event) -> int:
        self.events.append(event)
        return len(self.events)


def base_config(**calls: Any) -> Config:
    config = load_config(None, {})
    lines = {
        "line_1": LineConfig(name="line_1", channel="Local/alice@phones", context="trunklocal"),
    }
    return _replace(config, lines=lines, calls=CallsConfig(**{**_calls_defaults(config), **calls}))


def _calls_defaults(config: Config) -> dict:
    c = config.calls
    return {"hangup_grace": c.hangup_grace, "max_age": c.max_age, "linger": c.linger,
            "max_calls": c.max_calls, "max_lines": c.max_lines, "max_field_bytes": c.max_field_bytes}


def _replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)


def make_bridge(*, plugins=None, link_up: bool = True, **calls: Any):
    """A bridge wired to fakes; returns (bridge, hub, clock, ami)."""
    config = base_config(**calls)
    clock = Clock()
    clock.advance(1_795_674_000)
    ami = FakeAMI()
    hub = RecordingHub()
    model = CallModel(**config.calls.model_args())
    host = plugins if plugins is not None else build_plugin_manager(config.plugins, config=config, clock=clock)
    bridge = build_bridge(config, ami, model, host, hub, clock)
    if getattr(host, "app", True) is None:
        host.app = bridge.plugin_context  # as startup() does in the service (app.config is what plugins read)
    if link_up:
        ami.link(True)
        _headers, d = ami.pop("CoreShowChannels")
        d.callback([Message.from_items([("Response", "Success"), ("EventList", "start")])])
        hub.events.clear()
    return bridge, hub, clock, ami
