"""call_webhooks against real receivers on loopback: Zammad's field rules, JSON events, outages, restarts."""

from __future__ import annotations

import json
import shutil
import sqlite3
import stat
import tempfile
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from tests.ops.loopback import until
from tests.plugins.http_servers import Logged, Server
from tests.plugins.servers import closed_port
from tests.plugins.webhook_receivers import ZAMMAD_CAUSES, JsonReceiver, ZammadReceiver
from tests.plugins.webhook_rig import Rig, call_webhooks

events = __import__("asttapi_plugins.call_webhooks.events", fromlist=["x"])
delivery = __import__("asttapi_plugins.call_webhooks.delivery", fromlist=["x"])

AGENTS = {"line_1": {"name": "Emma Taylor", "answering_number": "emma@example.com"}, "line_2": "Bob Smith"}




class Base(TestCase):
    timeout = 60

    def setUp(self):
        self.folder = Path(tempfile.mkdtemp(prefix="asttapi-webhooks-"))
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.clock = Clock()
        self.clock.advance(1_800_000_000)

    def receiver(self, handler) -> Server:
        server = Server(handler)
        self.addCleanup(server.stop)
        return server

    def rig(self, targets, **kw) -> Rig:
        kw.setdefault("clock", self.clock)
        rig = Rig(self.folder, targets, reactor=reactor, **kw)
        self.addCleanup(rig.stop)
        return rig

    def zammad_target(self, server: Server, **kw) -> dict:
        return {"name": "zammad", "url": server.url("/api/v1/cti/abc"), "format": "zammad", "agents": AGENTS, **kw}

    def settle(self, rig, name: str, sent: int):
        """Wait (pumping the simulated clock) until ``sent`` events of target ``name`` are acknowledged."""
        d = rig.delivery(name)

        def done():
            self.clock.advance(0)
            return d.counts["sent"] >= sent and not d.in_flight
        return until(done)


class ZammadTests(Base):
    @defer.inlineCallbacks
    def test_an_answered_call_in_a_ring_group_is_newcall_answer_hangup_as_zammad_documents_them(self):
        zammad = ZammadReceiver()
        server = self.receiver(zammad)
        rig = self.rig([self.zammad_target(server)])
        rig.inbound("1800000000.1")
        yield self.settle(rig, "zammad", 3)
        self.assertEqual(zammad.errors, [])
        self.assertEqual([e for e, _ in zammad.received], ["newCall", "answer", "hangup"])
        forms = [form for _, form in zammad.received]
        common = {"from": ["49301234567"], "direction": ["in"], "callId": ["1800000000.1"]}
        # newCall: every agent the call rings, by real name, as user[] (always the array form)
        self.assertEqual(forms[0], {"event": ["newCall"], "to": ["line_1"], **common,
                                    "user[]": ["Emma Taylor", "Bob Smith"]})
        # answer: who answered, and what Zammad finds her by
        self.assertEqual(forms[1], {"event": ["answer"], "to": ["line_1"], **common, "user[]": ["Emma Taylor"],
                                    "answeringNumber": ["emma@example.com"]})
        self.assertEqual(forms[2], {"event": ["hangup"], "to": ["line_1"], **common, "cause": ["normalClearing"],
                                    "user[]": ["Emma Taylor"], "answeringNumber": ["emma@example.com"]})
        self.assertEqual(zammad.idempotency, ["1800000000.1:newCall", "1800000000.1:answer", "1800000000.1:hangup"])

    @defer.inlineCallbacks
    def test_missed_busy_unreachable_and_answered_elsewhere_calls_carry_zammads_causes(self):
        zammad = ZammadReceiver()
        server = self.receiver(zammad)
        rig = self.rig([self.zammad_target(server, lines=["line_1"])])
        rig.missed("1.1")                                        # the caller gave up
        rig.missed("1.2", mode="LINEDISCONNECTMODE_BUSY")
        rig.missed("1.3", mode="LINEDISCONNECTMODE_UNREACHABLE")
        rig.missed("1.4", mode="LINEDISCONNECTMODE_REJECT")       # the phone rejected it (DND)
        rig.missed("1.5", mode="LINEDISCONNECTMODE_BADADDRESS")
        rig.inbound("1.6", answer="line_2")                       # a colleague outside this target took it
        yield self.settle(rig, "zammad", 12)
        self.assertEqual(zammad.errors, [])
        causes = {form["callId"][0]: form["cause"][0] for e, form in zammad.received if e == "hangup"}
        self.assertEqual(causes, {"1.1": "cancel", "1.2": "busy", "1.3": "congestion", "1.4": "noAnswer",
                                  "1.5": "notFound", "1.6": "forwarded"})
        self.assertTrue(set(causes.values()) <= ZAMMAD_CAUSES)
        self.assertEqual(zammad.events_of("1.6"), ["newCall", "hangup"])  # no answer by this target's agents

    @defer.inlineCallbacks
    def test_an_outbound_call_names_the_calling_agent_and_the_dialled_number(self):
        zammad = ZammadReceiver()
        server = self.receiver(zammad)
        rig = self.rig([self.zammad_target(server)], lines={"line_1": _Line('"Emma" <201>')})
        rig.outbound("2.1", number="+442079460958")
        rig.outbound("2.2", number="+442079460958", answered=False)
        yield self.settle(rig, "zammad", 5)
        self.assertEqual(zammad.errors, [])
        forms = [form for _, form in zammad.received if form["callId"] == ["2.1"]]  # calls go side by side
        self.assertEqual(forms[0], {"event": ["newCall"], "from": ["201"], "to": ["442079460958"],
                                    "direction": ["out"], "callId": ["2.1"], "user[]": ["Emma Taylor"]})
        # an outbound answer carries no user: Zammad would write it over the called party's name
        self.assertEqual(forms[1], {"event": ["answer"], "from": ["201"], "to": ["442079460958"],
                                    "direction": ["out"], "callId": ["2.1"]})
        self.assertEqual(forms[2]["cause"], ["normalClearing"])
        causes = {f["callId"][0]: f["cause"][0] for e, f in zammad.received if e == "hangup"}
        self.assertEqual(causes, {"2.1": "normalClearing", "2.2": "busy"})

    @defer.inlineCallbacks
    def test_a_withheld_caller_is_anonymous_and_its_number_is_in_no_body(self):
        zammad, json_receiver = ZammadReceiver(), JsonReceiver()
        z, j = self.receiver(zammad), self.receiver(json_receiver)
        rig = self.rig([self.zammad_target(z), {"name": "crm", "url": j.url("/hook"), "format": "json"}])
        # the PBX let the number through but flagged it withheld (issue 21's contract): it must go no further
        rig.extra = {"calleridflags": ["LINECALLPARTYID_BLOCKED"],
                     "contact": {"name": "Ext Caller", "number": "030 1234567"}}
        rig.inbound("3.1", caller="0301234567")
        yield self.settle(rig, "zammad", 3)
        yield self.settle(rig, "crm", len(json_receiver.received) or 1)
        yield until(lambda: rig.delivery("crm").depth() == 0)
        self.assertEqual([f["from"] for _, f in zammad.received], [["anonymous"]] * 3)
        for body in zammad.bodies + json_receiver.bodies:
            self.assertNotIn(b"1234567", body)
            self.assertNotIn(b"Ext Caller", body)
        finished = [e for e in json_receiver.received if e["event"] == "call_finished"]
        self.assertEqual(finished[0]["callinfo"]["calleridflags"], ["LINECALLPARTYID_BLOCKED"])
        self.assertIsNone(finished[0]["callinfo"]["callerid"])
        self.assertNotIn("contact", finished[0]["callinfo"])


class JsonTests(Base):
    @defer.inlineCallbacks
    def test_every_event_of_the_targets_lines_then_the_call_record_signed(self):
        secret = self.folder / "hook.secret"
        secret.write_text("s3cret\n")
        receiver = JsonReceiver(secret=b"s3cret")
        server = self.receiver(receiver)
        rig = self.rig([{"name": "crm", "url": server.url("/hook"), "format": "json", "lines": ["line_1"],
                         "secret_file": str(secret)}])
        rig.inbound("4.1")
        d = rig.delivery("crm")
        yield until(lambda: (self.clock.advance(0), d.depth() == 0 and not d.in_flight)[1])
        self.assertEqual(receiver.errors, [])
        kinds = [(e["event"], e.get("state") or e.get("infostate")) for e in receiver.received]
        self.assertEqual(kinds, [
            ("LINE_NEWCALL", None), ("LINE_CALLSTATE", "LINECALLSTATE_OFFERING"),
            ("LINE_CALLINFO", "LINECALLINFOSTATE_CALLERID"), ("LINE_CALLSTATE", "LINECALLSTATE_CONNECTED"),
            ("LINE_CALLSTATE", "LINECALLSTATE_DISCONNECTED"), ("LINE_CALLSTATE", "LINECALLSTATE_IDLE"),
            ("call_finished", None),
        ])
        self.assertTrue(all(e["line"] == "line_1" for e in receiver.received[:-1]))  # line_2 is not this target's
        self.assertEqual({e["callId"] for e in receiver.received}, {"4.1"})
        self.assertEqual(len({e["id"] for e in receiver.received}), 7)
        record = receiver.received[-1]
        self.assertEqual((record["outcome"], record["answered_by"], record["lines"], record["direction"]),
                         ("answered", ["line_1"], ["line_1", "line_2"], "in"))
        self.assertEqual(receiver.received[2]["callinfo"]["callerid"], "0301234567")

    @defer.inlineCallbacks
    def test_a_wrong_signature_is_refused_until_the_secret_is_right(self):
        receiver = JsonReceiver(secret=b"the-right-one")
        server = self.receiver(receiver)
        secret = self.folder / "hook.secret"
        secret.write_text("a-wrong-one")
        rig = self.rig([{"name": "crm", "url": server.url("/hook"), "format": "json", "secret_file": str(secret)}])
        rig.missed("5.1")
        yield until(lambda: rig.delivery("crm").counts["retried"] >= 1)
        self.assertEqual(receiver.received, [])  # 401 pauses the target: nothing lost, nothing accepted
        self.assertEqual(rig.delivery("crm").depth(), 6)  # five events and the call record, all kept


class _Line:
    def __init__(self, callerid):
        self.callerid = callerid


class OutageTests(Base):
    def ordered(self, zammad: ZammadReceiver, call: str) -> list[str]:
        return zammad.events_of(call)

    @defer.inlineCallbacks
    def advance_until(self, predicate, step: float = 1.0, limit: float = 900.0):
        """Advance the simulated clock a step at a time, letting real I/O happen, until ``predicate()``."""
        spent = 0.0
        while not predicate():
            self.assertLess(spent, limit, "not reached within the simulated time")
            self.clock.advance(step)
            spent += step
            yield until(lambda: not any(d.in_flight for d in self.rig_under_test.plugin.deliveries.values()))

    @defer.inlineCallbacks
    def test_a_receiver_gone_for_30_s_mid_call_gets_every_event_in_order_none_lost_or_doubled(self):
        zammad, crm = ZammadReceiver(), JsonReceiver()
        z, j = self.receiver(zammad), self.receiver(crm)
        rig = self.rig_under_test = self.rig([self.zammad_target(z), {"name": "crm", "url": j.url("/h"),
                                                                      "format": "json"}])
        uid = "7.1"
        for line in ("line_1", "line_2"):
            rig.tapi(f"LINE_NEWCALL {line}", uid)
        rig.tapi("LINE_CALLSTATE LINECALLSTATE_OFFERING", uid)
        rig.tapi("SET CALLERID 0301234567", uid)
        rig.tapi("LINE_CALLINFO LINECALLINFOSTATE_CALLERID", uid)
        yield self.settle(rig, "zammad", 1)
        yield self.settle(rig, "crm", 5)
        # mid-call, both receivers go away: connections refused
        yield z.stop()
        yield j.stop()
        outage_started = self.clock.seconds()
        rig.tapi(f"[~{uid}&line_1] LINE_CALLSTATE LINECALLSTATE_CONNECTED", uid)
        rig.tapi(f"[~{uid}&line_2] LINE_CALLSTATE LINECALLSTATE_DISCONNECTED LINEDISCONNECTMODE_PICKUP", uid)
        rig.tapi(f"[~{uid}&line_2] LINE_CALLSTATE LINECALLSTATE_IDLE", uid)
        rig.tapi("LINE_CALLSTATE LINECALLSTATE_HANGUP", uid)
        rig.tapi("LINE_CALLSTATE LINECALLSTATE_IDLE", uid)
        rig.missed("7.2")  # and a whole call while they are away
        waiting = {name: rig.delivery(name).depth() for name in ("zammad", "crm")}
        self.assertEqual(waiting["zammad"], 4)
        yield self.advance_until(lambda: self.clock.seconds() - outage_started >= 30)
        self.assertGreaterEqual(rig.delivery("zammad").counts["retried"], 4)  # tried, backing off: 1, 2, 4, 8, 16 s
        self.assertEqual(rig.delivery("zammad").depth(), 4)
        metrics = {f.name: f for f in rig.plugin.asttapi_metrics()}
        depth = {s.labels["target"]: s.value for s in metrics["asttapi_webhook_queue_depth"].samples}
        self.assertEqual(depth, waiting)
        oldest = {s.labels["target"]: s.value for s in metrics["asttapi_webhook_oldest_seconds"].samples}
        self.assertGreaterEqual(oldest["zammad"], 30)
        # back after 30 s, on the same port
        z.start()
        j.start()
        yield self.advance_until(lambda: all(rig.delivery(n).depth() == 0 for n in ("zammad", "crm")))
        self.assertEqual(zammad.errors, [])
        self.assertEqual(self.ordered(zammad, uid), ["newCall", "answer", "hangup"])
        self.assertEqual(self.ordered(zammad, "7.2"), ["newCall", "hangup"])
        self.assertEqual(len(zammad.received), 5)
        ids = [e["id"] for e in crm.received]
        self.assertEqual(len(ids), len(set(ids)))  # none doubled
        call_one = [(e["event"], e.get("line"), e.get("state")) for e in crm.received if e["callId"] == uid]
        self.assertEqual([(line, s[14:]) for _, line, s in call_one if s], [  # in order, none lost
            ("line_1", "OFFERING"), ("line_2", "OFFERING"), ("line_1", "CONNECTED"), ("line_2", "DISCONNECTED"),
            ("line_2", "IDLE"), ("line_1", "DISCONNECTED"), ("line_1", "IDLE")])
        self.assertEqual(call_one[-1][0], "call_finished")
        d = rig.delivery("zammad")
        self.assertEqual((d.counts["sent"], d.counts["dropped"]), (5, 0))
        self.assertEqual(d.delivery_seconds.n, 5)
        self.assertGreaterEqual(d.delivery_seconds.total, 4 * 30)  # four of them waited out the outage

    @defer.inlineCallbacks
    def test_a_real_outage_over_loopback_on_the_real_clock(self):
        zammad = ZammadReceiver()
        server = self.receiver(zammad)
        rig = self.rig([self.zammad_target(server, retry_max=1)], clock=reactor)
        d = rig.delivery("zammad")
        uid = "8.1"
        rig.tapi("LINE_NEWCALL line_1", uid)
        rig.tapi("LINE_CALLSTATE LINECALLSTATE_OFFERING", uid)
        rig.tapi("SET CALLERID 0301234567", uid)
        rig.tapi("LINE_CALLINFO LINECALLINFOSTATE_CALLERID", uid)
        yield until(lambda: d.counts["sent"] == 1)
        yield server.stop()
        rig.tapi("LINE_CALLSTATE LINECALLSTATE_CONNECTED", uid)
        rig.tapi("LINE_CALLSTATE LINECALLSTATE_HANGUP", uid)
        rig.tapi("LINE_CALLSTATE LINECALLSTATE_IDLE", uid)
        yield until(lambda: d.counts["retried"] >= 3, timeout=20)  # refused three times, about a second apart
        server.start()
        yield until(lambda: d.depth() == 0 and not d.in_flight, timeout=20)
        self.assertEqual(zammad.errors, [])
        self.assertEqual(zammad.events_of(uid), ["newCall", "answer", "hangup"])

    @defer.inlineCallbacks
    def test_a_restart_with_100_events_pending_sends_them_all_in_order_once(self):
        zammad = ZammadReceiver()
        server = self.receiver(zammad)
        yield server.stop()  # the receiver is away the whole time the first server runs
        logged = Logged(self)
        first = Rig(self.folder, [self.zammad_target(server)], clock=self.clock, reactor=reactor)
        for n in range(50):
            first.missed(f"9.{n}")  # newCall + hangup each
        self.assertEqual(first.delivery("zammad").depth(), 100)
        yield first.stop()
        with sqlite3.connect(self.folder / "outbox.sqlite") as db:
            self.assertEqual(db.execute("SELECT count(*) FROM events WHERE state = 0").fetchone()[0], 100)
        self.assertEqual(stat.S_IMODE((self.folder / "outbox.sqlite").stat().st_mode), 0o600)
        server.start()
        second = self.rig_under_test = self.rig([self.zammad_target(server)])
        self.assertIn("100 events of 50 calls were waiting", " ".join(logged.texts("call_webhooks")))
        yield self.advance_until(lambda: second.delivery("zammad").depth() == 0)
        self.assertEqual(zammad.errors, [])
        self.assertEqual(len(zammad.received), 100)
        for n in range(50):
            self.assertEqual(zammad.events_of(f"9.{n}"), ["newCall", "hangup"])
        with sqlite3.connect(self.folder / "outbox.sqlite") as db:
            yield second.plugin.outbox.flush()
            self.assertEqual(db.execute("SELECT count(*) FROM events WHERE state = 0").fetchone()[0], 0)

    @defer.inlineCallbacks
    def test_a_call_ringing_across_a_restart_is_announced_once(self):
        zammad = ZammadReceiver()
        server = self.receiver(zammad)
        first = Rig(self.folder, [self.zammad_target(server)], clock=self.clock, reactor=reactor)
        uid = "10.1"
        first.tapi("LINE_NEWCALL line_1", uid)
        first.tapi("LINE_CALLSTATE LINECALLSTATE_OFFERING", uid)
        first.tapi("SET CALLERID 0301234567", uid)
        first.tapi("LINE_CALLINFO LINECALLINFOSTATE_CALLERID", uid)
        yield self.settle(first, "zammad", 1)
        saved = json.loads(json.dumps(first.model.save_state()))  # as the call store writes and reads it
        yield first.stop()
        second = self.rig_under_test = self.rig([self.zammad_target(server)])
        second.model.restore_state(saved, self.clock.seconds())  # no hook: the plugin reads the model
        second.tapi("LINE_CALLSTATE LINECALLSTATE_OFFERING", uid)  # the dialplan says it again: no second newCall
        second.tapi("LINE_CALLSTATE LINECALLSTATE_CONNECTED", uid)
        second.tapi("LINE_CALLSTATE LINECALLSTATE_HANGUP", uid)
        second.tapi("LINE_CALLSTATE LINECALLSTATE_IDLE", uid)
        yield self.advance_until(lambda: second.delivery("zammad").depth() == 0)
        self.assertEqual(zammad.errors, [])
        self.assertEqual(zammad.events_of(uid), ["newCall", "answer", "hangup"])


class FailureTests(Base):
    @defer.inlineCallbacks
    def test_a_500_for_one_call_holds_only_that_call_and_a_400_drops_the_event(self):
        crm = JsonReceiver()
        refusals = {"11.1": 2}

        def handler(request):
            body = request.content.getvalue()
            if request.method == b"POST":
                event = json.loads(body)
                if event["callId"] == "11.3" and event["event"] == "LINE_CALLINFO":
                    return 400, {}, b"no thanks"
                if refusals.get(event["callId"], 0) > 0:
                    refusals[event["callId"]] -= 1
                    return 500, {}, b"oops"
            return crm(request)

        server = self.receiver(handler)
        logged = Logged(self)
        rig = self.rig_under_test = self.rig([{"name": "crm", "url": server.url("/h"), "format": "json",
                                               "lines": ["line_1"]}])
        rig.missed("11.1")
        rig.missed("11.2")
        rig.missed("11.3")
        d = rig.delivery("crm")
        yield until(lambda: (self.clock.advance(0), d.counts["sent"] >= 11)[1])  # 11.2 and 11.3 do not wait
        self.assertEqual([e["callId"] for e in crm.received].count("11.1"), 0)
        yield OutageTests.advance_until(self, lambda: d.depth() == 0)
        per_call = {}
        for e in crm.received:
            per_call.setdefault(e["callId"], []).append(e["event"])
        self.assertEqual(per_call["11.1"], ["LINE_NEWCALL", "LINE_CALLSTATE", "LINE_CALLINFO", "LINE_CALLSTATE",
                                            "LINE_CALLSTATE", "call_finished"])
        self.assertEqual(per_call["11.3"], ["LINE_NEWCALL", "LINE_CALLSTATE", "LINE_CALLSTATE", "LINE_CALLSTATE",
                                            "call_finished"])
        self.assertEqual(d.counts["dropped"], 1)
        self.assertTrue(any("refused a LINE_CALLINFO event of call 11.3 for good (HTTP 400); dropped" in t
                            for t in logged.texts("call_webhooks")))

    @defer.inlineCallbacks
    def test_events_older_than_max_age_are_dropped_with_one_line_and_counted(self):
        logged = Logged(self)
        rig = self.rig_under_test = self.rig([{"name": "zammad", "url": f"http://127.0.0.1:{closed_port()}/cti",
                                               "format": "zammad", "max_age": 60}])
        rig.missed("12.1")
        rig.missed("12.2")
        d = rig.delivery("zammad")
        yield until(lambda: d.counts["retried"] >= 2 and not d.in_flight)  # both first tries refused
        self.clock.advance(61)  # the sweep runs every minute
        self.assertEqual((d.depth(), d.counts["dropped"]), (0, 4))
        (line,) = [t for t in logged.texts("call_webhooks") if "dropped" in t]
        self.assertIn("target zammad (http://127.0.0.1:", line)
        self.assertIn("dropped 4 events of 2 calls undelivered for longer than max_age 60 s (last error: ", line)
        self.assertIn("refused", line)
        yield rig.plugin.outbox.flush()
        with sqlite3.connect(self.folder / "outbox.sqlite") as db:  # dropped, and older than max_age: forgotten
            self.assertEqual(db.execute("SELECT count(*) FROM events").fetchone()[0], 0)

    @defer.inlineCallbacks
    def test_a_newcall_zammad_took_without_answering_is_not_stuck_on_its_already_exists(self):
        zammad = ZammadReceiver()
        first = {"hang": True}

        def handler(request):
            if request.method == b"POST" and first["hang"]:
                first["hang"] = False
                zammad(request)  # Zammad stores it ...
                return None      # ... but its answer never comes
            return zammad(request)

        server = self.receiver(handler)
        rig = self.rig_under_test = self.rig([self.zammad_target(server, timeout=1.5)])
        rig.missed("13.1")
        d = rig.delivery("zammad")
        yield until(lambda: d.counts["retried"] == 1, timeout=10)
        yield OutageTests.advance_until(self, lambda: d.depth() == 0)
        self.assertEqual(zammad.events_of("13.1"), ["newCall", "hangup"])
        self.assertEqual(d.counts["dropped"], 0)

    @defer.inlineCallbacks
    def test_start_up_says_when_a_receiver_cannot_be_reached(self):
        logged = Logged(self)
        port = closed_port()
        self.rig([{"name": "crm", "url": f"http://127.0.0.1:{port}/h", "format": "json"}])
        yield until(lambda: any("cannot reach" in t for t in logged.texts("call_webhooks")))
        (line,) = [t for t in logged.texts("call_webhooks") if "cannot reach" in t]
        self.assertIn(f"cannot reach target crm at http://127.0.0.1:{port} (", line)
        self.assertIn("refused", line)
        self.assertIn("outbox.sqlite and sent when it answers", line)


def test_an_outbox_that_cannot_be_opened_stops_start_up_with_one_line(tmp_path):
    bad = tmp_path / "outbox.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    plugin = call_webhooks.configure({"outbox": str(bad), "target": [{"url": "http://crm/h", "format": "json"}]},
                                     None)
    with pytest.raises(ValueError) as caught:
        plugin.asttapi_startup(None)
    assert str(caught.value).startswith(f"cannot use {str(bad)!r} as the outbox: file is not a database")


@pytest.mark.parametrize("target, message", [
    ({"format": "json"}, "setting 'url': required"),
    ({"url": "http://crm/h"}, "setting 'format': expected \"json\" or \"zammad\", got None"),
    ({"url": "http://crm/h", "format": "xml"}, "expected \"json\" or \"zammad\", got 'xml'"),
    ({"url": "http://crm/h/{key}", "format": "json"}, "unknown placeholder {key} (only {token})"),
    ({"url": "http://crm/h/{token}", "format": "json"}, "uses {token} but token_file is not set"),
    ({"url": "http://crm/h", "format": "json", "agents": {"line_1": "Emma"}}, "names users for Zammad"),
    ({"url": "http://crm/h", "format": "zammad", "agents": {"line_1": {"nom": "x"}}}, "line 'line_1': expected a name"),
    ({"url": "http://crm/h", "format": "json", "max_age": 0}, "must be above 0"),
    ({"url": "http://crm/h", "format": "json", "colour": "red"}, "unknown setting(s): colour"),
])
def test_a_wrong_target_setting_is_one_line_naming_the_target(target, message):
    with pytest.raises(ValueError) as caught:
        call_webhooks.configure({"target": [target]}, None)
    assert message in str(caught.value) and str(caught.value).startswith("target ")


def test_two_targets_need_two_names_and_one_target_is_needed(tmp_path):
    with pytest.raises(ValueError, match="two targets are named 'crm'"):
        call_webhooks.configure({"target": [{"url": "http://crm/a", "format": "json"},
                                            {"url": "http://crm/b", "format": "json"}]}, None)
    with pytest.raises(ValueError, match=r"no receivers: add a \[\[plugins.call_webhooks.target\]\]"):
        call_webhooks.configure({}, None)
    secret = tmp_path / "s"
    secret.write_text("x")
    with pytest.raises(ValueError, match="Zammad's API has no signature"):
        call_webhooks.configure({"target": [{"url": "http://z/c", "format": "zammad", "secret_file": str(secret)}]},
                                None)


def test_the_zammad_table_covers_every_stage_and_input_and_its_causes_are_zammads_words():
    stages = {"none", "new", "answered", "over"}
    assert set(events.ZAMMAD) == {(s, i) for s in stages for i in ("ring", "answer", "end")}
    sent = [e for _, (_, out) in events.ZAMMAD.items() for e in out]
    assert set(sent) == {"newCall", "answer", "hangup"}
    assert {cause for cause, _ in events.ZAMMAD_CAUSES} | {"normalClearing", "cancel"} == ZAMMAD_CAUSES
    assert set(events.ZAMMAD_CAUSE_WORDS) == ZAMMAD_CAUSES


@pytest.mark.parametrize("code, fmt, what", [
    (200, "json", delivery.DELIVERED), (204, "zammad", delivery.DELIVERED),
    (400, "json", delivery.REFUSED), (413, "zammad", delivery.REFUSED), (422, "json", delivery.REFUSED),
    (422, "zammad", delivery.PAUSE_TARGET),  # Zammad's "feature disabled/not configured": the endpoint, not the event
    (500, "zammad", delivery.RETRY_EVENT), (408, "json", delivery.RETRY_EVENT),
    (503, "json", delivery.PAUSE_TARGET), (429, "json", delivery.PAUSE_TARGET), (401, "json", delivery.PAUSE_TARGET),
    (301, "json", delivery.PAUSE_TARGET), (None, "json", delivery.PAUSE_TARGET),
])
def test_what_an_answer_means(code, fmt, what):
    assert delivery.verdict(code, fmt) == what


def test_backoff_doubles_with_jitter_up_to_the_cap():
    import random

    rng = random.Random(1)
    for failures, low, high in ((1, 0.5, 1), (2, 1, 2), (5, 8, 16), (30, 150, 300)):
        for _ in range(20):
            assert low <= delivery.backoff(failures, 300, rng) <= high


class WholeServerTests(Base):
    """The demo PBX: a dialplan ring group's answered call and a device line's missed one, to a Zammad."""

    @defer.inlineCallbacks
    def test_zammad_gets_newcall_answer_hangup_of_an_answered_and_a_missed_call(self):
        from asttapi_server.config import load_config
        from asttapi_server.demo.scenarios import Timing
        from asttapi_server.service import make_service

        zammad = ZammadReceiver()
        server = self.receiver(zammad)
        overrides = {"server.listen": ["tcp:0:interface=127.0.0.1"], "web.listen": [],
                     "plugins.enabled": ["call_webhooks"],
                     "plugins.call_webhooks": {"outbox": str(self.folder / "outbox.sqlite"), "region": "DE",
                                               "target": [self.zammad_target(server)]}}
        app = make_service(load_config(None, overrides), reactor,
                           demo_options={"timing": Timing.fast(), "autoplay": False})
        app.startService()
        self.addCleanup(app.stopService)
        yield until(lambda: app.bridge.link_up)
        answered = app.demo.play("inbound", caller=("0301234567", "Ext Caller"))
        yield answered.done
        # (ring x0.01 = 0.5 s: long enough for the caller's presentation to be read, issue 21)
        missed = app.demo.play("device_inbound", ending="gives_up", caller=("+442079460958", None), ring=50)
        yield missed.done
        d = app.plugins.pm.get_plugin("call_webhooks").deliveries["zammad"]
        yield until(lambda: d.counts["sent"] == 5 and d.depth() == 0)
        self.assertEqual(zammad.errors, [])
        by_call: dict[str, list] = {}
        for event, form in zammad.received:
            by_call.setdefault(form["callId"][0], []).append((event, form))
        (one, two) = by_call.values()
        self.assertEqual([e for e, _ in one], ["newCall", "answer", "hangup"])
        self.assertEqual(one[0][1]["from"], ["49301234567"])
        self.assertEqual(one[0][1]["user[]"], ["Emma Taylor", "Bob Smith"])  # the ring group, line_1 and line_2
        self.assertEqual(one[1][1]["answeringNumber"], ["emma@example.com"])
        self.assertEqual(one[2][1]["cause"], ["normalClearing"])
        self.assertEqual([e for e, _ in two], ["newCall", "hangup"])
        self.assertEqual((two[0][1]["from"], two[0][1]["user[]"]), (["442079460958"], ["line_3"]))
        self.assertEqual(two[1][1]["cause"], ["cancel"])  # the caller gave up: Zammad lists it as missed


def test_the_outbox_keeps_events_in_memory_while_writes_fail_and_writes_them_in_order_after(tmp_path):
    from twisted.internet.defer import fail, maybeDeferred

    outbox_mod = __import__("asttapi_plugins.call_webhooks.outbox", fromlist=["x"])
    clock = Clock()
    broken = {"on": True}

    def runner(job):
        if broken["on"]:
            return fail(OSError(28, "No space left on device"))
        return maybeDeferred(job)

    box = outbox_mod.Outbox(str(tmp_path / "o.sqlite"), clock, runner=runner)
    assert box.open(0.0, 100.0) == []
    first = outbox_mod.Pending("t", "a", "c", "k", 1.0, "application/json", b"1")
    second = outbox_mod.Pending("t", "b", "c", "k", 2.0, "application/json", b"2")
    assert box.add(first) and box.add(second) and not box.add(first)  # the same id twice: once
    clock.advance(0)
    clock.advance(outbox_mod.RETRY_WRITE)  # still failing: retried, nothing lost
    assert len(box._queue) == 2
    broken["on"] = False
    clock.advance(outbox_mod.RETRY_WRITE)
    box.settled(first, outbox_mod.SENT)
    clock.advance(0)
    reopened = outbox_mod.Outbox(str(tmp_path / "o.sqlite"), clock, runner=runner)
    assert [p.event_id for p in reopened.open(3.0, 100.0)] == ["b"]
    assert reopened.known("t", "a") and reopened.known("t", "b")  # a sent event is not made again


def test_an_outbox_of_another_version_is_refused(tmp_path):
    outbox_mod = __import__("asttapi_plugins.call_webhooks.outbox", fromlist=["x"])
    path = tmp_path / "o.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=7")
    with pytest.raises(ValueError, match="it is outbox version 7; this server reads version 1"):
        outbox_mod.Outbox(str(path), Clock()).open(0.0, 10.0)


def test_the_documented_example_is_a_working_configuration(tmp_path):
    import re
    import tomllib

    doc = (Path(__file__).resolve().parents[2] / "docs" / "plugins.md").read_text()
    block = re.search(r"### call_webhooks.*?```toml\n(.*?)```", doc, re.S).group(1)
    settings = tomllib.loads(block)["plugins"]["call_webhooks"]
    for name in ("token", "secret"):
        (tmp_path / name).write_text(f"the-{name}\n")
    settings["outbox"] = str(tmp_path / "outbox.sqlite")
    for target in settings["target"]:
        target["token_file"] = str(tmp_path / "token")
        if "secret_file" in target:
            target["secret_file"] = str(tmp_path / "secret")
    plugin = call_webhooks.configure(settings, None)
    zammad, crm = plugin.targets
    assert (zammad.name, zammad.url, zammad.format) == ("zammad", "https://zammad.example.com/api/v1/cti/the-token",
                                                        "zammad")
    assert plugin.zammad["zammad"].agent("line_1") == events.Agent("Emma Taylor", "emma@example.com")
    assert (crm.secret, crm.headers, crm.max_age, crm.retry_max) == (b"the-secret", {"X-Api-Key": "the-token"},
                                                                     86400, 300)


class ReloadTests(Base):
    """SIGHUP with a changed [plugins] table: the new plugin starts, then the old one stops."""

    @defer.inlineCallbacks
    def test_the_new_plugin_takes_the_outbox_over_and_sends_each_event_once_in_order(self):
        zammad = ZammadReceiver()
        server = self.receiver(zammad)
        yield server.stop()
        old = self.rig_under_test = Rig(self.folder, [self.zammad_target(server)], clock=self.clock, reactor=reactor)
        uid = "14.1"
        old.tapi("LINE_NEWCALL line_1", uid)
        old.tapi("LINE_CALLSTATE LINECALLSTATE_OFFERING", uid)
        old.tapi("SET CALLERID 0301234567", uid)
        old.tapi("LINE_CALLINFO LINECALLINFOSTATE_CALLERID", uid)
        old.missed("14.2")
        self.assertEqual(old.delivery("zammad").depth(), 3)
        new = call_webhooks.configure({"outbox": str(self.folder / "outbox.sqlite"), "region": "DE",
                                       "target": [self.zammad_target(server, retry_max=2)]}, None)
        new._reactor, new.clock = reactor, self.clock
        new.runner = old.plugin.runner
        new.asttapi_startup(old.app)  # the reload's new plugin: it waits for the file
        self.assertIsNone(new.outbox)
        # the bridge now calls the new plugin; the old one is shut down
        fx = old.model.apply(__import__("tests.core.helpers", fromlist=["x"]).sig(
            "LINE_CALLSTATE LINECALLSTATE_CONNECTED", uid), self.clock.seconds())
        for event in fx:
            new.asttapi_client_event(event)
        yield old.stop()
        self.assertIsNotNone(new.outbox)
        self.assertEqual(new.deliveries["zammad"].depth(), 4)  # three taken over, the answer made meanwhile
        server.start()
        self.rig_under_test = _Holder(new)
        yield OutageTests.advance_until(self, lambda: new.deliveries["zammad"].depth() == 0)
        self.assertEqual(zammad.errors, [])
        self.assertEqual(zammad.events_of(uid), ["newCall", "answer"])
        self.assertEqual(zammad.events_of("14.2"), ["newCall", "hangup"])
        yield new.asttapi_shutdown()

    @defer.inlineCallbacks
    def test_a_refused_reload_leaves_the_running_plugin_sending(self):
        zammad = ZammadReceiver()
        server = self.receiver(zammad)
        running = self.rig([self.zammad_target(server)])
        refused = call_webhooks.configure({"outbox": str(self.folder / "outbox.sqlite"),
                                           "target": [self.zammad_target(server)]}, None)
        refused._reactor, refused.clock = reactor, self.clock
        refused.asttapi_startup(running.app)
        refused.asttapi_shutdown()  # another plugin failed to start: the reload is refused
        running.missed("15.1")
        yield self.settle(running, "zammad", 2)
        self.assertEqual(zammad.events_of("15.1"), ["newCall", "hangup"])


class _Holder:
    def __init__(self, plugin):
        self.plugin = plugin


class WholeServerReloadTests(Base):
    @defer.inlineCallbacks
    def test_a_reload_of_the_plugins_table_loses_and_doubles_nothing(self):
        from asttapi_server.config import load_config
        from asttapi_server.demo.scenarios import Timing
        from asttapi_server.service import make_service, reload

        zammad = ZammadReceiver()
        server = self.receiver(zammad)
        yield server.stop()

        def config(retry_max):
            return load_config(None, {
                "server.listen": ["tcp:0:interface=127.0.0.1"], "web.listen": [],
                "plugins.enabled": ["call_webhooks"],
                "plugins.call_webhooks": {"outbox": str(self.folder / "outbox.sqlite"), "region": "DE",
                                          "target": [self.zammad_target(server, retry_max=retry_max)]}})

        app = make_service(config(1), reactor, demo_options={"timing": Timing.fast(), "autoplay": False})
        app.startService()
        self.addCleanup(app.stopService)
        yield until(lambda: app.bridge.link_up)
        yield app.demo.play("inbound", caller=("0301234567", "Ext Caller")).done
        before = app.plugins.pm.get_plugin("call_webhooks")
        yield until(lambda: before.deliveries["zammad"].depth() == 3)
        ok = yield reload(app, config(2))
        self.assertTrue(ok)
        after = app.plugins.pm.get_plugin("call_webhooks")
        self.assertIsNot(after, before)
        yield until(lambda: after.outbox is not None)
        server.start()
        yield app.demo.play("inbound", caller=("+442079460958", None)).done
        yield until(lambda: after.deliveries["zammad"].counts["sent"] == 6 and after.deliveries["zammad"].depth() == 0,
                    timeout=20)
        self.assertEqual(zammad.errors, [])
        self.assertEqual(sorted(e for e, _ in zammad.received), sorted(["newCall", "answer", "hangup"] * 2))


class WholeServerWithheldTests(Base):
    @defer.inlineCallbacks
    def test_a_caller_who_withholds_the_number_reaches_no_receiver_from_the_demo_pbx(self):
        from asttapi_server.config import load_config
        from asttapi_server.demo.scenarios import Timing
        from asttapi_server.service import make_service

        zammad, crm = ZammadReceiver(), JsonReceiver()
        z, j = self.receiver(zammad), self.receiver(crm)
        overrides = {"server.listen": ["tcp:0:interface=127.0.0.1"], "web.listen": [],
                     "plugins.enabled": ["call_webhooks"],
                     "plugins.call_webhooks": {"outbox": str(self.folder / "outbox.sqlite"), "region": "DE",
                                               "target": [self.zammad_target(z),
                                                          {"name": "crm", "url": j.url("/h"), "format": "json"}]}}
        app = make_service(load_config(None, overrides), reactor,
                           demo_options={"timing": Timing.fast(), "autoplay": False})
        app.startService()
        self.addCleanup(app.stopService)
        yield until(lambda: app.bridge.link_up)
        # a queue call, its member a device line behind a Local channel, the caller withholding (CLIR)
        yield app.demo.play("device_queue", withheld=True, caller=("0301234567", "Ext Caller")).done
        plugin = app.plugins.pm.get_plugin("call_webhooks")
        yield until(lambda: all(d.depth() == 0 and not d.in_flight and d.counts["sent"]
                                for d in plugin.deliveries.values()))
        self.assertEqual(zammad.errors + crm.errors, [])
        self.assertEqual({f["from"][0] for _, f in zammad.received}, {"anonymous"})
        for body in zammad.bodies + crm.bodies:
            self.assertNotIn(b"1234567", body)
            self.assertNotIn(b"Ext Caller", body)
        flags = {tuple(e["callinfo"]["calleridflags"]) for e in crm.received}
        self.assertIn(("LINECALLPARTYID_BLOCKED",), flags)
