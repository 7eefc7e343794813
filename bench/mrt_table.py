#!/usr/bin/env python3
"""A full-table-sized MRT TABLE_DUMP_V2 RIB, and what ``bgpdump -m`` says of it.

    .venv/bin/python bench/mrt_table.py OUT.mrt [--v4 1000000] [--v6 220000]
        [--peers 1] [--seed 1] [--inherit 0.6] [--expect OUT.bgpdump-m] [--check]

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
import gzip
import ipaddress
import random
import struct
import subprocess
import sys
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


def write(path: str, v4: int = 1_000_000, v6: int = 220_000, peers: int = 1, seed: int = 1,
          expect: str | None = None, origins: int | None = None, inherit: float = INHERIT,
          sets: float = AS_SETS) -> dict:
    """Generate the table into ``path`` (and bgpdump's lines into ``expect``)."""
    table = Table(v4, v6, peers, seed, origins, inherit, sets)
    out = (gzip.open(path, "wb", compresslevel=6) if path.endswith(".gz")
           else open(path, "wb", buffering=1 << 20))
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
    ap.add_argument("--expect", help="write bgpdump -m's expected lines here")
    ap.add_argument("--check", action="store_true", help="run bgpdump -m and compare with --expect")
    args = ap.parse_args(argv)
    if args.check and not args.expect:
        ap.error("--check needs --expect")
    summary = write(args.out, args.v4, args.v6, args.peers, args.seed, args.expect,
                    inherit=args.inherit)
    print(" ".join(f"{k}={v}" for k, v in summary.items()))
    if args.check:
        print(f"bgpdump -m agrees on all {check(args.out, args.expect)} lines")


if __name__ == "__main__":
    sys.exit(main())
