"""The bundled mapping of Asterisk's own channel events to TAPI signals, for device lines.

The twin of :mod:`asttapi_server.mappings.tapi_userevent`: that plugin reads the
dialplan's ``UserEvent(TAPI,...)``, this one reads Newchannel, Newstate,
DialBegin, ... for the lines configured with ``device = "PJSIP/201"``. The
mapping itself, pure and tested on real captures, is
:mod:`asttapi_server.core.device_lines`; this module only adapts it to the
``asttapi_map_ami_event`` hook (``now`` comes with the hook).

It keeps no call state: each call of the hook hands it ``calls``, a
read-only view of what the PBX's call model knows of device channels
(:class:`asttapi_server.core.legs.CallsView`), and what the mapping learns
goes back to that model as notes among its signals. So a restart (the call
store restores the models, legs included) and a reload (a new instance of
this plugin) need no hand-over: the calls under way carry on.

Several PBXs: the hooks are told which PBX an event is of (``pbx``) and
hand that PBX's view; each PBX's device lines have a :class:`DeviceLines`
of their own (configuration only: which devices feed which lines), so the
same device name and the same Uniqueids on two Asterisks are followed apart.

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

from asttapi_server.config import DEFAULT_PBX
from asttapi_server.core.device_lines import EVENT_NAMES, DeviceLines
from asttapi_server.hookspecs import hookimpl


class ChannelEvents:
    """The hook implementations around one :class:`DeviceLines` per PBX (per server, never
    module-global): which devices feed which lines on that PBX. The calls are the PBX's
    call model's (the hooks' ``calls``)."""

    def __init__(self, devices: dict[str, list[str]], by_pbx: dict[str, dict[str, list[str]]] | None = None) -> None:
        by_pbx = by_pbx if by_pbx is not None else {DEFAULT_PBX: devices}
        #: Each PBX's device lines (a PBX without any has none here).
        self.by_pbx: dict[str, DeviceLines] = {pbx: DeviceLines(found) for pbx, found in by_pbx.items()}
        #: The first PBX's (a single-PBX server's only one).
        self.lines = next(iter(self.by_pbx.values())) if self.by_pbx else DeviceLines(devices)

    @hookimpl(trylast=True)
    def asttapi_ami_event_names(self):
        return EVENT_NAMES

    # Site plugins, registered after the built-ins, still come first.
    @hookimpl
    def asttapi_map_ami_event(self, message, now, pbx, calls):
        lines = self.by_pbx.get(pbx)
        if lines is None or calls is None:
            return None  # that PBX has no device lines (or no call model to read: not the server's host)
        signals = lines.feed(message.name, message.get, now, calls)
        # None, not []: an event about no device channel is not ours to claim.
        return signals or None

    @hookimpl
    def asttapi_map_channel_list(self, messages, since, now, pbx, calls):
        """Adopt the listed device channels never seen start; end ours that are gone."""
        lines = self.by_pbx.get(pbx)
        if lines is None or calls is None:
            return None
        items = [m.get for m in messages if m.kind == "event" and m.name.lower() == "coreshowchannel"]
        return lines.resync(items, now, calls, since=since)


def devices_of(config: Any) -> dict[str, list[str]]:
    """``{device: [line, ...]}`` of the configured device lines (empty without any)."""
    devices: dict[str, list[str]] = {}
    for name, line in (getattr(config, "lines", None) or {}).items():
        device = getattr(line, "device", None)
        if device:
            devices.setdefault(device, []).append(name)
    return devices


def devices_by_pbx(config: Any) -> dict[str, dict[str, list[str]]]:
    """``{pbx: {device: [line, ...]}}``: each PBX's device lines (an unpinned one is the first PBX's,
    the only one: with several PBXs a device line must name its PBX)."""
    pbxs = list(config.pbx_configs()) if hasattr(config, "pbx_configs") else [DEFAULT_PBX]
    by_pbx: dict[str, dict[str, list[str]]] = {}
    for name, line in (getattr(config, "lines", None) or {}).items():
        device = getattr(line, "device", None)
        if device:
            pbx = getattr(line, "pbx", None) or pbxs[0]
            by_pbx.setdefault(pbx, {}).setdefault(device, []).append(name)
    return by_pbx


def builtin_plugin(config: Any) -> ChannelEvents | None:
    """What the plugin host registers: the mapping for the configured device lines, or None."""
    devices = devices_of(config)
    return ChannelEvents(devices, devices_by_pbx(config)) if devices else None
