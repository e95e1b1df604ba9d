"""PluginHost isolates plugins: raising, slow and hung plugins never stop the event flow."""

from __future__ import annotations

import time

import pytest
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.task import Clock

from asttapi_server.core.events import TapiEvent
from asttapi_server.errors import PluginError
from asttapi_server.hookspecs import hookimpl
from asttapi_server.plugin_host import MAX_OVERDUE_PER_PLUGIN, PluginHost, blocking

EVENT = TapiEvent(msg="LINE_CALLSTATE", line="line_1", call=1, param="LINECALLSTATE_OFFERING",
                  callinfo={"callerid": "02079460958"})


class Answer:
    def __init__(self, contact):
        self.contact = contact
        self.calls = 0

    @hookimpl
    def asttapi_lookup_contact(self, number, callinfo, app):
        self.calls += 1
        return self.contact


class Raiser:
    @hookimpl
    def asttapi_lookup_contact(self, number):
        raise RuntimeError("CRM exploded")

    @hookimpl
    def asttapi_client_event(self, event):
        raise RuntimeError("enricher exploded")

    @hookimpl
    def asttapi_call_finished(self, call):
        raise RuntimeError("logger exploded")

    @hookimpl
    def asttapi_ami_event_names(self):
        return ["UserEvent"]

    @hookimpl(tryfirst=True)
    def asttapi_map_ami_event(self, message):
        raise RuntimeError("mapper exploded")


class Never:
    """A lookup whose Deferred never fires (a hung HTTP request)."""

    def __init__(self):
        self.cancelled = 0

    @hookimpl
    def asttapi_lookup_contact(self, number):
        return Deferred(lambda d: setattr(self, "cancelled", self.cancelled + 1))


class Later:
    def __init__(self):
        self.pending = []

    @hookimpl
    def asttapi_lookup_contact(self, number):
        d = Deferred()
        self.pending.append(d)
        return d


def make(*plugins, timeout=2.0, runner=maybeDeferred):
    clock = Clock()
    host = PluginHost(lookup_timeout=timeout, clock=clock, run_in_thread=runner)
    for i, plugin in enumerate(plugins):
        host.register(plugin, getattr(plugin, "name", f"p{i}"))
    host.check()
    return host, clock


def lookup(host, number="02079460958"):
    results = []
    d = host.lookup_contact(number, {"callerid": number})
    d.addBoth(results.append)
    return results


def plugin_logs(logged, plugin):
    return [e for e in logged if e.get("plugin") == plugin]


# -- contact lookup -------------------------------------------------------

def test_no_plugins_no_contact():
    host, clock = make()
    assert lookup(host) == [None]


def test_first_answer_in_hook_order_wins():
    # pluggy calls the plugin registered last first
    first, second = Answer({"name": "Second registered"}), Answer({"name": "Last registered"})
    host, clock = make(first, second)
    assert lookup(host) == [{"name": "Last registered", "source": "p1"}]
    assert first.calls == 1  # all are asked at once


def test_a_raising_plugin_counts_as_not_found(logged):
    host, clock = make(Answer({"name": "Jane"}), Raiser())
    assert lookup(host) == [{"name": "Jane", "source": "p0"}]
    failures = plugin_logs(logged, "p1")
    assert failures and "CRM exploded" in str(failures[0]["log_failure"].value)
    assert clock.getDelayedCalls() == []


def test_a_failing_deferred_counts_as_not_found(logged):
    class Failing:
        @hookimpl
        def asttapi_lookup_contact(self):
            return fail(RuntimeError("db down"))

    host, clock = make(Answer(None), Failing())
    assert lookup(host) == [None]
    assert plugin_logs(logged, "p1")


def test_hung_plugin_times_out_and_other_answers_still_count(logged):
    never = Never()
    host, clock = make(Answer({"name": "Jane"}), never, timeout=2.0)  # never is asked first
    results = lookup(host)
    assert results == []  # waiting for the first plugin in order
    clock.advance(1.9)
    assert results == []
    clock.advance(0.1)
    assert results == [{"name": "Jane", "source": "p0"}]
    assert never.cancelled == 1
    assert clock.getDelayedCalls() == []
    assert any("timed out" in e["log_format"] for e in logged)


def test_hung_plugin_alone_gives_none_at_the_timeout():
    host, clock = make(Never(), timeout=2.0)
    results = lookup(host)
    clock.advance(2.0)
    assert results == [None]
    assert clock.getDelayedCalls() == []


def test_answer_from_the_first_plugin_finishes_without_waiting_for_a_slower_one():
    later = Later()
    host, clock = make(later, Answer({"name": "Fast"}))  # Answer asked first
    results = lookup(host)
    assert results == [{"name": "Fast", "source": "p1"}]
    assert clock.getDelayedCalls() == []
    later.pending[0].callback({"name": "too late"})  # ignored, no error


def test_a_later_plugin_waits_for_an_earlier_one_that_is_still_busy():
    later = Later()
    host, clock = make(Answer({"name": "Second choice"}), later)  # later asked first
    results = lookup(host)
    assert results == []
    later.pending[0].callback(None)
    assert results == [{"name": "Second choice", "source": "p0"}]
    assert clock.getDelayedCalls() == []


def test_async_answer_before_the_timeout():
    later = Later()
    host, clock = make(later)
    results = lookup(host)
    clock.advance(1)
    later.pending[0].callback({"name": "Async", "source": "crm"})
    assert results == [{"name": "Async", "source": "crm"}]
    assert clock.getDelayedCalls() == []


@pytest.mark.parametrize("bad", ["Jane", ["Jane"], {"name": object()}])
def test_a_contact_that_is_not_a_json_dict_is_ignored(bad, logged):
    host, clock = make(Answer({"name": "Good"}), Answer(bad))
    assert lookup(host) == [{"name": "Good", "source": "p0"}]
    assert plugin_logs(logged, "p1")


def test_empty_number_is_not_looked_up():
    answer = Answer({"name": "x"})
    host, clock = make(answer)
    assert lookup(host, "") == [None]
    assert answer.calls == 0


def test_cancelling_the_lookup_fires_none():
    host, clock = make(Never())
    d = host.lookup_contact("201", {})
    results = []
    d.addBoth(results.append)
    d.cancel()
    assert results == [None]
    assert clock.getDelayedCalls() == []


class Sleeper:
    """A blocking lookup, run through the host's thread runner."""

    def __init__(self):
        self.calls = 0

    @hookimpl
    @blocking
    def asttapi_lookup_contact(self, number):
        self.calls += 1
        return {"name": "slept"}


class FakeThreads:
    """Stands in for the thread pool: jobs run when the test says the thread finished."""

    def __init__(self):
        self.jobs = []

    def __call__(self, job):
        d = Deferred()
        self.jobs.append((job, d))
        return d

    def finish(self, index=0):
        job, d = self.jobs.pop(index)
        d.callback(job())


def test_blocking_plugin_runs_in_the_thread_runner():
    threads = FakeThreads()
    host, clock = make(Sleeper(), runner=threads)
    results = lookup(host)
    assert len(threads.jobs) == 1 and results == []
    threads.finish()
    assert results == [{"name": "slept", "source": "p0"}]


def test_sleeping_thread_times_out_and_is_not_even_started_if_still_queued():
    threads = FakeThreads()
    sleeper = Sleeper()
    host, clock = make(Answer({"name": "Outlook"}), sleeper, runner=threads)
    results = lookup(host)
    clock.advance(2.0)
    assert results == [{"name": "Outlook", "source": "p0"}]
    threads.finish()  # the pool gets to the job only now
    assert sleeper.calls == 0
    assert results == [{"name": "Outlook", "source": "p0"}]


def test_a_burst_of_lookups_to_a_healthy_blocking_plugin_is_never_skipped():
    threads = FakeThreads()
    host, clock = make(Sleeper(), runner=threads)
    results = [lookup(host) for _ in range(20)]
    assert len(threads.jobs) == 20
    while threads.jobs:
        threads.finish()
    assert all(r == [{"name": "slept", "source": "p0"}] for r in results)


def test_a_hung_blocking_plugin_cannot_take_every_thread(logged):
    threads = FakeThreads()
    host, clock = make(Sleeper(), runner=threads)
    for _ in range(MAX_OVERDUE_PER_PLUGIN + 3):
        lookup(host)
        clock.advance(2.0)  # each times out while its job still runs
    assert len(threads.jobs) == MAX_OVERDUE_PER_PLUGIN
    assert any("running past the timeout" in e["log_format"] for e in logged)
    threads.finish()  # one thread comes back: the plugin is asked again
    results = lookup(host)
    assert len(threads.jobs) == MAX_OVERDUE_PER_PLUGIN
    threads.finish(-1)
    assert results == [{"name": "slept", "source": "p0"}]
    assert clock.getDelayedCalls() == []


def test_real_threads_with_a_sleeping_plugin():
    """Jobs on real threads; results come back to the test thread like callFromThread would."""
    import queue
    import threading

    done: queue.Queue = queue.Queue()

    def runner(job):
        d = Deferred()
        threading.Thread(target=lambda: done.put((d, job())), daemon=True).start()
        return d

    class RealSleeper:
        @hookimpl
        @blocking
        def asttapi_lookup_contact(self, number):
            time.sleep(0.3)
            return {"name": "too slow"}

    host, clock = make(Answer({"name": "quick"}), RealSleeper(), timeout=0.1, runner=runner)
    results = lookup(host)
    clock.advance(0.1)  # the timeout passes while the thread still sleeps
    assert results == [{"name": "quick", "source": "p0"}]
    d, value = done.get(timeout=5)  # the thread returns later ...
    d.callback(value)  # ... and its answer is ignored
    assert results == [{"name": "quick", "source": "p0"}]
    assert clock.getDelayedCalls() == []


# -- events ---------------------------------------------------------------

class Enricher:
    def __init__(self, key):
        self.key = key

    @hookimpl
    def asttapi_client_event(self, event):
        return event.with_callinfo(**{self.key: True, "seen": list(event.callinfo.get("seen", [])) + [self.key]})


class Dropper:
    @hookimpl
    def asttapi_client_event(self, event):
        return False if event.param == "LINECALLSTATE_OFFERING" else None


def test_client_event_chains_plugins_in_hook_order():
    host, clock = make(Enricher("a"), Enricher("b"))
    out = host.client_event(EVENT)
    assert out.callinfo["a"] and out.callinfo["b"]
    assert out.callinfo["seen"] == ["b", "a"]
    assert EVENT.callinfo == {"callerid": "02079460958"}


def test_client_event_drop():
    host, clock = make(Enricher("a"), Dropper())
    assert host.client_event(EVENT) is None
    other = TapiEvent(msg="LINE_CALLSTATE", line="line_1", call=1, param="LINECALLSTATE_CONNECTED")
    assert host.client_event(other).callinfo["a"]


def test_client_event_survives_a_raising_plugin(logged):
    host, clock = make(Enricher("a"), Raiser())
    assert host.client_event(EVENT).callinfo["a"]
    assert "enricher exploded" in str(plugin_logs(logged, "p1")[0]["log_failure"].value)


def test_client_event_ignores_a_wrong_return(logged):
    class Wrong:
        @hookimpl
        def asttapi_client_event(self, event):
            return {"not": "an event"}

    host, clock = make(Wrong())
    assert host.client_event(EVENT) == EVENT
    assert plugin_logs(logged, "p0")


def test_call_finished_reaches_all_despite_errors(logged):
    seen = []

    class Observer:
        @hookimpl
        def asttapi_call_finished(self, call, app):
            seen.append((call, app))
            return fail(RuntimeError("async logger failed"))

    host, clock = make(Observer(), Raiser())
    host.call_finished("call-1")
    assert seen == [("call-1", None)]
    assert len(plugin_logs(logged, "p1")) == 1 and len(plugin_logs(logged, "p0")) == 1


# -- AMI mapping ----------------------------------------------------------

class FakeMessage:
    def __init__(self, name):
        self.name = name


class Mapper:
    def __init__(self, names, result):
        self.names, self.result, self.calls = names, result, 0

    @hookimpl
    def asttapi_ami_event_names(self):
        return self.names

    @hookimpl
    def asttapi_map_ami_event(self, message, app):
        self.calls += 1
        return self.result


def test_events_are_routed_only_to_plugins_that_asked_for_them():
    newchannel = Mapper(["Newchannel"], ["signal"])
    host, clock = make(newchannel)
    assert host.wanted_event_names() == {"Newchannel"}
    assert host.map_ami_event(FakeMessage("VarSet")) == []
    assert newchannel.calls == 0
    assert host.map_ami_event(FakeMessage("Newchannel")) == ["signal"]


def test_first_list_wins_and_none_passes_on():
    low, high = Mapper(["UserEvent"], ["low"]), Mapper(["UserEvent"], None)
    host, clock = make(low, high)
    assert host.map_ami_event(FakeMessage("UserEvent")) == ["low"]
    assert high.calls == 1
    override = Mapper(["UserEvent"], [])
    host.register(override, "override")
    assert host.map_ami_event(FakeMessage("UserEvent")) == []
    assert low.calls == 1


def test_a_raising_mapper_is_skipped(logged):
    host, clock = make(Mapper(["UserEvent"], ["ok"]), Raiser())
    assert host.map_ami_event(FakeMessage("UserEvent")) == ["ok"]
    assert plugin_logs(logged, "p1")


def test_a_mapper_that_names_no_events_is_warned_about(logged):
    class Nameless:
        @hookimpl
        def asttapi_map_ami_event(self, message):
            return []

    host, clock = make(Nameless())
    assert host.wanted_event_names() == frozenset()
    assert plugin_logs(logged, "p0")


# -- life cycle -----------------------------------------------------------

def test_startup_passes_config_and_app_and_keeps_app():
    seen = []

    class Starter:
        @hookimpl
        def asttapi_startup(self, config, app):
            seen.append((config, app))
            return succeed(None)

        @hookimpl
        def asttapi_client_event(self, event, app):
            seen.append(app)

    host, clock = make(Starter())
    results = []
    host.startup("cfg", "app").addBoth(results.append)
    assert results == [None]
    host.client_event(EVENT)
    assert seen == [("cfg", "app"), "app"]


def test_startup_failure_is_a_plugin_error_naming_it():
    class BadStart:
        @hookimpl
        def asttapi_startup(self):
            raise OSError("cannot reach the CRM")

    host, clock = make(BadStart())
    results = []
    host.startup(None, None).addErrback(results.append)
    assert results[0].check(PluginError)
    assert "plugin 'p0' failed to start: cannot reach the CRM" == str(results[0].value)


def test_shutdown_waits_for_plugins_but_not_forever(logged):
    done = []

    class Stopper:
        @hookimpl
        def asttapi_shutdown(self, app):
            return Deferred()

    host, clock = make(Stopper(), Raiser())
    host.shutdown().addBoth(done.append)
    assert done == []
    clock.advance(5)
    assert done and clock.getDelayedCalls() == []


def test_a_plugin_raising_on_every_event_is_reported_once_a_minute(logged):
    host, clock = make(Enricher("a"), Raiser())
    for _ in range(100):
        assert host.client_event(EVENT).callinfo["a"]
    reports = plugin_logs(logged, "p1")
    assert len(reports) == 1
    clock.advance(60)
    host.client_event(EVENT)
    reports = plugin_logs(logged, "p1")
    assert len(reports) == 2 and reports[1]["suppressed"] == 99


def test_hook_lists_are_built_once_per_registration_not_per_event():
    from asttapi_server.core.events import TapiEvent
    from asttapi_server.hookspecs import hookimpl as _hookimpl
    from asttapi_server.plugin_host import build_plugin_manager

    h = build_plugin_manager(None, entry_points=[], search_paths=[])
    calls = []
    real = h.pm.hook.asttapi_client_event

    class Counting:
        def get_hookimpls(self):
            calls.append(1)
            return real.get_hookimpls()

    h.pm.hook.asttapi_client_event = Counting()
    event = TapiEvent("LINE_CALLSTATE", "line_1", 1, "LINECALLSTATE_OFFERING")
    for _ in range(100):
        assert h.client_event(event) is event  # no plugin has the hook: the event itself
    assert len(calls) <= 1
    h.pm.hook.asttapi_client_event = real

    class Enrich:
        @_hookimpl
        def asttapi_client_event(self, event, app):
            return event.with_callinfo(crm="x")

    h.register(Enrich(), "enrich")  # a new registration is seen at once
    assert h.client_event(event).callinfo["crm"] == "x"
