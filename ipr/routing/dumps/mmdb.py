"""Countries from a MaxMind-format database (.mmdb) the operator supplies.

Any country or city database in the MaxMind DB format: GeoLite2/GeoIP2
Country and City, and the free country databases of other vendors in the
same format. Each network's country is ``country.iso_code``, else
``registered_country.iso_code`` (where the network is registered, e.g. for
anycast or satellite ranges without a located country); databases that
store the code as a plain string (``country`` or ``country_code``) work too.
Networks without a country are skipped.

IPv4 comes out as IPv4: the reader already returns the IPv4 subtree of an
IPv6 database (::a.b.c.d/96+n) as a.b.c.d/n and skips its aliases
(::ffff:0:0/96, 2002::/16); a database that stores IPv4 data under
::ffff:0:0/96 itself is converted here. So the networks combine with RIR
data and routing tables in one longest-prefix-match table.

The file is read by the library's pure-Python reader held in memory, never
by its C extension: a damaged file can corrupt the C reader's heap and abort
the whole process (a Celery worker), where the Python reader raises. Every
error the reader raises on a damaged file (its own InvalidDatabaseError, and
RecursionError, ValueError, KeyError, struct.error... from a broken data
section) becomes a DumpError naming the file and the network it was at.
"""
from __future__ import annotations

import ipaddress
import os
from typing import Iterator

from ipr.routing.dumps import DumpError

_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def parse(path, source: str | None = None) -> Iterator[tuple[str, str]]:
    """(canonical network text, ISO country code) for every network of the
    database at ``path`` that has a country."""
    import maxminddb

    source = source or os.fspath(path)
    try:
        reader = maxminddb.open_database(os.fspath(path), maxminddb.MODE_MEMORY)
    except OSError:
        raise
    except Exception as exc:  # whatever the reader raises, the file is bad
        raise DumpError(source, "byte 0", f"not a MaxMind DB file: {_describe(exc)}") from None
    count = 0
    with reader:
        networks = iter(reader)
        while True:
            try:
                network, record = next(networks)
            except StopIteration:
                break
            except Exception as exc:  # as above
                raise DumpError(source, f"network {count + 1}",
                                f"corrupt database: {_describe(exc)}") from None
            count += 1
            cc = country_of(record)
            if cc is None:
                continue
            if network.version == 6 and network.subnet_of(_MAPPED):
                network = ipaddress.IPv4Network((int(network.network_address) & 0xFFFFFFFF,
                                                 network.prefixlen - 96))
            yield str(network), cc


def _describe(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "records nested too deeply or in a loop"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def country_of(record) -> str | None:
    """The ISO code of a record, or None."""
    if not isinstance(record, dict):
        return None
    for key in ("country", "registered_country"):
        value = record.get(key)
        if isinstance(value, dict):
            value = value.get("iso_code")
        code = _code(value)
        if code:
            return code
    return _code(record.get("country_code"))


def _code(value) -> str | None:
    if isinstance(value, str) and len(value) == 2 and value.isascii() and value.isalpha():
        value = value.upper()
        return None if value == "ZZ" else value  # ZZ: unknown, as in RIR files
    return None
