"""The call record, pushed: every call to HTTP receivers, as our JSON events or to Zammad's CTI API.

Settings (``[plugins.call_webhooks]`` and one ``[[plugins.call_webhooks.target]]``
table per receiver)::

    outbox = "/var/lib/asttapi/webhooks.sqlite"   # default: asttapi-webhooks.sqlite in the state directory
    region = "GB"                                  # how numbers are read (Zammad gets them as E.164)

    [[plugins.call_webhooks.target]]
    name = "zammad"                 # default: the URL's host; the outbox and the metrics know it by it
    url = "https://zammad.example.com/api/v1/cti/{token}"   # required; {token}: token_file's content
    format = "zammad"               # required: "zammad" or "json"
    token_file = "/etc/asttapi/zammad-cti.token"
    lines = ["line_*"]              # which lines' calls (glob patterns; default all)
    agents = { line_1 = { name = "Emma Taylor", answering_number = "emma@example.com" }, line_2 = "Bob" }
    timeout = 10                    # seconds per request
    max_age = 86400                 # seconds an event may wait before it is dropped
    retry_max = 300                 # the longest wait between tries
    concurrency = 4                 # calls sent side by side
    # headers = { X-Api-Key = "{token}" }   # extra request headers
    # secret_file = "webhook.secret"        # json: HMAC-SHA256 of the body in X-Asttapi-Signature
    # ca_file = "office-ca.pem"             # a private CA for https

Why: the events are made here (``events.py``, pure), kept in the durable
``outbox.py`` (SQLite) and sent by ``delivery.py`` (in order per call,
retried with backoff, dropped after ``max_age``); this module reads the
settings and wires the hooks: ``asttapi_client_event`` sees every TAPI event
of a call (its lines' states, for the outcome; the target's lines, for the
webhooks; a call first seen mid-way, as one a restart brought back, is
taken up from the call model and the outbox), ``asttapi_call_finished``
ends it, ``asttapi_metrics`` reports the queues. See docs/plugins.md, "call_webhooks".
"""

from __future__ import annotations

import os
import random
import re
import uuid
from collections.abc import Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.defer import CancelledError, DeferredList
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from asttapi_server.core import parties
from asttapi_server.core.constants import CALLINFO, CALLSTATE, CONNECTED, DISCONNECTED, IDLE, NEWCALL
from asttapi_server.core.outcome import ANSWERED
from asttapi_server.hookspecs import hookimpl
from asttapi_server.errors import HttpError
from asttapi_server.http_client import HttpClient, check_url, origin
from asttapi_server.metrics import family
from asttapi_server.numbers import DEFAULT_REGION, check_region
from asttapi_server.plugin_host import Settings, resolve_path
from asttapi_server.store import default_state_path

from .delivery import DEFAULT_CONCURRENCY, DEFAULT_RETRY_MAX, SWEEP_INTERVAL, Delivery, TargetConfig, route
from .events import (Agent, CallTrack, Outgoing, ZammadTarget, json_event, json_finished, zammad_events)
from .outbox import Outbox, Pending

log = Logger(namespace="asttapi_plugins.call_webhooks")

#: The running plugin of each outbox file (by absolute path), for a reload's hand-over.
_RUNNING: dict[str, "CallWebhooks"] = {}

DEFAULT_OUTBOX = "asttapi-webhooks.sqlite"
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_AGE = 86400.0
FORMATS = ("json", "zammad")
#: Bytes read of a receiver's answer (nobody needs more than its status).
MAX_ANSWER = 64 * 1024
_OUTBOUND = "LINECALLORIGIN_OUTBOUND"
#: Caller flags that are a verdict (UNKNOWN may still turn into a number: a SET CALLERID after OFFERING).
_FINAL_HIDING = frozenset(parties.HIDING - {parties.UNKNOWN})
_RINGING = frozenset({"LINECALLSTATE_UNKNOWN", "LINECALLSTATE_OFFERING", "LINECALLSTATE_ACCEPTED",
                      "LINECALLSTATE_DIALTONE", "LINECALLSTATE_DIALING"})


def configure(settings: Mapping[str, Any], config: Any) -> "CallWebhooks":
    s = Settings(settings, config)
    outbox = s.str("outbox")
    region = check_region(s.str("region", DEFAULT_REGION))
    tables = s.tables("target")
    s.done()
    if not tables:
        raise ValueError("no receivers: add a [[plugins.call_webhooks.target]] table with url and format")
    targets: list[TargetConfig] = []
    zammad: dict[str, ZammadTarget] = {}
    ca_files: dict[str, Path | None] = {}
    lines = getattr(config, "lines", None) or {}
    line_numbers = {name: number for name, line in lines.items() if (number := _line_number(line.callerid))}
    for index, table in enumerate(tables, 1):
        try:
            target, agents, ca_file = _target(table, config)
        except ValueError as exc:
            where = table.get("name") or table.get("url") or index
            raise ValueError(f"target {where!r}: {exc}") from None
        if any(t.name == target.name for t in targets):
            raise ValueError(f"two targets are named {target.name!r}; give each its own name "
                             "(the outbox and the metrics tell them apart by it)")
        targets.append(target)
        ca_files[target.name] = ca_file
        if target.format == "zammad":
            zammad[target.name] = ZammadTarget(target.name, agents, region, line_numbers)
    path = (str(resolve_path(outbox, config, "state")) if outbox
            else default_state_path(DEFAULT_OUTBOX, getattr(config, "source", None)))
    return CallWebhooks(targets, zammad, path, ca_files=ca_files)


def _target(table: Mapping[str, Any], config: Any) -> tuple[TargetConfig, dict[str, Agent], Path | None]:
    t = Settings(table, config)
    url = t.str("url")
    fmt = t.str("format")
    name = t.str("name")
    token = t.secret_file("token_file")
    secret_text = t.secret_file("secret_file")
    headers = t.table("headers")
    lines = t.strings("lines", ("*",))
    agents_table = t.table("agents")
    timeout = t.number("timeout", DEFAULT_TIMEOUT)
    max_age = t.number("max_age", DEFAULT_MAX_AGE)
    retry_max = t.number("retry_max", DEFAULT_RETRY_MAX)
    concurrency = int(t.number("concurrency", DEFAULT_CONCURRENCY))
    ca_file = t.str("ca_file")
    t.done()
    if not url:
        raise ValueError("setting 'url': required")
    if fmt not in FORMATS:
        raise ValueError(f"setting 'format': expected \"json\" or \"zammad\", got {fmt!r}")
    if timeout <= 0 or max_age <= 0 or retry_max < 1 or concurrency < 1:
        raise ValueError("settings 'timeout' and 'max_age' must be above 0, 'retry_max' and 'concurrency' 1 or more")
    for where, template in [("setting 'url'", url)] + [(f"setting 'headers': header {k!r}", v)
                                                       for k, v in headers.items()]:
        if not isinstance(template, str):
            raise ValueError(f"{where}: expected a string, got {template!r}")
        unknown = set(re.findall(r"\{([^}]*)\}", template)) - {"token"}
        if unknown:
            raise ValueError(f"{where}: unknown placeholder {{{sorted(unknown)[0]}}} (only {{token}})")
        if "{token}" in template and token is None:
            raise ValueError(f"{where}: uses {{token}} but token_file is not set")
    filled = url.replace("{token}", token or "")
    check_url(filled, "url", holds_secret="{token}" in url)
    secret = secret_text.encode() if secret_text else None
    if secret is not None and fmt != "json":
        raise ValueError("setting 'secret_file': signs JSON bodies; Zammad's API has no signature (use https "
                         "and the token in the URL)")
    if agents_table and fmt != "zammad":
        raise ValueError("setting 'agents': names users for Zammad; a JSON receiver gets the line names")
    agents = {line: _agent(line, value) for line, value in agents_table.items()}
    target = TargetConfig(
        name=name or urlsplit(filled).hostname or "target", url=filled, origin=origin(filled), format=fmt,
        lines=lines, headers={k: v.replace("{token}", token or "") for k, v in headers.items()}, secret=secret,
        timeout=timeout, max_age=max_age, retry_max=retry_max, concurrency=concurrency,
    )
    return target, agents, resolve_path(ca_file, config) if ca_file else None


def _agent(line: str, value: Any) -> Agent:
    if isinstance(value, str) and value:
        return Agent(value)
    if isinstance(value, Mapping) and isinstance(value.get("name"), str) and value["name"] and \
            set(value) <= {"name", "answering_number"} and isinstance(value.get("answering_number", ""), str):
        return Agent(value["name"], value.get("answering_number") or None)
    raise ValueError(f"setting 'agents': line {line!r}: expected a name, or {{ name = \"...\", "
                     f"answering_number = \"...\" }}, got {value!r}")


def _line_number(callerid: str | None) -> str | None:
    """The number in a line's ``callerid`` (``"Bob" <201>`` -> ``201``)."""
    if not callerid:
        return None
    inner = re.search(r"<([^>]*)>", callerid)
    digits = re.sub(r"[^0-9+*#]", "", inner.group(1) if inner else callerid)
    return digits or None


class CallWebhooks:
    """The configured plugin; see the module docstring."""

    def __init__(self, targets: list[TargetConfig], zammad: Mapping[str, ZammadTarget], outbox_path: str, *,
                 ca_files: Mapping[str, Path | None] | None = None, reactor: Any = None, clock: Any = None,
                 rng: random.Random | None = None, runner: Any = None) -> None:
        self.targets = targets
        self.zammad = dict(zammad)
        self.outbox_path = outbox_path
        self.ca_files = dict(ca_files or {})
        self._reactor = reactor
        self.clock = clock
        self.rng = rng
        self.runner = runner
        self.app: Any = None
        self.outbox: Outbox | None = None
        self.deliveries: dict[str, Delivery] = {}
        self.tracks: dict[int, CallTrack] = {}
        self._matches: dict[tuple[str, str], bool] = {}
        self._sweeper: LoopingCall | None = None
        self.keep = max(t.max_age for t in targets)
        self._previous: CallWebhooks | None = None  # on a reload: the running plugin, until it hands over
        self._successor: CallWebhooks | None = None
        self._waiting: list[tuple[TargetConfig, Outgoing, float]] = []  # made before the outbox was ours
        self._checks: list[Any] = []  # start-up reachability checks under way

    # -- life --------------------------------------------------------------------------------

    @hookimpl
    def asttapi_startup(self, app: Any) -> None:
        """Open the outbox (start-up stops with one line if it cannot), load what was pending, start sending.

        On a reload the running plugin has the outbox: this one waits, and
        takes the file, the queues and the calls over when that one stops
        (two plugins sending one outbox would send events twice).
        """
        self.app = app
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = self._reactor = global_reactor
        self.clock = self.clock or getattr(app, "clock", None) or reactor
        key = os.path.abspath(self.outbox_path)
        previous = _RUNNING.get(key)
        if previous is not None and previous.outbox is not None:
            _RUNNING[key] = self
            self._previous, previous._successor = previous, self
            log.info("call_webhooks: a reload; the new settings take the outbox {path} over once the running "
                     "plugin has stopped", path=self.outbox_path)
            return
        outbox = Outbox(self.outbox_path, self.clock, runner=self.runner)
        pending = outbox.open(self.clock.seconds(), self.keep)
        _RUNNING[key] = self
        self._start(outbox, pending)
        waiting = sum(d.depth() for d in self.deliveries.values())
        if waiting:
            calls = len({(p.target, p.call) for p in pending})
            log.info("call_webhooks: {count} events of {calls} calls were waiting in {path}; sending them",
                     count=waiting, calls=calls, path=self.outbox_path)
        for delivery in self.deliveries.values():
            self._check(delivery)

    def _start(self, outbox: Outbox, pending: list[Pending]) -> None:
        """Send from ``outbox``, beginning with ``pending`` (oldest first), then what waited meanwhile."""
        self.outbox = outbox
        for target in self.targets:
            client = HttpClient(reactor=self._reactor, timeout=target.timeout, max_bytes=MAX_ANSWER,
                                ca_file=self.ca_files.get(target.name), persistent=True,
                                max_per_host=target.concurrency)
            self.deliveries[target.name] = Delivery(target, outbox, client, self.clock, self.rng)
        orphans = route(pending, self.deliveries)
        for name, count in sorted(orphans.items()):
            log.warn("call_webhooks: {count} events for target {target}, which is not configured any more, "
                     "stay in the outbox {path}", count=count, target=name, path=self.outbox_path)
        waited, self._waiting = self._waiting, []
        for target, out, created in waited:
            self._enqueue(target, out, created)
        self._sweeper = LoopingCall(self._sweep)
        self._sweeper.clock = self.clock
        self._sweeper.start(SWEEP_INTERVAL, now=False)
        for delivery in self.deliveries.values():
            delivery.pump()

    @hookimpl
    def asttapi_shutdown(self) -> Any:
        key = os.path.abspath(self.outbox_path)
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        if self.outbox is None and self._previous is not None:
            # A reload that was refused: the running plugin keeps the outbox.
            _RUNNING[key], self._previous._successor = self._previous, None
            return None
        for check in self._checks:
            check.cancel()  # a start-up check still under way says nothing more
        stops = [d.stop() for d in self.deliveries.values()]
        successor = self._successor if _RUNNING.get(key) is self._successor else None

        def close(_: Any) -> Any:
            closing = [d.client.close() for d in self.deliveries.values()]
            if successor is not None:
                successor._take_over(self)
            elif self.outbox is not None:
                closing.append(self.outbox.close())
                if _RUNNING.get(key) is self:
                    del _RUNNING[key]
            return DeferredList(closing, consumeErrors=True)

        return DeferredList(stops, consumeErrors=True).addCallback(close)

    def _take_over(self, previous: "CallWebhooks") -> None:
        """The reload's new plugin takes the stopped one's outbox, queues and calls."""
        assert previous.outbox is not None
        pending = [p for d in previous.deliveries.values() for q in d.queues.values() for p in q]
        pending.sort(key=lambda p: p.created)  # a call's events keep their order; calls interleave by age
        for handle, track in previous.tracks.items():
            newer = self.tracks.get(handle)
            if newer is not None:  # events came to this plugin already: the older record knows more
                track.flags |= newer.flags
                track.answered_by += [line for line in newer.answered_by if line not in track.answered_by]
                track.lines += [line for line in newer.lines if line not in track.lines]
                track.modes += newer.modes
            self.tracks[handle] = track
        self._previous = None
        self._start(previous.outbox, pending)
        previous.outbox = None

    def _check(self, delivery: Delivery) -> None:
        """Say at start-up, in one line, when a receiver cannot be reached (start-up does not wait)."""
        target = delivery.target

        def unreachable(failure: Any) -> None:
            if failure.check(CancelledError):
                return
            why = failure.value.reason if failure.check(HttpError) else failure.getErrorMessage()
            log.error("call_webhooks: cannot reach target {target} at {origin} ({why}); its events are kept in "
                      "{path} and sent when it answers", target=target.name, origin=target.origin, why=why,
                      path=self.outbox_path)

        def reachable(answer: Any) -> None:
            log.info("call_webhooks: target {target} at {origin} is reachable ({kind} format)",
                     target=target.name, origin=target.origin, kind=target.format)

        check = delivery.client.request("HEAD", target.origin + "/")
        self._checks.append(check)
        check.addCallbacks(reachable, unreachable)
        check.addBoth(lambda _: self._checks.remove(check) if check in self._checks else None)

    def _sweep(self) -> None:
        now = self.clock.seconds()
        for delivery in self.deliveries.values():
            delivery.sweep(now)
        if self.outbox is not None:
            self.outbox.forget_before(now - self.keep)

    # -- events --------------------------------------------------------------------------------

    def _matches_line(self, target: TargetConfig, line: str | None) -> bool:
        if line is None:
            return False
        key = (target.name, line)
        hit = self._matches.get(key)
        if hit is None:
            if len(self._matches) > 100_000:
                self._matches.clear()
            hit = self._matches[key] = any(fnmatchcase(line, p) for p in target.lines)
        return hit

    def _track(self, handle: int, callinfo: Mapping[str, Any], msg: str | None = None) -> CallTrack:
        track = self.tracks.get(handle)
        call = self.app.call(handle) if self.app is not None else None
        if track is None and call is not None and msg != NEWCALL:
            # A call first seen mid-way (a restart brought it back from the call store): who
            # answered it, from the model, and what each Zammad target was told, from the outbox.
            track = self.tracks[handle] = self._taken_up(call)
        if track is None:
            call_id = call.uniqueids[0] if call is not None else (callinfo.get("uniqueid") or f"call-{handle}")
            track = self.tracks[handle] = CallTrack(handle, _of_pbx(str(call_id), self.app, handle))
        if not track.stages:  # the direction holds once a receiver was told
            track.outbound = callinfo.get("origin") == _OUTBOUND or getattr(call, "owner_line", None) is not None
        return track

    @hookimpl
    def asttapi_client_event(self, event: Any) -> None:
        if event.call is None or self.clock is None:
            return None
        track = self._track(event.call, event.callinfo, event.msg)
        track.saw(event.msg, event.line, event.param, event.mode)
        for target in self.targets:
            if not self._matches_line(target, event.line):
                continue
            if target.format == "json":
                self._enqueue(target, json_event(event, track.call_id, uuid.uuid4().hex, self.clock.seconds()))
                continue
            what = _zammad_input(event, track)
            if what is not None:
                lines = [line for line in track.lines if self._matches_line(target, line)]
                for out in zammad_events(self.zammad[target.name], track, what, event.line, event.callinfo, lines):
                    self._enqueue(target, out)
        return None

    @hookimpl
    def asttapi_call_finished(self, call: Any) -> None:
        if self.clock is None:
            return
        track = self.tracks.pop(call.handle, None) or self._taken_up(call)
        now = self.clock.seconds()
        for target in self.targets:
            lines = [line for line in (track.lines or list(call.seen_lines)) if self._matches_line(target, line)]
            if not lines:
                continue
            if target.format == "json":
                self._enqueue(target, json_finished(track, call.callinfo, call.created, call.ended or now,
                                                    uuid.uuid4().hex, now))
            else:
                for out in zammad_events(self.zammad[target.name], track, "end", None, call.callinfo, lines):
                    self._enqueue(target, out)

    def _taken_up(self, call: Any) -> CallTrack:
        """The track of a call this plugin never saw start: who answered, and what each Zammad target was told."""
        track = _track_of(call, self.app)
        for name in self.zammad:
            for event, stage in (("hangup", "over"), ("answer", "answered"), ("newCall", "new")):
                if self.outbox is not None and self.outbox.known(name, f"{track.call_id}:{event}"):
                    track.stages[name] = stage
                    break
        return track

    def _enqueue(self, target: TargetConfig, out: Outgoing, created: float | None = None) -> None:
        created = self.clock.seconds() if created is None else created
        if self.outbox is None:  # a reload's plugin before the running one handed the outbox over
            self._waiting.append((target, out, created))
            return
        pending = Pending(target.name, out.event_id, out.call, out.kind, created, out.content_type, out.body)
        if self.outbox.add(pending):  # False: this event was made before (a restart), it is not sent twice
            self.deliveries[target.name].add(pending)

    # -- metrics --------------------------------------------------------------------------------

    @hookimpl
    def asttapi_metrics(self) -> list:
        now = self.clock.seconds() if self.clock is not None else 0.0
        depth, oldest, events, seconds = {}, {}, {}, {}
        for name, d in self.deliveries.items():
            depth[(name,)] = d.depth()
            head = d.oldest()
            oldest[(name,)] = max(0.0, now - head.created) if head is not None else 0.0
            for result, count in d.counts.items():
                events[(name, result)] = count
            seconds[(name,)] = d.delivery_seconds
        return [
            family("asttapi_webhook_queue_depth", depth),
            family("asttapi_webhook_oldest_seconds", oldest),
            family("asttapi_webhook_events", events),
            family("asttapi_webhook_delivery_seconds", seconds),
        ]


def _zammad_input(event: Any, track: CallTrack) -> str | None:
    """Which input of ``events.ZAMMAD`` one TAPI event of a target line is, if any.

    LINE_NEWCALL is none: the NEWCALLs of a ring group's lines come one after
    the other, and newCall names every line the call rings on.
    """
    if event.msg not in (CALLSTATE, CALLINFO):
        return None
    state = event.param if event.msg == CALLSTATE else None
    if state == CONNECTED:
        return "answer"
    if state in (DISCONNECTED, IDLE):
        return "ring"  # whoever it was: the receiver must know of the call before it ends
    info = event.callinfo
    if track.outbound:
        known = bool(info.get("calledid")) or (state is not None and state not in _RINGING)
    else:
        settled = _FINAL_HIDING.intersection(info.get("calleridflags") or ())  # withheld, or none to come
        known = bool(info.get("callerid")) or bool(settled) or (state is not None and state not in _RINGING)
    return "ring" if known else None


def _of_pbx(uniqueid: str, app: Any, handle: int) -> str:
    """The call id receivers get: the Uniqueid, with ``@PBX`` after it for a call of a PBX other
    than ``default`` (two Asterisks may hand out the same Uniqueid; a receiver must not take two
    calls for one)."""
    pbx_of = getattr(app, "pbx", None)
    pbx = pbx_of(handle) if pbx_of is not None else None
    return uniqueid if pbx in (None, "default") else f"{uniqueid}@{pbx}"


def _track_of(call: Any, app: Any) -> CallTrack:
    """A track rebuilt from a Call (a restored call, or one the plugin never saw an event of)."""
    track = CallTrack(call.handle, _of_pbx(str(call.uniqueids[0]), app, call.handle))
    track.outbound = call.callinfo.get("origin") == _OUTBOUND or call.owner_line is not None
    track.lines = list(call.seen_lines)
    track.answered_by = [line for line, state in call.states.items() if state == CONNECTED]
    if track.answered_by:
        track.flags |= ANSWERED
    return track

