#!/usr/bin/env python3
"""What an MRT table is made of: the figures that tell a real table from a generated one.

    .venv/bin/python bench/table_stats.py FILE [FILE ...] [--full-share 0.5]

Reads each file with ``ipr.routing.dumps.mrt.entries`` (any compression;
a file cut short, like the first-MiB excerpts of public RIBs, is read up to
its last complete record and says so) and prints one column per file:

- routes, prefixes and routes per prefix, by address family;
- the prefix-length mix (share of prefixes) and the AS-path length mix
  (share of routes; prepends count, an AS_SET counts as one ASN);
- the share of routes with a prepend, an AS_SET, communities, large
  communities, a MED, a LOCAL_PREF;
- distinct attribute sets per route: by value (next hop, AS path, ORIGIN,
  MED, LOCAL_PREF, communities: what the loader stores) for all peers
  together and for each full-feed peer alone (a peer with at least
  ``--full-share`` of the largest peer's routes in that family: the mean
  and the range), and the parser's own count over the file
  (``Stats.attr_sets``: distinct ``Attrs`` values, both families).

Figures only, for comparing tables; nothing here judges them.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ipr.routing.dumps import mrt  # noqa: E402

V4_BUCKETS = ((0, 15, "≤/15"), (16, 16, "/16"), (17, 19, "/17–/19"), (20, 21, "/20–/21"),
              (22, 22, "/22"), (23, 23, "/23"), (24, 24, "/24"), (25, 32, ">/24"))
V6_BUCKETS = ((0, 28, "≤/28"), (29, 31, "/29–/31"), (32, 32, "/32"), (33, 39, "/33–/39"),
              (40, 43, "/40–/43"), (44, 44, "/44"), (45, 47, "/45–/47"), (48, 48, "/48"),
              (49, 128, ">/48"))
PATH_BUCKETS = ((0, 0, "0"), (1, 1, "1"), (2, 2, "2"), (3, 3, "3"), (4, 4, "4"), (5, 5, "5"),
                (6, 6, "6"), (7, 8, "7–8"), (9, 10, "9–10"), (11, 10 ** 6, "11+"))


class Family:
    """The counts of one address family of one file."""

    def __init__(self):
        self.routes = 0
        self.prefixes = 0
        self.plen = Counter()           # prefix length -> prefixes
        self.path_len = Counter()       # AS path length -> routes
        self.flags = Counter()          # 'prepend', 'set', 'comm', 'large', 'med', 'lp' -> routes
        self.sets: set = set()          # distinct (attrs number, ORIGIN), all peers
        self.by_peer: dict = defaultdict(set)
        self.peer_routes = Counter()


def read(path: str) -> dict:
    """Read one file; the figures by family (4, 6) and over the file."""
    stats = mrt.Stats()
    families = {4: Family(), 6: Family()}
    numbers: dict = {}      # Attrs by value -> number
    facts: dict = {}        # id(Attrs) -> (number, path length, flags); the parser shares objects
    keep: list = []         # the objects behind facts' keys stay alive
    last = None
    fam = families[4]
    with mrt.open_dump(path) as f:
        for route, _time, peer_ip, peer_as, _path_id, origin in mrt.entries(
                f, source=os.path.basename(path), accept_truncated=True, stats=stats):
            prefix, attrs, _best = route
            if prefix != last:
                last = prefix
                fam = families[6 if ":" in prefix else 4]
                fam.prefixes += 1
                fam.plen[int(prefix.rpartition("/")[2])] += 1
            got = facts.get(id(attrs))
            if got is None:
                got = facts[id(attrs)] = _facts(attrs, numbers)
                keep.append(attrs)
            number, length, flags = got
            fam.routes += 1
            fam.path_len[length] += 1
            for flag in flags:
                fam.flags[flag] += 1
            key = (number, origin)
            fam.sets.add(key)
            peer = (peer_ip, peer_as)
            fam.by_peer[peer].add(key)
            fam.peer_routes[peer] += 1
    return {"families": families, "attr_sets": stats.attr_sets, "routes": stats.routes,
            "truncated_at": stats.truncated_at, "bytes": stats.bytes}


def _facts(attrs, numbers: dict) -> tuple:
    number = numbers.setdefault(attrs, len(numbers))
    path = attrs.as_path
    length, flags, prev = 0, [], None
    in_set = False
    for token in path.split():
        if token.startswith("{"):
            in_set = True
            length += 1
            flags.append("set")
        if not in_set:
            length += 1
            if token == prev and "prepend" not in flags:
                flags.append("prepend")
            prev = token
        if token.endswith("}"):
            in_set = False
    communities = attrs.communities.split()
    if any(c.count(":") == 1 for c in communities):
        flags.append("comm")
    if any(c.count(":") == 2 for c in communities):
        flags.append("large")
    if attrs.med is not None:
        flags.append("med")
    if attrs.local_pref is not None:
        flags.append("lp")
    return number, length, tuple(flags)


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "–"


def _mix(counter: Counter, buckets, whole: int) -> list[tuple[str, str]]:
    return [(label, _share(sum(n for k, n in counter.items() if lo <= k <= hi), whole))
            for lo, hi, label in buckets]


def rows(result: dict, full_share: float) -> list[tuple[str, str]]:
    """(label, value) lines of one file, the same labels for every file."""
    out = []
    fams = result["families"]
    routes = sum(f.routes for f in fams.values())
    out.append(("routes", f"{routes:,}"))
    if result["truncated_at"] is not None:
        out.append(("(file cut short; read up to byte)", f"{result['truncated_at']:,}"))
    else:
        out.append(("(file cut short; read up to byte)", "–"))
    out.append(("distinct attribute sets per route (the parser's Stats.attr_sets)",
                f"{result['attr_sets'] / routes:.3f}" if routes else "–"))
    for v, fam in fams.items():
        name = f"IPv{v}"
        out.append((f"{name} routes", f"{fam.routes:,}"))
        out.append((f"{name} prefixes", f"{fam.prefixes:,}"))
        out.append((f"{name} routes per prefix", f"{fam.routes / fam.prefixes:.2f}" if fam.prefixes else "–"))
        out.append((f"{name} peers with routes", str(len(fam.peer_routes))))
        if fam.routes:
            most = max(fam.peer_routes.values())
            full = [p for p, n in fam.peer_routes.items() if n >= full_share * most]
            per_peer = [len(fam.by_peer[p]) / fam.peer_routes[p] for p in full]
            out.append((f"{name} distinct sets per route, all peers", f"{len(fam.sets) / fam.routes:.3f}"))
            out.append((f"{name} distinct sets per route, each full-feed peer",
                        f"{sum(per_peer) / len(per_peer):.3f} ({min(per_peer):.2f}–{max(per_peer):.2f}, "
                        f"{len(full)} peers)"))
        else:
            out.append((f"{name} distinct sets per route, all peers", "–"))
            out.append((f"{name} distinct sets per route, each full-feed peer", "–"))
        for flag, label in (("comm", "with communities"), ("large", "with large communities"),
                            ("med", "with MED"), ("lp", "with LOCAL_PREF"), ("prepend", "with a prepend"),
                            ("set", "ending in an AS_SET")):
            out.append((f"{name} routes {label}", _share(fam.flags[flag], fam.routes)))
        for label, share in _mix(fam.plen, V4_BUCKETS if v == 4 else V6_BUCKETS, fam.prefixes):
            out.append((f"{name} prefixes {label}", share))
        for label, share in _mix(fam.path_len, PATH_BUCKETS, fam.routes):
            out.append((f"{name} AS path length {label}", share))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--full-share", type=float, default=0.5,
                    help="a peer with at least this share of the largest peer's routes is a full feed")
    args = ap.parse_args(argv)
    columns = []
    for path in args.files:
        result = read(path)
        columns.append(dict(rows(result, args.full_share)))
    labels = list(columns[0])
    names = [Path(p).name for p in args.files]
    print("| | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for label in labels:
        print(f"| {label} | " + " | ".join(c[label] for c in columns) + " |")


if __name__ == "__main__":
    main()
