"""The bridge: the Twisted adapter around the pure core.

It owns no telephony state and makes no telephony decision: those are the
core's (:class:`asttapi_server.core.control.CallControl` and the call model
it drives). The bridge feeds facts in and carries effects out:

* AMI events in, by the one route table (:class:`asttapi_server.routes.Routes`,
  built in :meth:`Bridge.use_plugins`): one lookup of the event's name gives
  the core's handler (Hangup, Newchannel, OriginateResponse:
  ``control.event_handlers``) and the plugins' mappings
  (``plugins.map_with``, given ``now``), whose TAPI signals go to
  ``control.signals``. Only wanted events reach it at all: the link's
  parser drops the others undecoded (the same names:
  :func:`asttapi_server.service.wanted_events`).
* Link up/down in: ``control.link_established`` / ``control.link_lost``.
* Client requests in (the ``Telephony`` interface of the client sessions):
  ``control.make_call`` / ``drop`` / ``blind_transfer`` give a token; the
  Deferred handed to the session fires with the core's :class:`~asttapi_server.core.effects.Reply`
  for that token.
* Effects out (:meth:`Bridge.carry`), in this order: TAPI events through the
  plugins' ``asttapi_client_event`` hook to the hub; contact lookups
  (``plugins.lookup_contact``, the answer back to ``control.contact_found``);
  ``asttapi_call_finished`` for each finished call; AMI actions through the
  link (the ActionID and the answer back to ``control.sent`` /
  ``control.answered``); replies to requests; diagnostics to the log,
  each kind at most once a minute; the one timer (``callLater``) when the
  next deadline moved.

There is one bridge per PBX (:class:`asttapi_server.pbx.PBXUnit`); the
client sessions see them all through :class:`asttapi_server.pbx.Switchboard`.
A line-less event of its core (the link's LINE_LINEDEVSTATE) goes to the
lines the switchboard names (``spread``: this PBX's open lines), never to
every line; the mapping hooks are told which PBX an event is of (``pbx``).

Plugins do not get the bridge: their ``app`` is a narrow
:class:`asttapi_server.plugin_context.PluginContext` (config, clock, read a
call, drop or transfer it): the switchboard's in the running server (every
PBX's calls), :attr:`Bridge.plugin_context` for a bridge on its own. Wiring
(which link, which event filter) is done by
:func:`asttapi_server.service.build_bridge` and ``build_unit``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from .config import Config
from .core.control import CallControl
from .core.effects import Diagnostic, Effects, Send
from .errors import TelephonyError, lineerr_of
from .plugin_context import PluginContext
from .routes import Routes
from .throttle import LogThrottle

log = Logger()


class Bridge:
    """Carries facts into the core and its effects out; see the module docstring.

    Implements the ``Telephony`` interface the client sessions rely on.
    """

    def __init__(
        self,
        *,
        control: CallControl,
        config: Config,
        ami: Any,
        plugins: Any,
        hub: Any,
        clock: IReactorTime,
    ) -> None:
        self.control = control
        self.model = control.model
        self._pbx: str = getattr(control, "pbx", "default")  # the PBX the mapping plugins are told of
        self.pbx_name = self._pbx
        self.config = config
        self.ami = ami
        self.hub = hub
        self.clock = clock
        #: Called after anything that may have changed a call (the call store's ``changed``);
        #: None: nobody is told (no store), and no call is made per event.
        self.on_change: Callable[[], None] | None = None
        # Called with each call the core reports finished (Effects.finished), after the plugins.
        self._finished_observers: list[Callable[[Any], None]] = []
        #: The lines a line-less event of this PBX (its link's LINE_LINEDEVSTATE) goes to
        #: (``pbx.Switchboard.devstate_lines``); None: every open line.
        self.spread: Callable[[Any], Iterable[str]] | None = None
        #: The PBX named in this bridge's log lines (set while the server has several).
        self.log_pbx: str | None = None
        self._timer: IDelayedCall | None = None
        self._timer_at: float | None = None
        # token -> the Deferred a client session waits on.
        self._requests: dict[int, Deferred] = {}
        # A PBX repeats its mistakes on every call: each kind is logged once a minute.
        self._log_throttle = LogThrottle()
        #: The ``app`` plugins are given (``PluginHost.startup``): not the bridge itself.
        self.plugin_context = PluginContext(self, clock)
        self.use_plugins(plugins)

    @property
    def plugins(self) -> Any:
        """The plugin host (read-only: :meth:`use_plugins` changes it, with what follows from it)."""
        return self._plugins

    def use_plugins(self, plugins: Any) -> None:
        """Call ``plugins`` from now on (start-up; a reload whose plugins changed, even in place).

        Explicit, because it is more than an assignment: the core is told
        whether any plugin looks contacts up, and the one route table is
        built again from the core's handlers and the plugins' mappings.
        """
        self._plugins = plugins
        self.control.looks_up_contacts = bool(getattr(plugins, "looks_up_contacts", True))
        self.routes = Routes(self.control.event_handlers(), plugins.mappers())

    @property
    def link_up(self) -> bool:
        """In service (the core's link state)."""
        return self.control.link_up

    def reconfigure(self, config: Config, pbx: Any = None) -> None:
        """Use ``config``'s lines and the originate timeout of ``pbx`` (its PBX's settings; default
        ``config.ami``) from now on (a reload; calls under way carry on)."""
        self.config = config
        self.control.set_lines(config.lines)
        self.control.originate_timeout = (pbx if pbx is not None else config.ami).originate_timeout

    # -- facts in ----------------------------------------------------------

    def on_ami_event(self, message: Any) -> None:
        """One AMI event, by its route; never raises (a bad event is logged, not fatal)."""
        route = self.routes.get(message.name)
        if route is None:
            return  # (Shutdown, FullyBooted: the link's own; nothing here handles them)
        now = self.clock.seconds()
        try:
            core, mappers = route
            fx = core(message, now) if core is not None else None
            signals = self._plugins.map_with(mappers, message, now, self._pbx, self.control.view) if mappers else None
            if signals:
                mapped = self.control.signals(signals, now)
                fx = mapped if fx is None else fx.merge(mapped)
        except Exception:
            name = str(message.name)[:80]
            held = self._log_throttle.allow(("ami event", name), now)
            if held is not None:
                log.failure("Could not handle AMI event {name!r} ({held} more like it since the last report)",
                            name=name, held=held)
            return
        if fx is not None:
            self.carry(fx)

    def on_link_state(self, up: bool) -> None:
        """The AMI link logged in (True) or went down (False)."""
        now = self.clock.seconds()
        self.carry(self.control.link_established(now) if up else self.control.link_lost(now))

    def adopt_restored(self, calls: Iterable[Any]) -> None:
        """Calls the call store put back into the model (device channels' facts with them):
        the core follows them (``CallControl.adopt_restored``); the mappings read them from the
        model with the next event, no plugin needs telling."""
        self.carry(self.control.adopt_restored(list(calls)))

    def add_finished_observer(self, observe: Callable[[Any], None]) -> None:
        """Call ``observe(call)`` for each call the core reports finished (the metrics count them)."""
        self._finished_observers.append(observe)

    # -- effects out ---------------------------------------------------------

    def carry(self, fx: Effects) -> None:
        """Carry out ``fx``, in the order the core's ``Effects`` documents."""
        if self.on_change is not None:
            self.on_change()
        if fx:
            # Through the plugins' asttapi_client_event only when some plugin has it.
            enrich = self._plugins.client_event if "asttapi_client_event" in self._plugins.implemented else None
            publish = self.hub.publish
            for event in fx:
                if event.line is None and self.spread is not None:
                    lines = self.spread(event)  # this PBX's open lines: the event is for them only
                    if lines:
                        out = event if enrich is None else enrich(event)
                        if out is not None:
                            publish(out, lines=lines)
                    continue
                out = event if enrich is None else enrich(event)
                if out is not None:
                    publish(out)
        if fx.quiet:
            return
        for wanted in fx.contacts:
            d = self.plugins.lookup_contact(wanted.number, wanted.callinfo)
            d.addCallback(self._contact_found, wanted.handle, wanted.number)
        for call in fx.finished:
            self.plugins.call_finished(call)
            for observe in self._finished_observers:
                observe(call)
        for send in fx.actions:
            self._send(send)
        for reply in fx.replies:
            d = self._requests.pop(reply.token, None)
            if d is not None:
                if reply.error is not None:
                    d.errback(Failure(reply.error))
                else:
                    d.callback(reply.value)
        for diagnostic in fx.diagnostics:
            self._log(diagnostic)
        if fx.reschedule:
            self._reschedule()

    def _contact_found(self, contact: dict | None, handle: int, number: str) -> None:
        self.carry(self.control.contact_found(handle, number, contact, self.clock.seconds()))

    def _send(self, send: Send) -> None:
        token = send.token
        action = send.action
        control = self.control
        d = self.ami.send_action(action, timeout=send.timeout,
                                 on_action_id=lambda action_id: control.sent(token, action_id))
        d.addCallbacks(self._answered, self._action_failed, callbackArgs=(token,), errbackArgs=(token, action.name))

    def _answered(self, response: Any, token: int) -> None:
        control = self.control
        now = self.clock.seconds()
        signals: list = []
        if control.is_resync(token) and isinstance(response, list):
            signals = self.plugins.map_channel_list(response, control.established_at, now, self._pbx,
                                                   control.view)
        self.carry(control.answered(token, response, None, now, signals=signals))

    def _action_failed(self, failure: Failure, token: int, name: str) -> None:
        if lineerr_of(failure.value, name) is None:
            log.failure("Unexpected error from {action}", failure, action=name)
        self.carry(self.control.answered(token, None, failure.value, self.clock.seconds()))

    def _log(self, diagnostic: Diagnostic) -> None:
        held = self._log_throttle.allow(diagnostic.key, self.clock.seconds())
        if held is None:
            return
        text = diagnostic.text
        if held:
            text += " ({held} more like it since the last report)"
        fields = diagnostic.fields
        if self.log_pbx is not None and "pbx" not in fields:
            text = "PBX {pbx}: " + text
            fields = {**fields, "pbx": self.log_pbx}
        emit = getattr(log, diagnostic.level, log.warn)
        emit(text, held=held, **fields)

    # -- the one timer -------------------------------------------------------

    def _reschedule(self) -> None:
        deadline = self.control.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            delay = max(0.0, deadline - self.clock.seconds())
            self._timer = self.clock.callLater(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            fx = self.control.tick(self.clock.seconds())
        except Exception:
            log.failure("Call model timer failed")
            self._reschedule()
            return
        self.carry(fx)

    def stop(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    # -- Telephony: client requests -----------------------------------------

    def make_call(self, line: str, number: str, owner: Hashable) -> Deferred:
        """lineMakeCall: fires with the new call's handle (see ``CallControl.make_call``)."""
        return self._request(self.control.make_call, line, number, owner)

    def drop(self, handle: int) -> Deferred:
        """lineDrop: hang up the call's channel."""
        return self._request(self.control.drop, handle)

    def blind_transfer(self, handle: int, number: str) -> Deferred:
        """lineBlindTransfer (Redirect or BlindTransfer: the core chooses)."""
        return self._request(self.control.blind_transfer, handle, number)

    def _request(self, method: Callable[..., tuple[int, Effects]], *args: Any) -> Deferred:
        try:
            token, fx = method(*args, self.clock.seconds())
        except TelephonyError as e:
            return fail(e)
        d: Deferred = Deferred()
        self._requests[token] = d  # before carrying: an answer may come at once
        self.carry(fx)
        return d
