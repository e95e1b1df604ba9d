"""The CRM plugin against SQLite databases."""

from __future__ import annotations

import os
import sqlite3

import pytest

from .bundled import bundled

crm_sql = bundled("crm_sql")


def make_db(path, rows):
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE contacts (id INTEGER PRIMARY KEY, first_name TEXT, last_name TEXT, "
               "company TEXT, phone TEXT, mobile TEXT, phone_e164 TEXT)")
    db.executemany("INSERT INTO contacts VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    db.commit()
    db.close()
    return str(path)


ROWS = [
    (1, "Jane", "Doe", "Northwind", "+44 (0)20 7946 0958", None, "+442079460958"),
    (2, "Tom", "Tanner", "Woodgrove", "020-7946-0444 ext. 7", "07700 900444", "+442079460444"),
    (3, "Rita", "Reception", "Us", "201", None, "201"),
]


def test_demo_crm_has_the_demo_caller():
    plugin = crm_sql.configure({"demo": True}, None)
    contact = plugin.find("0301234567")
    assert contact == {"name": "Ext Caller", "company": "Contoso Ltd", "source": "crm", "number": "030 1234567",
                       "id": 1001, "link": "https://crm.example/contacts/1001"}


@pytest.mark.parametrize("number, name", [
    ("02079460958", "Jane Doe"),
    ("+442079460958", "Jane Doe"),
    ("0044 20 7946 0958", "Jane Doe"),
    ("02079460444", "Tom Tanner"),
    ("07700900444", "Tom Tanner"),
    ("201", "Rita Reception"),
    ("02079460201", None),
    ("02079460999", None),
    ("", None),
])
def test_index_lookup(tmp_path, number, name):
    plugin = crm_sql.configure({"database": make_db(tmp_path / "crm.sqlite", ROWS),
                                "link": "https://crm.example/c/{id}"}, None)
    contact = plugin.find(number)
    assert (contact or {}).get("name") == name
    if contact:
        assert contact["source"] == "crm" and contact["link"].startswith("https://crm.example/c/")


def test_custom_query_with_name_and_link_columns(tmp_path):
    db = make_db(tmp_path / "crm.sqlite", ROWS)
    plugin = crm_sql.configure({"database": db, "query": "SELECT last_name || ', ' || first_name AS name, "
                                "'crm://' || id AS link, mobile AS mobile_phone FROM contacts"}, None)
    assert plugin.find("07700 900444") == {"name": "Tanner, Tom", "company": None, "source": "crm",
                                           "number": "07700 900444", "link": "crm://2"}
    assert plugin.find("02079460958") is None  # only mobile numbers were selected


def test_refresh_picks_up_new_contacts(tmp_path):
    db = make_db(tmp_path / "crm.sqlite", ROWS)
    now = [0.0]
    plugin = crm_sql.CrmPlugin(lambda: sqlite3.connect(db), refresh=300, monotonic=lambda: now[0])
    assert plugin.find("02079460555") is None
    connection = sqlite3.connect(db)
    connection.execute("INSERT INTO contacts VALUES (4, 'New', 'Person', 'X', '020 7946 0555', NULL, NULL)")
    connection.commit()
    connection.close()
    now[0] = 299
    assert plugin.find("02079460555") is None
    now[0] = 300
    assert plugin.find("02079460555")["name"] == "New Person"


def test_failed_refresh_keeps_the_old_index(tmp_path, logged):
    db = make_db(tmp_path / "crm.sqlite", ROWS)
    now = [0.0]
    plugin = crm_sql.CrmPlugin(lambda: sqlite3.connect(db), refresh=10, monotonic=lambda: now[0])
    os.remove(db)
    sqlite3.connect(db).close()  # an empty database: the table is gone
    now[0] = 10
    assert plugin.find("02079460958")["name"] == "Jane Doe"
    assert any("could not reload" in e["log_format"] for e in logged)


def test_lookup_query_mode_verifies_rows(tmp_path):
    db = make_db(tmp_path / "crm.sqlite", ROWS)
    plugin = crm_sql.configure({"database": db, "lookup_query":
                                "SELECT id, first_name, last_name, company, phone FROM contacts "
                                "WHERE phone_e164 = :e164 OR phone LIKE '%' || substr(:digits, -4) || '%'"}, None)
    assert plugin.find("+44 20 7946 0958")["name"] == "Jane Doe"
    assert plugin.find("02079460444")["number"] == "020-7946-0444 ext. 7"
    assert plugin.find("01614960444") is None  # LIKE matched the tail, verification rejected it
    assert plugin.find("withheld") is None


def test_database_is_opened_read_only(tmp_path):
    db = make_db(tmp_path / "crm.sqlite", ROWS)
    plugin = crm_sql.configure({"database": db, "lookup_query": "DELETE FROM contacts WHERE :e164 = :e164"}, None)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        plugin.find("02079460958")


@pytest.mark.parametrize("settings, message", [
    ({"database": "/nonexistent/crm.sqlite"}, "does not exist"),
    ({"demo": True, "query": "SELECT nonsense FROM nowhere"}, "no such table"),
    ({"demo": True, "query": "SELECT id, company FROM contacts"}, "no number column"),
    ({"driver": "no_such_dbapi_driver"}, "cannot import DB-API module"),
    ({"refresh": "often"}, "setting 'refresh'"),
    ({"qeury": "x"}, "unknown setting"),
])
def test_bad_settings(settings, message):
    with pytest.raises(Exception, match=message):
        crm_sql.configure(settings, None)


def test_other_dbapi_driver_via_connect_kwargs(tmp_path):
    db = make_db(tmp_path / "crm.sqlite", ROWS)
    plugin = crm_sql.configure({"driver": "sqlite3", "connect": {"database": db}}, None)
    assert plugin.find("02079460958")["name"] == "Jane Doe"


def test_hook_is_blocking_so_it_runs_in_a_thread():
    from asttapi_server.plugin_host import _BLOCKING_ATTR

    assert getattr(crm_sql.CrmPlugin.asttapi_lookup_contact, _BLOCKING_ATTR)
