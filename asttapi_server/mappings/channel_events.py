"""The bundled mapping of Asterisk's own channel events to TAPI signals, for device lines.

The twin of :mod:`asttapi_server.mappings.tapi_userevent`: that plugin reads the
dialplan's ``UserEvent(TAPI,...)``, this one reads Newchannel, Newstate,
DialBegin, ... for the lines configured with ``device = "PJSIP/201"``. The
mapping itself, pure and tested on real captures, is
:mod:`asttapi_server.core.device_lines`; this module only adapts it to the
``asttapi_map_ami_event`` hook (``now`` comes with the hook).

The plugin host registers it (before the site plugins, so a site plugin
registered after it can still override an event) only when some line has a
``device``; without device lines nothing changes, not even which AMI events
the server decodes. See ``docs/device-lines.md``.

One line, one source: a dialplan's TAPI UserEvent cannot name a device line.
That rule is the core's (:mod:`asttapi_server.core.sources`, applied by
``CallControl.signals`` to every signal that is not a device's, whichever
plugin mapped it and whatever the hook order); this plugin takes no
UserEvent.
"""

from __future__ import annotations

from typing import Any

from asttapi_server.core.device_lines import EVENT_NAMES, DeviceLines
from asttapi_server.hookspecs import hookimpl


class ChannelEvents:
    """The hook implementations around one :class:`DeviceLines` (per server, never module-global)."""

    def __init__(self, devices: dict[str, list[str]]) -> None:
        self.lines = DeviceLines(devices)

    @hookimpl(trylast=True)
    def asttapi_ami_event_names(self):
        return EVENT_NAMES

    # Site plugins, registered after the built-ins, still come first.
    @hookimpl
    def asttapi_map_ami_event(self, message, now):
        signals = self.lines.feed(message.name, message.get, now)
        # None, not []: an event about no device channel is not ours to claim.
        return signals or None

    @hookimpl
    def asttapi_map_channel_list(self, messages, since, now):
        """Adopt the listed device channels never seen start; end ours that are gone."""
        items = [m.get for m in messages if m.kind == "event" and m.name.lower() == "coreshowchannel"]
        return self.lines.resync(items, now, since=since)

    @hookimpl
    def asttapi_calls_restored(self, calls, app):
        """Follow the device calls a restart restored (same handles): no second adoption at the resync."""
        for call in calls:
            self.lines.seed(call.uniqueid, call.channel, call.states, call.callinfo, call.updated)


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
