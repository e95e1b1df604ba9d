"""``asttapi_calls_finished`` counts what the core reports finished (issue 25 item 3), on real captures.

The metrics keep no picture of calls of their own any more: each call the
core puts in ``Effects.finished`` is counted once, by ``Call.outcome`` (the
flags the model keeps from every state its lines were in). On the whole
service graph (``make_service`` on a scripted Asterisk, the bundled
device-line mapping, metrics on), every real capture of
tests/data/ami-native is played; the counts by outcome must equal the calls
of ``Effects.finished`` (each exactly once), and each call's outcome what its
own TAPI events say (:mod:`asttapi_server.core.outcome` folded over them).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from asttapi_server.config import load_config
from asttapi_server.core.constants import CALLSTATE
from asttapi_server.core.outcome import OUTCOMES, flags_of, outcome
from asttapi_server.service import make_service
from tests.ami.fakes import FakeAsterisk
from tests.faults.system import coreshowchannels_answer

NATIVE = Path(__file__).resolve().parents[1] / "data" / "ami-native"
CAPTURES = sorted(p.name for p in NATIVE.glob("s*.raw") if "reconnect" not in p.name)
DEVICES = ('[lines.bob]\ndevice = "PJSIP/201"\ncontext = "plain-phones"\n'
           '[lines.bobbett]\ndevice = "PJSIP/202"\ncontext = "plain-phones"\n'
           '[lines.alice]\ndevice = "PJSIP/203"\ncontext = "plain-phones"\n')


def finished_counts(text: str) -> dict[str, float]:
    for family in text_string_to_metric_families(text):
        if family.name == "asttapi_calls_finished":
            return {s.labels["outcome"]: s.value for s in family.samples if s.name.endswith("_total")}
    raise AssertionError("no asttapi_calls_finished")


@pytest.mark.parametrize("capture", CAPTURES)
def test_finished_counts_are_the_cores_finished_calls(tmp_path, capture):
    path = tmp_path / "asttapi.toml"
    path.write_text('[ami]\nhost = "pbx.example"\nkeepalive = 3600.0\n'
                    '[server]\nlisten = ["tcp:0:interface=127.0.0.1"]\n' + DEVICES +
                    f'[calls]\nstate_file = {json.dumps(str(tmp_path / "calls.json"))}\n')
    pbx = FakeAsterisk()
    pbx.reactor.advance(1_795_691_900)
    app = make_service(load_config(str(path)), pbx.reactor)
    finished: list = []
    flags: Counter = Counter()
    carry = app.bridge.carry

    def spy(fx):  # what the core reported, as the bridge carries it out
        for event in fx:
            if event.msg == CALLSTATE:
                flags[event.call] |= flags_of(event.param, event.mode)
        finished.extend(fx.finished)
        carry(fx)

    app.bridge.carry = spy
    app.startService()
    try:
        session = pbx.accept()
        pbx.login_md5(session)
        (action,) = session.actions()
        session.send(coreshowchannels_answer(action.action_id, ()))
        for block in (NATIVE / capture).read_bytes().split(b"\r\n\r\n"):
            if block.startswith(b"Event: "):
                session.send(block + b"\r\n\r\n")
                pbx.reactor.advance(0.05)
        pbx.reactor.advance(60)
        counts = finished_counts(app.metrics.exposition().decode())
    finally:
        app.stopService()
    assert finished, "the capture has calls"
    handles = [call.handle for call in finished]
    assert len(handles) == len(set(handles))  # each call once
    assert all(call.ended is not None for call in finished)
    want = Counter(call.outcome for call in finished)
    assert counts == {name: float(want[name]) for name in OUTCOMES}
    # and Call.outcome is what the call's own events add up to
    assert [outcome(flags[call.handle]) for call in finished] == [call.outcome for call in finished]
