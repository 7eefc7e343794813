#!/usr/bin/env python3
"""The longest-prefix-match engine (ipr/routing/lpm.py) on a full-table-sized
prefix set, and pytricia on the same data when it is installed.

    .venv/bin/python bench/lpm.py [--v4 1000000] [--v6 220000] [--batch 100000]
                                  [--rir delegated-file ...]

Prefixes are generated deterministically to look like a full table: IPv4 is
mostly /24s, many of them inside /16-/23 aggregates that are announced too;
IPv6 mostly /48s inside /29-/44 allocations, some /56-/64 and a few longer
than /64. Lookups are batches of random addresses, IPv4 and IPv6 mixed,
most of them inside some prefix. Then a country set: the RIR files given
(default: the AFRINIC sample five times over, each copy in another /8 or
/12), or a synthetic 200,000-range set. Prints figures only.
"""
import argparse
import gc
import ipaddress
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ipr.routing import lpm  # noqa: E402

# shared/ lies beside the repository
AFRINIC = ROOT.parent / "shared/formats/samples/rir/delegated-afrinic-extended-20240105.txt"


# -- memory ------------------------------------------------------------------

def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0), so a peak can be read per phase."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- data --------------------------------------------------------------------

def v4_prefixes(count: int, rng) -> list[str]:
    """About ``count`` IPv4 prefixes (duplicates included, as in a real feed
    only by accident)."""
    n_agg = count // 6
    agg_len = rng.choice([16, 17, 18, 19, 20, 21, 22, 23], size=n_agg,
                         p=[.06, .04, .07, .10, .16, .15, .22, .20])
    # Unicast space 1.0.0.0 - 223.255.255.255, aligned to each length.
    agg_start = (rng.integers(1 << 24, 224 << 24, size=n_agg) >> (32 - agg_len)) << (32 - agg_len)
    n24 = count * 3 // 5
    inside = n24 * 3 // 5
    parent = rng.integers(0, n_agg, size=inside)
    span = 1 << (24 - agg_len[parent])
    s24_in = agg_start[parent] + (rng.integers(0, 1 << 30, size=inside) % span << 8)
    s24_out = (rng.integers(1 << 24, 224 << 24, size=n24 - inside) >> 8) << 8
    n_rest = count - n_agg - n24
    rest_len = rng.choice([8, 10, 12, 13, 14, 15, 25, 26, 27, 28, 29, 30, 32], size=n_rest,
                          p=[.002, .004, .01, .02, .03, .05, .2, .15, .12, .1, .1, .1, .114])
    rest_start = (rng.integers(1 << 24, 224 << 24, size=n_rest) >> (32 - rest_len)) << (32 - rest_len)
    starts = np.concatenate([agg_start, s24_in, s24_out, rest_start]).astype(np.uint32)
    lengths = np.concatenate([agg_len, np.full(n24, 24), rest_len])
    order = rng.permutation(len(starts))
    texts = [ipaddress.IPv4Address(int(s)).compressed for s in starts[order]]
    return [f"{t}/{n}" for t, n in zip(texts, lengths[order].tolist())]


def v6_prefixes(count: int, rng) -> list[str]:
    n_alloc = count // 10
    alloc_len = rng.choice([29, 32, 36, 40, 44], size=n_alloc, p=[.1, .55, .1, .1, .15])
    # 2000::/3, aligned; the high 64 bits carry every length up to /64.
    alloc_hi = ((rng.integers(0, 1 << 61, size=n_alloc, dtype=np.uint64) | np.uint64(1 << 61))
                >> (64 - alloc_len).astype(np.uint64)) << (64 - alloc_len).astype(np.uint64)
    n48 = count * 7 // 10
    parent = rng.integers(0, n_alloc, size=n48)
    room = np.uint64(1) << (48 - alloc_len[parent]).astype(np.uint64)   # /48s in the allocation
    within = rng.integers(0, 1 << 62, size=n48, dtype=np.uint64) % room
    hi48 = alloc_hi[parent] + (within << np.uint64(16))
    n_rest = count - n_alloc - n48
    rest_len = rng.choice([56, 60, 64, 80, 96, 112, 126, 127, 128], size=n_rest,
                          p=[.5, .15, .32, .002, .005, .005, .002, .003, .013])
    parent = rng.integers(0, n48, size=n_rest)
    rest_hi = hi48[parent] | (rng.integers(0, 1 << 16, size=n_rest, dtype=np.uint64)
                              >> (64 - np.minimum(rest_len, 64)).astype(np.uint64)
                              << (64 - np.minimum(rest_len, 64)).astype(np.uint64))
    low_bits = np.maximum(rest_len - 64, 0)
    rest_lo = np.where(low_bits > 0,
                       (rng.integers(0, 1 << 63, size=n_rest, dtype=np.uint64)
                        >> (64 - low_bits).astype(np.uint64) << (64 - low_bits).astype(np.uint64)), 0)
    his = np.concatenate([alloc_hi, hi48, rest_hi]).astype(np.uint64)
    los = np.concatenate([np.zeros(n_alloc + n48, dtype=np.uint64), rest_lo.astype(np.uint64)])
    lengths = np.concatenate([alloc_len, np.full(n48, 48), rest_len])
    order = rng.permutation(len(his))
    return [f"{ipaddress.IPv6Address(int(h) << 64 | int(lo)).compressed}/{n}"
            for h, lo, n in zip(his[order].tolist(), los[order].tolist(), lengths[order].tolist())]


def addresses(prefixes: list[str], count: int, rng, v6_share: float = 0.3) -> np.ndarray:
    """``count`` random 16-byte addresses (the spool's form): 80% inside a
    random prefix of ``prefixes``, the rest anywhere; ``v6_share`` IPv6."""
    v4 = [p for p in prefixes if ":" not in p]
    v6 = [p for p in prefixes if ":" in p]
    out = bytearray()
    for _ in range(count):
        pool = v6 if (rng.random() < v6_share and v6) or not v4 else v4
        six = ":" in pool[0]
        if rng.random() < 0.8:
            net = ipaddress.ip_network(pool[int(rng.integers(len(pool)))])
            host = int(net.network_address) + int(rng.integers(0, 1 << 62)) % net.num_addresses
        else:
            host = int(rng.integers(0, 1 << 62)) << 66 if six else int(rng.integers(0, 1 << 32))
        if six:
            if (host >> 32) == 0xFFFF:   # an IPv6 address must not look IPv4-mapped
                host |= 1 << 100
            out += host.to_bytes(16, "big")
        else:
            out += b"\0" * 10 + b"\xff\xff" + (host & 0xFFFFFFFF).to_bytes(4, "big")
    return np.frombuffer(bytes(out), dtype="V16")


def rir_ranges(paths, copies: int) -> list[str]:
    from ipr.routing.dumps import rir
    items = []
    for path in paths:
        with open(path, "rb") as f:
            items.extend(rir.parse(f, source=str(path)))
    base = [p for p, _ in items]
    out = list(base)
    # Copies moved into other address space stand in for the other RIRs.
    for k in range(1, copies):
        for p in base:
            net = ipaddress.ip_network(p)
            if net.version == 4:
                shifted = (int(net.network_address) + (k * 37 << 24)) % (1 << 32)
                out.append(f"{ipaddress.IPv4Address(shifted)}/{net.prefixlen}")
            else:
                shifted = int(net.network_address) ^ (k << 116)
                out.append(f"{ipaddress.IPv6Address(shifted)}/{net.prefixlen}")
    return out


def synthetic_ranges(count: int, rng) -> list[str]:
    """Country-like data: non-overlapping aligned blocks of /12-/24 (v4) and /19-/48 (v6)."""
    n4 = count * 3 // 4
    lengths = rng.choice(range(12, 25), size=n4)
    starts = (rng.integers(1 << 24, 224 << 24, size=n4) >> (32 - lengths)) << (32 - lengths)
    v4 = [f"{ipaddress.IPv4Address(int(s))}/{n}" for s, n in zip(starts.tolist(), lengths.tolist())]
    n6 = count - n4
    lengths = rng.choice([19, 20, 22, 24, 26, 28, 29, 32, 36, 40, 44, 48], size=n6)
    his = (rng.integers(1 << 61, 1 << 62, size=n6, dtype=np.uint64)
           >> (64 - lengths).astype(np.uint64)) << (64 - lengths).astype(np.uint64)
    v6 = [f"{ipaddress.IPv6Address(int(h) << 64)}/{n}" for h, n in zip(his.tolist(), lengths.tolist())]
    return v4 + v6


# -- measurements -------------------------------------------------------------

def build(prefixes: list[str]):
    gc.collect()
    can_reset = reset_peak()
    before = rss_mb()
    started = time.perf_counter()
    table = lpm.Table.build(zip(prefixes, range(len(prefixes))))
    seconds = time.perf_counter() - started
    peak = (peak_mb() - before) if can_reset else float("nan")
    return table, seconds, peak


def lookup_rate(table, batches) -> tuple[float, np.ndarray]:
    table.lookup_many(batches[0])  # warm caches
    started = time.perf_counter()
    results = [table.lookup_many(b) for b in batches]
    seconds = time.perf_counter() - started
    return sum(len(b) for b in batches) / seconds, np.concatenate(results)


def pytricia_run(prefixes, batches):
    try:
        import pytricia
    except ImportError:
        return None
    gc.collect()
    reset_peak()
    before = rss_mb()
    started = time.perf_counter()
    t4, t6 = pytricia.PyTricia(32), pytricia.PyTricia(128)
    for i, p in enumerate(prefixes):
        tree = t6 if ":" in p else t4
        if not tree.has_key(p):  # equal prefixes: the first wins, as in lpm
            tree[p] = i
    built = time.perf_counter() - started
    peak = peak_mb() - before
    # Its best input: packed bytes, IPv4 as 4 bytes (conversion not timed).
    packed = []
    for b in batches:
        raw = b.view(np.uint8).reshape(-1, 16)
        mapped = (raw[:, :10] == 0).all(axis=1) & (raw[:, 10] == 255) & (raw[:, 11] == 255)
        packed.append([bytes(r[12:]) if m else bytes(r) for r, m in zip(raw, mapped)])
    started = time.perf_counter()
    results = []
    for keys in packed:
        out = np.empty(len(keys), dtype=np.int64)
        for k, key in enumerate(keys):
            out[k] = (t4 if len(key) == 4 else t6).get(key, -1)
        results.append(out)
    rate = sum(len(k) for k in packed) / (time.perf_counter() - started)
    return built, peak, rate, np.concatenate(results)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--v4", type=int, default=1_000_000)
    parser.add_argument("--v6", type=int, default=220_000)
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--rir", nargs="*", default=None, help="RIR delegated files (default: the AFRINIC sample)")
    parser.add_argument("--copies", type=int, default=5, help="copies of the RIR set, moved apart")
    args = parser.parse_args()
    rng = np.random.default_rng(20240105)

    print(f"generating {args.v4:,} IPv4 + {args.v6:,} IPv6 prefixes ...", flush=True)
    prefixes = v4_prefixes(args.v4, rng) + v6_prefixes(args.v6, rng)
    order = rng.permutation(len(prefixes))
    prefixes = [prefixes[i] for i in order]
    longer = sum(1 for p in prefixes if ":" in p and int(p.rsplit("/", 1)[1]) > 64)
    batches = [addresses(prefixes, args.batch, rng) for _ in range(args.batches)]

    table, seconds, peak = build(prefixes)
    print(f"\nlpm.Table.build  {len(table):,} prefixes ({longer:,} IPv6 longer than /64)")
    print(f"  build            {seconds:.2f} s")
    print(f"  table nbytes     {table.nbytes / 2**20:.1f} MiB "
          f"({len(table._b4):,} IPv4 + {len(table._b6_hi):,} IPv6 intervals)")
    print(f"  peak RSS delta   {peak:.1f} MiB (during build)")
    rate, ours = lookup_rate(table, batches)
    hit = float((ours >= 0).mean())
    print(f"  lookup_many      {rate / 1e6:.2f} M addresses/s "
          f"({args.batches} batches of {args.batch:,}, 30% IPv6, {hit:.0%} matched)")
    packed = table.networks(np.arange(len(table)))  # the arrays the loader has
    gc.collect()
    can_reset = reset_peak()
    before = rss_mb()
    started = time.perf_counter()
    from_arrays = lpm.Table.build_packed(*packed)
    packed_s = time.perf_counter() - started
    packed_peak = (peak_mb() - before) if can_reset else float("nan")
    same = all(np.array_equal(a, b) for a, b in zip(from_arrays.arrays().values(), table.arrays().values()))
    print(f"  build_packed     {packed_s:.2f} s from arrays (the loader's way), peak RSS delta "
          f"{packed_peak:.1f} MiB; the same table: {same}")
    del from_arrays, packed
    one = lpm.pack(["10.1.2.3"])
    started = time.perf_counter()
    for _ in range(10_000):
        table.lookup_many(one)
    print(f"  single lookups   {(time.perf_counter() - started) / 10_000 * 1e6:.1f} µs each (batch of 1)")

    tricia = pytricia_run(prefixes, batches)
    if tricia is None:
        print("\npytricia: not installed, no comparison")
    else:
        built, tpeak, trate, theirs = tricia
        same = bool((theirs == ours).all())
        print("\npytricia (same prefixes, lookups from packed bytes)")
        print(f"  build            {built:.2f} s   (lpm: {seconds / built:.2f}x its time)")
        print(f"  peak RSS delta   {tpeak:.1f} MiB")
        print(f"  lookups          {trate / 1e6:.2f} M addresses/s   (lpm: {rate / trate:.1f}x its rate)")
        print(f"  same answers     {same}")
    del table

    if args.rir is None and AFRINIC.exists():
        ranges = rir_ranges([AFRINIC], args.copies)
        what = f"AFRINIC sample x{args.copies}"
    elif args.rir:
        ranges = rir_ranges(args.rir, 1)
        what = ", ".join(args.rir)
    else:
        ranges = synthetic_ranges(200_000, rng)
        what = "synthetic"
    countries, seconds, peak = build(ranges)
    batches = [addresses(ranges, args.batch, rng) for _ in range(2)]
    rate, _ = lookup_rate(countries, batches)
    print(f"\ncountry ranges ({what}): {len(ranges):,} prefixes")
    print(f"  build {seconds:.2f} s, nbytes {countries.nbytes / 2**20:.1f} MiB, "
          f"lookups {rate / 1e6:.2f} M addresses/s")
    synthetic = synthetic_ranges(200_000, rng)
    countries, seconds, peak = build(synthetic)
    print(f"country ranges (synthetic): {len(synthetic):,} prefixes")
    print(f"  build {seconds:.2f} s, nbytes {countries.nbytes / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
