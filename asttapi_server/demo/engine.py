"""The demo PBX's brain: live channels, call flows, and what the AMI actions do to them.

:class:`DemoEngine` owns the simulated channels and the running flows
(:mod:`asttapi_server.demo.scenarios`), hands every event it makes to its
listeners (the AMI sessions of :mod:`asttapi_server.demo.server`), and
answers the call-related actions (Originate, Hangup, Redirect,
CoreShowChannels) with the responses real Asterisk 22 gives. It knows no
sockets; time comes from the injected ``IReactorTime``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from itertools import cycle

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from asttapi_server.demo import channels as ami
from asttapi_server.demo.channels import Channel, Pairs
from asttapi_server.demo.devices import DeviceCall, DeviceInbound, DeviceQueue
from asttapi_server.demo.scenarios import (
    CALLERS,
    Flow,
    HoldCall,
    InboundRingGroup,
    OutboundCall,
    Timing,
    split_callerid,
)

log = Logger()

#: The demo's phones and the TAPI lines they belong to (the dialplan's names).
DEFAULT_PHONES: Mapping[str, str] = {
    "Local/bob@phones": "line_1",
    "Local/bobbett@phones": "line_2",
}
#: The demo's device lines: phones whose calls the server follows from Asterisk's own
#: channel events (no UserEvent; see asttapi_server/demo/devices.py), device -> line.
DEFAULT_DEVICES: Mapping[str, str] = {"PJSIP/203": "line_3"}
#: Phones a ``Local/NAME@phones`` Originate may ring besides the configured ones.
_LAB_PHONES = {"bob", "bobbett", "alice", "carol"}
_TECHS = {"Local", "PJSIP", "IAX2", "DAHDI"}
# Inbound calls every other turn: a newcomer watching a line sees a screen pop
# within seconds, whenever they connect.
_LOOP = ("inbound", "outbound", "inbound", "busy")
# The device lines' own loop, beside it (another phone of the same PBX): every way
# a device's call goes, with no UserEvent at all.
_DEVICE_LOOP: tuple[tuple[str, dict[str, object]], ...] = (
    ("device_inbound", {}),
    ("device_outbound", {}),
    ("device_inbound", {"hold": 2.0}),
    ("device_busy", {}),
    ("device_inbound", {"ending": "gives_up"}),
    ("device_queue", {"withheld": True}),  # FreePBX-style queue member, a caller who withholds the number
)

Listener = Callable[[str, bytes], None]  # (privilege, encoded event)


class DemoEngine:
    """Simulated channels and call flows on an injected clock."""

    def __init__(self, clock: IReactorTime, *, timing: Timing | None = None,
                 phones: Mapping[str, str] | None = None,
                 devices: Mapping[str, str] | None = None) -> None:
        """*phones*: the dialplan lines' phones, ``{channel: line}``; *devices*: the device
        lines', ``{device: line}`` (default: the demo's own, when *phones* is not given either)."""
        self.clock = clock
        self.timing = timing or Timing()
        self.phones: dict[str, str] = dict(phones or DEFAULT_PHONES)  # channel -> line
        if devices is None:
            devices = DEFAULT_DEVICES if phones is None else {}
        self.devices: dict[str, str] = dict(devices)  # device -> line
        self.channels: dict[str, Channel] = {}
        self._by_uid: dict[str, Channel] = {}
        #: Seconds (before ``timing.scale``) an originated call talks before the far end
        #: hangs up; None: the flow's own default. Tests that act on a connected
        #: click-to-dial call set it long, so a loaded machine cannot end the call first.
        self.originate_talk: float | None = None
        self._owner: dict[str, Flow] = {}
        self.flows: list[Flow] = []
        self._listeners: list[Listener] = []
        self._seq = 0
        self._local = 0
        self._calls: set[IDelayedCall] = set()
        self._loop_call: IDelayedCall | None = None
        self._loop_kinds = cycle(_LOOP)
        self._device_call: IDelayedCall | None = None
        self._device_kinds = cycle(_DEVICE_LOOP)
        self._bridges = 0
        self._inbound_count = 0
        self._device_inbound_count = 0
        self.running = False
        self.started_at = clock.seconds()

    # -- events --------------------------------------------------------------

    def add_listener(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def remove_listener(self, fn: Listener) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def emit(self, pairs: Pairs) -> None:
        privilege = pairs[1][1] if len(pairs) > 1 and pairs[1][0] == "Privilege" else ""
        data = ami.encode(pairs)
        for fn in list(self._listeners):
            fn(privilege, data)

    # -- identities ----------------------------------------------------------

    def new_uniqueid(self) -> str:
        uid = f"{int(self.clock.seconds())}.{self._seq}"
        self._seq += 1
        return uid

    def local_names(self, resource: str) -> tuple[str, str]:
        n = self._local
        self._local += 1
        return f"{resource}-{n:08x};1", f"{resource}-{n:08x};2"

    def tech_name(self, resource: str) -> str:
        n = self._local
        self._local += 1
        return f"{resource}-{n:08x}"

    def new_bridge_id(self) -> str:
        """A BridgeUniqueid (Asterisk's are UUIDs; these count)."""
        self._bridges += 1
        return f"00000000-0000-4000-8000-{self._bridges:012x}"

    def device_for(self, channel: str) -> str | None:
        """The configured demo device an Originate's ``Channel`` names (technology in any case)."""
        tech, _, resource = channel.partition("/")
        for device in self.devices:
            d_tech, _, d_resource = device.partition("/")
            if d_tech.lower() == tech.lower() and d_resource == resource:
                return device
        return None

    def register(self, ch: Channel, flow: Flow) -> None:
        self.channels[ch.name] = ch
        self._by_uid[ch.uniqueid] = ch
        self._owner[ch.name] = flow

    def forget(self, ch: Channel) -> None:
        self.channels.pop(ch.name, None)
        self._by_uid.pop(ch.uniqueid, None)
        self._owner.pop(ch.name, None)

    def find(self, name_or_uniqueid: str) -> Channel | None:
        return self.channels.get(name_or_uniqueid) or self._by_uid.get(name_or_uniqueid)

    def line_for(self, phone: str) -> str:
        return self.phones.get(phone) or next(iter(self.phones.values()), "line_1")

    # -- playing -------------------------------------------------------------

    def later(self, delay: float, fn: Callable[..., object], *args: object) -> IDelayedCall:
        def run() -> None:
            self._calls.discard(call)
            fn(*args)

        call = self.clock.callLater(delay, run)
        self._calls.add(call)
        return call

    def start(self) -> None:
        """Start the looping show: the first inbound call after ``timing.first_call``."""
        if self.running:
            return
        self.running = True
        self._loop_call = self.clock.callLater(self.timing.first_call, self._loop_next)
        if self.devices:  # the device line's first call rings while the dialplan line's does
            self._device_call = self.clock.callLater(self.timing.first_call * 2, self._device_next)

    def stop(self) -> None:
        """Stop everything, silently; the clock is left with no calls of ours."""
        self.running = False
        if self._loop_call is not None and self._loop_call.active():
            self._loop_call.cancel()
        self._loop_call = None
        if self._device_call is not None and self._device_call.active():
            self._device_call.cancel()
        self._device_call = None
        for call in list(self._calls):
            if call.active():
                call.cancel()
        self._calls.clear()
        for flow in list(self.flows):
            flow.cancel()

    def _loop_next(self) -> None:
        self._loop_call = None
        if not self.running:
            return
        flow = self.play(next(self._loop_kinds))
        flow.done.addCallback(self._loop_after)

    def _loop_after(self, flow: Flow) -> Flow:
        if self.running and self._loop_call is None:
            self._loop_call = self.clock.callLater(self.timing.gap, self._loop_next)
        return flow

    def _device_next(self) -> None:
        self._device_call = None
        if not self.running:
            return
        kind, kwargs = next(self._device_kinds)
        flow = self.play(kind, **kwargs)
        flow.done.addCallback(self._device_after)

    def _device_after(self, flow: Flow) -> Flow:
        if self.running and self._device_call is None:
            self._device_call = self.clock.callLater(self.timing.gap * 2, self._device_next)
        return flow

    def play(self, kind: str, **kwargs: object) -> Flow:
        """Start one flow now: ``"inbound"``, ``"outbound"`` or ``"busy"`` (dialplan lines,
        TAPI UserEvents), ``"device_inbound"``, ``"device_outbound"``, ``"device_busy"`` or
        ``"device_queue"`` (device lines, channel events only; ``withheld=True``: the caller
        withholds the number).

        Keyword arguments go to the flow's constructor (e.g. ``caller=("0301234567",
        "Ext Caller")``, ``ring=1.0``, ``number="95551234"``; for ``device_inbound``
        ``ending="gives_up"`` or ``"reject"``, ``hold=2.0``; ``device="PJSIP/203"`` picks
        the phone). Returns the running :class:`~asttapi_server.demo.scenarios.Flow`;
        its ``done`` Deferred fires when the call is over.
        """
        phones = list(self.phones.items())
        if kind.startswith("device_"):
            flow = self._device_flow(kind, kwargs)
            self.flows.append(flow)
            return flow.start()
        if kind == "inbound":
            n = self._inbound_count
            self._inbound_count += 1
            kwargs.setdefault("caller", CALLERS[n % len(CALLERS)])
            # The first call rings longest: whoever connects just after start
            # still finds it OFFERING (lineOpen announces it).
            kwargs.setdefault("ring", 3.0 - n % 3)
            kwargs.setdefault("group", phones)
            flow: Flow = InboundRingGroup(self, **kwargs)  # type: ignore[arg-type]
        elif kind in ("outbound", "busy"):
            phone, line = phones[0]
            kwargs.setdefault("phone", phone)
            kwargs.setdefault("line", line)
            kwargs.setdefault("number", "95550000" if kind == "busy" else "95551234")
            kwargs.setdefault("callerid", ("201", "Bob"))
            flow = OutboundCall(self, **kwargs)  # type: ignore[arg-type]
        else:
            raise ValueError(f"unknown demo flow {kind!r} (inbound, outbound, busy)")
        self.flows.append(flow)
        return flow.start()

    def _device_flow(self, kind: str, kwargs: dict[str, object]) -> Flow:
        if not self.devices:
            raise ValueError("the demo has no device lines (devices={...})")
        device = str(kwargs.pop("device", next(iter(self.devices))))
        line = self.devices[device]
        if kind == "device_inbound":
            n = self._device_inbound_count
            self._device_inbound_count += 1
            kwargs.setdefault("caller", CALLERS[(n + 1) % len(CALLERS)])
            return DeviceInbound(self, device, line, **kwargs)  # type: ignore[arg-type]
        if kind in ("device_outbound", "device_busy"):
            kwargs.setdefault("number", "95550000" if kind == "device_busy" else "95551234")
            return DeviceCall(self, device, line, **kwargs)  # type: ignore[arg-type]
        if kind == "device_queue":
            kwargs.setdefault("caller", CALLERS[0])
            return DeviceQueue(self, device, line, **kwargs)  # type: ignore[arg-type]
        raise ValueError(f"unknown demo flow {kind!r} (device_inbound, device_outbound, device_busy, device_queue)")

    def flow_finished(self, flow: Flow) -> None:
        if flow in self.flows:
            self.flows.remove(flow)

    # -- actions ---------------------------------------------------------------

    def originate(self, headers: Sequence[tuple[str, str]], action_id: str | None) -> Pairs:
        h = _Headers(headers)
        channel = h.get("Channel")
        if not channel:
            return ami.response("Error", action_id, ("Message", "Channel not specified"))
        is_async = (h.get("Async") or "").lower() in ("true", "yes", "1", "on")
        channel_id = h.get("ChannelId") or None
        variables = []
        for raw in h.get_all("Variable"):
            for item in raw.split(","):
                key, sep, value = item.partition("=")
                if sep:
                    variables.append((key.strip(), value))
        vars_ = dict(variables)
        callerid = split_callerid(h.get("CallerID")) if h.get("CallerID") else None
        application, context, exten = h.get("Application"), h.get("Context"), h.get("Exten")
        target = ([("Application", application), ("Data", h.get("Data") or "")] if application
                  else [("Context", context or "default"), ("Exten", exten or "s")])
        queued = ami.response("Success", action_id, ("Message", "Originate successfully queued"))

        problem = self._originate_problem(channel, channel_id)
        if problem:
            log.info("DEMO PBX (simulation): Originate {channel} fails: {why}",
                     channel=channel, why=problem)
            if is_async:
                uid = channel_id or ami.UNKNOWN
                self.later(0.0, self.emit, ami.originate_response(
                    action_id, False, channel, target, uid, ami.UNKNOWN, ami.UNKNOWN))
                return queued
            return ami.response("Error", action_id, ("Message", "Originate failed"))

        common = dict(
            channel_id=channel_id, other_channel_id=h.get("OtherChannelId") or None,
            originate_action_id=action_id, originated=is_async, variables=variables,
            callerid=callerid,
        )
        talk = {} if self.originate_talk is None else {"talk": self.originate_talk}
        flow: Flow
        device = self.device_for(channel)
        if device is not None and not application and exten and re.fullmatch(r"\+?\d{3,}", exten):
            # click-to-dial on a device line (s07): channel events only, no UserEvent
            flow = DeviceCall(self, device, self.devices[device], exten,
                              context=context or "default", **common, **talk)  # type: ignore[arg-type]
        elif not application and exten and re.fullmatch(r"\+?\d{3,}", exten):
            line = vars_.get("TAPI_LINE") or self.line_for(channel)
            flow = OutboundCall(self, channel, line, exten, context=context or "default", **common, **talk)
        else:
            data = h.get("Data") or ""
            duration = float(data) if application == "Wait" and data.isdigit() else 30.0
            flow = HoldCall(self, channel, target, application=application or "Wait",
                            data=data if application else "30", duration=duration, **common)
        self.flows.append(flow)
        self.later(0.0, flow.start)  # the response goes out before the first event
        return queued

    def _originate_problem(self, channel: str, channel_id: str | None) -> str | None:
        m = re.match(r"^([A-Za-z0-9]+)/(.+)$", channel)
        if not m or m.group(1) not in _TECHS:
            return "unknown channel technology"
        if m.group(1) == "Local":
            name, _, context = m.group(2).partition("@")
            known = {p.split("/", 1)[1] for p in self.phones if p.startswith("Local/")}
            if m.group(2) not in known and not (context == "phones" and name in _LAB_PHONES):
                return "no such phone in the demo"
        if channel_id and (channel_id in self._by_uid or any(
                f.channel_id == channel_id for f in self.flows if hasattr(f, "channel_id"))):
            return "ChannelId already in use"
        return None

    def hangup(self, target: str | None, cause: int, action_id: str | None) -> list[Pairs]:
        if not target:
            return [ami.response("Error", action_id, ("Message", "No channel specified"))]
        if len(target) > 1 and target.startswith("/") and target.endswith("/"):
            try:
                rx = re.compile(target[1:-1])
            except re.error:
                return [ami.response("Error", action_id, ("Message", "Invalid regex"))]
            hit = [ch for name, ch in self.channels.items() if rx.search(name)]
            out = [ami.response("Success", action_id, ("EventList", "start"),
                                ("Message", "Channels hung up will follow"))]
            for ch in hit:
                head = [("ActionID", action_id)] if action_id is not None else []
                out.append([("Event", "ChannelHungup"), *head, ("Channel", ch.name)])
            out.append(ami.list_complete("ChannelsHungupListComplete", action_id, len(hit)))
            for ch in hit:
                self._end(ch, cause)
            return out
        ch = self.find(target)
        if ch is None:
            return [ami.response("Error", action_id, ("Message", "No such channel"))]
        self._end(ch, cause)
        return [ami.response("Success", action_id, ("Message", "Channel Hungup"))]

    def _end(self, ch: Channel, cause: int) -> None:
        flow = self._owner.get(ch.name)
        if flow is not None:
            log.info("DEMO PBX (simulation): Hangup of {channel} ends its call",
                     channel=ch.name)
            self.later(0.0, flow.abort, cause)

    def redirect(self, target: str | None, context: str | None, exten: str | None,
                 priority: str | None, action_id: str | None) -> Pairs:
        if not target:
            return ami.response("Error", action_id, ("Message", "Channel not specified"))
        ch = self.find(target)
        if ch is None:
            return ami.response("Error", action_id, ("Message", f"Channel does not exist: {target}"))
        flow = self._owner.get(ch.name)
        try:
            prio = int(priority or "1")
        except ValueError:
            return ami.response("Error", action_id, ("Message", "Invalid priority"))
        if flow is not None:
            log.info("DEMO PBX (simulation): Redirect {channel} to {context},{exten},{priority}",
                     channel=ch.name, context=context, exten=exten, priority=prio)
            self.later(0.0, flow.redirect, ch, context or ch.context, exten or "s", prio)
        return ami.response("Success", action_id, ("Message", "Redirect successful"))

    def blind_transfer(self, target: str | None, context: str | None, exten: str | None,
                       action_id: str | None) -> Pairs:
        """``BlindTransfer`` (Asterisk 12+): send *target*'s bridged peer to exten@context.

        Answers as Asterisk 22's manager does; the simulated call then leaves
        us the same way a redirected one does.
        """
        if not target:
            return ami.response("Error", action_id, ("Message", "No channel specified"))
        if not exten:
            return ami.response("Error", action_id, ("Message", "No extension specified"))
        ch = self.find(target)
        if ch is None:
            return ami.response("Error", action_id, ("Message", "No such channel"))
        flow = self._owner.get(ch.name)
        if flow is not None:
            log.info("DEMO PBX (simulation): BlindTransfer of {channel}'s peer to {context},{exten}",
                     channel=ch.name, context=context, exten=exten)
            # a device's call: the BlindTransfer event, its channel leaves (s08)
            transfer = getattr(flow, "blind_transfer", flow.redirect)
            self.later(0.0, transfer, ch, context or ch.context, exten, 1)
        return ami.response("Success", action_id, ("Message", "Transfer succeeded"))

    def getvar(self, target: str | None, variable: str | None, action_id: str | None) -> Pairs:
        """``Getvar`` as Asterisk 22's manager answers it (``action_getvar`` in main/manager.c)."""
        if not variable:
            return ami.response("Error", action_id, ("Message", "No variable specified"))
        ch = self.find(target) if target else None
        if target and ch is None:
            return ami.response("Error", action_id, ("Message", "No such channel"))
        value = ch.getvar(variable) if ch is not None else ""
        return ami.response("Success", action_id, ("Variable", variable), ("Value", value))

    def core_show_channels(self, action_id: str | None) -> list[Pairs]:
        now = self.clock.seconds()
        out = [ami.response("Success", action_id, ("EventList", "start"),
                            ("Message", "Channels will follow"))]
        live = list(self.channels.values())
        out += [ami.core_show_channel(ch, action_id, now) for ch in live]
        out.append(ami.list_complete("CoreShowChannelsComplete", action_id, len(live)))
        return out


class _Headers:
    """Case-insensitive view of an action's ``(key, value)`` pairs."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.pairs = pairs

    def get(self, key: str) -> str | None:
        k = key.lower()
        for name, value in self.pairs:
            if name.lower() == k:
                return value
        return None

    def get_all(self, key: str) -> list[str]:
        k = key.lower()
        return [v for name, v in self.pairs if name.lower() == k]
