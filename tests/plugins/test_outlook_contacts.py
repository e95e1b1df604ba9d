"""Outlook CSV exports and vCards: parsing, matching and reloading."""

from __future__ import annotations

import os

import pytest

from .bundled import bundled

outlook = bundled("outlook_contacts")

HEADER = ('"First Name","Middle Name","Last Name","Company","Business Phone","Business Phone 2","Home Phone",'
          '"Mobile Phone","Other Phone","Assistant\'s Phone","Company Main Phone","Business Fax","E-mail Address"')


def test_demo_files_have_the_demo_callers_written_differently():
    plugin = outlook.configure({"demo": True}, None)
    assert plugin.find("02079460958")["name"] == "Jane Doe"       # CSV: +44 20 7946 0958
    assert plugin.find("+442079460959")["name"] == "Sam Smith"    # vCard: 020 7946 0959


def test_outlook_csv_columns():
    data = (HEADER + '\r\n"Jane","Q","Doe","Northwind","+44 20 7946 0958","020 7946 0001","020 7946 0002",'
            '"07700 900123","(020) 7946-0003","020 7946 0004","020 7946 0005","020 7946 0006","jane@x"\r\n').encode()
    (contact,) = outlook.read_csv(data)
    assert contact["name"] == "Jane Q Doe" and contact["company"] == "Northwind" and contact["email"] == "jane@x"
    assert contact["numbers"] == ["+44 20 7946 0958", "020 7946 0001", "020 7946 0002", "07700 900123",
                                  "(020) 7946-0003", "020 7946 0004", "020 7946 0005"]  # no fax


def test_bom_semicolons_and_cp1252():
    data = ("\ufeff" + HEADER.replace(",", ";") + '\r\n"Jürgen";"";"Müller";"Fabrikam";"+49 30 9876543"'
            + ";" * 8 + "\r\n").encode("utf-8")
    (contact,) = outlook.read_csv(data)
    assert contact["name"] == "Jürgen Müller" and contact["numbers"] == ["+49 30 9876543"]
    ansi = (HEADER + '\r\n"Jürgen","","Müller","Café","020 7946 0958"\r\n').encode("cp1252")
    (contact,) = outlook.read_csv(ansi)
    assert contact["name"] == "Jürgen Müller" and contact["company"] == "Café"


def test_csv_without_name_columns_uses_the_display_name():
    data = b'"Name","Mobile Phone"\n"Just A Name","07700 900999"\n'
    assert list(outlook.read_csv(data))[0]["name"] == "Just A Name"


VCARDS = (
    "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Sam Smith\r\nN:Smith;Sam;;;\r\nORG:Litware\\, Inc.;Support\r\n"
    "item1.TEL;TYPE=WORK,VOICE:020 7946 0959\r\nTEL;TYPE=CELL:07700 90\r\n 0959\r\nEND:VCARD\r\n"
    "BEGIN:VCARD\nVERSION:2.1\nN;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:M=C3=BCller;J=C3=BCrgen\n"
    "ORG;ENCODING=QUOTED-PRINTABLE:Fabrikam =\nGmbH\nTEL;WORK;VOICE:+49 30 9876543\nEND:VCARD\n"
    "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Priya Patel\r\nTEL;VALUE=uri;TYPE=\"voice,work\":tel:+44-20-7946-0777\r\n"
    "END:VCARD\r\n"
)


def test_vcard_versions():
    cards = list(outlook.read_vcf(VCARDS.encode()))
    assert cards[0] == {"name": "Sam Smith", "company": "Litware, Inc.", "email": None,
                        "numbers": ["020 7946 0959", "07700 900959"]}
    assert cards[1]["name"] == "Jürgen Müller" and cards[1]["company"] == "Fabrikam GmbH"
    assert cards[1]["numbers"] == ["+49 30 9876543"]
    assert cards[2]["numbers"] == ["+44-20-7946-0777"]


def test_lookup_across_csv_and_vcf(tmp_path):
    csv_file = tmp_path / "c.csv"
    csv_file.write_text(HEADER + '\n"Jane","","Doe","Northwind","+44 20 7946 0958"\n', encoding="utf-8")
    vcf_file = tmp_path / "c.vcf"
    vcf_file.write_text(VCARDS, encoding="utf-8", newline="")
    plugin = outlook.configure({"csv": str(csv_file), "vcf": [str(vcf_file)]}, None)
    assert plugin.find("02079460958") == {"name": "Jane Doe", "company": "Northwind", "source": "outlook",
                                          "number": "+44 20 7946 0958"}
    assert plugin.find("0049 30 9876543")["name"] == "Jürgen Müller"
    assert plugin.find("02079460000") is None


def test_reload_when_the_file_changes(tmp_path, logged):
    csv_file = tmp_path / "c.csv"
    csv_file.write_text(HEADER + '\n"Jane","","Doe","Northwind","+44 20 7946 0958"\n', encoding="utf-8")
    plugin = outlook.configure({"csv": str(csv_file)}, None)
    assert plugin.find("02079460111") is None
    csv_file.write_text(HEADER + '\n"Jane","","Doe","Northwind","+44 20 7946 0958"\n'
                        '"New","","Person","X","020 7946 0111"\n', encoding="utf-8")
    stat = csv_file.stat()
    os.utime(csv_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert plugin.find("02079460111")["name"] == "New Person"
    os.remove(csv_file)  # deleted while running: the old contacts stay
    assert plugin.find("02079460111")["name"] == "New Person"
    assert any("could not re-read" in e["log_format"] for e in logged)


@pytest.mark.parametrize("settings, message", [
    ({"csv": "/nonexistent.csv"}, "setting 'csv': file '/nonexistent.csv' does not exist"),
    ({"vcf": 5}, "setting 'vcf': expected a path"),
    ({"region": "Narnia"}, "unknown phone number region"),
])
def test_bad_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        outlook.configure(settings, None)
