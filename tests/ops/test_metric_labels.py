"""Issue 22 item 6: every /metrics label comes from a bounded set, whatever the PBX or a plugin sends.

A hostile PBX's 120,000 case variants of ``OriginateResponse`` (the event
filter compares names case-insensitively, so they all pass it) gave 120,000
series, a 6.6 MB exposition and 0.7 s per scrape on the reactor.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from asttapi_server.ami import actions
from asttapi_server.config import load_config
from asttapi_server.metrics import (
    ACTION_FAILURES, CUT_OFF_REASONS, LOOKUP_RESULTS, MAX_PLUGIN_LABELS, OTHER, TAPI_MESSAGES, LabelValues, Metrics,
)
from asttapi_server.service import make_service
from tests.ami.fakes import FakeAsterisk
from tests.ops.test_metrics import samples

ROOT = Path(__file__).resolve().parents[2]


def case_variants(name: str, n: int) -> list[str]:
    """The first ``n`` upper/lower-case spellings of ``name``."""
    letters = [i for i, ch in enumerate(name) if ch.isalpha()]
    out = []
    for bits in itertools.islice(itertools.product((0, 1), repeat=len(letters)), n):
        chars = list(name.lower())
        for i, bit in zip(letters, bits):
            if bit:
                chars[i] = chars[i].upper()
        out.append("".join(chars))
    return out


def test_120000_case_variants_of_an_event_name_are_one_series_through_the_whole_server():
    pbx = FakeAsterisk()
    config = load_config(None, {"ami.host": "pbx.example", "ami.keepalive": 3600.0, "calls.state_file": "",
                                "server.listen": ["tcp:0:interface=127.0.0.1"]})
    app = make_service(config, pbx.reactor)
    app.startService()
    try:
        session = pbx.accept()
        pbx.login_md5(session)
        (csc,) = session.actions()
        session.send(b"Response: Success\r\nActionID: " + csc.action_id.encode()
                     + b"\r\nEventList: start\r\n\r\nEvent: CoreShowChannelsComplete\r\nActionID: "
                     + csc.action_id.encode() + b"\r\nEventList: Complete\r\nListItems: 0\r\n\r\n")
        names = case_variants("OriginateResponse", 120_000)
        assert len(set(names)) == 120_000
        chunk = []
        for i, name in enumerate(names):
            chunk.append(f"Event: {name}\r\nPrivilege: call,all\r\nActionID: x-{i}\r\nResponse: Failure\r\n"
                         f"Channel: Local/1@x\r\nReason: 0\r\nUniqueid: <null>\r\n\r\n".encode())
            if len(chunk) == 5000:
                session.send(b"".join(chunk))
                chunk = []
        session.send(b"".join(chunk))
        # A name the server never asked for, with our own pending ActionID would pass too; the
        # counter folds everything unknown into "other" (checked below on the Metrics alone).
        text = app.metrics.exposition().decode()
    finally:
        app.stopService()
    got = samples(text)
    events = {labels: v for (name, labels), v in got.items() if name == "asttapi_ami_events_total"}
    assert events == {(("event", "OriginateResponse"),): 120_000}, events
    assert len(text) < 20_000, len(text)
    assert len(app.metrics.ami_events) == 1


def test_unknown_event_names_are_other_and_known_ones_keep_their_spelling():
    m = Metrics()

    class Msg:
        def __init__(self, name):
            self.name = name

    for name in ("UserEvent", "USEREVENT", "userevent", "Hangup", "hAnGuP", "FULLYBOOTED", "NotAnEvent",
                 "x" * 10_000, "Hangup\u2028", "\ud800"):
        m.on_ami_event(Msg(name))
    # Without a server around it, the known events are the core's and the link's;
    # names compare stripped and in any case (idents.wanted_name), as the filter does.
    assert m.ami_events == {"Hangup": 3, "FullyBooted": 1, OTHER: 6}
    for i in range(10_000):
        m.on_ami_event(Msg(f"Evil{i}"))
    assert len(m.ami_events) <= 4


def test_every_other_label_is_bounded_too():
    m = Metrics()
    for i in range(5000):
        m.on_action(f"Action{i}", 0.01, None)
        m.on_action("ping", 0.01, f"reason{i}")
        m.on_lookup(f"plugin{i}", f"result{i}", 0.1)
    assert set(m.actions) == {OTHER}
    assert set(m.action_failures) == {("Ping", OTHER)}
    plugins = {p for p, _ in m.lookups}
    assert len(plugins) == MAX_PLUGIN_LABELS + 1 and OTHER in plugins
    assert {r for _, r in m.lookups} == {OTHER}
    m.on_action("Originate", 0.2, "timeout")
    assert ("Originate", "timeout") in m.action_failures

    class Event:
        call = None

        def __init__(self, msg):
            self.msg = msg

    for i in range(1000):
        m.on_publish(Event(f"LINE_{i}"))
    assert set(m.tapi_events) == {OTHER}

    class Factory:
        cut_offs = {f"why{i}": 1 for i in range(1000)} | {"slow_reader": 2}
        connections = ()

    class App:
        client_factory = Factory()

    m.app = App()
    assert m.cut_offs() == {OTHER: 1000, "slow_reader": 2}


def test_label_values_fold_case_and_cap_what_grows():
    label = LabelValues(("UserEvent", "Hangup"), grow=2)
    assert [label(v) for v in ("userevent", "HANGUP", "a", "b", "c", "a")] == [
        "UserEvent", "Hangup", "a", "b", OTHER, "a"]


def test_the_known_sets_are_the_documented_and_built_ones():
    doc = (ROOT / "docs" / "operations.md").read_text()
    rows = dict(re.findall(r"^\| `(asttapi_[a-z_]+)` \| [a-z]+ \| [^|]*\|([^|]*)\|", doc, re.M))
    for name, values in (("asttapi_clients_cut_off", CUT_OFF_REASONS),
                         ("asttapi_ami_action_failures", ACTION_FAILURES),
                         ("asttapi_contact_lookups", LOOKUP_RESULTS),
                         ("asttapi_tapi_events", TAPI_MESSAGES)):
        documented = set(re.findall(r"`([A-Za-z_]+)`", rows[name]))
        assert set(values) <= documented, (name, set(values) - documented)
    assert "`other`" in doc
    # every action builder's name is a known action label
    built = {b().name for b in (actions.ping, actions.challenge, actions.coreshowchannels, actions.status,
                                 actions.logoff)}
    built |= {actions.login("u", "s").name, actions.originate("SIP/x").name, actions.hangup("SIP/x").name,
              actions.redirect("SIP/x", "c", "1").name, actions.blind_transfer("SIP/x", "c", "1").name,
              actions.command("core show version").name}
    assert built == set(actions.NAMES)


def test_every_cut_off_reason_the_code_gives_is_a_label_of_its_own():
    """A reason missing from metrics.CUT_OFF_REASONS would be counted as "other" (two
    branches adding reasons and the label set drifting apart did that once)."""
    import re
    from pathlib import Path

    import asttapi_server
    from asttapi_server.metrics import CUT_OFF_REASONS

    root = Path(asttapi_server.__file__).parent
    given = {m for path in root.rglob("*.py") for m in re.findall(r'cut_off\("([a-z_]+)"', path.read_text())}
    assert given, "no cut_off(...) call found: the pattern is stale"
    assert given <= set(CUT_OFF_REASONS), sorted(given - set(CUT_OFF_REASONS))


def test_events_counted_before_a_label_change_keep_their_label():
    """Names are counted as sent and labelled when read: what was counted before the
    labels changed (a reload, new plugins) stays under the label it had, so no
    counter goes down."""
    from types import SimpleNamespace

    m = Metrics()

    class Msg:
        def __init__(self, name):
            self.name = name

    for _ in range(3):
        m.on_ami_event(Msg("DialBegin"))
    assert m.ami_events == {OTHER: 3}
    m.app = SimpleNamespace(plugins=SimpleNamespace(wanted_event_names=lambda: frozenset({"DialBegin"})))
    m.learn_event_names()
    m.on_ami_event(Msg("dialbegin"))
    assert m.ami_events == {OTHER: 3, "DialBegin": 1}
