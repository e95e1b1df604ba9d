"""Constants and the transition table."""

import pytest

from asttapi_server.core import constants as C
from asttapi_server.core.transitions import (DUPLICATE, EMIT, IMPOSSIBLE, NEW, TRANSITIONS, shown,
                                             to_dot, verdict)


def test_message_ids():
    assert (C.LINE_CALLINFO, C.LINE_CALLSTATE, C.LINE_LINEDEVSTATE, C.LINE_NEWCALL) == (1, 2, 8, 500)


@pytest.mark.parametrize("name,value", [
    ("LINECALLSTATE_IDLE", 0x1), ("LINECALLSTATE_CONNECTED", 0x100), ("LINECALLSTATE_DISCONNECTED", 0x4000),
    ("LINECALLSTATE_UNKNOWN", 0x8000), ("LINECALLINFOSTATE_CALLERID", 0x8000),
    ("LINECALLINFOSTATE_CALLEDID", 0x10000), ("LINECALLINFOSTATE_CONNECTEDID", 0x20000),
    ("LINEDEVSTATE_RINGING", 0x2), ("LINEDEVSTATE_INSERVICE", 0x40), ("LINEDEVSTATE_OUTOFSERVICE", 0x80),
    ("LINECALLORIGIN_INBOUND", 0x80), ("LINECALLORIGIN_CONFERENCE", 0x40),
    ("LINEDISCONNECTMODE_BUSY", 0x20), ("LINEDISCONNECTMODE_CANCELLED", 0x80000),
    ("LINEERR_INVALCALLHANDLE", 0x80000018), ("LINEERR_SERVICE_NOT_RUNNING", 0x80000061),
])
def test_real_values(name, value):
    assert C.value(name) == value


def test_bit_flags_are_single_distinct_bits():
    for table in (C.LINECALLSTATE, C.LINECALLINFOSTATE, C.LINEDEVSTATE, C.LINEDISCONNECTMODE):
        values = list(table.values())
        assert len(set(values)) == len(values)
        assert all(v & (v - 1) == 0 for v in values)


def test_table_covers_every_state():
    assert set(TRANSITIONS) == set(C.LINECALLSTATE) | {NEW}
    for targets in TRANSITIONS.values():
        assert targets <= set(C.LINECALLSTATE)


def test_rules():
    assert verdict(C.CONNECTED, C.CONNECTED) == DUPLICATE
    assert verdict(C.IDLE, C.IDLE) == DUPLICATE
    assert verdict(NEW, C.DIALTONE) == EMIT
    assert verdict(C.OFFERING, C.CONNECTED) == EMIT
    assert verdict(C.BUSY, C.IDLE) == EMIT
    for state in C.LINECALLSTATE:
        assert verdict(state, C.IDLE) in (EMIT, DUPLICATE)  # every call can end
        if state != C.IDLE:
            assert verdict(C.IDLE, state) == IMPOSSIBLE  # nothing comes back from IDLE
        if state not in (C.IDLE, C.DISCONNECTED):
            assert verdict(C.DISCONNECTED, state) == IMPOSSIBLE
            assert verdict(state, C.DISCONNECTED) == EMIT
    assert verdict(C.CONNECTED, C.OFFERING) == IMPOSSIBLE
    assert shown(NEW) == C.UNKNOWN and shown(C.BUSY) == C.BUSY
    assert "CONNECTED -> IDLE;" in to_dot()
