"""Contact match against Outlook's contacts export (CSV) and vCard files.

Settings (``[plugins.outlook_contacts]``; at least one file)::

    csv = "contacts.csv"            # or a list; Outlook "Export to a file" > CSV
    vcf = ["team.vcf", "more.vcf"]  # or one path; vCard 2.1, 3.0 and 4.0
    region = "GB"                   # for national numbers without country code

Paths are relative to the config file. With neither ``csv`` nor ``vcf`` the
bundled demo files (``demo_contacts.csv``, ``demo_contacts.vcf``, invented
contacts) are used, but only on the demo PBX or with ``demo = true``; on a
real PBX start-up stops with one line saying what to set.

CSV: Outlook's own column names (``First Name``, ``Middle Name``, ``Last Name``,
``Company``, ``Business Phone``, ``Business Phone 2``, ``Home Phone``,
``Mobile Phone``, ``Other Phone``, ``Assistant's Phone``, ``Company Main
Phone``, ``E-mail Address``, ...); every column whose name contains
``Phone`` (but not ``Fax``) is matched. A BOM, ``;`` or tab separators (Outlook
in locales with a decimal comma) and ANSI (cp1252) files are handled.

vCard: ``FN`` (else ``N``), ``ORG``, ``EMAIL`` and every ``TEL``, read by the
one vCard reader of the tree (:mod:`asttapi_server.vcard`, the vobject
library): folded lines, quoted-printable 2.1 values and ``tel:`` URIs of 4.0
are handled; a card it cannot read is skipped with a warning.

Files are re-read when their size or modification time changes: each lookup
costs one ``stat()`` per file, so an edited export pops the new contact on
the next call.
"""

from __future__ import annotations

import csv
import io
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from twisted.logger import Logger

from asttapi_server.hookspecs import hookimpl
from asttapi_server.numbers import DEFAULT_REGION, NumberIndex, check_region
from asttapi_server.plugin_host import Settings, blocking
from asttapi_server.vcard import read_vcards

log = Logger(namespace="asttapi_plugins.outlook_contacts")

SOURCE = "outlook"
DEMO_CSV = Path(__file__).with_name("demo_contacts.csv")
DEMO_VCF = Path(__file__).with_name("demo_contacts.vcf")

_PHONE_COLUMN = re.compile(r"phone|mobile|telefon", re.IGNORECASE)
_FAX_COLUMN = re.compile(r"fax", re.IGNORECASE)


def configure(settings: Mapping[str, Any], config: Any) -> "OutlookContacts":
    s = Settings(settings, config)
    csv_files = s.paths("csv")
    vcf_files = s.paths("vcf")
    region = check_region(s.str("region", DEFAULT_REGION))
    demo = s.demo_data("plugins.outlook_contacts", configured=bool(csv_files or vcf_files),
                       needs="csv or vcf (contact files)")
    s.done()
    if demo:
        csv_files, vcf_files = [DEMO_CSV], [DEMO_VCF]
        log.info("outlook_contacts uses the bundled demo contacts, invented ({csv}, {vcf})",
                 csv=str(DEMO_CSV), vcf=str(DEMO_VCF))
    return OutlookContacts(csv_files=csv_files, vcf_files=vcf_files, region=region)


# -- reading files ------------------------------------------------------


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def read_csv(data: bytes) -> Iterator[dict]:
    """Contacts (name, company, numbers, email) from an Outlook CSV export."""
    text = _decode(data)
    header = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=header.count)
    for row in csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if isinstance(v, str)}
        names = [row.get(k, "") for k in ("First Name", "Middle Name", "Last Name")]
        name = " ".join(n for n in names if n) or row.get("Name", "") or row.get("E-mail Display Name", "")
        numbers = [v for k, v in row.items() if v and _PHONE_COLUMN.search(k) and not _FAX_COLUMN.search(k)]
        yield {
            "name": name or None,
            "company": row.get("Company") or None,
            "email": row.get("E-mail Address") or None,
            "numbers": numbers,
        }


def read_vcf(data: bytes) -> Iterator[dict]:
    """Contacts (name, company, numbers, email) from vCard 2.1/3.0/4.0 text (:mod:`asttapi_server.vcard`)."""
    contacts, problems = read_vcards(_decode(data))
    if problems:
        log.warn("outlook_contacts skipped {count} vCard(s) it could not read, e.g. {problem}",
                 count=len(problems), problem=problems[0])
    for contact in contacts:
        yield {"name": contact.name, "company": contact.company, "email": contact.email,
               "numbers": list(contact.numbers)}


# -- the plugin -----------------------------------------------------------


class OutlookContacts:
    """The configured plugin: an index over the files, rebuilt when one changes."""

    def __init__(
        self, *, csv_files: Sequence[Path] = (), vcf_files: Sequence[Path] = (), region: str = DEFAULT_REGION
    ) -> None:
        self.files = [(Path(p), read_csv) for p in csv_files] + [(Path(p), read_vcf) for p in vcf_files]
        self.region = check_region(region)
        self._lock = threading.Lock()
        self._stamps: list[tuple[int, int] | None] = []
        self.index: NumberIndex[dict] = NumberIndex(self.region)
        self.reload(strict=True)

    def _stamp(self) -> list[tuple[int, int] | None]:
        stamps: list[tuple[int, int] | None] = []
        for path, _ in self.files:
            try:
                st = os.stat(path)
                stamps.append((st.st_mtime_ns, st.st_size))
            except OSError:
                stamps.append(None)
        return stamps

    def reload(self, strict: bool = False) -> None:
        """Re-read every file; with ``strict`` a missing or unreadable file raises (start-up)."""
        stamps = self._stamp()
        index: NumberIndex[dict] = NumberIndex(self.region)
        for (path, reader), stamp in zip(self.files, stamps):
            try:
                data = path.read_bytes()
                contacts = list(reader(data))
            except Exception as exc:
                if strict:
                    raise ValueError(f"cannot read {str(path)!r}: {exc}") from exc
                log.error("outlook_contacts could not re-read {path}, keeping its old contacts: {error}",
                          path=str(path), error=str(exc))
                self._stamps = stamps  # keep the previous index; try again when a file changes
                return
            for contact in contacts:
                for number in contact["numbers"]:
                    entry = {"name": contact["name"], "company": contact["company"], "source": SOURCE,
                             "number": number}
                    if contact["email"]:
                        entry["email"] = contact["email"]
                    index.add(number, entry)
        self.index, self._stamps = index, stamps
        log.info("outlook_contacts indexed {count} numbers from {files} file(s)", count=len(index),
                 files=len(self.files))

    def find(self, number: str) -> dict | None:
        """The contact for ``number``; re-reads changed files first (blocking: call it in a thread)."""
        if self._stamp() != self._stamps and self._lock.acquire(blocking=False):
            try:
                if self._stamp() != self._stamps:
                    self.reload()
            finally:
                self._lock.release()
        found = self.index.lookup(number)
        return dict(found) if found is not None else None

    @hookimpl
    @blocking
    def asttapi_lookup_contact(self, number, callinfo):
        return self.find(number)
