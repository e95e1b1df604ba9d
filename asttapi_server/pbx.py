"""Several PBXs in one server: one unit per PBX, and the switchboard over them.

A :class:`PBXUnit` is everything that is one PBX's: its AMI link
(:class:`~asttapi_server.ami.link.AMILink`), its call model (a call's identity
is (PBX, Uniqueid): two Asterisks may hand out the same Uniqueid, and each
PBX's model indexes only its own), its :class:`~asttapi_server.core.control.CallControl`
(link state and resync, Originate correlation, channel names, presentation
reads) and the :class:`~asttapi_server.bridge.Bridge` that carries its
effects out. Call handles come from one :class:`~asttapi_server.core.model.Handles`
shared by every unit, so a handle names one call whichever PBX it is on.

The :class:`Switchboard` is what the client sessions (their ``Telephony``)
and the plugins (their ``app``) see: the calls of every PBX (:class:`Calls`),
requests routed to the call's PBX (lineDrop, lineBlindTransfer) or to the
line's (lineMakeCall, by :class:`~asttapi_server.core.lines.LineOwners`),
each PBX's state (``hello``, ``/readyz``, the status line, metrics), and the
lines a PBX's LINE_LINEDEVSTATE goes to (its own open lines only).

Building units (which endpoint, the demo PBX, the event filter) is the
composition's (:func:`asttapi_server.service.build_unit`); a reload hands
each part its new configuration (:meth:`Switchboard.reconfigure`,
:meth:`PBXUnit.reconfigure`) and the composition only orders the calls.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

from twisted.internet.defer import Deferred, fail

from .core.lines import LineOwners
from .core.model import Call, CallModel, Handles
from .errors import TelephonyError
from .plugin_context import PluginContext


class PBXUnit:
    """One PBX's part of the server: its link, model, core and bridge (see the module docstring)."""

    def __init__(self, name: str, pbx: Any, *, link: Any, model: CallModel, bridge: Any,
                 demo: Any = None) -> None:
        self.name = name
        #: Its ``config.AMIConfig`` (the ``[pbx.NAME]`` table, or ``[ami]``).
        self.pbx = pbx
        self.link = link
        self.model = model
        self.bridge = bridge
        self.control = bridge.control
        #: The demo PBX this unit's link talks to (demo mode only).
        self.demo = demo

    @property
    def in_service(self) -> bool:
        """Logged in and resynchronised: its lines are in service."""
        return self.control.link_up

    @property
    def state_line(self) -> str:
        """The link in one line (``AMILink.state_line``), for the status line and ``/readyz``."""
        return self.link.state_line

    def attach(self) -> None:
        """Hear the link: its events and its state, into the bridge."""
        self.link.add_event_observer(self.bridge.on_ami_event)
        self.link.add_link_observer(self.bridge.on_link_state)

    def detach(self) -> None:
        """Hear the link no more (the unit is being removed)."""
        for remove, fn in ((self.link.remove_event_observer, self.bridge.on_ami_event),
                           (self.link.remove_link_observer, self.bridge.on_link_state)):
            try:
                remove(fn)
            except ValueError:
                pass

    def use_plugins(self, plugins: Any) -> None:
        """A reload's plugins: the bridge calls them (its route table built again), the link
        decodes the events that table names."""
        self.bridge.use_plugins(plugins)
        self.link.set_event_filter(self.bridge.routes.names)

    def reconfigure(self, config: Any, pbx: Any, endpoint: Any = None) -> bool:
        """The reload's new configuration: lines and originate timeout for the core; a new
        ``endpoint`` (given when the PBX's connection settings changed) reconnects the link
        with the new settings. True if the link reconnects."""
        self.bridge.reconfigure(config, pbx)
        old, self.pbx = self.pbx, pbx
        if endpoint is None or _link_settings(old) == _link_settings(pbx):
            return False
        self.link.reconfigure(endpoint, pbx.username, pbx.secret, auth=pbx.auth, keepalive=pbx.keepalive,
                              pong_timeout=pbx.pong_timeout, action_timeout=pbx.action_timeout)
        return True

    def retire(self, now: float) -> None:
        """This PBX leaves the server (a reload removed it): its lines go out of service
        (LINE_LINEDEVSTATE to their clients) and its calls end (DISCONNECTED, IDLE), cleanly,
        before its link stops. The caller stops the link's service."""
        self.detach()
        fx = self.control.link_lost(now)
        fx.merge(self.model.resync((), now))
        self.bridge.carry(fx)
        self.bridge.stop()


def _link_settings(pbx: Any) -> tuple:
    """The settings whose change needs a new connection (the originate timeout does not)."""
    return (pbx.host, pbx.port, pbx.username, pbx.secret, pbx.auth, pbx.keepalive, pbx.pong_timeout,
            pbx.action_timeout)


class Calls:
    """The calls of every PBX, read the way a session reads one call model."""

    def __init__(self, board: "Switchboard") -> None:
        self._board = board

    def _models(self) -> list[CallModel]:
        return [unit.model for unit in self._board.units.values()]

    def get(self, handle: int) -> Call | None:
        for unit in self._board.units.values():
            call = unit.model.get(handle)
            if call is not None:
                return call
        return None

    def calls_on_line(self, line: str) -> list[Call]:
        """Calls on ``line`` now, oldest first (handles grow with time, over every PBX)."""
        models = self._models()
        if len(models) == 1:
            return models[0].calls_on_line(line)
        calls = [call for model in models for call in model.calls_on_line(line)]
        calls.sort(key=lambda call: call.handle)
        return calls

    def snapshot(self, call: Call, line: str) -> dict:
        unit = self._board.unit_of_call(call.handle) or self._board.first
        assert unit is not None
        return unit.model.snapshot(call, line)

    @property
    def tracked(self) -> int:
        return sum(model.tracked for model in self._models())

    def live_calls(self) -> list[Call]:
        calls = [call for model in self._models() for call in model.live_calls()]
        calls.sort(key=lambda call: call.handle)
        return calls


class Switchboard:
    """Every PBX unit, and the ``Telephony`` the client sessions use (see the module docstring).

    Its :attr:`plugin_context` is the ``app`` the plugins get (``app.call(handle)``,
    ``app.drop``, ``app.blind_transfer``, ``app.model``: over every PBX).
    """

    def __init__(self, config: Any, *, hub: Any, clock: Any, owners: LineOwners | None = None,
                 handles: Handles | None = None) -> None:
        self.config = config
        self.hub = hub
        self.clock = clock
        self.owners = owners if owners is not None else LineOwners.from_config(config)
        self.handles = handles if handles is not None else Handles()
        self.units: dict[str, PBXUnit] = {}
        self.model = Calls(self)
        #: What the plugins get as ``app`` (asttapi_server.plugin_context): reads and acts on the
        #: calls of every PBX through this switchboard; its config follows reloads.
        self.plugin_context = PluginContext(self, clock)
        #: Called with a unit added (metrics observe its link).
        self.on_unit: Callable[[PBXUnit], None] | None = None

    # -- units ------------------------------------------------------------------

    def add(self, unit: PBXUnit) -> None:
        """A PBX joins: its bridge's line-less events go to its own lines."""
        self.units[unit.name] = unit
        unit.bridge.spread = lambda event, name=unit.name: self.devstate_lines(name)
        unit.bridge.plugin_context = self.plugin_context  # the plugins' one app, over every PBX
        unit.attach()
        self._name_in_logs()
        if self.on_unit is not None:
            self.on_unit(unit)

    def remove(self, name: str, now: float) -> PBXUnit:
        """A PBX leaves (a reload): its lines out of service, its calls ended; returns the unit,
        whose link (and demo PBX) the caller stops."""
        unit = self.units[name]
        unit.retire(now)
        del self.units[name]
        self._name_in_logs()
        return unit

    def _name_in_logs(self) -> None:
        """With several PBXs, each bridge's log lines say which PBX they are about."""
        several = len(self.units) > 1
        for name, unit in self.units.items():
            unit.bridge.log_pbx = name if several else None

    def reconfigure(self, config: Any) -> None:
        """The reload's configuration: who owns which line, the plugins' ``app.config``."""
        self.config = config
        self.owners.reconfigure(config.pbx_configs(), _pinned(config))

    def use_plugins(self, plugins: Any) -> None:
        """A reload's plugins, for every PBX."""
        for unit in self.units.values():
            unit.use_plugins(plugins)

    @property
    def first(self) -> PBXUnit | None:
        return next(iter(self.units.values()), None)

    # -- state ------------------------------------------------------------------

    @property
    def link_up(self) -> bool:
        """Every PBX in service (``hello``'s ``pbx``; with one PBX: its link)."""
        return bool(self.units) and all(unit.in_service for unit in self.units.values())

    def pbx_states(self) -> dict[str, str]:
        """``{name: "up" | "down"}``: in service or not, each PBX (``hello``'s ``pbxs``)."""
        return {name: "up" if unit.in_service else "down" for name, unit in self.units.items()}

    def in_service(self, line: str | None = None, handle: int | None = None) -> bool:
        """Is the PBX of the call ``handle``, or of ``line``, in service? A line no PBX has
        named yet is in service while any PBX is; an unknown call, likewise."""
        unit = None
        if handle is not None:
            unit = self.unit_of_call(handle)
        elif line is not None:
            unit = self.units.get(self.owners.owner(line) or "")
        else:
            return self.link_up
        if unit is not None:
            return unit.in_service
        return any(unit.in_service for unit in self.units.values())

    def devstate_lines(self, pbx: str) -> list[str]:
        """The open lines a LINE_LINEDEVSTATE of ``pbx``'s link goes to: its own, and those no
        PBX has named yet when no other PBX is in service (their state flips with this one's)."""
        owners = self.owners
        others = any(unit.in_service for name, unit in self.units.items() if name != pbx)
        out = []
        for line in self.hub.open_line_names():
            owner = owners.owner(line)
            if owner == pbx or (owner is None and not others):
                out.append(line)
        return out

    # -- routing ------------------------------------------------------------------

    def pbx_of(self, handle: int) -> str | None:
        """The name of the PBX the call ``handle`` is on (None: no such call); for plugins that
        name calls to the outside (a Uniqueid alone is not unique over several PBXs)."""
        unit = self.unit_of_call(handle)
        return unit.name if unit is not None else None

    def unit_of_call(self, handle: int) -> PBXUnit | None:
        for unit in self.units.values():
            if unit.model.get(handle) is not None:
                return unit
        return None

    def unit_of_line(self, line: str) -> PBXUnit:
        """The unit ``lineMakeCall`` on ``line`` goes to; TelephonyError if no PBX owns it yet."""
        owner = self.owners.owner(line)
        unit = self.units.get(owner) if owner is not None else None
        if unit is None and len(self.units) == 1:
            return next(iter(self.units.values()))
        if unit is None:
            raise TelephonyError(
                "LINEERR_OPERATIONUNAVAIL",
                f"Line {line!r} belongs to no PBX yet (no TAPI event named it); set [lines.{line}] pbx"
                " to place calls on it.",
            )
        return unit

    # -- Telephony ----------------------------------------------------------------

    def make_call(self, line: str, number: str, owner: Hashable) -> Deferred:
        """lineMakeCall, on the line's PBX."""
        try:
            unit = self.unit_of_line(line)
        except TelephonyError as e:
            return fail(e)
        return unit.bridge.make_call(line, number, owner)

    def drop(self, handle: int) -> Deferred:
        """lineDrop, on the call's PBX."""
        return self._call_unit(handle).bridge.drop(handle)

    def blind_transfer(self, handle: int, number: str) -> Deferred:
        """lineBlindTransfer / lineRedirect, on the call's PBX."""
        return self._call_unit(handle).bridge.blind_transfer(handle, number)

    def _call_unit(self, handle: int) -> PBXUnit:
        # An unknown handle: any unit answers it the one way (LINEERR_INVALCALLHANDLE, or the link's state).
        unit = self.unit_of_call(handle) or self.first
        assert unit is not None, "a switchboard without PBXs serves no requests"
        return unit

    def adopt_restored(self, pbx: str, calls: Iterable[Call]) -> None:
        """Calls the store restored for ``pbx``: its lines are its own again, its bridge follows them."""
        calls = list(calls)
        for call in calls:
            for line in call.states:
                self.owners.claim(pbx, line)
        unit = self.units.get(pbx)
        if unit is not None:
            unit.bridge.adopt_restored(calls)

    def models(self) -> Mapping[str, CallModel]:
        """Each PBX's call model (the call store keeps them all)."""
        return {name: unit.model for name, unit in self.units.items()}


def _pinned(config: Any) -> dict[str, str]:
    from .core.lines import pinned_lines

    return pinned_lines(config)
