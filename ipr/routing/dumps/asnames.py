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

**PeeringDB JSON**: the API's answer for ``net`` objects
(``{"data": [{"asn": ..., "name": ..., ...}]}``) or a bare list of them.
A ``net`` object has no country, so these names come without one. A full
PeeringDB dump (``{"net": {"data": [...]}, "org": {"data": [...]}, ...}``)
does give countries: each net's ``org_id`` is joined to its ``org``'s
``country``. Objects with status ``deleted`` are skipped.
"""
from __future__ import annotations

import json
import re
from typing import Iterator

from ipr.routing.dumps import DumpError

ASN_MAX = 2**32 - 1
_ASN = re.compile(r"(?:AS)?(\d+)(?:\.(\d+))?$", re.IGNORECASE | re.ASCII)
_CC = re.compile(r"[A-Z]{2}$", re.ASCII)


def parse(stream, source: str = "asnames") -> Iterator[tuple[int, str, str | None]]:
    """(asn, name, country code or None) for every AS in the file."""
    data = stream.read() if hasattr(stream, "read") else stream
    if isinstance(data, str):
        data = data.encode("utf-8")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    head = data.lstrip()[:1]
    if head in (b"{", b"["):
        return _json(data, source)
    return _text(data, source)


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


def _text(data: bytes, source: str) -> Iterator[tuple[int, str, str | None]]:
    # Names are only shown, so a stray byte is replaced rather than refusing the list.
    for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        token, _, rest = line.replace("\t", " ").partition(" ")
        asn = parse_asn(token)
        if asn is None:
            raise DumpError(source, f"line {n}", f"expected an ASN first, not {token!r}")
        name, comma, last = rest.rpartition(",")
        cc = last.strip()
        if comma and _CC.match(cc):
            name = name.strip()
        else:
            name, cc = rest.strip(), None
        if not name:
            raise DumpError(source, f"line {n}", f"AS{asn} has no name")
        yield asn, name, None if cc == "ZZ" else cc


def _json(data: bytes, source: str) -> Iterator[tuple[int, str, str | None]]:
    try:
        doc = json.loads(data)
    except json.JSONDecodeError as exc:
        raise DumpError(source, f"line {exc.lineno}", f"bad JSON: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise DumpError(source, f"byte {exc.start}", "bad JSON: not UTF-8") from None
    nets, orgs = _sections(doc, source)
    countries = {}
    for i, org in enumerate(orgs):
        if not isinstance(org, dict) or "id" not in org:
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
        if not isinstance(name, str) or not name.strip():
            raise DumpError(source, where, f"AS{asn} has no name")
        org = net.get("org")
        cc = org.get("country") if isinstance(org, dict) else countries.get(net.get("org_id"))
        cc = cc.strip().upper() if isinstance(cc, str) else None
        yield asn, name.strip(), cc if cc and _CC.match(cc) and cc != "ZZ" else None


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
