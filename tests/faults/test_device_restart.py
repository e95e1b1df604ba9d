"""A server restart in the middle of a device-line call (issue 15 item 2), on the real service graph.

``make_service`` builds the whole server (AMI client, bridge, call model, the
plugin host with the bundled device-line mapping, call store, hub, client
factory) on a scripted Asterisk; the call is the real capture s10 of
tests/data/ami-native (an inbound call bob's phone PJSIP/201 answers, holds,
resumes, hangs up; no UserEvent anywhere). The first server writes its state
file mid-call and is abandoned (kill -9); a second one, from the same file,
must carry the same call on under the same handle: no second LINE_NEWCALL,
no state invented by the resync, Unhold and Hangup driving the restored call.

The resync's channel list is hand-made (labelled: the lab did not ask
Asterisk for one): each channel alive at the cut, with its last real
snapshot from the capture, laid out as Asterisk 22's CoreShowChannel events.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.clients.harness import Conn

from .test_restart import Server, notes

NATIVE = Path(__file__).resolve().parents[1] / "data" / "ami-native"
START = 1_795_691_988.0
SNAPSHOT = ("Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum", "CallerIDName", "ConnectedLineNum",
            "ConnectedLineName", "Context", "Exten", "Priority", "Uniqueid", "Linkedid")


def config_for(tmp_path, state_file):
    from asttapi_server.config import load_config

    path = tmp_path / "asttapi.toml"
    path.write_text(
        '[ami]\nhost = "pbx.example"\nkeepalive = 3600.0\n'
        '[server]\nlisten = ["tcp:0:interface=127.0.0.1"]\n'
        '[lines.bob]\ndevice = "PJSIP/201"\ncontext = "plain-phones"\n'
        '[lines.bobbett]\ndevice = "PJSIP/202"\ncontext = "plain-phones"\n'
        '[lines.alice]\ndevice = "PJSIP/203"\ncontext = "plain-phones"\n'
        f"[calls]\nstate_file = {json.dumps(str(state_file))}\n"
    )
    return load_config(str(path))


def events(name: str) -> list[tuple[bytes, dict[str, str]]]:
    """The capture's event blocks as Asterisk sent them, each with its headers (first value wins)."""
    out = []
    for block in (NATIVE / name).read_bytes().split(b"\r\n\r\n"):
        if not block.startswith(b"Event: "):
            continue
        headers: dict[str, str] = {}
        for line in block.decode().split("\r\n"):
            key, _, value = line.partition(": ")
            headers.setdefault(key, value)
        out.append((block + b"\r\n\r\n", headers))
    return out


def index(evs, name: str, **match: str) -> int:
    return next(i for i, (_, h) in enumerate(evs) if h["Event"] == name
                and all(h.get(k) == v for k, v in match.items()))


def channel_list(aid: str, evs) -> bytes:
    """The CoreShowChannels answer for the channels alive after ``evs``: each one's last snapshot,
    its application (``AppDial`` for a channel a Dial rang, as Asterisk shows it, else its last Newexten's)
    and the bridge it is in."""
    alive: dict[str, dict[str, str]] = {}
    apps: dict[str, str] = {}
    bridges: dict[str, str] = {}
    for _, h in evs:
        if h["Event"] in ("BridgeEnter", "BridgeLeave") and h.get("Channel"):
            bridges[h["Channel"]] = h.get("BridgeUniqueid", "") if h["Event"] == "BridgeEnter" else ""
        if h["Event"] == "DialBegin" and h.get("DestChannel"):
            apps[h["DestChannel"]] = "AppDial"
        channel = h.get("Channel")
        if not channel or "Uniqueid" not in h:
            continue
        if h["Event"] == "Hangup":
            alive.pop(channel, None)
            continue
        if h["Event"] == "Newexten":
            apps.setdefault(channel, h.get("Application", ""))
        alive[channel] = {k: h.get(k, "") for k in SNAPSHOT}
    out = f"Response: Success\r\nActionID: {aid}\r\nEventList: start\r\nMessage: Channels will follow\r\n\r\n"
    for channel, snap in alive.items():
        out += f"Event: CoreShowChannel\r\nActionID: {aid}\r\n"
        out += "".join(f"{k}: {v}\r\n" for k, v in snap.items())
        out += f"Application: {apps.get(channel, '')}\r\nApplicationData: \r\nDuration: 00:00:05\r\n"
        out += f"BridgeId: {bridges.get(channel, '')}\r\n\r\n"
    out += f"Event: CoreShowChannelsComplete\r\nActionID: {aid}\r\nEventList: Complete\r\nListItems: {len(alive)}\r\n\r\n"
    return out.encode()


class DeviceServer(Server):
    def log_in(self) -> str:
        """Asterisk accepts the login; returns the ActionID of the resync's CoreShowChannels (not answered)."""
        self.session = self.pbx.accept()
        self.pbx.login_md5(self.session)
        (action,) = self.session.actions()
        assert action.name == "CoreShowChannels"
        return action.action_id

    def link_up_listing(self, evs) -> None:
        self.answer_list(self.log_in(), evs)

    def answer_list(self, aid: str, evs) -> None:
        self.session.send(channel_list(aid, evs))
        assert self.app.bridge.link_up

    def send(self, evs) -> None:
        self.session.send(b"".join(block for block, _ in evs))


S10 = events("s10_hold_unhold.raw")
HOLD = index(S10, "Hold")
UNHOLD = index(S10, "Unhold")
BOB_CHANNEL = "PJSIP/201-0000000f"


def on_hold_then_crashed(tmp_path):
    """The first run: s10 up to bob's Hold, the store written, then kill -9."""
    state_file = tmp_path / "state" / "calls.json"
    config = config_for(tmp_path, state_file)
    first = DeviceServer(config, START)
    first.link_up_listing([])
    crm = first.connect()
    opened = crm.result("lineOpen", line="bob")
    first.send(S10[:HOLD + 1])
    seen = notes(crm)
    handle = seen[0][1]
    assert [s[:3] for s in seen] == [
        ("LINE_NEWCALL", handle, None),
        ("LINE_CALLSTATE", handle, "LINECALLSTATE_OFFERING"),
        ("LINE_CALLINFO", handle, "LINECALLINFOSTATE_CONNECTEDID"),
        ("LINE_CALLSTATE", handle, "LINECALLSTATE_CONNECTED"),
        ("LINE_CALLSTATE", handle, "LINECALLSTATE_ONHOLD"),
    ]
    last_seq = crm.result("ping")["seq"]
    first.clock.advance(1.0)  # the batched write
    (stored,) = json.loads(state_file.read_text())["calls"]
    # what the device mapping needs to take the call up again is in the file
    assert (stored["handle"], stored["uniqueid"], stored["channel"], stored["states"]) == (
        handle, "1795691988.43", BOB_CHANNEL, {"bob": "LINECALLSTATE_ONHOLD"})
    return config, handle, opened["epoch"], last_seq


def told(conn: Conn) -> list[tuple]:
    """(call, state, mode, synthetic) of the call-state notifications not read yet; other notifications
    as (method, devstate)."""
    out = []
    for m in conn.read():
        p = m.get("params", {})
        if m.get("method") == "LINE_CALLSTATE":
            out.append((p["call"], p["state"], p.get("mode"), p.get("synthetic", False)))
        elif "method" in m:
            out.append((m["method"], p.get("devstate")))
    return out


def resumed_client(second: DeviceServer, handle: int, epoch: str, last_seq: int) -> Conn:
    crm = second.connect()
    resumed = crm.result("lineOpen", line="bob", seq=last_seq, epoch=epoch)
    assert resumed["replay"] == "gap"
    assert [(c["call"], c["state"]) for c in resumed["calls"]] == [(handle, "LINECALLSTATE_ONHOLD")]
    assert notes(crm, crm.seen) == [
        ("LINE_NEWCALL", handle, None, True, False),
        ("LINE_CALLSTATE", handle, "LINECALLSTATE_ONHOLD", True, False),
    ]
    return crm


def test_a_device_call_on_hold_carries_on_under_its_handle_after_a_restart(tmp_path):
    config, handle, epoch, last_seq = on_hold_then_crashed(tmp_path)
    second = DeviceServer(config, START + 1.3)
    crm = resumed_client(second, handle, epoch, last_seq)
    # The resync lists bob's channel (Up, on hold): the restored call is the device's call.
    # No second LINE_NEWCALL, no CONNECTED while the phone still holds.
    second.link_up_listing(S10[:HOLD + 1])
    assert notes(crm) == [("LINE_LINEDEVSTATE", None, "LINEDEVSTATE_INSERVICE", False, False)]
    # The rest of the real call drives the restored handle: resume, hang-up.
    second.send(S10[HOLD + 1:])
    assert told(crm) == [
        (handle, "LINECALLSTATE_CONNECTED", None, False),
        (handle, "LINECALLSTATE_DISCONNECTED", "LINEDISCONNECTMODE_NORMAL", False),
        (handle, "LINECALLSTATE_IDLE", None, False),
    ]
    assert second.app.model.get(handle).ended is not None
    assert crm.result("lineGetCalls", line="bob") == {"calls": []}
    stats = second.app.model.stats
    assert (stats["unknown_call"], stats["duplicate"], stats["impossible"]) == (0, 0, 0)
    second.clock.advance(120)
    assert second.app.model.tracked == 0


def test_events_between_the_login_and_the_channel_list_reach_the_restored_call(tmp_path):
    config, handle, epoch, last_seq = on_hold_then_crashed(tmp_path)
    second = DeviceServer(config, START + 1.3)
    crm = resumed_client(second, handle, epoch, last_seq)
    aid = second.log_in()
    second.send(S10[HOLD + 1:UNHOLD + 1])  # bob resumes before Asterisk's list is in
    assert notes(crm) == [("LINE_CALLSTATE", handle, "LINECALLSTATE_CONNECTED", False, False)]
    second.answer_list(aid, S10[:UNHOLD + 1])
    assert notes(crm) == [("LINE_LINEDEVSTATE", None, "LINEDEVSTATE_INSERVICE", False, False)]
    second.send(S10[UNHOLD + 1:])
    assert [n[2] for n in notes(crm)] == ["LINECALLSTATE_DISCONNECTED", "LINECALLSTATE_IDLE"]
    assert second.app.model.stats["duplicate"] == 0


def test_a_restored_device_call_whose_channel_is_gone_ends_once(tmp_path):
    config, handle, epoch, last_seq = on_hold_then_crashed(tmp_path)
    second = DeviceServer(config, START + 30.0)
    crm = resumed_client(second, handle, epoch, last_seq)
    finished: list = []
    second.app.plugins.call_finished = finished.append
    second.link_up_listing([])  # the call ended while the server was down
    # the device mapping's own end (not the safety net's); the cause was lost with the old process
    assert told(crm) == [
        (handle, "LINECALLSTATE_DISCONNECTED", "LINEDISCONNECTMODE_UNKNOWN", False),
        (handle, "LINECALLSTATE_IDLE", None, False),
        ("LINE_LINEDEVSTATE", "LINEDEVSTATE_INSERVICE"),
    ]
    assert [c.handle for c in finished] == [handle]
    # Asterisk's late word on it (the capture's end) adds nothing: ended once.
    second.send(S10[UNHOLD:])
    assert notes(crm) == [] and [c.handle for c in finished] == [handle]
    assert second.app.model.stats["unknown_call"] == 0


def test_plugins_get_the_bridge_and_its_clock_as_app(tmp_path):
    """hookspecs promise ``app`` is the bridge (app.clock): the device mapping's time (legs heard from
    since the login survive a resync) is the reactor's, not 0."""
    server = DeviceServer(config_for(tmp_path, tmp_path / "calls.json"), START)
    assert server.app.plugins.app is server.app.bridge.plugin_context
    server.link_up_listing([])
    server.clock.advance(2.0)
    server.send(S10[:HOLD + 1])
    (leg,) = server.app.model.legs.values()  # (the model keeps the legs; the mapping keeps nothing)
    assert leg.updated == START + 2.0


# -- issue 25 item 3: one owner of the call's state, no repair hook ------------------------------


def test_a_restored_device_call_continues_under_its_handle_with_no_repair_hook(tmp_path):
    """The call store keeps the device channel's facts with the call; the second server's model has
    them before the link is up, the mapping holds nothing of its own and no plugin is told of the
    restart (the hook asttapi_calls_restored is gone): the next events drive the restored handle."""
    from asttapi_server import hookspecs

    assert not hasattr(hookspecs, "asttapi_calls_restored")
    config, handle, epoch, last_seq = on_hold_then_crashed(tmp_path)
    (stored,) = json.loads(Path(config.calls.state_file).read_text())["calls"]
    leg = stored["leg"]
    assert (leg["uniqueid"], leg["channel"], leg["lines"]) == ("1795691988.43", BOB_CHANNEL, ["bob"])
    assert stored["flags"] == 1  # answered (core.outcome), counted when it finishes after the restart
    second = DeviceServer(config, START + 1.3)
    mapping = second.app.plugins.pm.get_plugin("channel_events").lines
    assert sorted(vars(mapping)) == ["_lines_of", "devices"]  # configuration only
    assert list(second.app.model.legs) == ["1795691988.43"]
    assert second.app.model.view().state("1795691988.43") == "LINECALLSTATE_ONHOLD"
    crm = resumed_client(second, handle, epoch, last_seq)
    second.link_up_listing(S10[:HOLD + 1])
    assert notes(crm) == [("LINE_LINEDEVSTATE", None, "LINEDEVSTATE_INSERVICE", False, False)]
    finished: list = []
    second.app.bridge.add_finished_observer(finished.append)
    second.send(S10[HOLD + 1:])
    assert told(crm) == [
        (handle, "LINECALLSTATE_CONNECTED", None, False),
        (handle, "LINECALLSTATE_DISCONNECTED", "LINEDISCONNECTMODE_NORMAL", False),
        (handle, "LINECALLSTATE_IDLE", None, False),
    ]
    assert [(c.handle, c.outcome) for c in finished] == [(handle, "answered")]
    assert second.app.model.legs == {}


def test_a_call_store_written_before_the_legs_were_kept_still_carries_the_call_on(tmp_path):
    """Old state files load: a device call without its leg gets one worked out from the call."""
    config, handle, epoch, last_seq = on_hold_then_crashed(tmp_path)
    path = Path(config.calls.state_file)
    data = json.loads(path.read_text())
    for call in data["calls"]:
        del call["leg"], call["flags"]
    path.write_text(json.dumps(data))
    second = DeviceServer(config, START + 1.3)
    assert list(second.app.model.legs) == ["1795691988.43"]
    crm = resumed_client(second, handle, epoch, last_seq)
    second.link_up_listing(S10[:HOLD + 1])
    assert notes(crm) == [("LINE_LINEDEVSTATE", None, "LINEDEVSTATE_INSERVICE", False, False)]
    second.send(S10[HOLD + 1:])
    assert told(crm) == [
        (handle, "LINECALLSTATE_CONNECTED", None, False),
        (handle, "LINECALLSTATE_DISCONNECTED", "LINEDISCONNECTMODE_NORMAL", False),
        (handle, "LINECALLSTATE_IDLE", None, False),
    ]
