"""tel:, callto: and written numbers to what a line dials (core/dialling.py), pure.

The RFC 3966 cases are its section 6 examples and the rules of its
sections 3, 5.1.1 (visual separators), 5.1.4/5.1.5 (global and local
numbers, phone-context) and 5.3 (ext).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asttapi_server.ami import actions
from asttapi_server.ami.message import Message
from asttapi_server.config import LineConfig
from asttapi_server.core.control import CallControl
from asttapi_server.core.dialling import DialRule, Dialled, PhoneNumber, parse_phone, to_dial
from asttapi_server.core.model import CallModel
from asttapi_server.errors import TelephonyError

# A PBX in Berlin (+49 30) whose own numbers are +49 30 9876 5x, outside line "0".
BERLIN = DialRule(country_code="49", national_prefix="0", international_prefix="00", outside="0",
                  area_code="30", own_numbers=("+493098765",), domains=("pbx.example.com",))
# One in White Plains, NY (+1 914 555), outside line "9".
NEW_YORK = DialRule(country_code="1", national_prefix="1", international_prefix="011", outside="9",
                    area_code="914555")


def dial(text: str, rule: DialRule | None) -> str:
    dialled = to_dial(parse_phone(text), rule)
    assert dialled.ext is None
    return dialled.number


# -- RFC 3966 section 6, the three examples --------------------------------------------


def test_rfc3966_global_number_example():
    number = parse_phone("tel:+1-201-555-0123")
    assert number == PhoneNumber("+12015550123", uri=True) and number.is_global
    assert dial("tel:+1-201-555-0123", NEW_YORK) == "9" + "1" + "2015550123"  # long distance in the US
    assert dial("tel:+1-201-555-0123", BERLIN) == "0" + "00" + "12015550123"  # international from Berlin
    assert dial("tel:+1-201-555-0123", None) == "+12015550123"  # no rule: as before, with its +


def test_rfc3966_local_number_in_a_domain_example():
    number = parse_phone("tel:7042;phone-context=example.com")
    assert number == PhoneNumber("7042", None, "example.com", uri=True) and not number.is_global
    # This PBX is not example.com: 7042 here would ring someone else.
    with pytest.raises(ValueError, match="local number of example.com, not of this PBX"):
        to_dial(number, BERLIN)
    with pytest.raises(ValueError, match="set a \\[dial\\] rule"):
        to_dial(number, None)
    ours = DialRule(country_code="49", domains=("example.com",))
    assert to_dial(number, ours) == Dialled("7042")


def test_rfc3966_local_number_with_a_global_prefix_context_example():
    number = parse_phone("tel:863-1234;phone-context=+1-914-555")
    assert number == PhoneNumber("8631234", None, "+1914555", uri=True)
    # A line in +1 914 555 dials it as a local number (outside line first) ...
    assert to_dial(number, NEW_YORK) == Dialled("9" + "8631234")
    # ... a line elsewhere cannot: the number is only valid there.
    with pytest.raises(ValueError, match=r"local number of the area \+1914555.*dials from \+4930"):
        to_dial(number, BERLIN)


# -- syntax: separators, parameters, case, encodings -------------------------------------


@pytest.mark.parametrize("text", [
    "tel:+49-30-1234567", "tel:+49.30.123.45.67", "tel:+49(30)1234567", "tel:+49%2030%201234567",
    "TEL:+49-30-1234567", "tel:+49 30 1234567", "  tel:+49-30-1234567\n",
    "callto:+49301234567", "callto://+49301234567", "callto://+49301234567/", "CallTo:+49 30 1234567",
    "+49 30 1234567", "+49 (0)30 1234567", "+49-30-123 45 67",
])
def test_one_number_however_it_is_written(text):
    assert parse_phone(text).digits == "+49301234567"
    assert dial(text, BERLIN) == "00301234567"  # outside line 0, national form 030...


def test_ext_and_isub_and_unknown_parameters_in_any_order_and_case():
    number = parse_phone("tel:+1-201-555-0123;ext=1234")
    assert (number.digits, number.ext) == ("+12015550123", "1234")
    assert parse_phone("tel:+1-201-555-0123;EXT=12-34").ext == "1234"  # visual separators in ext too
    odd = parse_phone("tel:7042;foo=bar;Phone-Context=Example.COM.;isub=1234;ext=5;npdi")
    assert odd == PhoneNumber("7042", "5", "example.com", uri=True)
    assert str(odd) == "tel:7042;ext=5;phone-context=example.com"  # RFC 3966 order
    assert parse_phone(str(odd)) == odd


@pytest.mark.parametrize("text, why", [
    ("tel:", "no number"),
    ("tel:---", "no number"),
    ("tel:+", "'\\+' and digits"),
    ("tel:+49-30-ABC", "'\\+' and digits"),
    ("tel:+49301234567;phone-context=+49", "global number takes no"),
    ("tel:12G4;phone-context=example.com", "digits, A-F"),
    ("tel:+49301234567;ext=12a", "ext= must be digits"),
    ("tel:+49301234567;ext", "ext= must be digits"),
    ("tel:7042;phone-context=exa_mple.com", "domain name or"),
    ("tel:7042;phone-context=+49-x", "domain name or"),
    ("tel:+49301234567;=x", "malformed parameter"),
    ("callto:", "empty"),
    ("tel:" + "1" * 300, "longer than 256"),
])
def test_malformed_uris_say_what_is_wrong(text, why):
    with pytest.raises(ValueError, match=why):
        parse_phone(text)


# -- the dial rule --------------------------------------------------------------------


def test_same_country_national_form_other_country_international_prefix():
    assert dial("+44 20 7946 0958", BERLIN) == "0" + "00" + "442079460958"
    gb = DialRule(country_code="44", national_prefix="0", international_prefix="00", outside="9")
    assert dial("tel:+44-20-7946-0958", gb) == "9" + "0" + "2079460958"
    # Italy keeps the leading 0 of its numbers and has no trunk prefix.
    it = DialRule(country_code="39", national_prefix="", international_prefix="00", outside="0")
    assert dial("tel:+39-06-1234-5678", it) == "0" + "0612345678"


def test_the_pbxs_own_numbers_are_dialled_internally():
    assert dial("tel:+49-30-9876-56", BERLIN) == "6"  # +49 30 9876 5 | 6: extension 6
    assert dial("+49 30 9876 599", BERLIN) == "99"
    # The switchboard number with ;ext= dials the extension.
    assert to_dial(parse_phone("tel:+49-30-9876-5;ext=201"), BERLIN) == Dialled("201")
    # The switchboard number alone is dialled like any number.
    assert dial("tel:+49-30-9876-5", BERLIN) == "0" + "03098765"
    # A local number in the PBX's own prefix is an extension too.
    assert dial("tel:56;phone-context=+49-30-9876-5", BERLIN) == "56"


def test_an_extension_of_another_pbx_is_handed_on_for_after_the_answer():
    assert to_dial(parse_phone("tel:+44-20-7946-0958;ext=12"), BERLIN) == Dialled("000442079460958", "12")


def test_a_national_number_with_the_country_as_context_is_dialled_from_within_the_country():
    assert to_dial(parse_phone("tel:030-1234567;phone-context=+49"), BERLIN) == Dialled("0" + "0301234567")
    assert to_dial(parse_phone("tel:1234567;phone-context=+49-30"), BERLIN) == Dialled("0" + "1234567")
    with pytest.raises(ValueError, match="area \\+4940"):
        to_dial(parse_phone("tel:1234567;phone-context=+49-40"), BERLIN)  # Hamburg's local number


@pytest.mark.parametrize("text", ["0301234567", "201", "00301234567", "tel:0301234567", "callto:201", "*8", "bob"])
def test_numbers_not_in_international_form_are_dialled_as_written(text):
    # Nobody can tell an extension from a number that already has the outside-line prefix.
    assert dial(text, BERLIN) == text.split(":")[-1]


@given(st.from_regex(r"[1-9][0-9]{4,13}", fullmatch=True),
       st.lists(st.sampled_from(["-", ".", "(", ")"]), max_size=3))
def test_any_global_number_of_the_pbxs_country_gets_outside_line_and_national_prefix(digits, seps):
    written = "tel:+49" + "".join(seps) + digits
    number = "+49" + digits
    dialled = dial(written, DialRule(country_code="49", national_prefix="0", outside="9"))
    assert dialled == "9" + "0" + digits
    assert parse_phone(str(parse_phone(written))) == parse_phone(written) == PhoneNumber(number, uri=True)


# -- the core dials what the rule says ------------------------------------------------------


def control(rule: DialRule | None) -> CallControl:
    lines = {"line_1": LineConfig(name="line_1", channel="PJSIP/bob", context="out", dial=rule)}
    c = CallControl(CallModel(boot_id="b00t"), lines)
    fx = c.link_established(0.0)
    c.answered(fx.actions[0].token, [Message.from_items([("Response", "Success")])], None, 0.0)
    return c


def test_make_call_dials_the_converted_number_and_hands_the_extension_to_the_dialplan():
    c = control(BERLIN)
    _token, fx = c.make_call("line_1", "tel:+44-20-7946-0958;ext=12", owner=1, now=1.0)
    (send,) = fx.actions
    call = c.model.get(1)
    assert send.action == actions.originate(
        "PJSIP/bob", context="out", exten="000442079460958", priority=1, callerid=None, timeout_ms=30000,
        async_=True, channel_id=call.channel_id, other_channel_id=call.channel_id + "-2",
        variables=(("TAPI_LINE", "line_1"), ("TAPI_CALL", "1"), ("TAPI_EXTENSION", "12")),
    )
    assert call.callinfo["calledid"] == "000442079460958"


def test_make_call_refuses_a_local_number_of_elsewhere_before_sending_anything():
    c = control(BERLIN)
    with pytest.raises(TelephonyError) as caught:
        c.make_call("line_1", "tel:7042;phone-context=example.com", owner=1, now=1.0)
    assert caught.value.lineerr == "LINEERR_INVALADDRESS" and "not of this PBX" in str(caught.value)
    assert c.model.tracked == 0


def test_without_a_rule_make_call_dials_as_before():
    c = control(None)
    _token, fx = c.make_call("line_1", "+49 30 1234567", owner=1, now=1.0)
    assert dict(fx.actions[0].action.headers)["Exten"] == "+49301234567"
