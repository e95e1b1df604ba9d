"""asttapi_server.carddav: the sync's XML, read the way servers write it (hand-written answers, edge cases)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from asttapi_server.carddav import (
    CardDavError,
    Member,
    addressbook_multiget,
    href_key,
    is_invalid_sync_token,
    parse_multistatus,
    propfind_members,
    sync_collection,
)

BOOK = "https://dav.example.com/dav/addressbooks/users/tapi/contacts/"

# As a sabre/dav server (Nextcloud) writes it: prefixed namespaces, a removed member, a property it lacks.
SYNC_ANSWER = b"""<?xml version="1.0"?>
<d:multistatus xmlns:d="DAV:" xmlns:card="urn:ietf:params:xml:ns:carddav">
 <d:response>
  <d:href>/dav/addressbooks/users/tapi/contacts/Jane%20Doe.vcf</d:href>
  <d:propstat><d:prop><d:getetag>&quot;abc&quot;</d:getetag></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>
  <d:propstat><d:prop><d:displayname/></d:prop><d:status>HTTP/1.1 404 Not Found</d:status></d:propstat>
 </d:response>
 <d:response>
  <d:href>/dav/addressbooks/users/tapi/contacts/gone.vcf</d:href>
  <d:status>HTTP/1.1 404 Not Found</d:status>
 </d:response>
 <d:sync-token>http://sabre.io/ns/sync/42</d:sync-token>
</d:multistatus>"""


def test_a_sync_answer():
    answer = parse_multistatus(SYNC_ANSWER)
    assert answer.sync_token == "http://sabre.io/ns/sync/42"
    assert answer.members == (
        Member("/dav/addressbooks/users/tapi/contacts/Jane%20Doe.vcf", 200, '"abc"'),
        Member("/dav/addressbooks/users/tapi/contacts/gone.vcf", 404),
    )


def test_a_multiget_answer_with_cards_and_a_propfind_listing_with_the_collection():
    multiget = parse_multistatus(
        b'<multistatus xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav"><response><href>a.vcf</href><propstat>'
        b'<prop><getetag>"1"</getetag><C:address-data>BEGIN:VCARD\r\nFN:A\r\nEND:VCARD\r\n</C:address-data></prop>'
        b"<status>HTTP/1.1 200 OK</status></propstat></response></multistatus>")
    assert multiget.members[0].address_data.startswith("BEGIN:VCARD") and multiget.sync_token is None
    listing = parse_multistatus(
        b'<multistatus xmlns="DAV:"><response><href>/c/</href><propstat><prop><getetag>"x"</getetag><resourcetype>'
        b"<collection/></resourcetype></prop><status>HTTP/1.1 200 OK</status></propstat></response></multistatus>")
    assert listing.members[0].collection is True


@pytest.mark.parametrize("body, message", [
    (b"<html>Login</html>", "expected a DAV multistatus answer"),
    (b"not xml at all", "the answer is not XML"),
    (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]><multistatus xmlns="DAV:">&lol;</multistatus>',
     "declares a DOCTYPE or entities"),
])
def test_answers_that_are_not_multistatus(body, message):
    with pytest.raises(CardDavError, match=message):
        parse_multistatus(body)


def test_the_invalid_sync_token_error():
    assert is_invalid_sync_token(b'<?xml version="1.0"?><d:error xmlns:d="DAV:"><d:valid-sync-token/></d:error>')
    assert not is_invalid_sync_token(b'<error xmlns="DAV:"><number-of-matches-within-limits/></error>')
    assert not is_invalid_sync_token(b"Forbidden")


def test_hrefs_are_compared_in_one_spelling():
    assert href_key("/dav/addressbooks/users/tapi/contacts/Jane%20Doe.vcf", BOOK) == \
        href_key("https://dav.example.com/dav/addressbooks/users/tapi/contacts/Jane Doe.vcf", BOOK) == \
        href_key("Jane%20Doe.vcf", BOOK) == "/dav/addressbooks/users/tapi/contacts/Jane Doe.vcf"


def test_request_bodies_are_well_formed_and_escape_what_they_quote():
    for body in (sync_collection(None), sync_collection("http://x/sync?a=1&b=<2>"), propfind_members(),
                 addressbook_multiget(["/c/a&b.vcf", "/c/<x>.vcf"])):
        ET.fromstring(body)
    root = ET.fromstring(sync_collection("http://x/sync?a=1&b=<2>"))
    assert root.findtext("{DAV:}sync-token") == "http://x/sync?a=1&b=<2>"
    assert [e.text for e in ET.fromstring(addressbook_multiget(["/c/a&b.vcf"])).iter("{DAV:}href")] == ["/c/a&b.vcf"]
