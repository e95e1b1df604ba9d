"""The bridge: the Twisted adapter around the pure core.

It owns no telephony state and makes no telephony decision: those are the
core's (:class:`asttapi_server.core.control.CallControl` and the call model
it drives). The bridge feeds facts in and carries effects out:

* AMI events in: the core's own events (Hangup, Newchannel,
  OriginateResponse) go to ``control.ami_event``; every event some plugin
  maps becomes TAPI signals (``plugins.map_ami_event``) for ``control.signals``.
  Only wanted events reach it at all: the link's parser drops the others
  undecoded (the set is declared once, in :func:`asttapi_server.service.wanted_events`).
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

It is also the ``app`` plugins receive (``app.config``, ``app.clock``,
``app.model``). Wiring (which link, which event filter, which observers)
is done by :func:`asttapi_server.service.build_bridge`.
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
        self.config = config
        self.ami = ami
        self.plugins = plugins
        self.hub = hub
        self.clock = clock
        #: Called after anything that may have changed a call (the call store's ``changed``).
        self.on_change: Callable[[], None] = _nothing
        # Called with each call the core reports finished (Effects.finished), after the plugins.
        self._finished_observers: list[Callable[[Any], None]] = []
        self._timer: IDelayedCall | None = None
        self._timer_at: float | None = None
        # token -> the Deferred a client session waits on.
        self._requests: dict[int, Deferred] = {}
        # A PBX repeats its mistakes on every call: each kind is logged once a minute.
        self._log_throttle = LogThrottle()

    @property
    def plugins(self) -> Any:
        """The plugin host; the core is told whether any plugin looks contacts up."""
        return self._plugins

    @plugins.setter
    def plugins(self, plugins: Any) -> None:
        self._plugins = plugins
        self.control.looks_up_contacts = bool(getattr(plugins, "looks_up_contacts", True))

    @property
    def link_up(self) -> bool:
        """In service (the core's link state)."""
        return self.control.link_up

    def reconfigure(self, config: Config) -> None:
        """Use ``config``'s lines and originate timeout from now on (a reload; calls under way carry on)."""
        self.config = config
        self.control.set_lines(config.lines)
        self.control.originate_timeout = config.ami.originate_timeout

    # -- facts in ----------------------------------------------------------

    def on_ami_event(self, message: Any) -> None:
        """One AMI event; never raises (a bad event is logged, not fatal)."""
        now = self.clock.seconds()
        try:
            fx = self.control.ami_event(message, now)
            signals = self._plugins.map_ami_event(message, self.control.view)
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
        self.on_change()
        if fx:
            client_event = self._plugins.client_event
            publish = self.hub.publish
            for event in fx:
                out = client_event(event)
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
        d = self.ami.send_action(action.name, list(action.headers), timeout=send.timeout,
                                 on_action_id=lambda action_id: control.sent(token, action_id))
        d.addCallbacks(self._answered, self._action_failed, callbackArgs=(token,), errbackArgs=(token, action.name))

    def _answered(self, response: Any, token: int) -> None:
        control = self.control
        signals: list = []
        if control.is_resync(token) and isinstance(response, list):
            signals = self.plugins.map_channel_list(response, control.established_at, control.view)
        self.carry(control.answered(token, response, None, self.clock.seconds(), signals=signals))

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
        emit = getattr(log, diagnostic.level, log.warn)
        emit(text, held=held, **diagnostic.fields)

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


def _nothing() -> None:
    pass
