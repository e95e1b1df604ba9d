"""The one vCard reader (asttapi_server.vcard): what a screen pop takes from a card, and bad cards."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asttapi_server.directory import Contact
from asttapi_server.vcard import VCardError, read_vcard, read_vcards

PHOTO = "PHOTO;ENCODING=b;TYPE=JPEG:" + "QUJD" * 40


def card(*lines: str, version: str = "3.0") -> str:
    return "\r\n".join(("BEGIN:VCARD", f"VERSION:{version}", *lines, "END:VCARD")) + "\r\n"


def test_name_company_email_and_every_number():
    text = card("FN:Jane Doe", "N:Doe;Jane;;;", "ORG:Northwind\\, Ltd.;Sales", "EMAIL;TYPE=WORK:jane@nw.example",
                "EMAIL:other@nw.example", "item1.TEL;TYPE=WORK:+44 20 7946 0958", "TEL;TYPE=CELL:07700 900123",
                "TEL;TYPE=FAX:+44 20 7946 0958", PHOTO)
    assert read_vcard(text) == Contact("Jane Doe", "Northwind, Ltd.", ("+44 20 7946 0958", "07700 900123"),
                                       "jane@nw.example")


def test_n_when_there_is_no_fn_and_tel_uris_of_version_4():
    text = card("N:Patel;Priya;;Dr.;", 'TEL;VALUE=uri;TYPE="voice,work":tel:+44-20-7946-0777;ext=12',
                "TEL;VALUE=uri:TEL:+44-20-7946-0778", version="4.0")
    assert read_vcard(text) == Contact("Priya Patel", None, ("+44-20-7946-0777;ext=12", "+44-20-7946-0778"))


def test_a_card_without_a_name_keeps_its_numbers():
    assert read_vcard(card("TEL:201")) == Contact(None, None, ("201",))


def test_quoted_printable_2_1_with_soft_line_breaks():
    text = ("BEGIN:VCARD\nVERSION:2.1\nN;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:M=C3=BCller;J=C3=BCrgen\n"
            "ORG;ENCODING=QUOTED-PRINTABLE:Fabrikam =\nGmbH\nTEL;WORK;VOICE:+49 30 9876543\nEND:VCARD\n")
    assert read_vcard(text) == Contact("Jürgen Müller", "Fabrikam GmbH", ("+49 30 9876543",))


def test_an_unreadable_card_costs_only_itself():
    broken = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Broken\r\nthis line has no colon\r\nEND:VCARD\r\n"
    contacts, problems = read_vcards(card("FN:One", "TEL:111111111") + broken + card("FN:Two", "TEL:222222222"))
    assert [c.name for c in contacts] == ["One", "Two"]
    assert len(problems) == 1 and problems[0].startswith("card 2: ")
    with pytest.raises(VCardError):
        read_vcard(broken)
    with pytest.raises(VCardError, match="not a vCard"):
        read_vcard("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n")


def test_text_around_and_between_cards_is_ignored():
    lower_case = "begin:vcard\nversion:3.0\nfn:B\nend:vcard\n"
    contacts, problems = read_vcards("junk\n" + card("FN:A", "TEL:1") + "\nmore junk\n" + lower_case)
    assert [c.name for c in contacts] == ["A", "B"] and problems == []


@given(st.text(alphabet=st.sampled_from(list("BEGIN:VCARDEND\r\n ;=,\\:TELFNORGé\x00")), max_size=300))
def test_any_text_reads_without_raising(text):
    contacts, problems = read_vcards(text)
    assert all(isinstance(c, Contact) for c in contacts) and all(isinstance(p, str) for p in problems)
