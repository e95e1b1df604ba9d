"""Prometheus metrics: what the admin looks at when screen pops stop.

Composition ring. The server's parts only report facts through seams they
already have (AMI link observers, the hub's publish observer, the plugin
host's lookup observer, the client factory's cut-off counts); this module
counts them in plain ``int`` s and turns them into the exposition format
only when ``/metrics`` is scraped (:class:`ServerCollector`, a custom
collector on a :class:`~prometheus_client.CollectorRegistry` of our own:
never the global one, so tests and several servers in one process do not
collide). Gauges (link up, calls in progress, clients by transport) are read
at scrape time. So the hot path pays a dict increment per event, not
prometheus_client's lock per ``inc()``.

Every metric, with its labels, is listed in :data:`METRICS` and in
docs/operations.md (a test keeps both the same).

Every label value comes from a bounded set (:class:`LabelValues`): the values
the server knows, in their canonical spelling, and ``other`` for anything
else. A hostile PBX that sends 120,000 case variants of ``OriginateResponse``
(the event filter compares names case-insensitively, as Asterisk's own
readers do) adds to one counter, not 120,000 series.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.internet.interfaces import ISSLTransport
from twisted.logger import Logger

from asttapi_server.ami import actions
from asttapi_server.idents import MAX_NAME_BYTES, ByName
from asttapi_server.core.constants import CALLINFO, CALLSTATE, DEVSTATE, NEWCALL
from asttapi_server.core.control import CORE_EVENTS
from asttapi_server.core.events import TapiEvent
from asttapi_server.core.outcome import OUTCOMES

__all__ = ["METRICS", "PLUGIN_METRICS", "Histogram", "Metrics", "LabelValues", "CONTENT_TYPE_LATEST", "family"]

log = Logger()

#: The bundled plugins' own metrics (hook ``asttapi_metrics``); exposed, empty, when the plugin is not loaded.
PLUGIN_METRICS: Mapping[str, tuple[str, tuple[str, ...], str]] = {
    "asttapi_http_contacts_requests": (
        "counter", ("result",),
        "Requests of http_contacts to the CRM, by result (found, not_found, error, timeout, unreachable, "
        "bad_answer)."),
    "asttapi_http_contacts_request_seconds": ("histogram", (), "Time the CRM took to answer http_contacts."),
    "asttapi_http_contacts_cache": (
        "counter", ("result",), "Lookups of http_contacts by cache result (hit, miss, shared)."),
    "asttapi_http_contacts_cached": ("gauge", (), "Numbers http_contacts holds an answer for."),
    "asttapi_webhook_queue_depth": ("gauge", ("target",), "Call events waiting to be delivered, by target."),
    "asttapi_webhook_oldest_seconds": (
        "gauge", ("target",), "Age of the oldest call event waiting for a target (0: none waits)."),
    "asttapi_webhook_events": (
        "counter", ("target", "result"),
        "Call events by target and result (sent, retried, dropped); retried counts failed attempts."),
    "asttapi_webhook_delivery_seconds": (
        "histogram", ("target",), "Time from a call event to the target's acknowledgement of it."),
}

#: name -> (type, labels, help). The exposition adds ``_total`` to counters.
METRICS: Mapping[str, tuple[str, tuple[str, ...], str]] = {
    "asttapi_ami_link_up": ("gauge", ("pbx",), "1 while logged in to the PBX's Asterisk manager, else 0."),
    "asttapi_pbx_in_service": (
        "gauge", ("pbx",),
        "1 once logged in and resynchronised (the PBX's lines are in service), else 0; /readyz wants all."),
    "asttapi_ami_reconnects": ("counter", ("pbx",), "Logins to the PBX's Asterisk manager after the first one."),
    "asttapi_ami_events": ("counter", ("event",), "AMI events read, by the event names the server uses."),
    "asttapi_ami_action_seconds": (
        "histogram", ("action",), "Round-trip time of AMI actions (keepalive Ping included), by action."),
    "asttapi_ami_action_failures": (
        "counter", ("action", "reason"), "AMI actions that failed, by action and reason (error, timeout, link_down)."),
    "asttapi_tapi_events": ("counter", ("msg",), "TAPI events sent to clients (numbered by the hub), by message."),
    "asttapi_calls_in_progress": ("gauge", (), "Calls announced to clients and not yet ended."),
    "asttapi_calls_finished": (
        "counter", ("outcome",), "Calls ended, by outcome (answered, missed, busy, failed)."),
    "asttapi_safety_net_endings": (
        "counter", ("reason",),
        "Calls the server ended itself (synthetic DISCONNECTED/IDLE), by reason (see docs/operations.md)."),
    "asttapi_clients_connected": ("gauge", ("transport",), "Client connections, by transport (tcp, tls, unix, ws, wss)."),
    "asttapi_lines_open": ("gauge", (), "Lines at least one client has open."),
    "asttapi_clients_cut_off": (
        "counter", ("reason",), "Client connections the server closed, by reason (see docs/operations.md)."),
    "asttapi_contact_lookups": (
        "counter", ("plugin", "result"), "Contact lookups per plugin, by result (hit, miss, error, timeout)."),
    "asttapi_contact_lookup_seconds": ("histogram", ("plugin",), "Time a plugin took to answer a contact lookup."),
    "asttapi_contact_directory_entries": (
        "gauge", ("plugin",), "Contacts in a directory plugin's in-memory index (ldap_contacts, carddav_contacts)."),
    "asttapi_contact_directory_numbers": ("gauge", ("plugin",), "Phone numbers in a directory plugin's index."),
    "asttapi_contact_directory_reads": (
        "counter", ("plugin", "result"), "Reads of a contact directory, by result (ok, failed)."),
    "asttapi_contact_directory_age_seconds": (
        "gauge", ("plugin",), "Seconds since a contact directory was last read successfully (absent before that)."),
    "asttapi_config_reloads": ("counter", ("result",), "Configuration reloads (SIGHUP), by result (ok, refused)."),
    **PLUGIN_METRICS,
}

#: Buckets for waits that may last a receiver's outage (seconds to hours).
DELIVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0)
#: The label value of everything outside a label's known set.
OTHER = "other"
#: Events the link reacts to whatever the filter says (``ami.parser.ALWAYS_KEPT``), canonically spelt.
LINK_EVENTS = ("Shutdown", "FullyBooted")
#: Why an AMI action failed (``AMILink.add_action_observer``).
ACTION_FAILURES = ("error", "timeout", "link_down")
#: TAPI messages the hub numbers.
TAPI_MESSAGES = (NEWCALL, CALLSTATE, CALLINFO, DEVSTATE)
#: Why the server closed a client connection (``ClientFactory.cut_off``; docs/operations.md).
CUT_OFF_REASONS = (
    "slow_reader", "errors", "oversize", "rate_limit", "login_timeout", "login_failures", "handshake_timeout",
    "line_timeout", "binary_frame", "refused", "displaced", "request_timeout", "reload", "session",
)
#: What one plugin's part of a contact lookup came to.
LOOKUP_RESULTS = ("hit", "miss", "error", "timeout")
#: AMI event names counted as sent before they are labelled (``Metrics.on_ami_event``).
MAX_SENT_NAMES = 256
#: Plugin names counted apart; plugins are configured, but a reload may bring new ones.
MAX_PLUGIN_LABELS = 64


class LabelValues:
    """The values one label may take: ``known`` ones, matched in any case and
    shown in their canonical spelling (the case rule of the event filter,
    ``idents.wanted_name``), and ``other`` for anything else.

    ``grow``: besides, up to this many other values are kept as first seen
    (plugin names, which a reload may add to); later ones are ``other``.
    """

    __slots__ = ("_known", "_grown", "_grow")

    def __init__(self, known: Iterable[str], *, grow: int = 0) -> None:
        self._known: ByName[str] = ByName({name: name for name in known})
        self._grown: dict[str, str] = {}
        self._grow = grow

    def __call__(self, value: str) -> str:
        label = self._known.get(value)
        if label is None:
            label = self._grown.get(value)
            if label is None:
                if len(self._grown) >= self._grow:
                    return OTHER
                label = self._grown[value] = value
        return label


ACTION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LOOKUP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)

class Histogram:
    """Bucket counts and a sum in plain numbers (one per label value); plugins count with it too."""

    __slots__ = ("bounds", "counts", "total", "n")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.n += 1
        self.total += value
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                break

    def buckets(self) -> list[tuple[str, int]]:
        out, running = [], 0
        for bound, count in zip(self.bounds, self.counts):
            running += count
            out.append((_float(bound), running))
        out.append(("+Inf", self.n))
        return out


def _float(value: float) -> str:
    return repr(float(value))


class Metrics:
    """The counts of one server. :meth:`attach` connects it to a built ``AppService``."""

    def __init__(self) -> None:
        self.event_label = LabelValues((*CORE_EVENTS, *LINK_EVENTS))
        self.action_label = LabelValues(actions.NAMES)
        self.failure_label = LabelValues(ACTION_FAILURES)
        self.msg_label = LabelValues(TAPI_MESSAGES)
        self.cut_off_label = LabelValues(CUT_OFF_REASONS)
        self.result_label = LabelValues(LOOKUP_RESULTS)
        self.plugin_label = LabelValues((), grow=MAX_PLUGIN_LABELS)
        # AMI events by their name as sent (at most MAX_SENT_NAMES names): labelled when read
        # (``ami_events``), so the hot path is one dict increment per event, no label lookup.
        self._sent_events: dict[str, int] = {}
        self._labelled_events: dict[str, int] = {}  # counts already labelled (folded)
        self.tapi_events: dict[str, int] = {}
        self.reconnects: dict[str, int] = {}  # by PBX
        self._logins: dict[str, int] = {}
        self.actions: dict[str, Histogram] = {}
        self.action_failures: dict[tuple[str, str], int] = {}
        self.calls_finished: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self.lookups: dict[tuple[str, str], int] = {}
        self.lookup_seconds: dict[str, Histogram] = {}
        self.reloads: dict[str, int] = {"ok": 0, "refused": 0}
        self._retired_endings: dict[str, int] = {}  # endings of PBXs a reload removed
        self.app: Any = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ServerCollector(self))

    # -- wiring ---------------------------------------------------------------

    def attach(self, app: Any) -> None:
        """Observe ``app``'s AMI link, hub, plugin host and client factory (composition only)."""
        self.app = app
        self.learn_event_names()
        board = getattr(app, "switchboard", None)
        if board is not None:
            for unit in board.units.values():
                self.attach_unit(unit)
            board.on_unit = self.attach_unit  # a PBX a reload adds
        if app.hub is not None:
            app.hub.on_publish = self.on_publish
        if app.plugins is not None:
            self.use_plugins(app.plugins)

    def use_plugins(self, plugins: Any) -> None:
        """Count the contact lookups of ``plugins`` (at start-up and after a reload)."""
        plugins.lookup_observer = self.on_lookup

    def attach_unit(self, unit: Any) -> None:
        """Observe one PBX's AMI link (its events and actions count with every PBX's)."""
        name = unit.name
        self.reconnects.setdefault(name, 0)
        self._logins.setdefault(name, 0)
        unit.link.add_event_observer(self.on_ami_event)
        unit.link.add_link_observer(lambda up: self.on_link(up, name))
        unit.link.add_action_observer(self.on_action)
        unit.bridge.add_finished_observer(self.on_finished)

    def learn_event_names(self) -> None:
        """Count the events the server asks Asterisk for under their own names (at start and after a reload).

        What was counted so far keeps the labels it had: a counter never goes down."""
        self._fold_events()
        plugins = getattr(self.app, "plugins", None)
        wanted = plugins.wanted_event_names() if plugins is not None else ()
        self.event_label = LabelValues((*CORE_EVENTS, *LINK_EVENTS, *sorted(wanted)))

    def exposition(self) -> bytes:
        """The text format of every metric, read now."""
        return generate_latest(self.registry)

    # -- observers (the hot path: plain dict arithmetic) ----------------------

    def on_ami_event(self, message: Any) -> None:
        name = message.name
        counts = self._sent_events
        n = counts.get(name)
        if n is not None:
            counts[name] = n + 1
        elif len(counts) < MAX_SENT_NAMES and len(name) <= MAX_NAME_BYTES:
            counts[name] = 1
        else:  # a PBX varying its names: count under the label at once
            label = self.event_label(name)
            self._labelled_events[label] = self._labelled_events.get(label, 0) + 1

    @property
    def ami_events(self) -> dict[str, int]:
        """AMI events read, by label (:class:`LabelValues`: the names the server uses, ``other``)."""
        self._fold_events()
        return dict(self._labelled_events)

    def _fold_events(self) -> None:
        """Add the counts by name as sent to the labelled ones, under the labels of now."""
        labelled = self._labelled_events
        for name, n in self._sent_events.items():
            label = self.event_label(name)
            labelled[label] = labelled.get(label, 0) + n
        self._sent_events.clear()

    def on_link(self, up: bool, pbx: str = "default") -> None:
        if up:
            logins = self._logins[pbx] = self._logins.get(pbx, 0) + 1
            if logins > 1:
                self.reconnects[pbx] = self.reconnects.get(pbx, 0) + 1

    def on_action(self, action: str, seconds: float, failure: str | None) -> None:
        """One AMI action answered (``failure`` None) or failed (error, timeout, link_down)."""
        action = self.action_label(action)
        if failure is None:
            hist = self.actions.get(action)
            if hist is None:
                hist = self.actions[action] = Histogram(ACTION_BUCKETS)
            hist.observe(seconds)
        else:
            key = (action, self.failure_label(failure))
            self.action_failures[key] = self.action_failures.get(key, 0) + 1

    def on_publish(self, event: TapiEvent) -> None:
        """Every TAPI event the hub numbers, as clients get it."""
        counts = self.tapi_events
        label = self.msg_label(event.msg)
        counts[label] = counts.get(label, 0) + 1

    def on_finished(self, call: Any) -> None:
        """A call the core reported finished (``Effects.finished``: exactly once per call), by its outcome."""
        self.calls_finished[call.outcome] += 1

    def safety_net(self) -> dict[str, int]:
        """Calls the core ended itself, by reason (its own count, every PBX's, read at scrape time)."""
        board = getattr(self.app, "switchboard", None)
        models = list(board.models().values()) if board is not None else []
        if not models:
            model = getattr(self.app, "model", None)
            models = [model] if model is not None else []
        total = dict(self._retired_endings)
        for model in models:
            for reason, n in model.endings.items():
                total[reason] = total.get(reason, 0) + n
        return total

    def unit_removed(self, unit: Any) -> None:
        """A reload removed a PBX: its counts stay in the totals (counters never go down)."""
        for reason, n in unit.model.endings.items():
            self._retired_endings[reason] = self._retired_endings.get(reason, 0) + n

    def on_lookup(self, plugin: str, result: str, seconds: float) -> None:
        """One plugin's part of a contact lookup: hit, miss, error or timeout."""
        plugin = self.plugin_label(plugin)
        key = (plugin, self.result_label(result))
        self.lookups[key] = self.lookups.get(key, 0) + 1
        if result != "timeout":
            hist = self.lookup_seconds.get(plugin)
            if hist is None:
                hist = self.lookup_seconds[plugin] = Histogram(LOOKUP_BUCKETS)
            hist.observe(seconds)

    def on_reload(self, ok: bool) -> None:
        self.reloads["ok" if ok else "refused"] += 1
        if ok:
            self.learn_event_names()  # the plugins may want other events now

    # -- read at scrape time -----------------------------------------------------

    def in_progress(self) -> int:
        """Calls announced to clients and not ended, read from the call models of every PBX (a
        lineMakeCall's call counts from its LINE_NEWCALL, as its clients see it)."""
        board = getattr(self.app, "switchboard", None)
        model = board.model if board is not None else getattr(self.app, "model", None)
        if model is None:
            return 0
        return sum(1 for call in model.live_calls() if call.owner_line is None or call.owner_announced)

    def clients_by_transport(self) -> dict[str, int]:
        counts = dict.fromkeys(("tcp", "tls", "unix", "ws", "wss"), 0)
        factory = getattr(self.app, "client_factory", None)
        for conn in tuple(getattr(factory, "connections", ())):
            kind = transport_kind(conn.transport)
            counts[kind] = counts.get(kind, 0) + 1
        return counts

    def cut_offs(self) -> dict[str, int]:
        factory = getattr(self.app, "client_factory", None)
        out: dict[str, int] = {}
        for reason, count in tuple(getattr(factory, "cut_offs", {}).items()):
            label = self.cut_off_label(reason)
            out[label] = out.get(label, 0) + count
        return out


def transport_kind(transport: Any) -> str:
    """tcp, tls, unix, ws or wss: how a client connection reached us."""
    ws = getattr(transport, "_ws", None)  # asttapi_server.web.ws._MessageTransport
    if ws is not None:
        return "wss" if ISSLTransport.providedBy(getattr(ws, "transport", None)) else "ws"
    if ISSLTransport.providedBy(transport):
        return "tls"
    peer = transport.getPeer() if hasattr(transport, "getPeer") else None
    if type(peer).__name__ == "UNIXAddress":
        return "unix"
    return "tcp"


class ServerCollector:
    """prometheus_client collector that reads a :class:`Metrics` at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        m = self.m
        app = m.app
        units = app.units() if hasattr(app, "units") else []
        hub = getattr(app, "hub", None)
        yield _gauge("asttapi_ami_link_up", {(u.name,): 1 if u.link.connected else 0 for u in units})
        yield _gauge("asttapi_pbx_in_service",
                     {(u.name,): 1 if u.link.connected and u.in_service else 0 for u in units})
        yield _counter("asttapi_ami_reconnects", {(u.name,): m.reconnects.get(u.name, 0) for u in units})
        yield _counter("asttapi_ami_events", {(k,): v for k, v in sorted(m.ami_events.items())})
        yield _histogram("asttapi_ami_action_seconds", m.actions)
        yield _counter("asttapi_ami_action_failures", dict(sorted(m.action_failures.items())))
        yield _counter("asttapi_tapi_events", {(k,): v for k, v in sorted(m.tapi_events.items())})
        yield _gauge("asttapi_calls_in_progress", m.in_progress())
        yield _counter("asttapi_calls_finished", {(k,): v for k, v in m.calls_finished.items()})
        yield _counter("asttapi_safety_net_endings", {(k,): v for k, v in m.safety_net().items()})
        yield _gauge("asttapi_clients_connected", {(k,): v for k, v in m.clients_by_transport().items()})
        yield _gauge("asttapi_lines_open", hub.open_lines if hub is not None else 0)
        yield _counter("asttapi_clients_cut_off", {(k,): v for k, v in sorted(m.cut_offs().items())})
        yield _counter("asttapi_contact_lookups", dict(sorted(m.lookups.items())))
        yield _histogram("asttapi_contact_lookup_seconds", m.lookup_seconds)
        yield from _directories(app)
        yield _counter("asttapi_config_reloads", {(k,): v for k, v in m.reloads.items()})
        yield from _plugin_families(getattr(app, "plugins", None))


def _plugin_families(plugins: Any) -> Iterable[Any]:
    """The plugins' families (hook ``asttapi_metrics``), merged by name; the declared plugin metrics
    nobody reported come empty, so every name in METRICS is always exposed."""
    merged: dict[str, Any] = {}
    for fam in plugins.metrics() if plugins is not None else ():
        if not getattr(fam, "name", "").startswith("asttapi_"):
            log.error("A plugin reported the metric {name!r}; plugin metrics are named asttapi_*, ignored",
                      name=getattr(fam, "name", fam))
            continue
        known = merged.get(fam.name)
        if known is None:
            merged[fam.name] = fam
        elif known.type == fam.type:
            known.samples.extend(fam.samples)
    for name in PLUGIN_METRICS:
        merged.setdefault(name, family(name, {}))
    yield from merged.values()


def family(name: str, values: Mapping[tuple[str, ...], Any]) -> Any:
    """The family of metric ``name`` (declared in METRICS) with ``values``: label values -> a number,
    or -> a :class:`Histogram` for a histogram."""
    kind = METRICS[name][0]
    if kind == "histogram":
        return _histogram(name, values)
    return (_gauge if kind == "gauge" else _counter)(name, dict(values))


def _directories(app: Any) -> Iterable[Any]:
    """The directory plugins' indexes (asttapi_server.directory), read now; plugin names label them."""
    plugins = getattr(app, "plugins", None)
    found = plugins.directories() if plugins is not None else {}
    stats = {name: directory.stats() for name, directory in sorted(found.items())}
    yield _gauge("asttapi_contact_directory_entries", {(n,): s.contacts for n, s in stats.items()})
    yield _gauge("asttapi_contact_directory_numbers", {(n,): s.numbers for n, s in stats.items()})
    yield _counter("asttapi_contact_directory_reads",
                   {(n, result): count for n, s in stats.items()
                    for result, count in (("ok", s.reads_ok), ("failed", s.reads_failed))})
    yield _gauge("asttapi_contact_directory_age_seconds",
                 {(n,): s.age for n, s in stats.items() if s.age is not None})


def _family(name: str, cls: Callable[..., Any]) -> Any:
    kind, labels, text = METRICS[name]
    return cls(name, text, labels=labels)


def _gauge(name: str, values: Any) -> GaugeMetricFamily:
    family = _family(name, GaugeMetricFamily)
    if not isinstance(values, dict):
        values = {(): values}
    for labels, value in values.items():
        family.add_metric(list(labels), value)
    return family


def _counter(name: str, values: Mapping[tuple[str, ...], int]) -> CounterMetricFamily:
    family = _family(name, CounterMetricFamily)
    for labels, value in values.items():
        family.add_metric(list(labels), value)
    return family


def _histogram(name: str, by_label: Mapping[Any, Histogram]) -> HistogramMetricFamily:
    """By one label value (a string) or by a tuple of them (``()`` for a histogram without labels)."""
    family = _family(name, HistogramMetricFamily)
    for label, hist in sorted(by_label.items()):
        family.add_metric([label] if isinstance(label, str) else list(label), hist.buckets(), hist.total)
    return family
