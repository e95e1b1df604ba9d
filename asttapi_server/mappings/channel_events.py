"""The bundled mapping of Asterisk's own channel events to TAPI signals, for device lines.

The twin of :mod:`asttapi_server.mappings.tapi_userevent`: that plugin reads the
dialplan's ``UserEvent(TAPI,...)``, this one reads Newchannel, Newstate,
DialBegin, ... for the lines configured with ``device = "PJSIP/201"``. The
mapping itself, pure and tested on real captures, is
:mod:`asttapi_server.core.device_lines`; this module only adapts it to the
``asttapi_map_ami_event`` hook (the hook gives no time, so ``now`` is the
bridge's clock).

The plugin host registers it (``trylast``, like the UserEvent mapping, so a
site plugin can still override an event) only when some line has a
``device``; without device lines nothing changes, not even which AMI events
the server decodes. See ``docs/device-lines.md``.
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

    @hookimpl(trylast=True)
    def asttapi_map_ami_event(self, message, app):
        clock = getattr(app, "clock", None)
        now = clock.seconds() if clock is not None else 0.0
        signals = self.lines.feed(message.name, message.get, now)
        # None, not []: an event about no device channel is not ours to claim.
        return signals or None


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
