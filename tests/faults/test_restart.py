"""A server restart mid-call (issue 11 item 9), end to end on the real service graph.

``make_service`` builds the whole server (AMI client, bridge, call model, call
store, hub, client factory) on a scripted Asterisk (tests.ami.fakes, a
MemoryReactorClock); the call is the real capture 05 (an inbound call bob
answered). "Crash" means the first server's objects are simply abandoned: no
stopService, no final write, exactly what kill -9 leaves behind. A second
server, a new reactor (a new process) and the same state file, must give the
CRM back its call: resumable, listed, and droppable by its old handle.
"""

from __future__ import annotations

import json

from twisted.logger import LogLevel, capturedLogs

from asttapi_server.config import load_config
from asttapi_server.service import make_service
from tests.ami.fakes import FakeAsterisk, replay
from tests.clients.harness import Conn

from .system import coreshowchannels_answer

CAPTURE = "05_inbound_call.monitor.raw"
#: Capture 05 block indices: 4 is the first event; after block 100 bob has
#: answered (CONNECTED on line_1, block 88) and nothing has hung up yet.
FIRST, ANSWERED = 4, 100
#: The channels of capture 05's call still up at that point (name, Uniqueid).
LIVE = (
    ("Local/100@inbound-00000000;1", "1795674354.0"),
    ("Local/100@inbound-00000000;2", "1795674354.1"),
    ("Local/bob@phones-00000001;1", "1795674354.2"),
    ("Local/bob@phones-00000001;2", "1795674354.3"),
)


def config_for(tmp_path, state_file, extra=""):
    path = tmp_path / "asttapi.toml"
    path.write_text(
        '[ami]\nhost = "pbx.example"\nkeepalive = 3600.0\n'
        '[server]\nlisten = ["tcp:0:interface=127.0.0.1"]\n'
        '[lines.line_1]\nchannel = "Local/bob@phones"\ncontext = "trunklocal"\n'
        f"[calls]\nstate_file = {json.dumps(str(state_file))}\n" + extra
    )
    return load_config(str(path))


class Server:
    """One server process: its own reactor, its own scripted PBX connection."""

    def __init__(self, config, start: float) -> None:
        self.pbx = FakeAsterisk()
        self.clock = self.pbx.reactor
        self.clock.advance(start)
        self.app = make_service(config, self.clock)
        self.app.startService()
        self.session = None
        self._port = 50000

    def link_up(self, channels=()) -> None:
        """Asterisk accepts the login; the bridge asks for the channel list and gets ``channels``."""
        self.session = self.pbx.accept()
        self.pbx.login_md5(self.session)
        (action,) = self.session.actions()
        assert action.name == "CoreShowChannels"
        self.session.send(coreshowchannels_answer(action.action_id, channels))
        assert self.app.bridge.link_up

    def play(self, start: int, stop: int | None = None) -> None:
        self.session.send(replay(CAPTURE, {}, start, stop))

    def connect(self) -> Conn:
        self._port += 1
        conn = Conn(self.app.client_factory, self._port)
        (hello,) = conn.read()
        conn.hello = hello["params"]
        return conn

    def actions(self):
        return [a for a in self.session.actions() if a.name != "Ping"]


def notes(conn: Conn, msgs: list[dict] | None = None) -> list[tuple]:
    """(method, call, state or infostate, existing, synthetic) of the notifications not read yet
    (or of ``msgs``, e.g. ``conn.seen``: what came with the last answer)."""
    out = []
    for m in conn.read() if msgs is None else msgs:
        if "method" in m:
            p = m["params"]
            out.append((m["method"], p.get("call"), p.get("state") or p.get("infostate") or p.get("devstate"),
                        p.get("existing", False), p.get("synthetic", False)))
    return out


def crashed_mid_call(tmp_path, extra="", login=None):
    """The first run: call 05 answered on line_1, the store written, then kill -9.

    ``extra`` is appended to the configuration; ``login`` is (user, token) when it has ``[users]``."""
    state_file = tmp_path / "state" / "calls.json"
    config = config_for(tmp_path, state_file, extra)
    first = Server(config, 1_795_674_354.0)
    first.link_up()
    crm = first.connect()
    if login:
        crm.result("login", username=login[0], token=login[1])
    opened = crm.result("lineOpen", line="line_1")
    first.play(FIRST, ANSWERED)
    seen = notes(crm)
    handle = seen[0][1]
    assert [s[:3] for s in seen] == [
        ("LINE_NEWCALL", handle, None),
        ("LINE_CALLSTATE", handle, "LINECALLSTATE_OFFERING"),
        ("LINE_CALLINFO", handle, "LINECALLINFOSTATE_CALLERID"),
        ("LINE_CALLSTATE", handle, "LINECALLSTATE_CONNECTED"),
    ]
    last_seq = crm.result("ping")["seq"]
    first.clock.advance(1.0)  # the batched write happens within 0.25 s
    assert [c["handle"] for c in json.loads(state_file.read_text())["calls"]] == [handle]
    # kill -9: the objects are dropped, nothing is stopped or flushed.
    return config, state_file, handle, opened["epoch"], last_seq


def test_the_crm_resumes_after_a_crash_sees_its_call_and_drops_it(tmp_path):
    config, _state_file, handle, epoch, last_seq = crashed_mid_call(tmp_path)
    second = Server(config, 1_795_674_354.0 + 1.3)  # restarted 0.3 s later
    crm = second.connect()
    assert crm.hello["epoch"] != epoch  # a new run: the old seq numbers mean nothing here
    resumed = crm.result("lineOpen", line="line_1", seq=last_seq, epoch=epoch)
    # The ring died with the old process, so the resume says gap, honestly;
    # the calls that exist come with it and are announced as on any lineOpen.
    assert resumed["replay"] == "gap"
    assert [(c["call"], c["state"], c["callinfo"]["callerid"]) for c in resumed["calls"]] == [
        (handle, "LINECALLSTATE_CONNECTED", "0301234567")]
    assert notes(crm, crm.seen) == [
        ("LINE_NEWCALL", handle, None, True, False),
        ("LINE_CALLSTATE", handle, "LINECALLSTATE_CONNECTED", True, False),
    ]
    # The PBX link comes up: the call's channels are all still there, so it stays.
    second.link_up(LIVE)
    assert notes(crm) == [("LINE_LINEDEVSTATE", None, "LINEDEVSTATE_INSERVICE", False, False)]
    assert [c["call"] for c in crm.result("lineGetCalls", line="line_1")["calls"]] == [handle]
    assert crm.result("lineGetCallInfo", call=handle)["state"] == "LINECALLSTATE_CONNECTED"
    # lineDrop by the old handle hangs up the call's own channel (the caller's leg).
    crm.send({"jsonrpc": "2.0", "id": 99, "method": "lineDrop", "params": {"call": handle}})
    (hangup,) = second.actions()
    assert (hangup.name, hangup.get("Channel"), hangup.get("Cause")) == (
        "Hangup", "Local/100@inbound-00000000;2", "16")
    second.session.send(replay("12_hangup_action.driver.raw", {"hangup-1": hangup.action_id}, 2, 3))
    assert crm.read() == [{"jsonrpc": "2.0", "id": 99, "result": {}}]
    # The rest of the real call: its hangups and the dialplan's IDLE reach the restored call.
    second.play(ANSWERED)
    assert notes(crm) == [("LINE_CALLSTATE", handle, "LINECALLSTATE_IDLE", False, False)]
    assert crm.result("lineGetCalls", line="line_1") == {"calls": []}
    assert second.app.model.stats["unknown_call"] == 0


def test_a_call_that_ended_while_the_server_was_down_ends_cleanly_at_the_resync(tmp_path):
    config, state_file, handle, _epoch, _seq = crashed_mid_call(tmp_path)
    second = Server(config, 1_795_674_354.0 + 30.0)
    crm = second.connect()
    assert [c["call"] for c in crm.result("lineOpen", line="line_1")["calls"]] == [handle]
    notes(crm)
    second.link_up(channels=())  # Asterisk has no channel of that call any more
    assert notes(crm) == [
        ("LINE_CALLSTATE", handle, "LINECALLSTATE_DISCONNECTED", False, True),
        ("LINE_CALLSTATE", handle, "LINECALLSTATE_IDLE", False, True),
        ("LINE_LINEDEVSTATE", None, "LINEDEVSTATE_INSERVICE", False, False),
    ]
    assert crm.result("lineGetCalls", line="line_1") == {"calls": []}
    second.clock.advance(1.0)
    assert json.loads(state_file.read_text())["calls"] == []  # and a third start restores nothing
    # The dialplan's late IDLE for it (the h extension) is a harmless duplicate, not an unknown call.
    second.play(120)
    assert notes(crm) == [] and second.app.model.stats["unknown_call"] == 0


def test_a_new_call_after_the_restart_never_reuses_a_handle_of_the_old_run(tmp_path):
    config, _state_file, handle, _epoch, _seq = crashed_mid_call(tmp_path)
    second = Server(config, 1_795_674_360.0)
    second.link_up(LIVE)
    crm = second.connect()
    crm.result("lineOpen", line="line_1")
    crm.read()
    second.session.send(
        b"Event: UserEvent\r\nPrivilege: user,all\r\nChannel: PJSIP/trunk-00000009\r\nUniqueid: 1795674360.7\r\n"
        b"UserEvent: TAPI\r\nTAPIEVENT: LINE_NEWCALL line_1\r\n\r\n"
    )
    ((method, new, *_),) = notes(crm)
    assert method == "LINE_NEWCALL" and new > handle + 1


def test_a_corrupt_store_is_one_log_line_and_the_server_starts_empty(tmp_path):
    state_file = tmp_path / "calls.json"
    config = config_for(tmp_path, state_file)
    for content in (b"\x00\xff garbage", b'{"format": "asttapi-calls", "version": 1, "calls": [', b"[]",
                    json.dumps({"format": "asttapi-calls", "version": 99, "calls": []}).encode()):
        state_file.write_bytes(content)
        with capturedLogs() as logs:
            server = Server(config, 1_795_674_354.0)
        store_lines = [e for e in logs if "Call store" in e.get("log_format", "")]
        assert len(store_lines) == 1 and store_lines[0]["log_level"] == LogLevel.warn, logs
        assert not any("log_failure" in e for e in logs)
        server.link_up()
        crm = server.connect()
        assert crm.result("lineOpen", line="line_1")["calls"] == []
        assert server.app.model.tracked == 0


def test_an_empty_state_file_setting_keeps_no_store(tmp_path):
    server = Server(config_for(tmp_path, ""), 1_795_674_354.0)
    assert server.app.store is None
    server.link_up()
    server.play(FIRST, ANSWERED)
    server.clock.advance(5.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["asttapi.toml"]


ALICE, BOB = "alice-token-0123456789", "bob-token-0123456789ab"
USERS = (
    '[lines.line_2]\nchannel = "Local/alice@phones"\ncontext = "trunklocal"\n'
    f'[users.alice]\ntoken = "{ALICE}"\nlines = ["line_1"]\n'
    f'[users.bob]\ntoken = "{BOB}"\nlines = ["line_2"]\n'
)


def test_after_a_restart_rights_still_follow_the_call(tmp_path):
    # Issue 11 items 2 and 9 together: the restored call is droppable by a
    # login whose line holds it, and still invisible to a colleague's line.
    config, _state_file, handle, _epoch, _seq = crashed_mid_call(tmp_path, USERS, ("alice", ALICE))
    second = Server(config, 1_795_674_354.0 + 1.3)
    second.link_up(LIVE)
    bob = second.connect()
    bob.result("login", username="bob", token=BOB)
    bob.result("lineOpen", line="line_2")
    for method in ("lineDrop", "lineGetCallInfo"):
        answer = bob.call(method, call=handle)
        assert answer["error"]["data"]["lineerr"] == "LINEERR_INVALCALLHANDLE", answer
    assert second.actions() == []
    alice = second.connect()
    alice.result("login", username="alice", token=ALICE)
    assert [c["call"] for c in alice.result("lineOpen", line="line_1")["calls"]] == [handle]
    alice.send({"jsonrpc": "2.0", "id": 99, "method": "lineDrop", "params": {"call": handle}})
    (hangup,) = second.actions()
    assert (hangup.name, hangup.get("Channel")) == ("Hangup", "Local/100@inbound-00000000;2")


#: Another live call on the PBX (the director's), and what a hand edit of the store gives our call.
DIRECTOR = ("PJSIP/director-00000007", "1795674359.9")


def test_a_hand_edited_record_never_aims_linedrop_at_another_calls_channel(tmp_path):
    # Issue 22 item 8: a record giving a live Uniqueid another call's channel
    # was restored, the resync only checked the Uniqueid, and lineDrop hung up
    # the director's call. Now Asterisk must list the Uniqueid with that very
    # channel; the record is dropped (one throttled log line) and nothing is sent.
    config, state_file, handle, _epoch, _seq = crashed_mid_call(tmp_path)
    data = json.loads(state_file.read_text())
    (record,) = data["calls"]
    assert record["uniqueid"] in {uid for _name, uid in LIVE}  # the Uniqueid is live ...
    record["channel"] = DIRECTOR[0]  # ... the channel is another call's
    state_file.write_text(json.dumps(data))
    second = Server(config, 1_795_674_360.0)
    crm = second.connect()
    assert [c["call"] for c in crm.result("lineOpen", line="line_1")["calls"]] == [handle]
    notes(crm)
    with capturedLogs() as logs:
        second.link_up(LIVE + (DIRECTOR,))
    assert notes(crm) == [
        ("LINE_CALLSTATE", handle, "LINECALLSTATE_DISCONNECTED", False, True),
        ("LINE_CALLSTATE", handle, "LINECALLSTATE_IDLE", False, True),
        ("LINE_LINEDEVSTATE", None, "LINEDEVSTATE_INSERVICE", False, False),
    ]
    dropped = [e for e in logs if "not the one Asterisk reports" in str(e.get("why", ""))]
    assert len(dropped) == 1, logs
    answer = crm.call("lineDrop", call=handle)
    assert answer["error"]["data"]["lineerr"] == "LINEERR_INVALCALLSTATE", answer
    assert second.actions() == []  # no Hangup of PJSIP/director-00000007, nor of anything else
    assert second.app.model.endings["unconfirmed"] == 1


def test_a_restored_call_is_not_acted_on_while_asterisk_has_not_confirmed_it(tmp_path):
    # The resync's CoreShowChannels fails: the link goes in service anyway (new
    # calls work), but the restored call's channel is only the file's word.
    config, _state_file, handle, _epoch, _seq = crashed_mid_call(tmp_path)
    second = Server(config, 1_795_674_354.0 + 1.3)
    second.session = second.pbx.accept()
    second.pbx.login_md5(second.session)
    (action,) = second.session.actions()
    second.session.send(f"Response: Error\r\nActionID: {action.action_id}\r\nMessage: Permission denied\r\n\r\n"
                        .encode())
    assert second.app.bridge.link_up
    crm = second.connect()
    crm.result("lineOpen", line="line_1")
    answer = crm.call("lineDrop", call=handle)
    assert answer["error"]["data"]["lineerr"] == "LINEERR_INVALCALLSTATE", answer
    assert "not confirmed" in answer["error"]["message"]
    assert second.actions() == []
