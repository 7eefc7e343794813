"""RIR delegated statistics: address ranges and ASNs with their country.

Reads the ``delegated-<rir>-<date>`` and ``delegated-<rir>-extended-<date>``
files of AFRINIC, APNIC, ARIN, LACNIC and RIPE NCC, and the NRO's combined
file (same format, the registry named per record)::

    # comments
    2|ripencc|1404165599|85681|19830705|20140630|+0200        header
    ripencc|*|ipv4|*|49932|summary                             summaries
    ripencc|UA|ipv4|46.175.64.0|6144|20110208|assigned          records
    registry|cc|type|start|value|date|status[|opaque-id[|extensions]]

- The header is recognised by position: the first line that is not a
  comment. Its field count is no help (it has 7 fields, like a short
  record). Files concatenated into one stream have several headers; a line
  whose first field is a version number (``2``, ``2.3``) is one.
- Kept: records with status ``allocated`` or ``assigned``. Skipped:
  ``available`` and ``reserved`` (extended files), and any record whose
  country is ``ZZ`` or empty: they belong to no country.
- ipv4: ``value`` is an address COUNT, often not a power of two and not
  aligned to it; the range is split into the exact CIDR blocks covering it.
  ipv6: ``value`` is the prefix length. asn: ``value`` is a count of ASNs.
"""
from __future__ import annotations

import ipaddress
import re
import socket
from typing import Iterator

from ipr.routing.dumps import DumpError

_VERSION = re.compile(r"\d+(\.\d+)*$")
_CC = re.compile(r"[A-Z]{2}$")
KEEP = frozenset({"allocated", "assigned"})
SKIP = frozenset({"available", "reserved"})
TYPES = frozenset({"ipv4", "ipv6", "asn"})


def parse(stream, source: str = "rir") -> Iterator[tuple[str, str]]:
    """(canonical CIDR text, country code) for every allocated or assigned
    IPv4 and IPv6 range; IPv4 ranges split into exact CIDR blocks."""
    for n, cc, kind, start, value in _records(stream, source):
        if kind == "ipv4":
            try:
                first = int.from_bytes(socket.inet_pton(socket.AF_INET, start), "big")
            except (OSError, ValueError):   # ValueError: a NUL in the text
                raise DumpError(source, f"line {n}", f"bad IPv4 start {start!r}") from None
            if first + value > 1 << 32:
                raise DumpError(source, f"line {n}", f"{start} + {value} addresses runs past 255.255.255.255")
            for block_start, length in cidr_blocks(first, value):
                yield f"{socket.inet_ntop(socket.AF_INET, block_start.to_bytes(4, 'big'))}/{length}", cc
        elif kind == "ipv6":
            if value > 128:
                raise DumpError(source, f"line {n}", f"IPv6 prefix length {value} over 128")
            try:
                net = ipaddress.IPv6Network((start, value))
            except ValueError as exc:
                raise DumpError(source, f"line {n}", f"bad IPv6 range {start}/{value}: {exc}") from None
            yield str(net), cc


# Ranges are expanded one ASN each, so their size is bounded: the largest
# allocated or assigned range in the RIRs' files is a NIR's block of a few
# thousand, and all five files together list under 150,000 ASNs.
MAX_ASN_RANGE = 65_536
MAX_ASNS = 1_048_576


def asn_countries(stream, source: str = "rir") -> Iterator[tuple[int, str]]:
    """(asn, country code) for every allocated or assigned ASN (ranges expanded).

    A fallback country for an AS that has no name list entry."""
    total = 0
    for n, cc, kind, start, value in _records(stream, source):
        if kind != "asn":
            continue
        if not (start.isascii() and start.isdigit()) or len(start) > 20 or int(start) + value > 1 << 32:
            raise DumpError(source, f"line {n}", f"bad ASN range {start[:40]}|{value}")
        if value > MAX_ASN_RANGE:
            raise DumpError(source, f"line {n}", f"a range of {value} ASNs is over the {MAX_ASN_RANGE} "
                            "a registry allocates at once")
        total += value
        if total > MAX_ASNS:
            raise DumpError(source, f"line {n}", f"more than {MAX_ASNS} ASNs in one file")
        first = int(start)
        for asn in range(first, first + value):
            yield asn, cc


def cidr_blocks(first: int, count: int) -> Iterator[tuple[int, int]]:
    """(start, prefix length) of the fewest IPv4 blocks covering exactly
    ``count`` addresses from ``first``: each block is as large as both its
    start's alignment and the addresses left allow."""
    while count > 0:
        size = first & -first if first else 1 << 32   # largest block aligned at `first`
        while size > count:
            size >>= 1
        yield first, 33 - size.bit_length()
        first += size
        count -= size


def _records(stream, source: str) -> Iterator[tuple[int, str, str, str, int]]:
    """(line number, cc, type, start, value) of the records to keep."""
    seen_header = False
    for n, raw in enumerate(stream, 1):
        if isinstance(raw, bytes):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DumpError(source, f"line {n}", f"not UTF-8 text: {exc}") from None
        else:
            line = raw
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split("|")
        if _VERSION.match(fields[0]):
            if len(fields) < 6:
                raise DumpError(source, f"line {n}", "header with fewer than 6 fields")
            seen_header = True
            continue
        if not seen_header:
            raise DumpError(source, f"line {n}",
                            "expected the header 'version|registry|serial|records|startdate|enddate|UTCoffset'")
        if len(fields) >= 6 and fields[1] == "*" and fields[5] == "summary":
            continue
        if len(fields) < 7:
            raise DumpError(source, f"line {n}", f"record with {len(fields)} fields, expected at least 7")
        _registry, cc, kind, start, value, _date, status = fields[:7]
        status = status.lower()
        kind = kind.lower()
        if kind not in TYPES:
            raise DumpError(source, f"line {n}", f"unknown type {kind!r}")
        if status in SKIP:
            continue
        if status not in KEEP:
            raise DumpError(source, f"line {n}", f"unknown status {status!r}")
        # At most 20 digits: int() refuses a text of thousands with a ValueError.
        if not (value.isascii() and value.isdigit()) or len(value) > 20 or int(value) == 0:
            raise DumpError(source, f"line {n}", f"bad value {value[:40]!r}: expected a positive number")
        cc = cc.upper()
        if cc in ("", "ZZ"):
            continue
        if not _CC.match(cc):
            raise DumpError(source, f"line {n}", f"bad country code {cc!r}")
        yield n, cc, kind, start, int(value)
