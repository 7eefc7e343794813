#!/usr/bin/env python3
"""A full-table-sized MRT TABLE_DUMP_V2 RIB, and what ``bgpdump -m`` says of it.

    .venv/bin/python bench/mrt_table.py OUT.mrt [--v4 1000000] [--v6 220000]
        [--peers 1] [--distinct 0.3 | 0.31,0.55] [--seed 1] [--inherit 0.6]
        [--expect OUT.bgpdump-m] [--check]

Writes a PEER_INDEX_TABLE, then one RIB_IPV4_UNICAST record per IPv4 prefix
and one RIB_IPV6_UNICAST record per IPv6 prefix, in prefix order, the way a
router's table dump is laid out. ``OUT`` ending in .gz is gzip'ed.

The table is made to look like the real one where it matters to a parser:

- prefix lengths drawn from the real table's distribution (/24 heavy for
  IPv4, /48 heavy for IPv6), about half of them more-specifics of another
  prefix in the table, most of those with their covering prefix's path;
- one peer by default, like a router dumping its own table (the peer is
  the router itself: iBGP-style, LOCAL_PREF set, paths start at one of its
  eight neighbours); ``--peers N`` adds N-1 collector-style eBGP peers that
  carry most of the same prefixes with their own ASN in front;
- ``--distinct SHARE`` instead: a router's table of N full transit feeds
  (each with its own ASN first, next hop, communities, MED and LOCAL_PREF
  policy, each missing about 1 % of the prefixes) with SHARE distinct
  attribute sets per route, reached the way real tables reach it: origins
  announcing from several sites, each transit seeing each site at its own
  ingress (path, location community, MED), single prefixes tuned with a
  prepend or a community (see TransitTable); it prints the share reached;
- origin ASes Zipf-distributed over a pool of 2- and 4-byte ASNs, one to
  three path variants each, so the table has tens of thousands of distinct
  AS paths of 1..8 ASNs (prepends included), a few hundred ending in an
  AS_SET; communities on a share, large communities on a smaller share,
  MED on some, IPv6 next hops with and without a link-local part;
- deterministic: the same arguments give the same bytes.

``--expect`` writes the line ``bgpdump -m`` prints for every route; the
tests compare it with the real bgpdump's output, and ``--check`` does so
here (streaming, so it works on the full table too).
"""
from __future__ import annotations

import argparse
import bisect
import contextlib
import gzip
import ipaddress
import random
import struct
import subprocess
import sys
import time
from dataclasses import dataclass

DUMP_TIME = 1717200000  # 2024-06-01 00:00:00 UTC

# Prefix length shares of the IPv4 and IPv6 tables (mid-2024, rounded).
V4_LENGTHS = {8: 16, 9: 13, 10: 37, 11: 100, 12: 300, 13: 600, 14: 1200, 15: 2100,
              16: 13500, 17: 8500, 18: 14500, 19: 26000, 20: 44000, 21: 56000,
              22: 130000, 23: 110000, 24: 590000}
V6_LENGTHS = {19: 10, 20: 30, 22: 30, 24: 120, 26: 60, 28: 800, 29: 5000, 30: 500, 31: 300,
              32: 27000, 33: 1500, 34: 1500, 35: 600, 36: 8000, 37: 600, 38: 2000,
              39: 800, 40: 18000, 41: 400, 42: 2500, 43: 500, 44: 20000, 45: 1500,
              46: 4500, 47: 5000, 48: 115000, 52: 300, 56: 1000, 60: 100, 64: 800}
# Share of prefixes placed inside an already generated shorter prefix.
NESTED = 0.45
# Share of those announced like their covering prefix (same origin, same
# path: deaggregation), which puts runs of equal attributes next to each
# other as in a real table.
INHERIT = 0.6
# Share of path variants that end in an AS_SET (aggregates): ~0.1 % of the
# routes of a full table; tests raise it to have some in a small one.
AS_SETS = 0.001
# AS path lengths, prepends included (real-table shares, rounded).
PATH_LENGTHS = {1: 3, 2: 25, 3: 35, 4: 22, 5: 9, 6: 4, 7: 1.5, 8: 0.5}
TIER1 = [174, 701, 1299, 2914, 3257, 3320, 3356, 3491, 5511, 6453, 6461, 6762, 6830,
         7018, 12956]

ORIGIN_NAMES = ("IGP", "EGP", "INCOMPLETE")


@dataclass(frozen=True)
class Neighbour:
    asn: int
    v4: str
    v6: str
    link_local: str | None
    local_pref: int


@dataclass(frozen=True)
class Peer:
    ip: str
    asn: int


@dataclass(frozen=True)
class Variant:
    """One path to an origin: everything in a route but the prefix."""
    neighbour: int
    segments: tuple            # (('seq' | 'set', (asn, ...)), ...)
    origin: int                # 0 IGP, 1 EGP, 2 INCOMPLETE
    med: int | None
    communities: tuple         # ((a, b), ...)
    large: tuple               # ((a, b, c), ...)
    originated: int


class Table:
    """The generated table, before encoding: prefixes and their variants."""

    def __init__(self, v4: int, v6: int, peers: int, seed: int, origins: int | None = None,
                 inherit: float = INHERIT, sets: float = AS_SETS):
        rng = random.Random(seed)
        self.inherit, self.sets = inherit, sets
        self.rng = rng
        made4 = _prefixes(rng, v4, 32, V4_LENGTHS, _v4_top)
        made6 = _prefixes(rng, v6, 128, V6_LENGTHS, _v6_top)
        total = v4 + v6
        # ~1 origin AS per 25 prefixes, like the real table (75k ASes, 1.2M prefixes).
        n_origins = origins or max(20, min(60000, total // 25))
        self.asns = _asn_pool(rng, n_origins + 3000)
        origin_asns = self.asns[:n_origins]
        transit = self.asns[n_origins:]
        self.neighbours = _neighbours(rng, origin_asns)
        self.peers = [Peer("192.0.2.1", 64496)] + [
            Peer(f"198.51.100.{k}" if k % 2 else f"2001:db8:ffff::{k:x}", transit[-k])
            for k in range(1, peers)]
        chains = {}
        self.variants: list[list[Variant]] = []
        for i, asn in enumerate(origin_asns):
            chains[asn] = [rng.choice(TIER1 if j == 0 else transit[:600] if j < 3 else transit)
                           for j in range(6)]
            self.variants.append([self._variant(rng, asn, chains[asn], i)
                                  for _ in range(1 + (rng.random() < 0.3) + (rng.random() < 0.1))])
        # Zipf-like: a few origins announce thousands of prefixes, most a handful.
        cum, acc = [], 0.0
        for rank in range(n_origins):
            acc += 1.0 / (rank + 1) ** 0.75
            cum.append(acc)
        self.v4, self.route_v4 = self._routes(rng, cum, made4)
        self.v6, self.route_v6 = self._routes(rng, cum, made6)
        # Collector peers miss a few prefixes each.
        self.missing = [set(), *[{rng.randrange(total) for _ in range(total // 30)}
                                 for _ in range(1, peers)]]

    def _routes(self, rng, cum, made) -> tuple[list, list]:
        """Sorted prefixes and their variants; a more-specific often has its parent's."""
        picks: list[Variant] = []
        for _net, _plen, parent in made:
            if parent >= 0 and rng.random() < self.inherit:
                picks.append(picks[parent])
            else:
                picks.append(self._pick(rng, cum))
        order = sorted(range(len(made)), key=lambda i: made[i][:2])
        return [made[i][:2] for i in order], [picks[i] for i in order]

    def _pick(self, rng, cum) -> Variant:
        i = bisect.bisect_left(cum, rng.random() * cum[-1])
        variants = self.variants[min(i, len(cum) - 1)]
        return variants[0] if len(variants) == 1 or rng.random() < 0.75 else rng.choice(variants[1:])

    def _variant(self, rng, origin_asn: int, chain: list[int], rank: int) -> Variant:
        nb_index = rng.choices(range(8), weights=(35, 35, 6, 6, 6, 6, 3, 3))[0]
        nb = self.neighbours[nb_index]
        r = rng.random()
        if r < 0.002:
            segments = ()  # originated by the router itself
        else:
            length = rng.choices(list(PATH_LENGTHS), weights=list(PATH_LENGTHS.values()))[0]
            if length == 1 or origin_asn == nb.asn:  # announced by the neighbour itself
                seq = [nb.asn]
            else:
                seq = [nb.asn] + chain[:length - 2] + [origin_asn]
                if rng.random() < 0.08 and len(seq) < 8:  # origin prepends
                    seq += [origin_asn] * rng.randint(1, 8 - len(seq))
            segments = (("seq", tuple(seq)),)
            if r < 0.002 + self.sets:  # aggregates: an AS_SET of the aggregated origins
                members = tuple(sorted({origin_asn, *rng.sample(self.asns, rng.choice((0, 1, 2, 3)))}))
                segments = (("seq", tuple(seq[:-1]) or (nb.asn,)), ("set", members))
        communities = ()
        if rng.random() < 0.4:
            communities = tuple(sorted({(nb.asn & 0xFFFF, rng.choice((100, 200, 300, 1000 + rank % 50,
                                                                     2000 + rank % 7)))
                                        for _ in range(rng.randint(1, 6))}))
        large = ()
        if rng.random() < 0.05:
            large = tuple((nb.asn, 1, rng.randint(1, 20)) for _ in range(rng.randint(1, 2)))
        return Variant(
            neighbour=nb_index, segments=segments,
            origin=rng.choices((0, 1, 2), weights=(90, 2, 8))[0],
            med=rng.choice((0, 10, 50, 100, 200)) if rng.random() < 0.3 else None,
            communities=communities, large=large,
            originated=DUMP_TIME - rng.randint(60, 30 * 86400))


def _v4_top(rng) -> int:
    while True:
        first = rng.randint(1, 223)
        if first not in (10, 100, 127, 169, 172, 192):
            return first << 24 | rng.getrandbits(24)


_V6_TOPS = [0x2001] * 30 + [0x2400 + i for i in range(16)] + [0x2600 + i for i in range(16)] \
    + [0x2800 + i for i in range(16)] * 2 + [0x2a00 + i for i in range(16)] * 3 + [0x2c0f]


def _v6_top(rng) -> int:
    return rng.choice(_V6_TOPS) << 112 | rng.getrandbits(112)


def _prefixes(rng, count: int, bits: int, lengths: dict, top) -> list[tuple[int, int, int]]:
    """``count`` distinct (network, length, parent), about NESTED of them nested.

    In the order made (shortest first); ``parent`` is the index of the
    prefix a nested one was placed in, or -1.
    """
    total = sum(lengths.values())
    per_length = {plen: round(count * share / total) for plen, share in lengths.items()}
    per_length[max(lengths, key=lengths.get)] += count - sum(per_length.values())
    seen: set[tuple[int, int]] = set()
    made: list[tuple[int, int, int]] = []
    for plen in sorted(per_length):
        shorter = len(made)  # made[:shorter] are all shorter than plen
        host = bits - plen
        for _ in range(per_length[plen]):
            for _attempt in range(100):
                parent = -1
                if shorter and rng.random() < NESTED:
                    parent = rng.randrange(shorter)
                    net_parent, plen_parent, _ = made[parent]
                    net = net_parent | rng.getrandbits(plen - plen_parent) << host
                else:
                    net = top(rng) >> host << host
                if (net, plen) not in seen:
                    break
            else:
                raise ValueError(f"cannot place {per_length[plen]} /{plen} prefixes")
            seen.add((net, plen))
            made.append((net, plen, parent))
    return made


def _asn_pool(rng, n: int) -> list[int]:
    two = n * 6 // 10
    pool = rng.sample(range(1, 64496), two) + rng.sample(range(131072, 402000), n - two)
    pool = [a for a in pool if a not in TIER1 and a != 23456]
    rng.shuffle(pool)
    return pool


def _neighbours(rng, origins: list[int]) -> list[Neighbour]:
    # Two transits, four IX peers, two customers; the six also originate prefixes.
    first = min(100, len(origins) - 6)
    asns = [3356, 1299] + origins[first:first + 6]
    prefs = [100, 100, 200, 200, 200, 200, 300, 300]
    return [Neighbour(asn, f"203.0.113.{i + 1}", f"2001:db8:113::{i + 1:x}",
                      f"fe80::{i + 1:x}" if i % 2 else None, prefs[i])
            for i, asn in enumerate(asns)]


# -- encoding ----------------------------------------------------------------

HEADER = struct.Struct(">IHHI")
ENTRY = struct.Struct(">HIH")


def _attr(type_code: int, flags: int, value: bytes) -> bytes:
    if len(value) > 255 or flags & 0x10:
        return struct.pack(">BBH", flags | 0x10, type_code, len(value)) + value
    return struct.pack(">BBB", flags, type_code, len(value)) + value


def _ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def encode_attrs(segments, origin, next_hop4, next_hop6, med, local_pref,
                 communities, large) -> bytes:
    """Path attributes as TABLE_DUMP_V2 writes them (4-byte ASNs, abbreviated MP_REACH)."""
    out = [_attr(1, 0x40, bytes([origin]))]
    path = b"".join(struct.pack(">BB", 1 if kind == "set" else 2, len(asns))
                    + struct.pack(f">{len(asns)}I", *asns) for kind, asns in segments)
    out.append(_attr(2, 0x40, path))
    if next_hop4 is not None:
        out.append(_attr(3, 0x40, _ip(next_hop4)))
    if med is not None:
        out.append(_attr(4, 0x80, struct.pack(">I", med)))
    if local_pref is not None:
        out.append(_attr(5, 0x40, struct.pack(">I", local_pref)))
    if communities:
        out.append(_attr(8, 0xC0, b"".join(struct.pack(">HH", a, b) for a, b in communities)))
    if next_hop6 is not None:
        hops = b"".join(_ip(h) for h in next_hop6)
        # Extended length, as RIPE's collectors write it.
        out.append(_attr(14, 0x90, bytes([len(hops)]) + hops))
    if large:
        out.append(_attr(32, 0xC0, b"".join(struct.pack(">III", *c) for c in large)))
    return b"".join(out)


def _bgpdump_path(segments) -> str:
    return " ".join(" ".join(map(str, asns)) if kind == "seq" else "{" + ",".join(map(str, asns)) + "}"
                    for kind, asns in segments)


def _peer_index_table(peers: list[Peer]) -> bytes:
    view = b"main"
    body = [struct.pack(">IH", 0xC0000201, len(view)), view, struct.pack(">H", len(peers))]
    for i, peer in enumerate(peers):
        ip = _ip(peer.ip)
        # type: 0x02 = 4-byte ASN, 0x01 = IPv6 address
        body.append(struct.pack(">BI", 0x02 | (len(ip) == 16), 0xC0000202 + i) + ip
                    + struct.pack(">I", peer.asn))
    return b"".join(body)


# -- transit-style multi-peer tables (--distinct) -----------------------------
#
# A router's table with several full transit feeds: every peer is an eBGP
# transit (its ASN first, its own next hop, communities, MED and LOCAL_PREF
# policy) and sends almost every prefix. Real tables have about one distinct
# attribute set per three routes (bench/table_stats.py on the first MiB of
# RouteViews RIBs: 0.31 per IPv4 route over 35 peers, 2014; 0.55 per IPv6
# route over 27 peers, 2015), for reasons that are mostly per prefix:
#
# - an origin announces its prefixes from several *sites* (regions, PoPs,
#   customers of different upstreams), and each transit learns each site at
#   its own ingress point: its own path to it, its own location community and
#   its own MED (an IGP metric to that egress);
# - origins tune single prefixes: an extra prepend, a community asking the
#   upstream to limit the announcement (a *tweak*);
# - deaggregated more-specifics keep their covering prefix's site.
#
# The share of prefixes that open a new site, then the share that carry a
# tweak, are set from --distinct by calibration (every peer's attribute sets
# counted exactly), so the table lands close to the target; write() returns
# what it reached.

# ASNs between the peer and the origin (both excluded), before prepends:
# with the peer's ASN, the origin and the prepends this gives the real
# collectors' mix (3 to 5 ASNs most, a long tail).
TRANSIT_CHAIN = {0: 7, 1: 33, 2: 41, 3: 14, 4: 3.5, 5: 1, 6: 0.5}
TWEAKS = 24  # per-prefix tweaks t: t % 4 extra prepends, a community when t >= 4


@dataclass(frozen=True)
class Transit:
    """A transit feed of the router: its session, and the policy applied to it."""
    ip4: str
    ip6: str
    link_local: str | None
    asn: int
    locations: int            # its PoPs: location communities asn:1000+n
    tags: bool                # sends relation/location/region communities
    med: str                  # 'igp' (metric to the egress), 'zero' or 'none'
    local_pref: int           # the router's import policy for this peer


@dataclass(frozen=True)
class Site:
    """Where and how an origin announces some of its prefixes."""
    origin: int               # index into origin_asns
    path_class: int           # which of the origin's upstreams
    prepend: int
    community: int            # 0, or the origin's informational community value
    large: bool
    as_set: tuple             # () or the members of an aggregate's AS_SET


class TransitTable:
    """Prefixes, their origins, sites and tweaks, and the transit peers."""

    def __init__(self, v4: int, v6: int, peers: int, seed: int, distinct: tuple[float, float],
                 inherit: float = INHERIT, sets: float = AS_SETS, origins: int | None = None):
        rng = random.Random(seed)
        self.seed, self.sets = seed, sets
        made4 = _prefixes(rng, v4, 32, V4_LENGTHS, _v4_top)
        made6 = _prefixes(rng, v6, 128, V6_LENGTHS, _v6_top)
        total = v4 + v6
        n_origins = origins or max(20, min(60000, total // 25))
        asns = _asn_pool(rng, n_origins + 3000)
        self.origin_asns = asns[:n_origins]
        self.transit_pool = asns[n_origins:]
        firsts = TIER1 + self.transit_pool[-peers:]
        self.peers = [Transit(f"198.51.100.{k + 1}", f"2001:db8:100::{k + 1:x}",
                              f"fe80::100:{k + 1:x}" if k % 2 else None, firsts[k],
                              locations=rng.randint(20, 80), tags=k % 4 != 1,
                              med=("igp", "none", "zero")[k % 3], local_pref=100 - 10 * (k % 3))
                      for k in range(peers)]
        self.origin_code = [rng.choices((0, 1, 2), weights=(90, 2, 8))[0] for _ in range(n_origins)]
        self.upstreams = [rng.choices((1, 2, 3, 4), weights=(45, 35, 15, 5))[0] for _ in range(n_origins)]
        cum, acc = [], 0.0
        for rank in range(n_origins):
            acc += 1.0 / (rank + 1) ** 0.75
            cum.append(acc)
        self.chains: dict[tuple, list[int]] = {}
        self.sites: list[Site] = []
        self.reached: dict[int, float] = {}
        self.prefixes, self.site_of, self.tweak_of = {}, {}, {}
        for family, made in ((4, made4), (6, made6)):
            order, plan = self._origins(rng, cum, made, inherit)
            self.prefixes[family] = [made[i][:2] for i in order]
            target = distinct[0 if family == 4 else 1]
            self.site_of[family], self.tweak_of[family] = self._calibrate(
                random.Random(seed * 7919 + family), family, plan, target)
        # Each feed misses a few prefixes (filtered, or not yet converged).
        self.missing = [{rng.randrange(total) for _ in range(total // 100)} for _ in range(peers)]

    def _origins(self, rng, cum, made, inherit):
        """Prefix order, and per prefix in made order (covering prefixes first):
        (sorted index, the covering prefix's sorted index when a deaggregate or -1, origin)."""
        order = sorted(range(len(made)), key=lambda i: made[i][:2])
        rank = [0] * len(made)
        for r, i in enumerate(order):
            rank[i] = r
        origin: list[int] = []
        plan = []
        for i, (_net, _plen, parent) in enumerate(made):
            if parent >= 0 and rng.random() < inherit:
                origin.append(origin[parent])
                plan.append((rank[i], rank[parent], origin[parent]))
            else:
                origin.append(min(bisect.bisect_left(cum, rng.random() * cum[-1]), len(cum) - 1))
                plan.append((rank[i], -1, origin[-1]))
        return order, plan

    def _assign(self, rng, plan, new_site: float, tweak: float):
        """Sites (appended to self.sites) and tweaks of a family's prefixes, by sorted index."""
        n = len(plan)
        sites, tweaks = [0] * n, [0] * n
        of_origin: dict[int, list[int]] = {}
        for r, p, o in plan:
            if p >= 0:  # a deaggregate: its covering prefix's site, sometimes tuned
                sites[r] = sites[p]
                tweaks[r] = rng.randint(1, TWEAKS) if rng.random() < tweak else tweaks[p]
                continue
            own = of_origin.get(o)
            if own is None or rng.random() < new_site:
                self.sites.append(Site(
                    o, rng.randrange(self.upstreams[o]),
                    rng.choice((1, 1, 1, 2, 2, 3, 4, 6, 9)) if rng.random() < 0.14 else 0,
                    rng.randint(100, 140) if rng.random() < 0.25 else 0,
                    rng.random() < 0.06,
                    tuple(sorted({self.origin_asns[o], *rng.sample(self.origin_asns, rng.choice((1, 2, 3)))}))
                    if rng.random() < self.sets else ()))
                own = of_origin.setdefault(o, [])
                own.append(len(self.sites) - 1)
                sites[r] = own[-1]
            else:
                sites[r] = own[int(len(own) * rng.random() ** 2)]  # the first sites have most prefixes
            tweaks[r] = rng.randint(1, TWEAKS) if rng.random() < tweak else 0
        return sites, tweaks

    def _calibrate(self, rng, family: int, plan, target: float):
        """Sites and tweaks whose distinct share is close to ``target``.

        One knob: the share of prefixes opening a new site up to 1, then the
        share carrying a tweak. Secant steps on the exact share, kept in a
        bracket; each try starts from the same random state.
        """
        state, base = rng.getstate(), len(self.sites)

        def attempt(knob):
            del self.sites[base:]
            rng.setstate(state)
            sites, tweaks = self._assign(rng, plan, min(knob, 1.0), 0.02 + 0.98 * max(0.0, knob - 1.0))
            return self._share(family, sites, tweaks), sites, tweaks

        lo, hi = (0.0, None), (2.0, None)
        knob = min(2.0, target)
        tried = []
        for _ in range(6):
            got, sites, tweaks = attempt(knob)
            tried.append((abs(got - target), knob, got))
            if abs(got - target) < 0.003:
                break
            if got < target:
                lo = (knob, got)
            else:
                hi = (knob, got)
            if lo[1] is not None and hi[1] is not None:
                knob = lo[0] + (hi[0] - lo[0]) * (target - lo[1]) / (hi[1] - lo[1])
            else:
                knob = min(2.0, max(0.0, knob * target / max(got, 1e-6)))
                if (lo[1] is not None and knob <= lo[0]) or (hi[1] is not None and knob >= hi[0]):
                    knob = (lo[0] + hi[0]) / 2
        _, knob, got = min(tried)
        if tried[-1][1] != knob:
            got, sites, tweaks = attempt(knob)
        self.reached[family] = got
        return sites, tweaks

    def _share(self, family: int, sites, tweaks) -> float:
        """Distinct attribute sets per route (by value), the mean over the peers,
        each missing about 1 % of the prefixes."""
        if not sites:
            return 0.0
        keys = set(zip(sites, tweaks))
        found = sum(len({self.attributes(k, family, s, t) for s, t in keys}) for k in range(len(self.peers)))
        return found / (len(self.peers) * len(sites) * 0.99)

    def chain(self, k: int, o: int, c: int, h: int) -> list[int]:
        """The ASNs between peer k and origin o along the origin's path class c,
        as the peer's ingress ``h`` (a hash of peer and site) sees it."""
        base = self.chains.get((o, c))
        if base is None:
            r = random.Random(hash((self.seed, o, c)))
            pool = self.transit_pool
            length = r.choices(list(TRANSIT_CHAIN), weights=list(TRANSIT_CHAIN.values()))[0]
            base = self.chains[(o, c)] = [r.choice(TIER1 if j == 0 else pool[:600] if j < 3 else pool)
                                          for j in range(length)]
        chain = base
        way, pick = h & 7, h >> 3
        if way == 0 and len(base) > 1:      # this ingress reaches the upstream more directly
            chain = base[1:]
        elif way in (3, 4, 5) and base:     # or through another first transit
            chain = [TIER1[pick % len(TIER1)] if way == 3 else self.transit_pool[pick % 600], *base[1:]]
        elif way in (6, 7):                 # or through one more
            chain = [self.transit_pool[pick % 600], *base]
        asn = self.peers[k].asn
        return [a for a in chain if a != asn]

    def attributes(self, k: int, family: int, s: int, t: int) -> tuple:
        """Peer k's route for site s with tweak t: encode_attrs's arguments."""
        peer, site = self.peers[k], self.sites[s]
        o = site.origin
        origin_asn = self.origin_asns[o]
        prepend = site.prepend + (t % 4 if t else 0)
        h = hash((self.seed, k, s))
        seq = (peer.asn, *self.chain(k, o, site.path_class, (h >> 32) & 0xFFFF),
               *([origin_asn] * (1 + prepend)))
        segments = (("seq", seq),) if not site.as_set else (("seq", seq[:-1]), ("set", site.as_set))
        location = (h & 0xFFFF) % peer.locations
        customer = hash((self.seed, k, o)) % 3 == 0  # the origin is in this transit's customer cone
        communities = set()
        if peer.tags:
            tag = peer.asn & 0xFFFF
            communities.update(((tag, 410 if customer else 420), (tag, 1000 + location),
                                (tag, 2000 + location % 6), (tag, 3000 + location % 3)))
        if site.community:
            communities.add((origin_asn & 0xFFFF, site.community))
        if t >= 4:
            communities.add((origin_asn & 0xFFFF, 3000 + t // 4))
        large = ((origin_asn, 1, location % 10 + 1),) if site.large else ()
        med = 10 * ((h >> 16) % 400) + location if peer.med == "igp" else 0 if peer.med == "zero" else None
        local_pref = peer.local_pref + (20 if customer else 0)
        if family == 4:
            hop4, hop6 = peer.ip4, None
        else:
            hop4, hop6 = None, (peer.ip6, peer.link_local) if peer.link_local else (peer.ip6,)
        return (segments, self.origin_code[o], hop4, hop6, med, local_pref, tuple(sorted(communities)), large)


def _write_transit(out, lines, table: TransitTable) -> dict:
    """The records of a transit table; what was written."""
    body = _peer_index_table([Peer(p.ip4, p.asn) for p in table.peers])
    out.write(HEADER.pack(DUMP_TIME, 13, 1, len(body)) + body)
    memo: dict[tuple, tuple[bytes, str | None]] = {}  # (peer, site, tweak) -> (entry, bgpdump text)
    blobs = {4: set(), 6: set()}
    paths = set()
    routes = {4: 0, 6: 0}
    seq = 0
    for family, subtype in ((4, 2), (6, 4)):
        bits = 32 if family == 4 else 128
        seen = blobs[family]
        for (net, plen), s, t in zip(table.prefixes[family], table.site_of[family], table.tweak_of[family]):
            raw = net.to_bytes(bits // 8, "big")[:(plen + 7) // 8]
            if lines:
                addr = ipaddress.IPv4Address(net) if family == 4 else ipaddress.IPv6Address(net)
                prefix_text = f"{addr}/{plen}"
            entries = []
            last = len(table.peers) - 1
            for k, peer in enumerate(table.peers):
                if seq in table.missing[k] and (entries or k < last):  # never a record of no route
                    continue
                got = memo.get((k, s, t))
                if got is None:
                    a = table.attributes(k, family, s, t)
                    blob = encode_attrs(*a)
                    seen.add(blob)
                    paths.add(a[0])
                    originated = DUMP_TIME - 60 - hash((table.seed, k, s)) % (30 * 86400)
                    got = memo[(k, s, t)] = (ENTRY.pack(k, originated, len(blob)) + blob,
                                             _text(a, family) if lines else None)
                entry, text = got
                entries.append(entry)
                if lines:
                    lines.write(f"TABLE_DUMP2|{DUMP_TIME}|B|{peer.ip4}|{peer.asn}|{prefix_text}|{text}\n")
            body = b"".join([struct.pack(">IB", seq, plen), raw, struct.pack(">H", len(entries)), *entries])
            out.write(HEADER.pack(DUMP_TIME, 13, subtype, len(body)) + body)
            seq += 1
            routes[family] += len(entries)
    total = routes[4] + routes[6]
    return {"prefixes": seq, "routes": total, "peers": len(table.peers),
            "attr_sets": len(blobs[4]) + len(blobs[6]), "as_paths": len(paths),
            "as_sets": sum(1 for p in paths if len(p) > 1),
            "distinct": round((len(blobs[4]) + len(blobs[6])) / max(total, 1), 4),
            "distinct_v4": round(len(blobs[4]) / max(routes[4], 1), 4),
            "distinct_v6": round(len(blobs[6]) / max(routes[6], 1), 4)}


def _text(a: tuple, family: int) -> str:
    """The rest of a route's bgpdump -m line."""
    segments, origin, hop4, hop6, med, local_pref, communities, _large = a
    next_hop = hop4 if family == 4 else hop6[0]
    text = " ".join(f"{x}:{y}" for x, y in communities)
    return (f"{_bgpdump_path(segments)}|{ORIGIN_NAMES[origin]}|{next_hop}|{local_pref or 0}|"
            f"{med or 0}|{text}|NAG||")


def write(path: str, v4: int = 1_000_000, v6: int = 220_000, peers: int = 1, seed: int = 1,
          expect: str | None = None, origins: int | None = None, inherit: float = INHERIT,
          sets: float = AS_SETS, distinct: float | tuple[float, float] | None = None) -> dict:
    """Generate the table into ``path`` (and bgpdump's lines into ``expect``).

    ``distinct`` (a share of distinct attribute sets per route, or one for
    IPv4 and one for IPv6) makes every peer a transit feed (see
    TransitTable); without it the table is the router's own (and
    collector-style peers with ``peers`` > 1), as it always was.
    """
    if distinct is not None:
        shares = (distinct, distinct) if isinstance(distinct, (int, float)) else tuple(distinct)
        table = TransitTable(v4, v6, peers, seed, shares, inherit, sets, origins)
        with _open_out(path) as out, (open(expect, "w", buffering=1 << 20) if expect
                                      else contextlib.nullcontext()) as lines:
            summary = _write_transit(out, lines, table)
        summary["calibrated_v4"], summary["calibrated_v6"] = (round(table.reached[4], 4),
                                                              round(table.reached[6], 4))
        return summary
    table = Table(v4, v6, peers, seed, origins, inherit, sets)
    out = _open_out(path)
    lines = open(expect, "w", buffering=1 << 20) if expect else None
    blobs: dict[tuple, tuple[bytes, str]] = {}
    routes = 0
    try:
        body = _peer_index_table(table.peers)
        out.write(HEADER.pack(DUMP_TIME, 13, 1, len(body)) + body)
        seq = 0
        for family, prefixes, picks, subtype in ((4, table.v4, table.route_v4, 2),
                                                 (6, table.v6, table.route_v6, 4)):
            bits = 32 if family == 4 else 128
            for (net, plen), variant in zip(prefixes, picks):
                raw = net.to_bytes(bits // 8, "big")[:(plen + 7) // 8]
                if lines:
                    addr = ipaddress.IPv4Address(net) if family == 4 else ipaddress.IPv6Address(net)
                    prefix_text = f"{addr}/{plen}"
                entries = []
                for k, peer in enumerate(table.peers):
                    if k and seq in table.missing[k]:
                        continue
                    key = (k, family, variant)
                    got = blobs.get(key)
                    if got is None:
                        got = blobs[key] = _route_attrs(table, k, peer, family, variant)
                    blob, text = got
                    entries.append(ENTRY.pack(k, variant.originated, len(blob)) + blob)
                    if lines:
                        lines.write(f"TABLE_DUMP2|{DUMP_TIME}|B|{peer.ip}|{peer.asn}|{prefix_text}|{text}\n")
                body = b"".join([struct.pack(">IB", seq, plen), raw, struct.pack(">H", len(entries)),
                                 *entries])
                out.write(HEADER.pack(DUMP_TIME, 13, subtype, len(body)) + body)
                seq += 1
                routes += len(entries)
    finally:
        out.close()
        if lines:
            lines.close()
    paths = {v.segments for vs in table.variants for v in vs}
    return {"prefixes": len(table.v4) + len(table.v6), "routes": routes, "peers": len(table.peers),
            "attr_sets": len(blobs), "as_paths": len(paths),
            "as_sets": sum(1 for p in paths if any(kind == "set" for kind, _ in p))}


def _open_out(path: str):
    return (gzip.open(path, "wb", compresslevel=6) if path.endswith(".gz")
            else open(path, "wb", buffering=1 << 20))


def _route_attrs(table: Table, k: int, peer: Peer, family: int, v: Variant) -> tuple[bytes, str]:
    """The attribute blob of a route, and the rest of its bgpdump -m line."""
    nb = table.neighbours[v.neighbour]
    segments = v.segments
    if k == 0:  # the router itself: iBGP view, next hop = the neighbour
        local_pref, med = nb.local_pref, v.med
        if not segments:  # originated here
            hop4, hop6 = "0.0.0.0", ("::",)
        else:
            hop4 = nb.v4
            hop6 = (nb.v6, nb.link_local) if nb.link_local else (nb.v6,)
    else:  # a collector peer: eBGP, its own ASN first, next hop itself
        local_pref, med = None, None
        if segments and segments[0][0] == "seq":
            segments = (("seq", (peer.asn,) + segments[0][1]),) + segments[1:]
        else:
            segments = (("seq", (peer.asn,)),) + segments
        hop4 = peer.ip if ":" not in peer.ip else nb.v4
        hop6 = (peer.ip,) if ":" in peer.ip else (nb.v6,)
    blob = encode_attrs(segments, v.origin, hop4 if family == 4 else None,
                        hop6 if family == 6 else None, med, local_pref, v.communities, v.large)
    next_hop = hop4 if family == 4 else hop6[0]
    communities = " ".join(f"{a}:{b}" for a, b in v.communities)
    text = (f"{_bgpdump_path(segments)}|{ORIGIN_NAMES[v.origin]}|{next_hop}|{local_pref or 0}|"
            f"{med or 0}|{communities}|NAG||")
    return blob, text


def check(path: str, expect: str, bgpdump: str = "/usr/bin/bgpdump") -> int:
    """Compare ``bgpdump -m path`` with ``expect`` line by line; the number of lines."""
    with open(expect) as want, subprocess.Popen([bgpdump, "-m", path], stdout=subprocess.PIPE,
                                                stderr=subprocess.DEVNULL, text=True) as proc:
        n = 0
        for n, (got, exp) in enumerate(zip(proc.stdout, want), 1):
            if got != exp:
                raise AssertionError(f"line {n}: bgpdump says {got!r}, expected {exp!r}")
        rest_got, rest_exp = proc.stdout.read(), want.read()
        if rest_got or rest_exp:
            raise AssertionError(f"after line {n}: bgpdump has {len(rest_got)} more bytes, "
                                 f"the expectation {len(rest_exp)}")
    return n


def shares(text: str) -> tuple[float, float]:
    """'0.3' or '0.31,0.55': the distinct share of IPv4 and of IPv6."""
    parts = [float(x) for x in text.split(",")]
    if len(parts) not in (1, 2) or not all(0 < x <= 1 for x in parts):
        raise argparse.ArgumentTypeError(f"{text!r}: one or two shares in (0, 1], e.g. 0.3 or 0.31,0.55")
    return (parts[0], parts[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--v4", type=int, default=1_000_000)
    ap.add_argument("--v6", type=int, default=220_000)
    ap.add_argument("--peers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--inherit", type=float, default=INHERIT,
                    help="share of more-specifics with their covering prefix's path (0: no runs "
                         "of equal attributes, a parser's worst case)")
    ap.add_argument("--distinct", type=shares, metavar="SHARE[,SHARE6]",
                    help="transit feeds with this share of distinct attribute sets per route "
                         "(one for both families, or IPv4,IPv6; real tables: 0.31,0.55)")
    ap.add_argument("--expect", help="write bgpdump -m's expected lines here")
    ap.add_argument("--check", action="store_true", help="run bgpdump -m and compare with --expect")
    args = ap.parse_args(argv)
    if args.check and not args.expect:
        ap.error("--check needs --expect")
    started = time.perf_counter()
    summary = write(args.out, args.v4, args.v6, args.peers, args.seed, args.expect,
                    inherit=args.inherit, distinct=args.distinct)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    print(" ".join(f"{k}={v}" for k, v in summary.items()))
    if args.check:
        print(f"bgpdump -m agrees on all {check(args.out, args.expect)} lines")


if __name__ == "__main__":
    sys.exit(main())
