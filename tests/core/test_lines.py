"""core/lines.py: which PBX owns which line (pinned, else the first PBX naming it)."""

from __future__ import annotations

from asttapi_server.core.grammar import TapiSignal, parse_tapievent
from asttapi_server.core.lines import LineOwners


def signal(text: str) -> TapiSignal:
    return TapiSignal(parse_tapievent(text), "1.1", "PJSIP/x-1")


def test_one_pbx_owns_every_line_and_is_never_asked():
    owners = LineOwners(["default"])
    assert owners.single and owners.owner("anything") == "default" and owners.follows("x", "default")


def test_pinned_lines_and_first_namer_wins():
    owners = LineOwners(["hq", "branch"], {"desk": "hq"})
    assert owners.owner("desk") == "hq" and owners.owner("free") is None
    kept, refused = owners.admit("branch", signal("LINE_NEWCALL free"))
    assert kept is not None and refused is None and owners.owner("free") == "branch"
    kept, refused = owners.admit("hq", signal("LINE_NEWCALL free"))
    assert kept is None and refused.fields["lines"] == "free" and refused.fields["owners"] == "branch"
    # A signal naming lines of both: only its own stay.
    kept, refused = owners.admit("hq", signal("LINE_NEWCALL desk free"))
    assert kept.command.args == ("desk",) and refused.fields["lines"] == "free"
    assert kept.command.raw == "LINE_NEWCALL desk"  # what the log lines quote is what is applied
    kept, refused = owners.admit("branch", signal("[~1.1&desk] LINE_CALLSTATE LINECALLSTATE_CONNECTED"))
    assert kept is None and refused is not None
    # About its call's lines only: passes.
    assert owners.admit("hq", signal("[~1.1] LINE_CALLSTATE LINECALLSTATE_IDLE")) == (
        signal("[~1.1] LINE_CALLSTATE LINECALLSTATE_IDLE"), None)
    assert sorted(owners.lines_of("hq")) == ["desk"] and owners.lines_of("branch") == ["free"]


def test_a_reload_forgets_claims_of_a_pbx_that_left_and_those_a_pin_contradicts():
    owners = LineOwners(["hq", "branch"])
    owners.admit("branch", signal("LINE_NEWCALL a b"))
    owners.reconfigure(["hq", "branch"], {"a": "hq"})
    assert owners.owner("a") == "hq" and owners.owner("b") == "branch"
    owners.reconfigure(["hq", "third"], {"a": "hq"})
    assert owners.owner("b") is None and not owners.single
    assert owners.follows("b", "third") and not owners.follows("a", "third")
