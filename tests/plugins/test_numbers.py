"""Numbers as people write them match the PBX's form; extensions match exactly."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from asttapi_server.numbers import DEFAULT_REGION, NumberIndex, check_region, number_forms, number_key

LONDON = "+442079460958"


@pytest.mark.parametrize("written", [
    "02079460958",
    "020 7946 0958",
    "+44 20 7946 0958",
    "+442079460958",
    "0044 20 7946 0958",
    "00442079460958",
    "(020) 7946-0958",
    "020-7946-0958",
    "020.7946.0958",
    "+44 (0)20 7946 0958",
    "442079460958",
    "tel:+44-20-7946-0958",
    " 020 7946 0958 ",
    "020\u00a07946\u00a00958",
])
def test_forms_of_one_london_number(written):
    assert number_key(written, "GB") == LONDON


@pytest.mark.parametrize("written, key", [
    ("020 7946 0958 x123", LONDON + ";ext=123"),
    ("020 7946 0958 ext. 123", LONDON + ";ext=123"),
    ("+44 20 7946 0958 ext 123", LONDON + ";ext=123"),
    ("201", "201"),
    ("2001", "2001"),
    ("sip:201@pbx.example", "201"),
    ("0301234567", "+44301234567"),
    ("030 1234567", "+44301234567"),
    ("+44 30 1234567", "+44301234567"),
    ("+49 30 1234567", "+49301234567"),
    ("07700 900123", "+447700900123"),
    ("anonymous", None),
    ("", None),
    (None, None),
    ("<unknown>", None),
])
def test_keys(written, key):
    assert number_key(written, "GB") == key


def test_region_reads_national_forms():
    assert number_key("030 1234567", "DE") == "+49301234567"
    assert number_key("0049 30 1234567", "DE") == "+49301234567"
    assert number_key("02079460958", "DE") != LONDON
    assert DEFAULT_REGION == "GB"


def test_unknown_region_is_an_error():
    with pytest.raises(ValueError, match="region 'XX'"):
        check_region("XX")
    assert check_region("de") == "DE"


def test_short_extension_never_matches_an_outside_number_ending_in_it():
    index = NumberIndex("GB")
    index.add("201", "reception")
    assert index.lookup("201") == "reception"
    assert index.lookup("02079460201") is None
    assert index.lookup("2010") is None


def test_index_prefers_the_number_without_extension_for_the_bare_number():
    index = NumberIndex("GB")
    index.add("020 7946 0958 x12", "Brian (x12)")
    assert index.lookup("02079460958") == "Brian (x12)"   # best we have
    index.add("+44 20 7946 0958", "Switchboard")
    assert index.lookup("02079460958") == "Switchboard"
    assert index.lookup("020 7946 0958 x12") == "Brian (x12)"
    assert index.lookup("020 7946 0958 x99") == "Switchboard"
    index.add("020 7946 0958", "Second switchboard entry")
    assert index.lookup("02079460958") == "Switchboard"  # first one wins


def test_index_ignores_non_numbers():
    index = NumberIndex("GB")
    assert index.add("n/a", "x") is None
    assert len(index) == 0
    assert index.lookup("n/a") is None


def test_number_forms_for_a_sql_query():
    assert number_forms("020 7946 0958", "GB") == {
        "key": LONDON, "e164": LONDON, "national": "02079460958",
        "digits": "02079460958", "raw": "020 7946 0958",
    }
    assert number_forms("201", "GB")["e164"] == "201"
    assert number_forms("withheld", "GB") is None


@given(st.text(max_size=40))
def test_any_text_gives_a_key_or_none(text):
    key = number_key(text, "GB")
    assert key is None or isinstance(key, str)


@given(st.from_regex(r"7946 0[0-9]{3}", fullmatch=True))
def test_international_and_national_forms_agree(tail):
    assert number_key("020 " + tail, "GB") == number_key("+44 20 " + tail, "GB") == number_key("0044 20 " + tail, "GB")


@pytest.mark.parametrize("number", ["h", "i", "t", "T", "s", "o", "a", "e", "fax", "talk", " h "])
def test_asterisk_special_extensions_are_not_dialable(number):
    """Issue 11 item 10: dialling ``h`` runs the hangup extension's code on purpose."""
    from asttapi_server.core.dialstring import dialable

    with pytest.raises(ValueError, match="special extension"):
        dialable(number)


@pytest.mark.parametrize("number", ["hh", "sales", "bob", "201", "b", "A", "D", "S", "H", "*97"])
def test_names_and_dtmf_that_are_not_special_stay_dialable(number):
    from asttapi_server.core.dialstring import dialable

    assert dialable(number) == number
