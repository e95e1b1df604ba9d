"""A withheld caller's number and name reach no client, contact lookup, plugin hook, state file, metric or
log line (issue 21 item 2), on the real service graph.

``make_service`` builds the whole server (AMI link, bridge, plugin host with
the bundled mappings, call model, call store, hub, client factory, metrics)
on a scripted Asterisk (tests.ami.fakes) that answers the presentation
reads (``Getvar``) as Asterisk 22 does for a caller who withholds the
number (``prohib_passed_screen``: CLIR, a SIP ``Privacy: id``). The AMI
events themselves still carry the number, exactly as Asterisk sends them
(its snapshots show the number whatever the presentation). A plugin records
every hook's arguments, the log observer every event; then every output is
searched for the digits and the name.

Calls: real captures of tests/data/ami-native (device lines: answered, held,
attended transfer to a colleague, a group pickup), the FreePBX-style queue
with Local members (hand-made h03), and the TAPI lab's capture 05 (a
dialplan line).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from twisted.logger import capturedLogs

from asttapi_server.config import load_config
from asttapi_server.hookspecs import hookimpl
from asttapi_server.service import make_service
from tests.ami.fakes import FakeAsterisk
from tests.clients.harness import Conn

from .system import coreshowchannels_answer

DATA = Path(__file__).resolve().parents[1] / "data"
SECRETS = ("0301234567", "301234567", "Ext Caller", "0309876543", "Queue Caller")
DEVICES = ('[lines.bob]\ndevice = "PJSIP/201"\ncontext = "plain-phones"\n'
           '[lines.bobbett]\ndevice = "PJSIP/202"\ncontext = "plain-phones"\n'
           '[lines.alice]\ndevice = "PJSIP/203"\ncontext = "plain-phones"\n')
DIALPLAN = '[lines.line_1]\nchannel = "Local/bob@phones"\ncontext = "trunklocal"\n'


class Recorder:
    """A plugin that looks contacts up and records what every hook was given."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def asttapi_lookup_contact(self, number, callinfo, app):
        self.seen.append(repr((number, dict(callinfo))))
        return None

    @hookimpl
    def asttapi_client_event(self, event, app):
        self.seen.append(repr(event))
        return None

    @hookimpl
    def asttapi_call_finished(self, call, app):
        self.seen.append(repr((call, dict(call.callinfo))))


def run(tmp_path, lines: str, capture: Path, open_lines: tuple[str, ...]):
    state_file = tmp_path / "calls.json"
    path = tmp_path / "asttapi.toml"
    path.write_text('[ami]\nhost = "pbx.example"\nkeepalive = 3600.0\n'
                    '[server]\nlisten = ["tcp:0:interface=127.0.0.1"]\n' + lines +
                    f"[calls]\nstate_file = {json.dumps(str(state_file))}\n")
    config = load_config(str(path))
    pbx = FakeAsterisk()
    pbx.reactor.advance(1_795_691_900)
    app = make_service(config, pbx.reactor)
    recorder = Recorder()
    host = app.bridge.plugins
    host.register(recorder, "recorder")
    app.bridge.use_plugins(host)  # the core learns a plugin now looks contacts up
    stored: list[bytes] = []
    with capturedLogs() as logged:
        app.startService()
        session = pbx.accept()
        pbx.login_md5(session)
        (action,) = session.actions()
        session.send(coreshowchannels_answer(action.action_id, ()))
        session.presentation = _Withheld()
        crm = Conn(app.client_factory, 50001)
        for line in open_lines:
            crm.result("lineOpen", line=line)
        client = crm.transport.value()
        for block in capture.read_bytes().split(b"\r\n\r\n"):
            if block.startswith(b"Event: "):
                session.send(block + b"\r\n\r\n")
                pbx.reactor.advance(0.05)
                client += crm.transport.value()
                crm.transport.clear()
                if state_file.exists():
                    stored.append(state_file.read_bytes())
        pbx.reactor.advance(60)
        client += crm.transport.value()
        metrics = app.metrics.exposition()
        app.stopService()
    logs = [repr(event) for event in logged]
    return {"client": client.decode(), "hooks": "\n".join(recorder.seen), "store": b"\n".join(stored).decode(),
            "metrics": metrics.decode(), "logs": "\n".join(logs)}, session, client


class _Withheld(dict):
    """Every channel's presentation, as Getvar answers for a caller who withholds the number."""

    def get(self, key, default=None):
        return "prohib_passed_screen"


CASES = {
    "device line, answered, held": (DEVICES, DATA / "ami-native" / "s10_hold_unhold.raw", ("bob",)),
    "device lines, attended transfer": (DEVICES, DATA / "ami-native" / "s09_attended_transfer_phone.raw",
                                        ("bob", "alice")),
    "device lines, group pickup": (DEVICES, DATA / "ami-native" / "s16_group_pickup.raw", ("bob", "bobbett")),
    "device lines, queue of Local members": (
        DEVICES, DATA / "ami-native-handmade" / "h03_queue_local_members_ringall.raw", ("bob", "bobbett")),
    "dialplan line": (DIALPLAN, DATA / "ami" / "05_inbound_call.monitor.raw", ("line_1",)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_withheld_number_and_name_are_nowhere(tmp_path, case):
    lines, capture, open_lines = CASES[case]
    outputs, session, client = run(tmp_path, lines, capture, open_lines)
    for where, text in outputs.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} in the {where}"
    assert session.getvars, "the presentation was read"
    # ... and the calls were there, saying why they show no caller
    events = [json.loads(line) for line in client.splitlines()]
    calls = [e["params"] for e in events if e.get("method") == "LINE_NEWCALL"]
    assert calls
    for params in calls:
        if params["callinfo"]["origin"] != "LINECALLORIGIN_OUTBOUND":  # the phone's own calls name the user
            assert params["callinfo"]["callerid"] is None
            assert params["callinfo"]["calleridflags"] == ["LINECALLPARTYID_BLOCKED"]
    if lines is DEVICES:  # a device line's far party is the caller, withheld too
        assert b'"connectedidflags":["LINECALLPARTYID_BLOCKED"]' in client
