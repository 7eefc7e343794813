"""AS names: ASN -> name and country, from a text list or PeeringDB JSON.

The format is sniffed from the first non-space byte: ``{`` or ``[`` is JSON,
anything else the text list.

**Text list**, one AS per line, as RIPE NCC's ``asn.txt`` and the text of
bgp.potaroo.net's ``autnums`` publish it::

    13335 CLOUDFLARENET, US
    AS13335 CLOUDFLARENET - Cloudflare, Inc., US
    AS4200000000 PRIVATE-USE
    AS1.10 ASDOT-EXAMPLE, NL

The ASN may carry an ``AS`` prefix and be written asplain or asdot. The
name may contain commas: the country is the last comma-separated token
when it is two capital letters, and a line may have no country. ``ZZ``
(unknown) counts as none. Blank lines and ``#`` comments are skipped.

Real lists hold lines that cannot be used (RIPE's has a few like
``49067\t, TR``, with no name): such a line is skipped and noted, and the
rest is loaded; a list with more unusable lines than usable ones is refused.
Each line is read as UTF-8; one that is not valid UTF-8 is read as Latin-1
(how RIPE published the list until about 2020) when it has no byte in
0x80-0x9F (C1 controls, which Latin-1 text does not hold but UTF-8 and
Windows-1252 do), and skipped otherwise: no name is ever made of
replacement characters.

**PeeringDB JSON**: the API's answer for ``net`` objects
(``{"data": [{"asn": ..., "name": ..., ...}]}``) or a bare list of them.
A ``net`` object has no country, so these names come without one. A full
PeeringDB dump (``{"net": {"data": [...]}, "org": {"data": [...]}, ...}``)
does give countries: each net's ``org_id`` is joined to its ``org``'s
``country``. Objects with status ``deleted`` are skipped.

Both formats note (in ``notes``, for the load's summary) an ASN given again
(the last one is kept) and a name longer than ``max_name`` (cut).
"""
from __future__ import annotations

import json
import re
from typing import Iterator

from ipr.routing.dumps import DumpError

ASN_MAX = 2**32 - 1
# Digits capped so int() never meets a text of thousands (a ValueError).
_ASN = re.compile(r"(?:AS)?(\d{1,20})(?:\.(\d{1,20}))?$", re.IGNORECASE | re.ASCII)
_CC = re.compile(r"[A-Z]{2}$", re.ASCII)
_C1 = re.compile(rb"[\x80-\x9f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")

# What a note says, by kind: (what the count is of, what was done).
NOTE_TEXTS = {
    "no name": "line(s) without a name, skipped",
    "bad asn": "line(s) not starting with an ASN, skipped",
    "not text": "line(s) neither UTF-8 nor Latin-1 (bytes in 0x80-0x9F), skipped",
    "latin-1": "line(s) not UTF-8, read as Latin-1",
    "duplicate": "ASN(s) given again, the last one kept",
    "control": "name(s) with control characters (NUL, tab...), each run replaced by a space",
}


class Notes:
    """What a parse skipped or changed: per kind, a count and the first
    few places (``line N`` or ``net object N``)."""
    FIRST = 5

    def __init__(self):
        self.kinds: dict[str, list] = {}

    def add(self, kind: str, where: str) -> None:
        entry = self.kinds.setdefault(kind, [0, []])
        entry[0] += 1
        if len(entry[1]) < self.FIRST:
            entry[1].append(where)

    def count(self, kind: str) -> int:
        return self.kinds.get(kind, [0])[0]

    def lines(self, source: str) -> list[str]:
        """One sentence per kind, e.g. ``asn.txt: 3 line(s) without a name,
        skipped (line 44351, line 50112, line 60001)``."""
        out = []
        for kind, (count, places) in self.kinds.items():
            more = ", ..." if count > len(places) else ""
            out.append(f"{source}: {count} {NOTE_TEXTS.get(kind, kind)} ({', '.join(places)}{more})")
        return out


def parse(stream, source: str = "asnames", notes: Notes | None = None,
          max_name: int | None = None) -> Iterator[tuple[int, str, str | None]]:
    """(asn, name, country code or None) for every AS in the file; what was
    skipped or changed goes to ``notes``."""
    data = stream.read() if hasattr(stream, "read") else stream
    if isinstance(data, str):
        data = data.encode("utf-8")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    notes = notes if notes is not None else Notes()
    head = data.lstrip()[:1]
    items = _json(data, source, notes) if head in (b"{", b"[") else _text(data, source, notes)
    return _checked(items, notes, max_name)


def _checked(items, notes: Notes, max_name: int | None):
    seen = set()
    for where, asn, name, cc in items:
        if asn in seen:
            notes.add("duplicate", where)
        seen.add(asn)
        if max_name is not None and len(name) > max_name:
            notes.add(f"name(s) longer than {max_name} characters, cut", where)
            name = name[:max_name].rstrip()
        yield asn, name, cc


def parse_asn(text: str) -> int | None:
    """An ASN from 'AS13335', '13335' or asdot '1.10'; None if it is not one."""
    m = _ASN.match(text)
    if not m:
        return None
    if m.group(2) is not None:
        high, low = int(m.group(1)), int(m.group(2))
        return high << 16 | low if high <= 0xFFFF and low <= 0xFFFF else None
    asn = int(m.group(1))
    return asn if asn <= ASN_MAX else None


def _decode(line: bytes, where: str, notes: Notes) -> str | None:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        if _C1.search(line):
            notes.add("not text", where)
            return None
        notes.add("latin-1", where)
        return line.decode("latin-1")


def _text(data: bytes, source: str, notes: Notes):
    usable = unusable = 0
    first_bad = None
    for n, raw in enumerate(data.splitlines(), 1):
        where = f"line {n}"
        line = _decode(raw, where, notes)
        if line is None:
            unusable += 1
            first_bad = first_bad or (where, "neither UTF-8 nor Latin-1")
            continue
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        token, _, rest = line.replace("\t", " ").partition(" ")
        asn = parse_asn(token)
        if asn is None:
            notes.add("bad asn", where)
            unusable += 1
            first_bad = first_bad or (where, f"expected an ASN first, not {token[:40]!r}")
            continue
        name, comma, last = rest.rpartition(",")
        cc = last.strip()
        if comma and _CC.match(cc):
            name = name.strip()
        else:
            name, cc = rest.strip(), None
        name = _clean(name, where, notes)
        if not name:
            notes.add("no name", where)
            unusable += 1
            first_bad = first_bad or (where, f"AS{asn} has no name")
            continue
        usable += 1
        yield where, asn, name, None if cc == "ZZ" else cc
    if unusable > usable:
        raise DumpError(source, first_bad[0], f"{first_bad[1]}; {unusable} of {usable + unusable} lines "
                        "cannot be used: not an AS names list")


def _json(data: bytes, source: str, notes: Notes):
    try:
        doc = json.loads(data)
    except json.JSONDecodeError as exc:
        raise DumpError(source, f"line {exc.lineno}", f"bad JSON: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise DumpError(source, f"byte {exc.start}", "bad JSON: not UTF-8") from None
    except RecursionError:
        raise DumpError(source, "line 1", "bad JSON: nested too deeply") from None
    except ValueError as exc:   # e.g. a number of more than 4300 digits
        raise DumpError(source, "line 1", f"bad JSON: {exc}") from None
    nets, orgs = _sections(doc, source)
    countries = {}
    for i, org in enumerate(orgs):
        if not isinstance(org, dict) or not isinstance(org.get("id"), (int, str)):
            raise DumpError(source, f"org object {i}", "not an object with an id")
        countries[org["id"]] = org.get("country")
    for i, net in enumerate(nets):
        where = f"net object {i}"
        if not isinstance(net, dict):
            raise DumpError(source, where, "not an object")
        if net.get("status", "ok") == "deleted":
            continue
        asn, name = net.get("asn"), net.get("name")
        if type(asn) is not int or not 0 <= asn <= ASN_MAX:
            raise DumpError(source, where, f"bad asn {asn!r}")
        name = _clean(name, where, notes) if isinstance(name, str) else None
        if not name:
            raise DumpError(source, where, f"AS{asn} has no name")
        org, org_id = net.get("org"), net.get("org_id")
        if isinstance(org, dict):
            cc = org.get("country")
        else:
            cc = countries.get(org_id) if isinstance(org_id, (int, str)) else None
        cc = cc.strip().upper() if isinstance(cc, str) else None
        yield where, asn, name, cc if cc and _CC.match(cc) and cc != "ZZ" else None


def _clean(name: str, where: str, notes: Notes) -> str:
    """The name with each run of control characters (C0, DEL, C1) made one
    space, noted; stripped. PostgreSQL text cannot hold a NUL."""
    cleaned = _CONTROL.sub(" ", name)
    if cleaned != name:
        notes.add("control", where)
    return cleaned.strip()


def _sections(doc, source: str) -> tuple[list, list]:
    """(net objects, org objects) of an API answer, a bare list or a full dump."""
    def data_of(section, what):
        if isinstance(section, dict):
            section = section.get("data")
        if not isinstance(section, list):
            raise DumpError(source, "line 1", f"'{what}' is not a list of objects")
        return section

    if isinstance(doc, list):
        return doc, []
    if isinstance(doc, dict) and "net" in doc:
        return data_of(doc["net"], "net"), data_of(doc["org"], "org") if "org" in doc else []
    if isinstance(doc, dict) and "data" in doc:
        return data_of(doc["data"], "data"), []
    raise DumpError(source, "line 1", "JSON without 'data' or 'net': not a PeeringDB export")
