"""The bundled mapping of Asterisk's own channel events to TAPI signals, for device lines.

The twin of :mod:`asttapi_server.mappings.tapi_userevent`: that plugin reads the
dialplan's ``UserEvent(TAPI,...)``, this one reads Newchannel, Newstate,
DialBegin, ... for the lines configured with ``device = "PJSIP/201"``. The
mapping itself, pure and tested on real captures, is
:mod:`asttapi_server.core.device_lines`; this module only adapts it to the
``asttapi_map_ami_event`` hook (the hook gives no time, so ``now`` is the
bridge's clock).

It keeps no call state: each call of the hook hands it ``calls``, a
read-only view of what the call model knows of device channels
(:class:`asttapi_server.core.legs.CallsView`), and what the mapping learns
goes back to the model as notes among its signals. So a restart (the call
store restores the model, legs included) and a reload (a new instance of
this plugin) need no hand-over: the calls under way carry on.

The plugin host registers it (before the site plugins, so a site plugin
registered after it can still override an event) only when some line has a
``device``; without device lines nothing changes, not even which AMI events
the server decodes. See ``docs/device-lines.md``.

One line, one source: while device lines exist this plugin also takes the
dialplan's TAPI UserEvents, maps them with the UserEvent mapping
(:mod:`asttapi_server.mappings.tapi_userevent`) and passes each signal
through :meth:`DeviceLines.guard <asttapi_server.core.device_lines.DeviceLines.guard>`:
a UserEvent cannot name a device line (what is left drives the dialplan's own
call, even on a device channel's Uniqueid: the model keeps the two apart). What it refuses comes back
as a ``Diagnostic`` the server logs at most once a minute per kind. (The UserEvent
mapping is ``trylast`` and this one is not, so this one sees a UserEvent
first; a test pins that order.)
"""

from __future__ import annotations

from typing import Any

from asttapi_server.ami.parser import ByName
from asttapi_server.core.device_lines import EVENT_NAMES, DeviceLines
from asttapi_server.core.effects import Diagnostic
from asttapi_server.core.grammar import quoted
from asttapi_server.hookspecs import hookimpl
from asttapi_server.mappings import tapi_userevent

#: The dialplan's TAPI UserEvents, by the parser's one case rule.
_USER_EVENTS: ByName[bool] = ByName(dict.fromkeys(tapi_userevent.EVENT_NAMES, True))


class ChannelEvents:
    """The hook implementations around one :class:`DeviceLines` (per server, never module-global)."""

    def __init__(self, devices: dict[str, list[str]]) -> None:
        self.lines = DeviceLines(devices)

    @hookimpl(trylast=True)
    def asttapi_ami_event_names(self):
        return (*EVENT_NAMES, *tapi_userevent.EVENT_NAMES)

    # Not trylast: it must see a UserEvent before the (trylast) UserEvent
    # mapping; site plugins, registered after the built-ins, still come first.
    @hookimpl
    def asttapi_map_ami_event(self, message, app, calls):
        if message.name in _USER_EVENTS:
            return self._user_event(message, app)
        if calls is None:
            return None  # (no call model to read: a host that is not the server's)
        clock = getattr(app, "clock", None)
        now = clock.seconds() if clock is not None else 0.0
        signals = self.lines.feed(message.name, message.get, now, calls)
        # None, not []: an event about no device channel is not ours to claim.
        return signals or None

    @hookimpl
    def asttapi_map_channel_list(self, messages, since, app, calls):
        """Adopt the listed device channels never seen start; end ours that are gone."""
        if calls is None:
            return None
        clock = getattr(app, "clock", None)
        now = clock.seconds() if clock is not None else 0.0
        items = [m.get for m in messages if m.kind == "event" and m.name.lower() == "coreshowchannel"]
        return self.lines.resync(items, now, calls, since=since)

    def _user_event(self, message, app):
        """The dialplan's TAPI UserEvent, minus what it says about device lines."""
        signals = tapi_userevent.asttapi_map_ami_event(message, app)
        if not signals:
            return signals
        kept: list = []
        for signal in signals:
            if type(signal) is Diagnostic:  # the UserEvent mapping's report of a malformed event
                kept.append(signal)
                continue
            guarded, refused = self.lines.guard(signal)
            if guarded is not None:
                kept.append(guarded)
            if refused:
                # One dialplan line repeats on every call: the server logs
                # each (line set, verb) at most once a minute.
                kept.append(Diagnostic(
                    ("device line named by a UserEvent", refused, signal.command.verb),
                    "TAPI UserEvent {raw!r} names device line(s) {lines}: ignored for them (a device"
                    " line's calls come from its phone's channel events only)",
                    {"raw": quoted(signal.command), "lines": ", ".join(refused)},
                ))
        return kept


def devices_of(config: Any) -> dict[str, list[str]]:
    """``{device: [line, ...]}`` of the configured device lines (empty without any)."""
    devices: dict[str, list[str]] = {}
    for name, line in (getattr(config, "lines", None) or {}).items():
        device = getattr(line, "device", None)
        if device:
            devices.setdefault(device, []).append(name)
    return devices


def builtin_plugin(config: Any) -> ChannelEvents | None:
    """What the plugin host registers: the mapping for the configured device lines, or None."""
    devices = devices_of(config)
    return ChannelEvents(devices) if devices else None
