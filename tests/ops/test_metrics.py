"""/metrics, /healthz, /readyz on a whole server (demo PBX, loopback), and the documented metric list."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, reactor
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from asttapi_server.config import load_config
from asttapi_server.demo.scenarios import Timing
from asttapi_server.metrics import METRICS, Metrics
from asttapi_server.service import make_service
from tests.ops.loopback import http_get, line_client, until

ROOT = Path(__file__).resolve().parents[2]


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(parsed: dict, name: str, **labels) -> float:
    return sum(v for (n, lab), v in parsed.items()
               if n == name and all(dict(lab).get(k) == val for k, val in labels.items()))


class WholeServerTests(TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def start(self, **extra):
        overrides = {"server.listen": ["tcp:0:interface=127.0.0.1"], "web.listen": ["tcp:0:interface=127.0.0.1"]}
        overrides.update(extra)
        app = make_service(load_config(None, overrides), reactor,
                           demo_options={"timing": Timing.fast(), "autoplay": False})
        app.startService()
        self.addCleanup(app.stopService)
        self.tcp = (yield app.listeners[0].whenListening()).getHost().port
        self.web = (yield app.web_listeners[0].whenListening()).getHost().port
        return app

    @defer.inlineCallbacks
    def scrape(self):
        status, headers, body = yield http_get(self.web, "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/plain; version="), headers)
        return body.decode()

    @defer.inlineCallbacks
    def test_metrics_count_what_a_client_saw(self):
        app = yield self.start()
        yield until(lambda: app.bridge.link_up)
        client = yield line_client(self.tcp, case=self)
        for line in ("line_1", "line_2"):
            yield client.call("lineOpen", line=line)
        app.demo.play("inbound", caller=("0301234567", "Ext Caller"), ring=50.0)  # 0.5 s: the lookup ends while it rings
        yield client.wait_for(lambda m: m.get("method") == "LINE_CALLINFO" and "contact" in m["params"]["callinfo"])
        yield client.wait_for(lambda m: m.get("params", {}).get("state") == "LINECALLSTATE_IDLE")
        yield until(lambda: app.metrics.in_progress() == 0)
        text = yield self.scrape()
        parsed = samples(text)
        self.assertEqual(total(parsed, "asttapi_ami_link_up"), 1)
        self.assertEqual(total(parsed, "asttapi_pbx_in_service"), 1)
        self.assertEqual(total(parsed, "asttapi_calls_in_progress"), 0)
        self.assertEqual(total(parsed, "asttapi_calls_finished_total"), 1)
        self.assertEqual(total(parsed, "asttapi_calls_finished_total", outcome="answered"), 1)
        self.assertEqual(total(parsed, "asttapi_clients_connected", transport="tcp"), 1)
        self.assertEqual(total(parsed, "asttapi_lines_open"), 2)
        # every call event the hub numbered is one the client (both lines open) got
        for msg in ("LINE_NEWCALL", "LINE_CALLSTATE", "LINE_CALLINFO"):
            seen = sum(1 for m in client.messages if m.get("method") == msg and not m["params"].get("existing"))
            self.assertEqual(total(parsed, "asttapi_tapi_events_total", msg=msg), seen, msg)
            self.assertGreater(seen, 0)
        self.assertGreater(total(parsed, "asttapi_ami_events_total", event="UserEvent"), 0)
        self.assertGreaterEqual(total(parsed, "asttapi_ami_action_seconds_count", action="CoreShowChannels"), 1)
        self.assertEqual(total(parsed, "asttapi_contact_lookups_total", plugin="crm_sql", result="hit"), 1)
        self.assertEqual(total(parsed, "asttapi_contact_lookup_seconds_count", plugin="crm_sql"), 1)
        self.assertEqual(total(parsed, "asttapi_safety_net_endings_total"), 0)
        # every family is documented in METRICS, and every METRICS entry is exposed
        names = {f.name for f in text_string_to_metric_families(text)}
        self.assertEqual(names, set(METRICS))
        promtool = shutil.which("promtool")
        if promtool:
            run = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True)
            self.assertEqual(run.returncode, 0, run.stdout + run.stderr)

    @defer.inlineCallbacks
    def test_readyz_flips_with_the_pbx_link_and_healthz_stays(self):
        app = yield self.start()
        yield until(lambda: app.bridge.link_up)
        status, _, body = yield http_get(self.web, "/readyz")
        self.assertEqual((status, body), (200, b"ready\n"))
        # the PBX vanishes: not ready at once, with one line saying why
        yield app.demo.stopService()
        yield until(lambda: not app.ami.connected)
        status, headers, body = yield http_get(self.web, "/readyz")
        self.assertEqual(status, 503)
        # The same words as systemd's STATUS= (AMILink.state_line): the link and why it is down.
        self.assertRegex(body.decode(), r"^PBX link DOWN: .+\n$")
        self.assertEqual(body.decode(), app.ami.state_line + "\n")
        self.assertIn("content-security-policy", headers)
        status, _, body = yield http_get(self.web, "/healthz")
        self.assertEqual((status, body), (200, b"ok\n"))
        parsed = samples((yield self.scrape()))
        self.assertEqual(total(parsed, "asttapi_ami_link_up"), 0)
        # it comes back: ready again once resynchronised, and the reconnect is counted
        app.ami.retry_policy = lambda n: 0.05
        app.demo.startService()
        yield until(lambda: app.bridge.link_up, timeout=20)
        status, _, body = yield http_get(self.web, "/readyz")
        self.assertEqual((status, body), (200, b"ready\n"))
        parsed = samples((yield self.scrape()))
        self.assertEqual(total(parsed, "asttapi_ami_reconnects_total"), 1)

    @defer.inlineCallbacks
    def test_no_login_needed_but_a_foreign_host_is_refused_without_users(self):
        yield self.start()
        status, _, body = yield http_get(self.web, "/metrics", host="evil.example")
        self.assertEqual(status, 403)
        self.assertIn(b"not a loopback name", body)
        status, _, _ = yield http_get(self.web, "/healthz", host="localhost")
        self.assertEqual(status, 200)

    @defer.inlineCallbacks
    def test_a_metrics_listener_of_its_own_serves_only_the_three_paths(self):
        from twisted.logger import formatEvent

        logged: list[str] = []

        def observer(event):
            logged.append(formatEvent(event))

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        app = yield self.start(**{"metrics.listen": ["tcp:0:interface=127.0.0.1"]})
        port = (yield app.ops_listeners[0].whenListening()).getHost().port
        # The log says what listens there: no client may connect to it.
        self.assertIn("Metrics and health checks (/metrics, /healthz, /readyz) on tcp:0:interface=127.0.0.1 "
                      f"(127.0.0.1:{port})", logged)
        self.assertEqual(sum(1 for line in logged if line.startswith("Clients may connect on")), 1, logged)
        status, _, body = yield http_get(port, "/metrics")
        self.assertEqual(status, 200)
        self.assertIn(b"asttapi_ami_link_up", body)
        status, _, _ = yield http_get(port, "/")
        self.assertEqual(status, 404)
        status, _, _ = yield http_get(port, "/ws")
        self.assertEqual(status, 404)


def test_a_safety_net_ending_is_counted_by_reason():
    """The core counts why it ended calls itself; /metrics reads that count, whatever linger is."""
    from asttapi_server.core.grammar import parse_tapievent
    from asttapi_server.core.model import ENDINGS, CallModel
    from asttapi_server.core.grammar import TapiSignal

    def newcall(uid):
        return TapiSignal(parse_tapievent(f"[~{uid}] LINE_NEWCALL l"), uid, None)

    model = CallModel(hangup_grace=2.0, max_age=100.0, linger=0.0)

    class App:
        pass

    app = App()
    app.model = model
    m = Metrics()
    m.app = app
    assert m.safety_net() == dict.fromkeys(ENDINGS, 0)
    model.apply(newcall("1.1"), 0.0)
    model.channel_hangup("1.1", 17, 1.0)
    model.tick(4.0)  # grace over, no IDLE from the dialplan
    model.apply(newcall("1.2"), 5.0)
    model.tick(200.0)  # max age
    model.apply(newcall("1.3"), 201.0)
    model.resync(set(), 202.0)
    assert model.tracked == 0  # linger 0: the calls are gone, their reasons are counted
    counts = m.safety_net()
    assert (counts["hangup_grace"], counts["max_age"], counts["resync"]) == (1, 1, 1)
    assert sum(counts.values()) == 3


def test_docs_list_every_metric_with_its_labels():
    doc = (ROOT / "docs" / "operations.md").read_text()
    rows = dict(re.findall(r"^\| `(asttapi_[a-z_]+)` \| [a-z]+ \|([^|]*)\|", doc, re.M))
    assert set(rows) == set(METRICS), set(rows) ^ set(METRICS)
    for name, (kind, labels, _help) in METRICS.items():
        documented = tuple(re.findall(r"`([a-z_]+)`", rows[name]))
        assert documented == labels, (name, documented, labels)


def test_directory_plugins_report_their_index_size_reads_and_age():
    from types import SimpleNamespace

    from twisted.internet.task import Clock

    from asttapi_server.directory import Contact, DirectoryIndex
    from asttapi_server.errors import DirectoryError
    from asttapi_server.plugin_host import PluginHost

    clock = Clock()
    outcomes = [defer.succeed([Contact("Jane", None, ("020 7946 0958", "07700 900123"))]),
                defer.fail(DirectoryError("cannot connect"))]
    directory = DirectoryIndex("ldap_contacts", lambda: outcomes.pop(0), where="ldap://dc1", refresh=60,
                               clock=clock, run_in_thread=lambda f: defer.maybeDeferred(f))
    host = PluginHost(clock=clock)
    host.register(SimpleNamespace(directory=directory), "ldap_contacts")
    host.register(SimpleNamespace(), "other")  # no directory: not reported
    m = Metrics()
    m.app = SimpleNamespace(plugins=host)
    parsed = samples(m.exposition().decode())
    assert total(parsed, "asttapi_contact_directory_entries") == 0  # no sample before the first read
    assert ("asttapi_contact_directory_age_seconds", (("plugin", "ldap_contacts"),)) not in parsed
    directory.start()
    clock.advance(60)  # the second read fails: the index stays
    clock.advance(30)
    parsed = samples(m.exposition().decode())
    label = (("plugin", "ldap_contacts"),)
    assert parsed[("asttapi_contact_directory_entries", label)] == 1
    assert parsed[("asttapi_contact_directory_numbers", label)] == 2
    assert parsed[("asttapi_contact_directory_reads_total", (("plugin", "ldap_contacts"), ("result", "ok")))] == 1
    assert parsed[("asttapi_contact_directory_reads_total", (("plugin", "ldap_contacts"), ("result", "failed")))] == 1
    assert parsed[("asttapi_contact_directory_age_seconds", label)] == 90
    assert total(parsed, "asttapi_contact_directory_entries", plugin="other") == 0
    directory.stop()


def test_plugins_report_their_own_figures_merged_and_a_failing_plugin_is_left_out():
    from prometheus_client.core import GaugeMetricFamily

    from asttapi_server.hookspecs import hookimpl
    from asttapi_server.metrics import Histogram, family
    from asttapi_server.plugin_host import PluginHost

    class Queue:
        def __init__(self, target, depth):
            self.target, self.depth = target, depth

        @hookimpl
        def asttapi_metrics(self):
            hist = Histogram((1.0, 10.0))
            hist.observe(0.5)
            return [family("asttapi_webhook_queue_depth", {(self.target,): self.depth}),
                    family("asttapi_webhook_delivery_seconds", {(self.target,): hist})]

    class Broken:
        @hookimpl
        def asttapi_metrics(self):
            raise RuntimeError("bug")

    class Rogue:
        @hookimpl
        def asttapi_metrics(self):
            return [GaugeMetricFamily("python_gc_objects", "not ours", value=1)]

    host = PluginHost()
    for name, plugin in (("a", Queue("zammad", 3)), ("b", Queue("crm", 5)), ("broken", Broken()),
                         ("rogue", Rogue())):
        host.register(plugin, name)

    class App:
        plugins = host
        ami = bridge = hub = client_factory = model = None

    m = Metrics()
    m.app = App()
    text = m.exposition().decode()
    parsed = samples(text)
    assert total(parsed, "asttapi_webhook_queue_depth", target="zammad") == 3
    assert total(parsed, "asttapi_webhook_queue_depth", target="crm") == 5
    assert total(parsed, "asttapi_webhook_delivery_seconds_count", target="crm") == 1
    assert "python_gc_objects" not in text
    # every declared metric is there, the http_contacts ones empty (no such plugin here)
    assert {f.name for f in text_string_to_metric_families(text)} == set(METRICS)
    assert total(parsed, "asttapi_http_contacts_requests_total") == 0
