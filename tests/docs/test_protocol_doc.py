"""docs/protocol.md and README.md hold exactly what the server says (transcripts.py produces each block).

After a deliberate change of the protocol, regenerate the blocks with
``.venv/bin/python -m tests.docs.transcripts --write`` and read the diff.
"""

from __future__ import annotations

import json
import re

import pytest

from asttapi_server.core import constants as C

from .transcripts import DOC, DOCS, TRANSCRIPTS, blocks_in_doc, render

TEXT = DOC.read_text()
BLOCKS = {name: text for doc in DOCS for name, text in blocks_in_doc(doc.read_text()).items()}


def test_every_transcript_is_in_the_doc_and_nothing_else_is_marked():
    assert sorted(BLOCKS) == sorted(TRANSCRIPTS)


@pytest.mark.parametrize("name", sorted(TRANSCRIPTS))
def test_doc_block_is_what_the_server_does(name):
    assert BLOCKS[name] == render(name), (
        f"docs/protocol.md block {name!r} is out of date: run .venv/bin/python -m tests.docs.transcripts --write")


def _json_lines(text: str):
    for line in text.splitlines():
        line = line.removeprefix("> ")
        if line.startswith("{"):
            yield json.loads(line)


def test_every_json_line_outside_the_generated_blocks_parses_and_is_real_protocol():
    """Hand-written JSON left in the doc (if any) must at least be valid JSON-RPC 2.0."""
    rest = re.sub(r"<!-- transcript: .*?<!-- /transcript -->", "", TEXT, flags=re.S)
    for msg in _json_lines("\n".join(l for l in rest.splitlines() if l.startswith("{"))):
        assert msg.get("jsonrpc") == "2.0", msg


def test_tapi_names_in_the_doc_are_real_tapi_constants():
    """Every LINECALLSTATE_/LINEDEVSTATE_/... name the doc uses is one of TAPI's (tapi-reference.md)."""
    known = set()
    for table in (C.LINECALLSTATE, C.LINECALLINFOSTATE, C.LINEDEVSTATE, C.LINECALLORIGIN, C.CALLSTATE_MODES,
                  C.LINECALLPARTYID):
        known |= set(table)
    known |= {"LINECALLSTATE_HANGUP"}  # the manual's alias, documented as such
    words = set(re.findall(r"\bLINE(?:CALLSTATE|CALLINFOSTATE|DEVSTATE|CALLORIGIN|DISCONNECTMODE|CONNECTEDMODE|"
                           r"OFFERINGMODE|BUSYMODE|DIALTONEMODE|CALLPARTYID)_[A-Z]+\b",
                           TEXT + (DOC.parent / "device-lines.md").read_text()))
    assert words and words <= known, sorted(words - known)
    errors = set(re.findall(r"\bLINEERR_[A-Z_]+\b", TEXT))
    assert errors <= set(C.LINEERR), sorted(errors - set(C.LINEERR))


REFERENCE = DOC.parents[1] / "tests" / "data" / "reference" / "tapi-reference.md"  # copy of shared/reference

_SECTIONS = {  # section heading start -> prefix of the names in it
    "### 3.2": "LINECALLSTATE_", "### 3.3": "LINEDISCONNECTMODE_", "### 3.4": "LINECALLORIGIN_",
    "### 3.5": "LINECALLINFOSTATE_", "### 3.6": "LINEDEVSTATE_",
}


def _reference_values() -> dict[str, int]:
    """Name -> value of every constant tapi-reference.md gives (from Wine/mingw-w64 tapi.h)."""
    out: dict[str, int] = {}
    for section in re.split(r"(?m)^(?=### )", REFERENCE.read_text()):
        prefix = next((p for head, p in _SECTIONS.items() if section.startswith(head)), None)
        if prefix is not None:
            body = section.split("\n", 1)[1].split("LINECONNECTEDMODE_")[0]
            for name, value in re.findall(r"\b([A-Z][A-Z_]*)\**\s*\|?\s*(0x[0-9A-Fa-f]+)", body):
                out[prefix + name] = int(value, 16)
        for prefix in ("LINECONNECTEDMODE_", "LINEOFFERINGMODE_"):
            m = re.search(rf"{prefix}: ([^\n]*)", section)
            if m:
                for name, value in re.findall(r"([A-Z]+) (0x[0-9A-Fa-f]+)", m.group(1)):
                    out[prefix + name] = int(value, 16)
        for name, value in re.findall(r"\b(INVAL[A-Z]+|NOTOWNER|OPERATION[A-Z]+|RESOURCEUNAVAIL|DISCONNECTED|"
                                      r"SERVICE_NOT_RUNNING) (0x8[0-9A-Fa-f]+)", section):
            out["LINEERR_" + name] = int(value, 16)
    return out


def test_our_tapi_constants_have_the_reference_values():
    ref = _reference_values()
    assert len(ref) > 90 and ref["LINECALLINFOSTATE_CALLERID"] == 0x8000  # the parser found the tables
    ours = {}
    for table in (C.LINECALLSTATE, C.LINECALLINFOSTATE, C.LINEDEVSTATE, C.LINECALLORIGIN, C.CALLSTATE_MODES,
                  C.LINEERR):
        ours.update(table)
    checked = {name: (value, ref[name]) for name, value in ours.items() if name in ref}
    assert len(checked) > 80
    wrong = {name: pair for name, pair in checked.items() if pair[0] != pair[1]}
    assert wrong == {}
    # Every constant the doc names is in the reference (or is an error code the reference only samples).
    words = set(re.findall(r"\bLINE(?:CALLSTATE|CALLINFOSTATE|DEVSTATE|CALLORIGIN|DISCONNECTMODE|CONNECTEDMODE|"
                           r"OFFERINGMODE)_[A-Z]+\b", TEXT))
    assert words - {"LINECALLSTATE_HANGUP"} <= set(ref), sorted(words - set(ref))
