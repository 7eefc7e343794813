"""The compiled MRT parser (ipr.routing.dumps._mrt) and its pure-Python twin
(mrt.parse + batches.from_routes) on the same inputs: identical batches (as
one concatenated stream), Stats and errors. Every comparison runs the
compiled one with IPR_NATIVE=1, so a missing build fails here instead of
being skipped. Also: the twin's best-path choice is linear in the routes."""
from __future__ import annotations

import gzip
import ipaddress
import struct
from pathlib import Path

import numpy as np
import pytest

from bench import mrt_table
from ipr import native
from ipr.routing.dumps import DumpError, mark_best, mrt
from test_routing_mrt import (CONFED_SEQ, GOOD, IGP, PEERS, SEQ, SET, as_path, attr, legacy, mp_reach, next_hop,
                              peer_table, record, record_ends, rib, u32)

SAMPLES = Path(__file__).resolve().parents[2] / "shared/formats/samples/mrt"
SAMPLE_FILES = sorted(p.name for p in SAMPLES.iterdir()
                      if not p.name.endswith((".txt", ".EXPECTED_bgpdump-vm.gz"))) if SAMPLES.is_dir() else []


class Parsed:
    """What one parser gave: routes as rows, the attribute sets in number
    order, the Stats and the error (type, source, where, message) if any."""

    def __init__(self, mode: str, data, monkeypatch=None, **kw):
        stats = mrt.Stats()
        self.rows, self.attrs, self.error, self.batches = [], [], None, 0
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("IPR_NATIVE", mode)
            native.reset()
            try:
                for batch in mrt.batches(data, "test.mrt", stats=stats, **kw):
                    self.add(batch)
            except DumpError as exc:
                self.error = (type(exc), exc.source, exc.where, exc.message)
            finally:
                native.reset()
        self.stats = stats

    def add(self, batch) -> None:
        n = len(batch)
        assert n and batch.addr.shape == (n, 16 if batch.v6 else 4)
        assert batch.first_attr == len(self.attrs)  # numbers go on from the last batch
        self.attrs.extend(batch.attrs)
        assert batch.attr.max() < len(self.attrs)
        if self.rows:  # a batch never cuts a group of routes of one prefix
            prev = self.rows[-1]
            assert (prev[0], prev[1], prev[2]) != (batch.v6, batch.addr[0].tobytes(), int(batch.plen[0]))
        self.rows.extend(zip([batch.v6] * n, [a.tobytes() for a in batch.addr], batch.plen.tolist(),
                             batch.attr.tolist(), batch.best.tolist()))
        self.batches += 1

    def same_as(self, other: "Parsed") -> None:
        assert self.error == other.error
        assert self.stats == other.stats
        if self.error is None:  # before an error each hands out what it had
            assert self.rows == other.rows
            assert self.attrs == other.attrs


def both(data, **kw) -> Parsed:
    twin = Parsed("0", data, **kw)
    compiled = Parsed("1", data, **kw)
    twin.same_as(compiled)
    return compiled


def test_the_compiled_parser_is_there_when_asked_for(monkeypatch):
    monkeypatch.setenv("IPR_NATIVE", "1")
    native.reset()
    try:
        assert native.compiled("ipr.routing.dumps._mrt", "MRT parser") is not None
    finally:
        native.reset()


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_both_read_every_sample_alike(name):
    with mrt.open_dump(str(SAMPLES / name)) as f:
        raw = f.read()
    got = both(raw)
    with mrt.open_dump(str(SAMPLES / name)) as f:  # also through the decompressing stream
        streamed = Parsed("1", f)
    assert streamed.rows == got.rows and streamed.error == got.error
    if "3samples" not in name:
        assert got.error is None and got.rows


def test_the_batches_hold_what_parse_yields():
    raw = gzip.decompress((SAMPLES / "bgpdump__bview.64k_stream_overflow.gz").read_bytes())
    got = Parsed("1", raw)
    routes = list(mrt.parse(raw))
    assert len(got.rows) == len(routes) == 23
    for (v6, addr, plen, number, best), route in zip(got.rows, routes):
        net = ipaddress.ip_network(route.prefix)
        assert (v6, addr, plen) == (net.version == 6, net.network_address.packed, net.prefixlen)
        assert got.attrs[number] == route.attrs and best == route.best


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    d = tmp_path_factory.mktemp("tables")
    made = {}
    for name, kw in {"one": dict(v4=3000, v6=600, seed=5, sets=0.05),
                     "four": dict(v4=800, v6=200, peers=4, seed=6),
                     "distinct": dict(v4=1500, v6=300, peers=2, seed=7, distinct=0.75),
                     "flat": dict(v4=1500, v6=300, peers=2, seed=8, inherit=0.0)}.items():
        path = d / f"{name}.mrt"
        mrt_table.write(str(path), **kw)
        made[name] = path.read_bytes()
    return made


@pytest.mark.parametrize("name", ["one", "four", "distinct", "flat"])
def test_both_read_generated_tables_alike(tables, name):
    got = both(tables[name])
    assert got.error is None and got.stats.routes == len(got.rows) > 1000
    assert got.stats.attr_sets == len(got.attrs)


@pytest.mark.parametrize("size", [1, 7, 1000])
def test_batch_size_does_not_change_the_stream(tables, size):
    whole = Parsed("1", tables["four"])
    small = both(tables["four"], size=size)
    assert small.rows == whole.rows and small.attrs == whole.attrs
    assert small.batches > whole.batches


def test_reads_of_any_size_give_the_same(tables, monkeypatch):
    # Small reads: records cut between reads, the tail kept and completed.
    whole = Parsed("1", tables["four"])
    for chunk in (1, 13, 1000):
        monkeypatch.setattr(mrt, "CHUNK", chunk)
        got = both(tables["four"])
        assert got.rows == whole.rows and got.stats == whole.stats


def test_files_cut_anywhere_fail_alike_or_keep_the_same_routes(tables):
    raw = tables["four"][:60000]
    ends = record_ends(raw)
    cuts = sorted({0, 1, 11, 12, 13} | set(range(0, len(raw), 997)) | {e + d for e in ends[::37] for d in (-1, 0, 5)})
    for cut in cuts:
        data = raw[:cut]
        failed = both(data)
        kept = both(data, accept_truncated=True)
        assert kept.error is None
        if cut in ends or cut == 0:
            assert failed.error is None
        else:
            assert failed.error[2] == f"byte {max([e for e in ends if e < cut], default=0)}"
            assert kept.stats.truncated_at == int(failed.error[2].split()[1])


# -- hand-built inputs: every edge and error of test_routing_mrt ------------------

def addpath_and_generic() -> bytes:
    hop = IGP + as_path((SEQ, [64500])) + next_hop("192.0.2.1")
    generic = record(13, 6, struct.pack(">IHBB", 1, 1, 1, 24) + bytes([203, 0, 113])
                     + struct.pack(">HHIH", 1, 0, 1, len(hop)) + hop)
    generic6 = record(13, 12, struct.pack(">IHBB", 1, 2, 1, 32) + bytes.fromhex("20010db8")
                      + struct.pack(">HHIIH", 1, 0, 1, 5, len(hop)) + hop)
    vpn = record(13, 6, struct.pack(">IHB", 2, 1, 128) + b"\x00" * 4)
    low = IGP + as_path((SEQ, [64500])) + next_hop("192.0.2.1") + u32(5, 100)
    high = IGP + as_path((SEQ, [64501, 64502])) + next_hop("192.0.2.2") + u32(5, 200)
    return (PEERS + generic + vpn + generic6 + rib("192.0.2.0/24", hop, sub=3) + record(16, 4, bytes(20))
            + rib("192.0.2.0/24", low) + rib("192.0.2.0/24", (1, 9, high)) + rib("192.0.2.0/24")
            + rib("198.51.100.0/24", (0, 1, low), (1, 2, low), (0, 3, high))
            + rib("2001:db8::/32", IGP + mp_reach("2001:db8::1", "fe80::1")))


def legacy_table() -> bytes:
    blob = (IGP + as_path((SEQ, [64500, 23456, 23456]), size=2)
            + as_path((SEQ, [4200000000, 4200000001]), code=17) + next_hop("192.0.2.1"))
    longer = (IGP + as_path((SEQ, [64500]), size=2)
              + as_path((SEQ, [4200000000, 4200000001]), code=17) + next_hop("192.0.2.1"))
    aggregate = (IGP + as_path((SEQ, [64500, 23456]), (SET, [64510, 23456]), size=2)
                 + as_path((SEQ, [4200000000]), (SET, [64510, 4200000002]), code=17) + next_hop("192.0.2.1"))
    confed = (IGP + as_path((CONFED_SEQ, [65001]), (SEQ, [64500, 23456]), size=2)
              + as_path((SEQ, [4200000003]), code=17) + next_hop("192.0.2.1"))
    v6 = IGP + as_path((SEQ, [64500]), size=2) + mp_reach("2001:db8::1", full=True)
    return (legacy("192.0.2.0/24", "192.0.2.254", 64500, blob)
            + legacy("198.51.100.0/24", "192.0.2.254", 64500, longer)
            + legacy("203.0.113.0/24", "192.0.2.254", 64500, aggregate)
            + legacy("203.0.113.0/24", "192.0.2.253", 64501, confed)
            + legacy("2001:db8::/32", "192.0.2.1", 64500, v6)
            + legacy("2001:db8::/32", "2001:db8::1", 64501, v6 + u32(5, 300)))


def equal_values() -> bytes:
    # Blobs that differ but decode to equal Attrs, and blobs that look alike but do not.
    a = IGP + as_path((SEQ, [64500, 64501])) + next_hop("192.0.2.1")
    same = [attr(1, b"\x02") + as_path((SEQ, [64500]), (SEQ, [64501])) + next_hop("192.0.2.1"),
            next_hop("192.0.2.1") + as_path((SEQ, [64500]), (CONFED_SEQ, [1]), (SEQ, [], ), (SEQ, [64501])),
            a + attr(6, b"") + next_hop("192.0.2.1"),
            IGP + next_hop("192.0.2.9") + as_path((SEQ, [64500, 64501])) + next_hop("192.0.2.1"),
            a + attr(8, b""), a + attr(32, b"", flags=0xC0)]  # no communities: ''

    different = [IGP + as_path((SEQ, [64500]), (SET, [64501])) + next_hop("192.0.2.1"),
                 IGP + as_path((SEQ, [64500, 64501])) + next_hop("0.0.0.0"),
                 a + u32(5, 100), a + u32(4, 0),
                 a + attr(8, struct.pack(">HH", 1, 2)), a + attr(32, struct.pack(">III", 1, 2, 0), flags=0xC0),
                 IGP + as_path((SEQ, [64500]), (SET, [64501, 64502])) + next_hop("192.0.2.1"),
                 IGP + as_path((SEQ, [64500]), (SET, [64501]), (SET, [64502])) + next_hop("192.0.2.1")]
    prefixes = [f"10.{i}.0.0/16" for i in range(len(same) + len(different) + 1)]
    return PEERS + b"".join(rib(p, blob) for p, blob in zip(prefixes, [a] + same + different))


def test_sets_are_numbered_by_value_not_by_blob():
    got = both(equal_values())
    numbers = [row[3] for row in got.rows]
    assert numbers[:7] == [0] * 7
    assert numbers[7:] == list(range(1, 9))
    assert got.stats.attr_sets == 9


@pytest.mark.parametrize("make", [addpath_and_generic, legacy_table, equal_values])
def test_both_read_hand_built_records_alike(make):
    got = both(make())
    assert got.error is None and got.rows


def error_inputs() -> list[bytes]:
    """Every malformed input of test_routing_mrt, and a few more."""
    head = PEERS + rib("192.0.2.0/24", GOOD)
    last = rib("198.51.100.0/24", GOOD)
    out = [head + last[:-5], head + b"\x00" * 7, head + rib("198.51.100.0/24", (0, GOOD), (2, GOOD)),
           head + rib("192.0.2.0/24", GOOD, plen=33, raw_prefix=b"\x00" * 17),
           head + rib("2001:db8::/32", GOOD, plen=129, raw_prefix=b"\x00" * 17)]
    bad = bytearray(rib("192.0.2.0/24", GOOD))
    struct.pack_into(">H", bad, 22 + 6, len(GOOD) + 3)
    out.append(PEERS + bytes(bad))
    blob = IGP + as_path((SEQ, [64500])) + struct.pack(">BBB", 0x40, 3, 4) + b"\xc0\x00\x02"
    out.append(PEERS + rib("192.0.2.0/24", blob))
    for bad_attr in [attr(1, b"\x07"), attr(1, b""), attr(1, b"\x00\x01"), attr(3, b"\xc0\x00\x02"),
                     attr(5, b"\x00\x00\x64"), attr(4, b"\x00"), attr(8, b"\x00\x01\x00"),
                     attr(32, b"\x00" * 8, flags=0xC0), attr(2, struct.pack(">BBI", SEQ, 2, 64500)),
                     attr(2, struct.pack(">BBI", 9, 1, 64500)), attr(2, b"\x02"),
                     attr(14, b"\x05\x01\x02", flags=0x80), attr(14, b"", flags=0x80),
                     attr(14, b"\x05" + bytes(5), flags=0x80),
                     attr(14, struct.pack(">HBB", 2, 1, 16) + bytes(4), flags=0x80),
                     b"\x40", b"\x50\x02\x00"]:
        out.append(PEERS + rib("192.0.2.0/24", IGP + next_hop("192.0.2.1") + bad_attr))
    good = rib("192.0.2.0/24", GOOD)
    more = bytearray(good)
    struct.pack_into(">H", more, 20, 2)
    out.append(PEERS + bytes(more))
    extra = bytearray(good + b"\x00\x00")
    struct.pack_into(">I", extra, 8, len(good) - 12 + 2)
    out.append(PEERS + bytes(extra))
    short = bytearray(PEERS + good)
    pos = 0
    while pos < len(short):
        length = struct.unpack_from(">I", short, pos + 8)[0]
        struct.pack_into(">I", short, pos + 8, length - 4)
        pos += 12 + length
    out.append(bytes(short))
    lblob = IGP + as_path((SEQ, [64500]), size=2) + next_hop("192.0.2.1")
    first = legacy("192.0.2.0/24", "192.0.2.254", 64500, lblob)
    lbad = bytearray(legacy("198.51.100.0/24", "192.0.2.254", 64500, lblob))
    struct.pack_into(">H", lbad, len(lbad) - len(lblob) - 2, len(lblob) + 1)
    out.append(first + bytes(lbad))
    # AS4_PATH errors (TABLE_DUMP only), a bad legacy prefix length.
    out.append(legacy("192.0.2.0/24", "192.0.2.254", 64500,
                      IGP + as_path((SEQ, [64500]), size=2) + attr(17, b"\x02\x05\x00", flags=0xC0)))
    lplen = bytearray(first)
    lplen[12 + 8] = 40
    out.append(bytes(lplen))
    out += [rib("192.0.2.0/24", GOOD),  # no peer table
            PEERS + record(13, 6, b"\x00\x00"),  # RIB_GENERIC too short
            PEERS + record(13, 2, b"\x00\x00\x00\x01"),  # no prefix
            PEERS + record(13, 2, b"\x00\x00\x00\x01\x18\xc0"),  # prefix cut
            PEERS + peer_table()[:-1] + b"",
            record(13, 1, b"\x00" * 5), record(13, 1, struct.pack(">IHH", 1, 0, 2) + b"\x00" * 6),
            peer_table() + rib("192.0.2.0/24", GOOD),  # zero peers
            b"\x00" * 11, b""]
    return out


@pytest.mark.parametrize("index", range(len(error_inputs())))
def test_both_fail_alike_on_every_malformed_input(index):
    data = error_inputs()[index]
    got = both(data)
    kept = both(data, accept_truncated=True)
    if got.error is not None:
        assert got.error[0] is DumpError and got.error[1] == "test.mrt"
    assert data == b"" or got.error is not None or kept.stats.truncated_at is not None


# -- best path: linear in the routes of a prefix ---------------------------------

def many_peers(prefixes: int, peers: int) -> bytes:
    out = []
    for i in range(prefixes):
        for k in range(peers):
            path = [64500 + k] + [64600] * ((k * 7 + i) % 5) + [65000 + i % 50]
            blob = IGP + as_path((SEQ, path), size=2) + next_hop(f"192.0.2.{k + 1}") + u32(5, 100 + (k * 13 + i) % 3)
            out.append(legacy(f"10.{i // 256}.{i % 256}.0/24", f"192.0.2.{k + 1}", 64500 + k, blob))
    return b"".join(out)


def test_the_best_of_a_prefix_with_many_routes_takes_one_rank_per_route(monkeypatch):
    data = many_peers(150, 40)
    calls = 0
    rank_of = mrt._rank_of

    def counted(attrs):
        nonlocal calls
        calls += 1
        return rank_of(attrs)

    monkeypatch.setattr(mrt, "_rank_of", counted)
    routes = list(mrt.parse(data))
    assert len(routes) == 150 * 40
    assert calls == 150 * 40  # the first route's rank when the second comes, then one per route
    # The same choice as mark_best over whole groups.
    assert routes == list(mark_best(r._replace(best=None) for r in routes))
    assert sum(r.best for r in routes) == 150
    both(data)


def test_the_best_of_each_prefix_is_the_same_in_both():
    data = many_peers(60, 40)
    got = both(data)
    assert sum(row[4] for row in got.rows) == 60


def test_a_parse_given_up_early_leaves_stats_of_what_was_read(tables):
    stats = mrt.Stats()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IPR_NATIVE", "1")
        native.reset()
        it = mrt.batches(tables["one"], stats=stats, size=100)
        first = next(it)
        it.close()
        native.reset()
    assert len(first) >= 100 and 0 < stats.records and stats.routes >= 100


def test_the_columns_have_the_loaders_types(monkeypatch):
    monkeypatch.setenv("IPR_NATIVE", "1")
    native.reset()
    batch = next(iter(mrt.batches(equal_values())))
    assert (batch.addr.dtype, batch.plen.dtype, batch.attr.dtype, batch.best.dtype) == \
        (np.uint8, np.uint8, np.uint32, np.bool_)
    native.reset()


@pytest.mark.parametrize("accept_truncated", [False, True])
def test_a_compressed_stream_cut_short_fails_alike_or_keeps_the_same(tables, tmp_path, accept_truncated):
    packed = gzip.compress(tables["four"])
    path = tmp_path / "cut.gz"
    path.write_bytes(packed[:len(packed) * 3 // 5])
    got = {}
    for mode in ("0", "1"):
        with mrt.open_dump(str(path), "test.mrt") as f:
            got[mode] = Parsed(mode, f, accept_truncated=accept_truncated)
    got["0"].same_as(got["1"])
    if accept_truncated:
        assert got["1"].error is None and got["1"].stats.truncated_at and got["1"].rows
    else:
        assert got["1"].error[3].startswith("compressed stream cut short")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    import routing_daemons

    reason = routing_daemons.unavailable()
    if reason:
        pytest.skip(reason)
    running = routing_daemons.Lab(tmp_path_factory.mktemp("bgp"))
    running.start()
    try:
        running.wait()
        yield running
    finally:
        running.stop()


def test_both_read_real_bird_and_frr_dumps_alike(lab):
    dumps = [lab.bird_mrt(since=lab.converged_at), lab.frr_mrt("c3")]
    for path in dumps:
        with mrt.open_dump(str(path)) as f:
            got = both(f.read())
        assert got.error is None and got.rows
