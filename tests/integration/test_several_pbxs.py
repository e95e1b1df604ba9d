"""Several PBXs in one server (issue 25 items 1-2), end to end on the real service graph.

``make_service`` builds the whole server from a ``[pbx.hq]`` + ``[pbx.branch]``
configuration on one MemoryReactorClock; each PBX is a scripted Asterisk
(tests.ami.fakes' session) that replays the same real capture (05: an inbound
call bob answers), so both PBXs hand out the very same Uniqueids, as two
Asterisks started at the same second do. Only the line name differs:
``line_1`` is hq's, ``line_9`` the branch's.
"""

from __future__ import annotations

import json

from twisted.logger import capturedLogs
from twisted.internet.testing import MemoryReactorClock

from asttapi_server.config import load_config
from asttapi_server.service import make_service, reload
from asttapi_server.web.ops import pbx_lines, readiness
from tests.ami.fakes import BANNER, Session, Transport, replay
from tests.clients.harness import Conn

from ..faults.system import coreshowchannels_answer
from ..faults.test_restart import ANSWERED, CAPTURE, FIRST, LIVE, notes

START = 1_795_674_354.0
CALLER_CHANNEL = "Local/100@inbound-00000000;2"


def write_config(tmp_path, state_file, pbxs=("hq", "branch"), extra=""):
    lines = {"hq": "line_1", "branch": "line_9", "third": "line_7"}
    text = '[server]\nlisten = ["tcp:0:interface=127.0.0.1"]\n'
    for name in pbxs:
        text += f'[pbx.{name}]\nhost = "{name}.example"\nkeepalive = 3600.0\n'
    for name in pbxs:
        text += f'[lines.{lines[name]}]\nchannel = "Local/bob@phones"\ncontext = "trunklocal"\npbx = "{name}"\n'
    text += f"[calls]\nstate_file = {json.dumps(str(state_file))}\n" + extra
    path = tmp_path / "asttapi.toml"
    path.write_text(text)
    return load_config(str(path))


def capture(line: str, start: int = FIRST, stop: int | None = None) -> bytes:
    """Capture 05's blocks, its TAPI events naming ``line`` instead of line_1."""
    return replay(CAPTURE, {}, start, stop).replace(b"line_1", line.encode())


class Servers:
    """One server process with several scripted Asterisks, each found by its host name."""

    def __init__(self, config, start: float = START) -> None:
        self.clock = MemoryReactorClock()
        self.clock.advance(start)
        self.app = make_service(config, self.clock)
        self.app.startService()
        self.sessions: dict[str, Session] = {}
        self._accepted: set[int] = set()
        self._port = 50000

    def accept(self, pbx: str) -> Session:
        """Asterisk ``pbx`` accepts the connection its link is making (the newest one to its host)."""
        index = max(i for i, c in enumerate(self.clock.tcpClients)
                    if c[0] == f"{pbx}.example" and i not in self._accepted)
        self._accepted.add(index)
        proto = self.clock.tcpClients[index][2].buildProtocol(None)
        transport = Transport()
        transport.protocol = proto
        proto.makeConnection(transport)
        session = Session(proto, transport)
        session.send(BANNER)
        self.sessions[pbx] = session
        return session

    def link_up(self, pbx: str, channels=()) -> None:
        session = self.accept(pbx)
        (challenge,) = session.actions()
        session.send(b"Response: Success\r\nActionID: %s\r\nChallenge: 1\r\n\r\n" % challenge.action_id.encode())
        (login,) = session.actions()
        session.send(b"Response: Success\r\nActionID: %s\r\nMessage: Authentication accepted\r\n\r\n"
                     % login.action_id.encode())
        (action,) = session.actions()
        assert action.name == "CoreShowChannels"
        session.send(coreshowchannels_answer(action.action_id, channels))
        assert self.app.switchboard.units[pbx].in_service

    def connect(self) -> Conn:
        self._port += 1
        conn = Conn(self.app.client_factory, self._port)
        (hello,) = conn.read()
        conn.hello = hello["params"]
        return conn

    def actions(self, pbx: str):
        return [a for a in self.sessions[pbx].actions() if a.name != "Ping"]

    def model(self, pbx: str):
        return self.app.switchboard.units[pbx].model


def two_calls(tmp_path):
    """Both PBXs up, a CRM on each PBX's line, and the same call (same Uniqueids) answered on both."""
    state_file = tmp_path / "state" / "calls.json"
    servers = Servers(write_config(tmp_path, state_file))
    servers.link_up("hq")
    servers.link_up("branch")
    crm_hq, crm_branch = servers.connect(), servers.connect()
    crm_hq.result("lineOpen", line="line_1")
    crm_branch.result("lineOpen", line="line_9")
    servers.sessions["hq"].send(capture("line_1", FIRST, ANSWERED))
    servers.sessions["branch"].send(capture("line_9", FIRST, ANSWERED))
    return servers, crm_hq, crm_branch, state_file


def test_the_same_uniqueids_on_two_pbxs_are_two_calls_each_on_its_own_line(tmp_path):
    servers, crm_hq, crm_branch, _ = two_calls(tmp_path)
    seen_hq, seen_branch = notes(crm_hq), notes(crm_branch)
    expected = ["LINE_NEWCALL", "LINE_CALLSTATE", "LINE_CALLINFO", "LINE_CALLSTATE"]
    assert [n[0] for n in seen_hq] == expected and [n[0] for n in seen_branch] == expected
    hq_call, branch_call = seen_hq[0][1], seen_branch[0][1]
    assert hq_call != branch_call  # one handle space over every PBX
    uid = LIVE[1][1]
    assert servers.model("hq").by_uniqueid(uid).handle == hq_call
    assert servers.model("branch").by_uniqueid(uid).handle == branch_call
    assert [c["call"] for c in crm_hq.result("lineGetCalls", line="line_1")["calls"]] == [hq_call]
    assert [c["call"] for c in crm_branch.result("lineGetCalls", line="line_9")["calls"]] == [branch_call]
    # hq's hangup ends hq's call only, though the branch's has the same Uniqueids.
    servers.sessions["hq"].send(capture("line_1", ANSWERED))
    assert notes(crm_hq) == [("LINE_CALLSTATE", hq_call, "LINECALLSTATE_IDLE", False, False)]
    assert notes(crm_branch) == []
    assert crm_branch.result("lineGetCallInfo", call=branch_call)["state"] == "LINECALLSTATE_CONNECTED"
    assert servers.model("hq").stats["unknown_call"] == servers.model("branch").stats["unknown_call"] == 0


def test_one_pbx_down_puts_only_its_lines_out_of_service_and_the_other_goes_on(tmp_path):
    servers, crm_hq, crm_branch, _ = two_calls(tmp_path)
    notes(crm_hq), notes(crm_branch)
    hello = servers.connect().hello
    assert (hello["pbx"], hello["pbxs"]) == ("up", {"hq": "up", "branch": "up"})
    assert readiness(servers.app) is None

    servers.sessions["hq"].close()  # hq's Asterisk goes away
    msgs = crm_hq.read()
    assert [(m["method"], m["params"]["line"], m["params"]["devstate"]) for m in msgs] == [
        ("LINE_LINEDEVSTATE", "line_1", "LINEDEVSTATE_OUTOFSERVICE")]
    assert crm_branch.read() == []
    late = servers.connect()
    assert (late.hello["pbx"], late.hello["pbxs"]) == ("down", {"hq": "down", "branch": "up"})
    assert late.result("lineOpen", line="line_1")["devstate"] == "LINEDEVSTATE_OUTOFSERVICE"
    assert late.result("lineOpen", line="line_9")["devstate"] == "LINEDEVSTATE_INSERVICE"
    assert readiness(servers.app) == "1 of 2 PBXs not in service: hq"
    assert pbx_lines(servers.app).startswith("hq: down: PBX link DOWN")
    assert "branch: up: PBX link up" in pbx_lines(servers.app)
    assert "hq: PBX link DOWN" in servers.app.status_line()
    # The branch's call goes on to its end; a request on hq's line is refused as link down.
    branch_call = crm_branch.result("lineGetCalls", line="line_9")["calls"][0]["call"]
    servers.sessions["branch"].send(capture("line_9", ANSWERED))
    assert notes(crm_branch) == [("LINE_CALLSTATE", branch_call, "LINECALLSTATE_IDLE", False, False)]
    refused = crm_hq.call("lineMakeCall", line="line_1", number="201")
    assert refused["error"]["data"]["lineerr"] == "LINEERR_DISCONNECTED"
    # hq back: its lines in service again, told to its clients only.
    servers.clock.advance(60.0)
    servers.link_up("hq", LIVE)
    assert [(m["params"]["line"], m["params"]["devstate"]) for m in crm_hq.read()] == [
        ("line_1", "LINEDEVSTATE_INSERVICE")]
    assert crm_branch.read() == []


def test_click_to_dial_and_drop_go_to_the_right_pbx(tmp_path):
    servers, crm_hq, crm_branch, _ = two_calls(tmp_path)
    hq_call, branch_call = notes(crm_hq)[0][1], notes(crm_branch)[0][1]
    servers.actions("hq"), servers.actions("branch")
    crm_branch.send({"jsonrpc": "2.0", "id": 7, "method": "lineMakeCall", "params": {"line": "line_9", "number": "201"}})
    assert servers.actions("hq") == []
    (originate,) = servers.actions("branch")
    assert (originate.name, originate.get("Channel"), originate.get("Exten")) == ("Originate", "Local/bob@phones", "201")
    crm_hq.send({"jsonrpc": "2.0", "id": 8, "method": "lineDrop", "params": {"call": hq_call}})
    (hangup,) = servers.actions("hq")
    assert (hangup.name, hangup.get("Channel")) == ("Hangup", CALLER_CHANNEL)
    assert servers.actions("branch") == []
    crm_branch.send({"jsonrpc": "2.0", "id": 9, "method": "lineDrop", "params": {"call": branch_call}})
    (hangup,) = servers.actions("branch")
    assert (hangup.name, hangup.get("Channel")) == ("Hangup", CALLER_CHANNEL)
    assert servers.actions("hq") == []


def test_a_line_no_table_pins_belongs_to_the_pbx_that_names_it_first(tmp_path):
    state_file = tmp_path / "calls.json"
    config = write_config(tmp_path, state_file, extra='[lines.shared]\nchannel = "Local/bob@phones"\n')
    servers = Servers(config)
    servers.link_up("hq")
    servers.link_up("branch")
    crm = servers.connect()
    crm.result("lineOpen", line="shared")
    # Not named yet: in service while any PBX is, and no PBX to place a call on.
    assert crm.call("lineMakeCall", line="shared", number="201")["error"]["data"]["lineerr"] == (
        "LINEERR_OPERATIONUNAVAIL")
    servers.sessions["branch"].send(capture("shared", FIRST, ANSWERED))
    assert notes(crm)[0][0] == "LINE_NEWCALL"
    assert servers.app.switchboard.owners.owner("shared") == "branch"
    with capturedLogs() as logs:
        servers.sessions["hq"].send(capture("shared", FIRST, ANSWERED))
    assert notes(crm) == []  # hq's events for it are refused
    assert servers.model("hq").tracked == 0
    texts = [e["log_format"] for e in logs if "belong to PBX" in e.get("log_format", "")]
    assert len(texts) == 1  # throttled: once a minute, however many events
    servers.sessions["hq"].send(capture("shared", FIRST, ANSWERED))
    # Now it is the branch's: a click-to-dial on it goes there.
    servers.actions("hq"), servers.actions("branch")
    crm.send({"jsonrpc": "2.0", "id": 5, "method": "lineMakeCall", "params": {"line": "shared", "number": "201"}})
    assert servers.actions("hq") == [] and [a.name for a in servers.actions("branch")] == ["Originate"]


def test_a_restart_keeps_the_calls_of_both_pbxs(tmp_path):
    servers, crm_hq, crm_branch, state_file = two_calls(tmp_path)
    hq_call, branch_call = notes(crm_hq)[0][1], notes(crm_branch)[0][1]
    servers.clock.advance(1.0)  # the batched write
    stored = json.loads(state_file.read_text())["calls"]
    assert sorted((c["handle"], c.get("pbx")) for c in stored) == [(hq_call, "hq"), (branch_call, "branch")]
    # kill -9, and a second process on the same file.
    second = Servers(write_config(tmp_path, state_file), START + 2.0)
    assert second.model("hq").get(hq_call).uniqueid == second.model("branch").get(branch_call).uniqueid
    crm = second.connect()
    assert [c["call"] for c in crm.result("lineOpen", line="line_1")["calls"]] == [hq_call]
    assert [c["call"] for c in crm.result("lineOpen", line="line_9")["calls"]] == [branch_call]
    second.link_up("hq", LIVE)
    second.link_up("branch", LIVE)
    crm.read()
    # Each restored call is still driven by its own PBX.
    second.sessions["branch"].send(capture("line_9", ANSWERED))
    assert [n[:3] for n in notes(crm)] == [("LINE_CALLSTATE", branch_call, "LINECALLSTATE_IDLE")]
    assert second.model("hq").get(hq_call).ended is None


def test_a_single_pbx_store_loads_as_the_pbx_default(tmp_path):
    from ..faults.test_restart import crashed_mid_call

    config, state_file, handle, _epoch, _seq = crashed_mid_call(tmp_path)
    assert "pbx" not in json.loads(state_file.read_text())["calls"][0]  # as a single-PBX server writes it
    text = (tmp_path / "asttapi.toml").read_text().replace("[ami]", "[pbx.default]")
    text += '[pbx.branch]\nhost = "branch.example"\n'
    (tmp_path / "asttapi.toml").write_text(text)
    servers = Servers(load_config(str(tmp_path / "asttapi.toml")), START + 2.0)
    assert servers.model("default").get(handle) is not None and servers.model("branch").tracked == 0
    # One PBX under another name: the old calls are that one's.
    (tmp_path / "asttapi.toml").write_text(text.replace('[pbx.branch]\nhost = "branch.example"\n', "")
                                           .replace("[pbx.default]", "[pbx.hq]"))
    single = Servers(load_config(str(tmp_path / "asttapi.toml")), START + 3.0)
    assert single.model("hq").get(handle) is not None


def test_a_reload_adds_a_third_pbx_and_removes_one_without_dropping_the_others_clients(tmp_path):
    servers, crm_hq, crm_branch, state_file = two_calls(tmp_path)
    hq_call, branch_call = notes(crm_hq)[0][1], notes(crm_branch)[0][1]
    app = servers.app
    # Add a third PBX.
    result = []
    reload(app, write_config(tmp_path, state_file, ("hq", "branch", "third"))).addCallback(result.append)
    assert result == [True]
    assert not crm_hq.closed and not crm_branch.closed and crm_hq.read() == [] and crm_branch.read() == []
    servers.link_up("third")
    crm_third = servers.connect()
    assert crm_third.hello["pbxs"] == {"hq": "up", "branch": "up", "third": "up"}
    crm_third.result("lineOpen", line="line_7")
    servers.sessions["third"].send(capture("line_7", FIRST, ANSWERED))
    third_call = notes(crm_third)[0][1]
    assert len({hq_call, branch_call, third_call}) == 3
    assert servers.model("third").by_uniqueid(LIVE[1][1]).handle == third_call
    # Remove the branch: its line goes out of service and its call ends; hq and third carry on.
    with capturedLogs() as logs:
        reload(app, write_config(tmp_path, state_file, ("hq", "third"))).addCallback(result.append)
    assert result == [True, True]
    assert [(m["method"], m["params"].get("devstate") or m["params"].get("state")) for m in crm_branch.read()] == [
        ("LINE_LINEDEVSTATE", "LINEDEVSTATE_OUTOFSERVICE"),
        ("LINE_CALLSTATE", "LINECALLSTATE_DISCONNECTED"),
        ("LINE_CALLSTATE", "LINECALLSTATE_IDLE"),
    ]
    assert not crm_branch.closed  # the client stays; it may open other lines
    assert crm_hq.read() == [] and crm_third.read() == []
    assert "branch" not in app.switchboard.units and servers.sessions["branch"].transport.disconnecting
    assert any("PBXs removed: branch" in e.get("summary", "") for e in logs)
    assert crm_hq.result("lineGetCallInfo", call=hq_call)["state"] == "LINECALLSTATE_CONNECTED"
    servers.clock.advance(1.0)
    stored = json.loads(state_file.read_text())["calls"]
    assert sorted(c.get("pbx") for c in stored) == ["hq", "third"]
    body = pbx_lines(app)
    assert "hq: up" in body and "third: up" in body and "branch" not in body


def test_a_reload_that_changes_a_pbx_reconnects_only_that_one(tmp_path):
    servers, crm_hq, crm_branch, state_file = two_calls(tmp_path)
    notes(crm_hq), notes(crm_branch)
    config = write_config(tmp_path, state_file)
    text = (tmp_path / "asttapi.toml").read_text().replace(
        '[pbx.branch]\nhost = "branch.example"\n', '[pbx.branch]\nhost = "branch.example"\nport = 5039\n')
    (tmp_path / "asttapi.toml").write_text(text)
    result = []
    with capturedLogs() as logs:
        reload(servers.app, load_config(str(tmp_path / "asttapi.toml"))).addCallback(result.append)
    assert result == [True] and config is not None
    assert any("PBX branch reconnecting to branch.example:5039" in e.get("summary", "") for e in logs)
    assert servers.app.switchboard.units["hq"].link.connected
    assert [m["params"]["devstate"] for m in crm_branch.read()] == ["LINEDEVSTATE_OUTOFSERVICE"]
    assert crm_hq.read() == []


def _same_device_on_two_pbxs(tmp_path):
    """hq and branch each with a PJSIP/201 device line (bob, bob_branch), a call store in tmp_path."""
    path = tmp_path / "asttapi.toml"
    path.write_text(
        '[server]\nlisten = ["tcp:0:interface=127.0.0.1"]\n'
        '[pbx.hq]\nhost = "hq.example"\nkeepalive = 3600.0\n'
        '[pbx.branch]\nhost = "branch.example"\nkeepalive = 3600.0\n'
        '[lines.bob]\ndevice = "PJSIP/201"\ncontext = "plain-phones"\npbx = "hq"\n'
        '[lines.bob_branch]\ndevice = "PJSIP/201"\ncontext = "plain-phones"\npbx = "branch"\n'
        f'[calls]\nstate_file = {json.dumps(str(tmp_path / "calls.json"))}\n')
    return load_config(str(path))


def test_device_lines_of_two_pbxs_with_the_same_device_and_uniqueids_stay_apart(tmp_path):
    """Both Asterisks have a PJSIP/201 and hand out the same Uniqueids (capture s10 on both):
    each PBX's device-line mapping follows its own channels, each call pops on its own line."""
    from ..faults.test_device_restart import HOLD, S10

    servers = Servers(_same_device_on_two_pbxs(tmp_path), 1_795_691_988.0)
    servers.link_up("hq")
    servers.link_up("branch")
    crm = servers.connect()
    crm.result("lineOpen", line="bob")
    crm.result("lineOpen", line="bob_branch")
    servers.sessions["hq"].send(b"".join(block for block, _ in S10[:HOLD + 1]))
    first = crm.read()
    assert {m["params"]["line"] for m in first} == {"bob"}
    servers.sessions["branch"].send(b"".join(block for block, _ in S10[:HOLD + 1]))
    second = crm.read()
    assert {m["params"]["line"] for m in second} == {"bob_branch"}
    strip = lambda msgs: [(m["method"], m["params"].get("state")) for m in msgs]  # noqa: E731
    assert strip(first) == strip(second) and strip(first)[-1] == ("LINE_CALLSTATE", "LINECALLSTATE_ONHOLD")
    assert first[0]["params"]["call"] != second[0]["params"]["call"]
    # The hq side's end ends hq's call only.
    servers.sessions["hq"].send(b"".join(block for block, _ in S10[HOLD + 1:]))
    assert {m["params"]["line"] for m in crm.read()} == {"bob"}
    branch_call = second[0]["params"]["call"]
    assert crm.result("lineGetCallInfo", call=branch_call)["state"] == "LINECALLSTATE_ONHOLD"


def test_device_calls_of_two_pbxs_with_the_same_uniqueids_carry_on_after_a_restart(tmp_path):
    """Issue 25 item 3 on two PBXs: each PBX's call model keeps its device channels' facts with
    its calls and the call store saves them per PBX; after a restart each held call carries on
    under its handle, driven by its own PBX's events only, with no repair hook and no hand-over."""
    from ..faults.test_device_restart import BOB_CHANNEL, HOLD, S10

    config = _same_device_on_two_pbxs(tmp_path)
    first = Servers(config, 1_795_691_988.0)
    first.link_up("hq")
    first.link_up("branch")
    for pbx in ("hq", "branch"):
        first.sessions[pbx].send(b"".join(block for block, _ in S10[:HOLD + 1]))
    uid = "1795691988.43"
    hq_call = first.model("hq").by_uniqueid(uid, device=True).handle
    branch_call = first.model("branch").by_uniqueid(uid, device=True).handle
    first.clock.advance(1.0)  # the batched write; then kill -9
    stored = {c["pbx"]: c for c in json.loads((tmp_path / "calls.json").read_text())["calls"]}
    assert stored["hq"]["leg"]["lines"] == ["bob"] and stored["branch"]["leg"]["lines"] == ["bob_branch"]
    second = Servers(config, 1_795_691_990.0)
    assert list(second.model("hq").legs) == list(second.model("branch").legs) == [uid]
    crm = second.connect()
    assert [c["call"] for c in crm.result("lineOpen", line="bob")["calls"]] == [hq_call]
    assert [c["call"] for c in crm.result("lineOpen", line="bob_branch")["calls"]] == [branch_call]
    second.link_up("hq", ((BOB_CHANNEL, uid),))
    second.link_up("branch", ((BOB_CHANNEL, uid),))
    crm.read()
    # hq's phone resumes and hangs up: only hq's restored call moves, under its old handle.
    second.sessions["hq"].send(b"".join(block for block, _ in S10[HOLD + 1:]))
    told = [(m["params"]["call"], m["params"]["state"]) for m in crm.read() if m.get("method") == "LINE_CALLSTATE"]
    assert told == [(hq_call, "LINECALLSTATE_CONNECTED"), (hq_call, "LINECALLSTATE_DISCONNECTED"),
                    (hq_call, "LINECALLSTATE_IDLE")]
    assert second.model("hq").legs == {}
    assert crm.result("lineGetCallInfo", call=branch_call)["state"] == "LINECALLSTATE_ONHOLD"
    assert list(second.model("branch").legs) == [uid]


def test_metrics_name_each_pbx_and_pass_promtool(tmp_path):
    import shutil
    import subprocess

    from prometheus_client.parser import text_string_to_metric_families

    servers, crm_hq, crm_branch, _ = two_calls(tmp_path)
    servers.sessions["branch"].close()
    metrics = servers.app.metrics
    text = metrics.exposition().decode()
    samples = {(s.name, s.labels.get("pbx")): s.value for f in text_string_to_metric_families(text)
               for s in f.samples if s.name.startswith(("asttapi_ami_link_up", "asttapi_pbx_in_service",
                                                         "asttapi_ami_reconnects"))}
    assert samples == {
        ("asttapi_ami_link_up", "hq"): 1, ("asttapi_ami_link_up", "branch"): 0,
        ("asttapi_pbx_in_service", "hq"): 1, ("asttapi_pbx_in_service", "branch"): 0,
        ("asttapi_ami_reconnects_total", "hq"): 0, ("asttapi_ami_reconnects_total", "branch"): 0,
    }
    servers.clock.advance(60.0)
    servers.link_up("branch", LIVE)
    text = metrics.exposition().decode()
    assert 'asttapi_ami_reconnects_total{pbx="branch"} 1.0' in text
    assert 'asttapi_ami_reconnects_total{pbx="hq"} 0.0' in text
    promtool = shutil.which("promtool")
    if promtool:
        run = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True)
        assert run.returncode == 0, run.stdout + run.stderr


def test_webhook_call_ids_tell_the_same_uniqueid_on_two_pbxs_apart(tmp_path):
    from asttapi_plugins.call_webhooks import _of_pbx

    servers, crm_hq, crm_branch, _ = two_calls(tmp_path)
    hq_call, branch_call = notes(crm_hq)[0][1], notes(crm_branch)[0][1]
    board = servers.app.switchboard
    uid = LIVE[1][1]
    assert (board.pbx_of(hq_call), board.pbx_of(branch_call), board.pbx_of(999)) == ("hq", "branch", None)
    app = servers.app.plugins.app  # what plugins get: the switchboard's context
    assert (app.pbx(hq_call), app.pbx(branch_call), app.pbx(999)) == ("hq", "branch", None)
    assert _of_pbx(uid, app, hq_call) == f"{uid}@hq" and _of_pbx(uid, app, branch_call) == f"{uid}@branch"
    assert _of_pbx(uid, None, hq_call) == uid  # no switchboard (unit tests): the Uniqueid as it is


def test_a_line_no_pbx_has_named_follows_any_pbx_in_service(tmp_path):
    """An open line no PBX owns yet is in service while any PBX is: it hears OUTOFSERVICE only
    when the last PBX goes, and INSERVICE when the first is back."""
    config = write_config(tmp_path, tmp_path / "calls.json", extra='[lines.spare]\nchannel = "Local/x@phones"\n')
    servers = Servers(config)
    servers.link_up("hq")
    crm = servers.connect()
    assert crm.result("lineOpen", line="spare")["devstate"] == "LINEDEVSTATE_INSERVICE"  # hq is up
    assert crm.result("lineOpen", line="line_9")["devstate"] == "LINEDEVSTATE_OUTOFSERVICE"  # branch is not
    servers.link_up("branch")
    devstates = lambda: [(m["params"]["line"], m["params"]["devstate"]) for m in crm.read()]  # noqa: E731
    assert devstates() == [("line_9", "LINEDEVSTATE_INSERVICE")]
    servers.sessions["hq"].close()
    assert devstates() == []  # spare: the branch is still up; line_1 is not open here
    servers.sessions["branch"].close()
    assert sorted(devstates()) == [("line_9", "LINEDEVSTATE_OUTOFSERVICE"), ("spare", "LINEDEVSTATE_OUTOFSERVICE")]
    servers.clock.advance(60.0)
    servers.link_up("hq")
    assert devstates() == [("spare", "LINEDEVSTATE_INSERVICE")]


def test_from_ami_to_two_pbxs_by_reload_keeps_the_first_link_and_its_calls(tmp_path):
    """The upgrade path: [ami] becomes [pbx.default] beside a new [pbx.branch]; the running
    link is not touched (same settings), its call and client carry on, the branch comes up."""
    state_file = tmp_path / "calls.json"
    path = tmp_path / "asttapi.toml"
    base = ('[server]\nlisten = ["tcp:0:interface=127.0.0.1"]\n'
            '[lines.line_1]\nchannel = "Local/bob@phones"\ncontext = "trunklocal"\n'
            f"[calls]\nstate_file = {json.dumps(str(state_file))}\n")
    path.write_text('[ami]\nhost = "default.example"\nkeepalive = 3600.0\n' + base)
    servers = Servers(load_config(str(path)))
    servers.link_up("default")
    crm = servers.connect()
    crm.result("lineOpen", line="line_1")
    servers.sessions["default"].send(capture("line_1", FIRST, ANSWERED))
    call = notes(crm)[0][1]
    link = servers.app.ami
    path.write_text('[pbx.default]\nhost = "default.example"\nkeepalive = 3600.0\n'
                    '[pbx.branch]\nhost = "branch.example"\nkeepalive = 3600.0\n' + base
                    + '[lines.line_9]\nchannel = "Local/bob@phones"\npbx = "branch"\n')
    result = []
    with capturedLogs() as logs:
        reload(servers.app, load_config(str(path))).addCallback(result.append)
    assert result == [True] and not crm.closed and crm.read() == []
    assert servers.app.ami is link and link.connected  # not reconnected
    assert any("PBXs added: branch" in e.get("summary", "") for e in logs)
    assert not any("reconnecting" in e.get("summary", "") for e in logs)
    servers.link_up("branch")
    crm.result("lineOpen", line="line_9")
    servers.sessions["branch"].send(capture("line_9", FIRST, ANSWERED))
    assert [n[0] for n in notes(crm)][0] == "LINE_NEWCALL"
    assert crm.result("lineGetCallInfo", call=call)["state"] == "LINECALLSTATE_CONNECTED"
    # The first PBX removed: the names a single-PBX reader uses follow the one left.
    path.write_text('[pbx.branch]\nhost = "branch.example"\nkeepalive = 3600.0\n' + base
                    + '[lines.line_9]\nchannel = "Local/bob@phones"\npbx = "branch"\n')
    reload(servers.app, load_config(str(path))).addCallback(result.append)
    assert result == [True, True]
    assert servers.app.ami is servers.app.switchboard.units["branch"].link
    assert list(servers.app.switchboard.units) == ["branch"]


def test_calls_of_a_pbx_no_longer_configured_are_left_out_at_restart_with_one_line(tmp_path):
    servers, crm_hq, crm_branch, state_file = two_calls(tmp_path)
    hq_call = notes(crm_hq)[0][1]
    servers.clock.advance(1.0)
    with capturedLogs() as logs:
        second = Servers(write_config(tmp_path, state_file, ("hq",)), START + 2.0)
    assert [c.handle for c in second.model("hq").live_calls()] == [hq_call]
    lines = [e for e in logs if "not configured" in e.get("log_format", "")]
    assert len(lines) == 1 and lines[0]["pbx"] == "branch" and lines[0]["n"] == 1
