"""Special-purpose addresses: the blocks no AS originates and no country
holds, from IANA's IPv4 and IPv6 Special-Purpose Address Registries (RFC
6890 and the RFCs each entry names) and the multicast and reserved blocks
of the address space registries.

A client address in one of these blocks is traffic to no AS and no
country, whatever a router's table says: a lab router or a default route
may well "route" 10/8 or 2001:db8::/32. The resolver (ipr.routing.lookup)
gives such an address the block as its prefix, AS 0 as origin and
neighbour, and the country :data:`COUNTRY`; the pages show the block with
its label ("127.0.0.0/8 (loopback)").

Which entries count: those the registries mark as not globally reachable,
plus multicast and 240.0.0.0/4. The globally reachable entries inside such
a block (the PCP, TURN and DNS-SD anycast addresses, AMT, AS112, ORCHIDv2,
DRIP) and Teredo, whose clients are real Internet hosts behind a relay, are
routed as any other address: they are :data:`ROUTED` holes. 6to4
(2002::/16) and the NAT64 well-known prefix (64:ff9b::/96) are routed too.
The IPv4-mapped block ::ffff:0:0/96 is how the spool stores IPv4, so it is
not in the IPv6 list; IPv4's own blocks apply to those addresses.
"""
from __future__ import annotations

import numpy as np

from ipr.routing import lpm

# The country of every special-purpose address: ZZ is an ISO 3166-1
# user-assigned code, and the one the RIR files, the .mmdb readers and the
# AS name lists already read as "no country" and never pass on, so no data
# source can give it to an address.
COUNTRY = "ZZ"
COUNTRY_NAME = "special-purpose addresses (no country)"

# (block, what it is), most of them as the registries name them.
BLOCKS = (
    ("0.0.0.0/8", "this network"),
    ("10.0.0.0/8", "private-use"),
    ("100.64.0.0/10", "shared address space, CGNAT"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private-use"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4 relay anycast, deprecated"),
    ("192.168.0.0/16", "private-use"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("255.255.255.255/32", "limited broadcast"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "NAT64 local use"),
    ("100::/64", "discard-only"),
    ("2001::/23", "IETF protocol assignments"),
    ("2001:2::/48", "benchmarking"),
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "segment routing SIDs"),
    ("fc00::/7", "unique-local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local, deprecated"),
    ("ff00::/8", "multicast"),
)
# Globally reachable blocks inside the ones above: routed like any address.
ROUTED = (
    "192.0.0.9/32",       # PCP anycast
    "192.0.0.10/32",      # TURN anycast
    "2001::/32",          # Teredo
    "2001:1::1/128",      # PCP anycast
    "2001:1::2/128",      # TURN anycast
    "2001:1::3/128",      # DNS-SD service registration protocol anycast
    "2001:3::/32",        # AMT
    "2001:4:112::/48",    # AS112-v6
    "2001:20::/28",       # ORCHIDv2
    "2001:30::/28",       # drone remote ID entity tags
)

_TABLE = lpm.Table.build([(block, i) for i, (block, _) in enumerate(BLOCKS)] +
                         [(block, len(BLOCKS)) for block in ROUTED])
LABELS = {block: label for block, label in BLOCKS}

_routed_by_setting: dict[tuple, lpm.Table] = {}


def classify(addresses: np.ndarray, routed=()) -> np.ndarray:
    """Per 16-byte address (IPv4 as ::ffff:a.b.c.d): the index of its block
    in :data:`BLOCKS`, or -1 for an ordinary address or one in the networks
    ``routed`` (the setting IPR_ROUTE_SPECIAL: resolved like any address)."""
    # One lookup in a small table: 6-8 ms per 200,000 addresses (measured
    # on a busy 2-CPU machine), a few % of their ingest.
    found = _TABLE.lookup_many(addresses)
    found = np.where(found == len(BLOCKS), -1, found)
    if routed and (found >= 0).any():
        key = tuple(routed)
        table = _routed_by_setting.get(key)
        if table is None:
            table = _routed_by_setting[key] = lpm.Table.build((network, 0) for network in routed)
        found[table.lookup_many(addresses) >= 0] = -1
    return found


def networks(indices) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blocks ``indices`` as lpm.Table.networks gives a route's network:
    is IPv6, prefix length, address bytes (IPv4 in the first 4)."""
    return _TABLE.networks(indices)


def label(prefix: str) -> str | None:
    """What a prefix text is when it is one of the blocks, else None."""
    return LABELS.get(prefix)
