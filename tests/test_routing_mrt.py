"""MRT route dumps: real samples against bgpdump's output, hand-built records
for every edge and error case, and a generated table that the real bgpdump
reads back line for line."""
from __future__ import annotations

import bz2
import gzip
import ipaddress
import lzma
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import NamedTuple

import pytest

from bench import mrt_table
from ipr.routing.dumps import DumpError, mrt

SAMPLES = Path(__file__).resolve().parents[2] / "shared/formats/samples/mrt"  # beside the repository
BGPDUMP = shutil.which("bgpdump") or "/usr/bin/bgpdump"
needs_bgpdump = pytest.mark.skipif(not Path(BGPDUMP).exists(), reason="bgpdump is not installed")


# -- bgpdump -m lines --------------------------------------------------------

class Line(NamedTuple):
    """The fields of a ``bgpdump -m`` RIB line that a route has."""
    time: int
    peer_ip: str
    peer_as: int
    prefix: str
    path_id: int | None
    as_path: str
    origin: str
    next_hop: str
    local_pref: int
    med: int
    communities: str


def read_bgpdump(lines) -> tuple[set[str], list[Line]]:
    """(tags, lines) of ``bgpdump -m`` output:
    ``TAG|time|B|peer_ip|peer_as|prefix|[path_id|]as_path|origin|next_hop|lp|med|communities|AG|aggregator|``.

    A next hop of 0.0.0.0 or :: (a route the router originates) is read as
    none, 255.255.255.255 (bgpdump's word for none), as ipr reads it.
    """
    tags, out = set(), []
    for text in lines:
        f = text.rstrip("\n").split("|")
        tags.add(f[0])
        path_id = None
        if f[0] == "TABLE_DUMP2_AP":
            path_id = int(f.pop(6))
        assert len(f) == 15 and f[2] == "B", text
        hop = "255.255.255.255" if f[8] in ("0.0.0.0", "::") else f[8]
        out.append(Line(int(f[1]), f[3], int(f[4]), f[5], path_id, f[6], f[7], hop,
                        int(f[9]), int(f[10]), f[11]))
    return tags, out


def as_bgpdump(entry: mrt.Entry) -> Line:
    """What bgpdump 1.6 prints for an entry: a set as '{a,b}', 'INCOMPLETE'
    for no ORIGIN attribute, 255.255.255.255 for no next hop, 0 for no
    LOCAL_PREF or MED, and no large communities."""
    a = entry.route.attrs
    path = re.sub(r"\{([^}]*)\}", lambda m: "{" + m.group(1).replace(" ", ",") + "}", a.as_path)
    standard = " ".join(c for c in a.communities.split() if c.count(":") == 1)
    return Line(entry.time, entry.peer_ip, entry.peer_as, entry.route.prefix, entry.path_id, path,
                entry.origin or "INCOMPLETE", a.next_hop or "255.255.255.255",
                a.local_pref or 0, a.med or 0, standard)


def expected_lines(sample: Path) -> tuple[set[str], list[Line]]:
    oracle = sample.with_name(sample.name + ".EXPECTED_bgpdump-vm.gz")
    if oracle.exists():
        with gzip.open(oracle, "rt") as f:
            return read_bgpdump(f)
    out = subprocess.run([BGPDUMP, "-m", str(sample)], capture_output=True, text=True, check=True).stdout
    return read_bgpdump(out.splitlines())


def sample_entries(name: str) -> list[mrt.Entry]:
    with mrt.open_dump(str(SAMPLES / name)) as f:
        return list(mrt.entries(f, source=name))


READABLE = ["bgpdump__bview.64k_stream_overflow.gz", "bgpdump__bview.ipv4_unicast_add_path.gz",
            "bgpdump__bview.ipv6_unicast_add_path.gz", "mrtparse__bird-mrtdump_rib.mrt",
            "mrtparse__bird6-mrtdump_rib.mrt", "mrtparse__openbgpd_rib_table-v2.mrt",
            "mrtparse__openbgpd_rib_table.mrt", "mrtparse__quagga_rib.mrt"]


@needs_bgpdump
@pytest.mark.parametrize("name", READABLE)
def test_every_sample_reads_route_by_route_as_bgpdump_reads_it(name):
    tags, want = expected_lines(SAMPLES / name)
    got = sample_entries(name)
    assert [as_bgpdump(e) for e in got] == want
    legacy = name == "mrtparse__openbgpd_rib_table.mrt"
    assert tags <= ({"TABLE_DUMP"} if legacy else {"TABLE_DUMP2", "TABLE_DUMP2_AP"})
    # parse() gives the same routes as entries() does.
    with mrt.open_dump(str(SAMPLES / name)) as f:
        assert list(mrt.parse(f, source=name)) == [e.route for e in got]


def test_the_samples_account_for_every_record():
    # The sample list above is all of them but the one without a peer table.
    names = {p.name for p in SAMPLES.iterdir()
             if not p.name.endswith((".txt", ".EXPECTED_bgpdump-vm.gz"))}
    assert names == set(READABLE) | {"pyasn__bview.20140112.1600_3samples.bz2"}


def test_it_reads_a_record_larger_than_64_kib_with_large_communities():
    raw = gzip.decompress((SAMPLES / "bgpdump__bview.64k_stream_overflow.gz").read_bytes())
    first = struct.unpack_from(">I", raw, 8)[0]
    assert struct.unpack_from(">I", raw, 12 + first + 8)[0] > 65535  # the RIB record
    routes = sample_entries("bgpdump__bview.64k_stream_overflow.gz")
    assert len(routes) == 23
    assert {e.route.prefix for e in routes} == {"2001:579:1040::/46"}
    by_peer = {e.peer_ip: e.route.attrs for e in routes}
    # bgpdump does not print large communities: checked here by hand from the bytes.
    assert by_peer["2001:728:1808::2"].communities == \
        "2914:410 2914:1004 2914:2000 2914:3000 15562:4300:1"
    assert by_peer["2a07:59c6:e89a::100"].communities == "202365:6939:202365"
    # Next hop of the 32-byte (global + link-local) form: the global one.
    assert by_peer["2a01:360:0:6::2"].next_hop == "2a01:360:0:6::2"
    # RIPE's peers send no LOCAL_PREF: None, where bgpdump prints 0.
    assert {a.local_pref for a in by_peer.values()} == {None}
    # One best: no LOCAL_PREF, so the shortest path, then the lowest MED, then the first.
    best = [e for e in routes if e.route.best]
    assert [(b.peer_ip, b.route.attrs.as_path) for b in best] == [("193.0.0.56", "3333 2914 22773")]


def test_add_path_entries_keep_their_path_ids_and_the_shortest_path_is_best():
    routes = sample_entries("bgpdump__bview.ipv4_unicast_add_path.gz")
    group = [e for e in routes if e.route.prefix == "10.0.10.0/24"]
    assert [(e.path_id, e.route.best) for e in group] == [(36, True), (38, False)]
    local = [e for e in routes if e.route.prefix == "10.0.15.0/24"]
    # The router's own route (no attributes, peer 0.0.0.0) beats the one via 65015.
    assert [(e.peer_ip, e.route.attrs.as_path, e.route.best) for e in local] == \
        [("0.0.0.0", "", True), ("10.0.15.1", "65015", False)]
    assert local[0].route.attrs == mrt.Attrs(None, "", None, None, None, None, "")


def test_ipv6_routes_without_mp_reach_have_no_next_hop():
    # BIRD's IPv6 dump has no MP_REACH_NLRI: bgpdump prints 255.255.255.255.
    routes = sample_entries("mrtparse__bird6-mrtdump_rib.mrt")
    assert {e.route.attrs.next_hop for e in routes} == {None}


def test_a_file_with_several_dumps_yields_each_and_counts_the_peer_tables():
    stats = mrt.Stats()
    with mrt.open_dump(str(SAMPLES / "mrtparse__bird-mrtdump_rib.mrt")) as f:
        routes = list(mrt.parse(f, stats=stats))
    assert stats.peer_tables == 2
    assert len(routes) == 18 and stats.routes == 18
    assert [r.prefix for r in routes[:9]] == [r.prefix for r in routes[9:]]


def test_rib_records_without_a_peer_index_table_are_an_error_at_byte_0():
    with pytest.raises(DumpError) as err:
        with mrt.open_dump(str(SAMPLES / "pyasn__bview.20140112.1600_3samples.bz2")) as f:
            list(mrt.parse(f, source="3samples"))
    assert err.value.where == "byte 0"
    assert err.value.source == "3samples"
    assert "PEER_INDEX_TABLE" in err.value.message


# -- hand-built records --------------------------------------------------------

def record(rtype: int, sub: int, body: bytes, ts: int = 1700000000) -> bytes:
    return struct.pack(">IHHI", ts, rtype, sub, len(body)) + body


def peer_table(*peers: tuple[str, int]) -> bytes:
    body = struct.pack(">IH", 0x0A000001, 4) + b"test" + struct.pack(">H", len(peers))
    for ip, asn in peers:
        packed = ipaddress.ip_address(ip).packed
        four = asn > 0xFFFF
        body += struct.pack(">BI", (len(packed) == 16) | (four << 1), 0x0A000002) + packed
        body += struct.pack(">I" if four else ">H", asn)
    return record(13, 1, body)


def attr(code: int, value: bytes, flags: int = 0x40, extended: bool = False) -> bytes:
    if extended:
        return struct.pack(">BBH", flags | 0x10, code, len(value)) + value
    return struct.pack(">BBB", flags, code, len(value)) + value


def as_path(*segments: tuple[int, list[int]], size: int = 4, code: int = 2) -> bytes:
    fmt = "I" if size == 4 else "H"
    return attr(code, b"".join(struct.pack(f">BB{len(a)}{fmt}", kind, len(a), *a) for kind, a in segments),
                flags=0xC0 if code == 17 else 0x40)


def u32(code: int, value: int) -> bytes:
    return attr(code, struct.pack(">I", value), flags=0x80 if code == 4 else 0x40)


def next_hop(ip: str) -> bytes:
    return attr(3, ipaddress.IPv4Address(ip).packed)


def mp_reach(*hops: str, full: bool = False) -> bytes:
    packed = b"".join(ipaddress.ip_address(h).packed for h in hops)
    if full:  # afi, safi, nh_len, next hop, reserved, no NLRI
        return attr(14, struct.pack(">HBB", 2, 1, len(packed)) + packed + b"\x00", flags=0x80)
    return attr(14, bytes([len(packed)]) + packed, flags=0x80)


SEQ, SET, CONFED_SEQ, CONFED_SET = 2, 1, 3, 4
IGP = attr(1, b"\x00")


def rib(prefix: str, *entries: bytes | tuple, sub: int | None = None, plen: int | None = None,
        raw_prefix: bytes | None = None) -> bytes:
    """A RIB_IPV4/IPV6_UNICAST(_ADDPATH) record; entries are attrs (peer 0),
    (peer, attrs) or, for add-path, (peer, path_id, attrs)."""
    net = ipaddress.ip_network(prefix, strict=False)
    plen = net.prefixlen if plen is None else plen
    raw = raw_prefix if raw_prefix is not None else \
        ipaddress.ip_interface(prefix).ip.packed[:(net.prefixlen + 7) // 8]
    addpath = any(isinstance(e, tuple) and len(e) == 3 for e in entries)
    if sub is None:
        sub = (4 if net.version == 6 else 2) + (6 if addpath else 0)
    body = struct.pack(">IB", 7, plen) + raw + struct.pack(">H", len(entries))
    for e in entries:
        if isinstance(e, bytes):
            e = (0, e)
        if len(e) == 3:
            body += struct.pack(">HII", e[0], 1699999000, e[1]) + struct.pack(">H", len(e[2])) + e[2]
        else:
            body += struct.pack(">HI", e[0], 1699999000) + struct.pack(">H", len(e[1])) + e[1]
    return record(13, sub, body)


def legacy(prefix: str, peer: str, peer_as: int, attrs: bytes, peer_size: int | None = None) -> bytes:
    net = ipaddress.ip_network(prefix)
    peer_packed = ipaddress.ip_address(peer).packed
    body = (struct.pack(">HH", 0, 1) + net.network_address.packed
            + struct.pack(">BBI", net.prefixlen, 1, 1699999000))
    body += peer_packed + struct.pack(">HH", peer_as, len(attrs)) + attrs
    return record(12, 2 if net.version == 6 else 1, body)


PEERS = peer_table(("192.0.2.1", 64500), ("2001:db8::1", 4200000000))


def parsed(data: bytes, **kw) -> list:
    return list(mrt.parse(data, source="test.mrt", **kw))


def one(data: bytes) -> mrt.Route:
    routes = parsed(data)
    assert len(routes) == 1
    return routes[0]


@pytest.mark.parametrize("segments, text, origin, neighbour", [
    ([(SEQ, [64500, 64501, 64502])], "64500 64501 64502", 64502, 64500),
    # A set of one names the origin; a larger one (an aggregate) the aggregator.
    ([(SEQ, [64500, 64501]), (SET, [64510])], "64500 64501 {64510}", 64510, 64500),
    ([(SEQ, [64500, 64501]), (SET, [64510, 64511])], "64500 64501 {64510 64511}", 64501, 64500),
    ([(SET, [64510, 64511])], "{64510 64511}", None, None),  # an aggregate made here
    # Confederation segments are internal to the neighbour's confederation.
    ([(CONFED_SEQ, [65001, 65002]), (SEQ, [64500, 64501])], "64500 64501", 64501, 64500),
    ([(CONFED_SET, [65001]), (SEQ, [64500])], "64500", 64500, 64500),
    ([], "", None, None),
    ([(SEQ, [4200000000, 23456])], "4200000000 23456", 23456, 4200000000),
])
def test_the_as_path_policy_for_sets_and_confederations(segments, text, origin, neighbour):
    attrs = one(PEERS + rib("192.0.2.0/24", IGP + as_path(*segments) + next_hop("192.0.2.1"))).attrs
    assert (attrs.as_path, attrs.origin_as, attrs.neighbor_as) == (text, origin, neighbour)


def test_it_reads_every_attribute_a_route_keeps():
    blob = (IGP + as_path((SEQ, [64500, 4200000000])) + next_hop("198.51.100.7") + u32(4, 50)
            + u32(5, 250) + attr(8, struct.pack(">HHHH", 64500, 100, 65535, 65281), flags=0xC0)
            + attr(32, struct.pack(">III", 4200000000, 1, 2), flags=0xC0)
            + attr(6, b"") + attr(7, struct.pack(">II", 64500, 0xC0000201), flags=0xC0))
    route = one(PEERS + rib("198.51.100.0/24", blob))
    assert route == mrt.Route("198.51.100.0/24", mrt.Attrs(
        "198.51.100.7", "64500 4200000000", 4200000000, 64500, 250, 50,
        "64500:100 65535:65281 4200000000:1:2"), True)


@pytest.mark.parametrize("mp, hop", [
    (mp_reach("2001:db8::7"), "2001:db8::7"),
    (mp_reach("2001:db8::7", "fe80::7"), "2001:db8::7"),
    (mp_reach("2001:db8::7", full=True), "2001:db8::7"),
    (mp_reach("2001:db8::7", "fe80::7", full=True), "2001:db8::7"),
    (attr(14, struct.pack(">HBB", 2, 1, 16) + ipaddress.ip_address("2001:db8::9").packed + b"\x00"
          + b"\x30\x20\x01\x0d\xb8\x00\x01", flags=0x90, extended=True), "2001:db8::9"),
])
def test_it_takes_the_global_next_hop_of_mp_reach_in_both_forms(mp, hop):
    route = one(PEERS + rib("2001:db8:1::/48", IGP + as_path((SEQ, [64500])) + mp))
    assert route.attrs.next_hop == hop


def test_the_unspecified_address_is_no_next_hop_and_a_link_local_one_stands_in_for_it():
    base = IGP + as_path()
    assert one(PEERS + rib("192.0.2.0/24", base + next_hop("0.0.0.0"))).attrs.next_hop is None
    assert one(PEERS + rib("2001:db8::/32", base + mp_reach("::"))).attrs.next_hop is None
    assert one(PEERS + rib("2001:db8::/32", base + mp_reach("::", "fe80::1"))).attrs.next_hop == "fe80::1"


def test_an_ipv4_route_takes_next_hop_before_mp_reach_and_mp_reach_when_alone():
    base = IGP + as_path((SEQ, [64500]))
    both = one(PEERS + rib("192.0.2.0/24", base + next_hop("192.0.2.9") + mp_reach("2001:db8::9")))
    alone = one(PEERS + rib("192.0.2.0/24", base + mp_reach("2001:db8::9")))
    assert (both.attrs.next_hop, alone.attrs.next_hop) == ("192.0.2.9", "2001:db8::9")


def test_it_reads_extended_length_attributes():
    path = list(range(64500, 64600))  # 400 bytes of ASNs: needs an extended length
    blob = IGP + attr(2, struct.pack(">BB100I", SEQ, 100, *path), extended=True) + next_hop("192.0.2.1")
    assert one(PEERS + rib("192.0.2.0/24", blob)).attrs.as_path == " ".join(map(str, path))


@pytest.mark.parametrize("prefix, plen, raw, text", [
    ("192.0.2.0/24", 22, bytes([192, 0, 7]), "192.0.4.0/22"),
    ("192.0.2.0/24", 0, b"", "0.0.0.0/0"),
    ("192.0.2.0/24", 32, bytes([192, 0, 2, 1]), "192.0.2.1/32"),
    ("2001:db8::/32", 33, bytes.fromhex("20010db8ff"), "2001:db8:8000::/33"),
    ("2001:db8::/32", 128, ipaddress.ip_address("2001:db8::1").packed, "2001:db8::1/128"),
])
def test_prefixes_are_canonical_text_with_host_bits_zeroed(prefix, plen, raw, text):
    hop = mp_reach("2001:db8::1") if ":" in prefix else next_hop("192.0.2.1")
    assert one(PEERS + rib(prefix, IGP + hop, plen=plen, raw_prefix=raw)).prefix == text


def test_the_routes_of_one_prefix_in_adjacent_records_get_one_best():
    # RFC 8050 puts a prefix's add-path and plain entries in two records.
    low = IGP + as_path((SEQ, [64500])) + next_hop("192.0.2.1") + u32(5, 100)
    high = IGP + as_path((SEQ, [64501, 64502])) + next_hop("192.0.2.2") + u32(5, 200)
    # A writer may also split a prefix's entries over plain records.
    data = (PEERS + rib("192.0.2.0/24", low) + rib("192.0.2.0/24", (1, 9, high))
            + rib("198.51.100.0/24", low) + rib("198.51.100.0/24", (1, high))
            + rib("203.0.113.0/24", low))
    assert [(r.prefix, r.attrs.local_pref, r.best) for r in parsed(data)] == [
        ("192.0.2.0/24", 100, False), ("192.0.2.0/24", 200, True),
        ("198.51.100.0/24", 100, False), ("198.51.100.0/24", 200, True), ("203.0.113.0/24", 100, True)]


def test_several_peers_share_one_attrs_object_per_distinct_blob():
    a = IGP + as_path((SEQ, [64500])) + next_hop("192.0.2.1")
    b = IGP + as_path((SEQ, [64500, 64501])) + next_hop("192.0.2.1")
    stats = mrt.Stats()
    routes = list(mrt.parse(PEERS + rib("192.0.2.0/24", (0, a), (1, b)) + rib("198.51.100.0/24", (1, a)),
                            stats=stats))
    assert routes[0].attrs is routes[2].attrs
    assert [r.best for r in routes] == [True, False, True]
    assert (stats.attr_sets, stats.records, stats.routes) == (2, 3, 3)


def test_rib_generic_is_read_for_unicast_and_other_records_are_skipped_and_counted():
    hop = IGP + as_path((SEQ, [64500])) + next_hop("192.0.2.1")
    generic = record(13, 6, struct.pack(">IHBB", 1, 1, 1, 24) + bytes([203, 0, 113])
                     + struct.pack(">HHIH", 1, 0, 1, len(hop)) + hop)
    vpn = record(13, 6, struct.pack(">IHB", 2, 1, 128) + b"\x00" * 4)
    multicast = rib("192.0.2.0/24", hop, sub=3)
    update = record(16, 4, b"\x00" * 20)
    stats = mrt.Stats()
    routes = list(mrt.parse(PEERS + generic + vpn + multicast + update, stats=stats))
    assert [(r.prefix, r.attrs.as_path) for r in routes] == [("203.0.113.0/24", "64500")]
    assert stats.skipped == {(13, 6, 1, 128): 1, (13, 3): 1, (16, 4): 1}
    assert stats.records == 5


def test_legacy_table_dump_merges_as4_path_over_as_trans():
    blob = (IGP + as_path((SEQ, [64500, 23456, 23456]), size=2)
            + as_path((SEQ, [4200000000, 4200000001]), code=17) + next_hop("192.0.2.1"))
    longer = (IGP + as_path((SEQ, [64500]), size=2)
              + as_path((SEQ, [4200000000, 4200000001]), code=17) + next_hop("192.0.2.1"))
    aggregate = (IGP + as_path((SEQ, [64500, 23456]), (SET, [64510, 23456]), size=2)
                 + as_path((SEQ, [4200000000]), (SET, [64510, 4200000002]), code=17) + next_hop("192.0.2.1"))
    data = (legacy("192.0.2.0/24", "192.0.2.254", 64500, blob)
            + legacy("198.51.100.0/24", "192.0.2.254", 64500, longer)
            + legacy("203.0.113.0/24", "192.0.2.254", 64500, aggregate))
    got = [(e.route.attrs.as_path, e.route.attrs.origin_as, e.peer_ip, e.peer_as)
           for e in mrt.entries(data)]
    assert got == [
        ("64500 4200000000 4200000001", 4200000001, "192.0.2.254", 64500),
        ("64500", 64500, "192.0.2.254", 64500),  # an AS4_PATH longer than AS_PATH is ignored
        ("64500 4200000000 {64510 4200000002}", 4200000000, "192.0.2.254", 64500)]


def test_legacy_routes_of_one_prefix_in_adjacent_records_get_one_best():
    short = IGP + as_path((SEQ, [64500]), size=2) + next_hop("192.0.2.1")
    long = IGP + as_path((SEQ, [64501, 64502]), size=2) + next_hop("192.0.2.2")
    data = (legacy("2001:db8::/32", "2001:db8::1", 64501, long)
            + legacy("2001:db8::/32", "2001:db8::2", 64500, short))
    assert [(r.attrs.as_path, r.best) for r in parsed(data)] == [("64501 64502", False), ("64500", True)]


def test_legacy_ipv6_records_with_a_four_byte_peer_address_are_read():
    blob = IGP + as_path((SEQ, [64500]), size=2) + mp_reach("2001:db8::1", full=True)
    data = legacy("2001:db8::/32", "192.0.2.1", 64500, blob)
    entry, = mrt.entries(data)
    assert (entry.peer_ip, entry.route.prefix, entry.route.attrs.next_hop) == \
        ("192.0.2.1", "2001:db8::/32", "2001:db8::1")


# -- errors, each at its byte offset -------------------------------------------

GOOD = IGP + as_path((SEQ, [64500])) + next_hop("192.0.2.1")


def error_of(data: bytes, **kw) -> DumpError:
    with pytest.raises(DumpError) as err:
        parsed(data, **kw)
    assert err.value.source == "test.mrt"
    return err.value


def test_it_names_the_byte_offset_of_a_record_that_overruns_the_file():
    head = PEERS + rib("192.0.2.0/24", GOOD)
    last = rib("198.51.100.0/24", GOOD)
    err = error_of(head + last[:-5])
    assert err.where == f"byte {len(head)}"
    assert err.message == (f"record (type 13, subtype 2) of {len(last) - 12} bytes runs 5 bytes "
                           f"past the end of the data (byte {len(head) + len(last) - 5})")


def test_it_names_a_file_that_ends_inside_a_record_header():
    err = error_of(PEERS + rib("192.0.2.0/24", GOOD) + b"\x00" * 7)
    assert (err.where, err.message) == (f"byte {len(PEERS + rib('192.0.2.0/24', GOOD))}",
                                        "the data ends 7 bytes into a record header")


def test_it_names_the_rib_entry_whose_peer_index_is_beyond_the_peer_table():
    head = PEERS + rib("192.0.2.0/24", GOOD)
    err = error_of(head + rib("198.51.100.0/24", (0, GOOD), (2, GOOD)))
    # header 12, seq 4, plen 1, prefix 3, count 2, first entry 8 + attrs
    assert err.where == f"byte {len(head) + 22 + 8 + len(GOOD)}"
    assert "peer 2" in err.message and "2 peer(s)" in err.message


@pytest.mark.parametrize("prefix, plen", [("192.0.2.0/24", 33), ("2001:db8::/32", 129)])
def test_it_names_the_record_with_a_bad_prefix_length(prefix, plen):
    head = PEERS + rib("203.0.113.0/24", GOOD)
    err = error_of(head + rib(prefix, GOOD, plen=plen, raw_prefix=b"\x00" * 17))
    assert err.where == f"byte {len(head)}"
    assert f"bad prefix length {plen}" in err.message


def test_it_names_the_entry_whose_attributes_overrun_the_record():
    good = rib("192.0.2.0/24", GOOD)
    entry_at = len(PEERS) + 22
    bad = bytearray(good)
    struct.pack_into(">H", bad, 22 + 6, len(GOOD) + 3)  # attr_len 3 bytes too long
    err = error_of(PEERS + bytes(bad))
    assert err.where == f"byte {entry_at}"
    assert "run 3 bytes past the end of its record" in err.message


def test_it_names_the_attribute_that_overruns_the_attributes():
    blob = IGP + as_path((SEQ, [64500])) + struct.pack(">BBB", 0x40, 3, 4) + b"\xc0\x00\x02"
    err = error_of(PEERS + rib("192.0.2.0/24", blob))
    attr_at = len(PEERS) + 22 + 8 + len(IGP + as_path((SEQ, [64500])))
    assert err.where == f"byte {attr_at}"
    assert "path attribute 3 of 4 bytes runs 1 bytes past" in err.message


@pytest.mark.parametrize("bad, message", [
    (attr(1, b"\x07"), "bad ORIGIN"),
    (attr(3, b"\xc0\x00\x02"), "NEXT_HOP of 3 bytes"),
    (attr(5, b"\x00\x00\x64"), "LOCAL_PREF of 3 bytes"),
    (attr(8, b"\x00\x01\x00"), "COMMUNITIES of 3 bytes"),
    (attr(32, b"\x00" * 8, flags=0xC0), "LARGE_COMMUNITIES of 8 bytes"),
    (attr(2, struct.pack(">BBI", SEQ, 2, 64500)), "AS path segment of 2 ASNs runs past"),
    (attr(2, struct.pack(">BBI", 9, 1, 64500)), "unknown AS path segment type 9"),
    (attr(14, b"\x05\x01\x02", flags=0x80), "cannot read MP_REACH_NLRI"),
    (attr(14, b"\x05" + bytes(5), flags=0x80), "MP_REACH_NLRI next hop of 5 bytes"),
    (attr(14, struct.pack(">HBB", 2, 1, 16) + bytes(4), flags=0x80), "next hop runs past the attribute"),
])
def test_it_names_the_malformed_attribute(bad, message):
    blob = IGP + next_hop("192.0.2.1") + bad
    err = error_of(PEERS + rib("192.0.2.0/24", blob))
    assert err.where == f"byte {len(PEERS) + 22 + 8 + len(IGP + next_hop('192.0.2.1'))}"
    assert message in err.message


def test_it_names_a_record_that_ends_inside_its_entries_or_has_bytes_left_over():
    good = rib("192.0.2.0/24", GOOD)
    more = bytearray(good)
    struct.pack_into(">H", more, 20, 2)  # says 2 entries, has 1
    err = error_of(PEERS + bytes(more))
    assert (err.where, err.message) == (f"byte {len(PEERS)}",
                                        "RIB record ends inside entry 2 of the 2 it declares")
    extra = bytearray(good + b"\x00\x00")
    struct.pack_into(">I", extra, 8, len(good) - 12 + 2)
    err = error_of(PEERS + bytes(extra))
    assert (err.where, err.message) == (f"byte {len(PEERS)}",
                                        "2 bytes left over after the 1 entries of the RIB record")


def test_record_lengths_declared_short_are_an_error_at_the_first_record():
    # Each record's length 4 bytes short, as in a known malformed RIPE file.
    good = PEERS + rib("192.0.2.0/24", GOOD)
    bad = bytearray(good)
    pos = 0
    while pos < len(good):
        length = struct.unpack_from(">I", good, pos + 8)[0]
        struct.pack_into(">I", bad, pos + 8, length - 4)
        pos += 12 + length
    err = error_of(bytes(bad))
    assert err.where == "byte 0"
    assert "PEER_INDEX_TABLE" in err.message


# -- compression and truncation ------------------------------------------------

@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A small generated table and what bgpdump should print for it."""
    d = tmp_path_factory.mktemp("mrt")
    path, expect = d / "table.mrt", d / "table.bgpdump-m"
    summary = mrt_table.write(str(path), v4=4000, v6=1000, seed=7, expect=str(expect), sets=0.05)
    return path, expect, summary


@pytest.mark.parametrize("compress, suffix", [(gzip.compress, ".gz"), (bz2.compress, ".bz2"),
                                              (lzma.compress, ".xz"), (bytes, ".mrt")])
def test_open_dump_decompresses_by_magic_bytes_not_by_name(table, tmp_path, compress, suffix):
    raw = table[0].read_bytes()
    path = tmp_path / "dump.bin"  # the name says nothing
    path.write_bytes(compress(raw))
    with mrt.open_dump(str(path)) as f:
        assert f.peek(12)[:12] == raw[:12]  # format detection peeks
        assert list(mrt.parse(f)) == list(mrt.parse(raw))


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress], ids=["gzip", "bzip2", "xz"])
def test_open_dump_reads_streams_one_after_the_other_as_one_and_names_what_follows_them(
        table, tmp_path, compress):
    raw = table[0].read_bytes()
    half = len(raw) // 2
    path = tmp_path / "dump"
    path.write_bytes(compress(raw[:half]) + compress(raw[half:]))  # e.g. cat a.gz b.gz
    with mrt.open_dump(str(path)) as f:
        assert f.read() == raw
    path.write_bytes(compress(raw) + bytes(8))  # zero padding is not a stream either
    with pytest.raises(DumpError) as err:
        with mrt.open_dump(str(path), "padded") as f:
            f.read()
    assert (err.value.source, err.value.where) == ("padded", f"byte {len(raw)}")
    assert "trailing garbage" in err.value.message


def record_ends(data: bytes) -> list[int]:
    ends, pos = [], 0
    while pos + 12 <= len(data):
        pos += 12 + struct.unpack_from(">I", data, pos + 8)[0]
        if pos <= len(data):
            ends.append(pos)
    return ends


@pytest.mark.parametrize("compress, decompressor", [
    (lambda data: bz2.compress(data, 1), bz2.BZ2Decompressor),  # 100 kB blocks: a cut leaves some
    (gzip.compress, lambda: zlib.decompressobj(31))])
def test_a_compressed_stream_cut_short_is_an_error_at_the_last_complete_record(table, tmp_path,
                                                                               compress, decompressor):
    raw = table[0].read_bytes()
    packed = compress(raw)
    cut = packed[:len(packed) * 3 // 5]
    path = tmp_path / "cut"
    path.write_bytes(cut)
    readable = decompressor().decompress(cut)
    complete = [e for e in record_ends(raw) if e <= len(readable)][-1]
    full = list(mrt.parse(raw))
    with pytest.raises(DumpError) as err:
        with mrt.open_dump(str(path)) as f:
            list(mrt.parse(f, source="cut"))
    assert err.value.where == f"byte {complete}"
    assert err.value.message.startswith("compressed stream cut short")

    # Asked to, it keeps every route of the complete records and says where it stopped.
    stats = mrt.Stats()
    with mrt.open_dump(str(path)) as f:
        kept = list(mrt.parse(f, source="cut", accept_truncated=True, stats=stats))
    assert stats.truncated_at == complete
    assert kept == full[:len(kept)] and len(kept) == stats.routes == stats.records - 1
    assert 0 < len(kept) < len(full)


def test_a_plain_file_cut_inside_a_record_is_an_error_unless_accepted(table):
    raw = table[0].read_bytes()
    ends = record_ends(raw)
    cut = raw[:ends[100] + 30]
    assert error_of(cut).where == f"byte {ends[100]}"
    stats = mrt.Stats()
    kept = list(mrt.parse(cut, accept_truncated=True, stats=stats))
    assert len(kept) == 100 and stats.truncated_at == ends[100]


# -- the generated full-table file against the real bgpdump ---------------------

@needs_bgpdump
def test_bgpdump_reads_the_generated_table_exactly_as_the_generator_expects(table):
    path, expect, summary = table
    assert mrt_table.check(str(path), str(expect), BGPDUMP) == summary["routes"] == 5000


def test_the_parser_agrees_with_the_generators_expectation(table):
    path, expect, summary = table
    with open(expect) as f:
        _, want = read_bgpdump(f)
    got = list(mrt.entries(path.read_bytes()))
    assert [as_bgpdump(e) for e in got] == want
    assert all(e.route.best for e in got)
    assert summary["as_sets"] >= 3 and sum("{" in e.route.attrs.as_path for e in got) >= 3
    # parse() (its fast path) gives the same routes as entries().
    assert list(mrt.parse(path.read_bytes())) == [e.route for e in got]


@needs_bgpdump
def test_a_generated_table_of_several_peers_reads_back_in_bgpdump_and_the_parser(tmp_path):
    path, expect = tmp_path / "peers.mrt.gz", tmp_path / "peers.bgpdump-m"
    summary = mrt_table.write(str(path), v4=1500, v6=500, peers=4, seed=3, expect=str(expect), sets=0.05)
    assert mrt_table.check(str(path), str(expect), BGPDUMP) == summary["routes"]
    with open(expect) as f:
        _, want = read_bgpdump(f)
    with mrt.open_dump(str(path)) as f:
        got = list(mrt.entries(f))
    assert [as_bgpdump(e) for e in got] == want
    prefixes = {e.route.prefix for e in got}
    assert len(prefixes) == 2000 and sum(e.route.best for e in got) == 2000
    assert summary["routes"] > 3 * 2000


def test_the_generator_is_deterministic_and_realistic(tmp_path):
    a, b = tmp_path / "a.mrt", tmp_path / "b.mrt"
    mrt_table.write(str(a), v4=3000, v6=600, seed=11)
    mrt_table.write(str(b), v4=3000, v6=600, seed=11)
    assert a.read_bytes() == b.read_bytes()
    routes = list(mrt.parse(a.read_bytes()))
    v4 = [ipaddress.ip_network(r.prefix) for r in routes if ":" not in r.prefix]
    v6 = [ipaddress.ip_network(r.prefix) for r in routes if ":" in r.prefix]
    assert (len(v4), len(v6)) == (3000, 600)
    assert sum(n.prefixlen == 24 for n in v4) / len(v4) > 0.5
    assert sum(n.prefixlen == 48 for n in v6) / len(v6) > 0.4
    covered = sum(any(n != m and n.subnet_of(m) for m in v4 if m.prefixlen < n.prefixlen) for n in v4[::50])
    assert covered > 0.2 * len(v4[::50])
    lengths = {len(r.attrs.as_path.split()) for r in routes if "{" not in r.attrs.as_path}
    assert lengths <= set(range(0, 9)) and {1, 2, 3, 4, 5} <= lengths


def test_it_names_a_legacy_record_whose_attribute_length_does_not_fit():
    blob = IGP + as_path((SEQ, [64500]), size=2) + next_hop("192.0.2.1")
    first = legacy("192.0.2.0/24", "192.0.2.254", 64500, blob)
    bad = bytearray(legacy("198.51.100.0/24", "192.0.2.254", 64500, blob))
    struct.pack_into(">H", bad, len(bad) - len(blob) - 2, len(blob) + 1)
    err = error_of(first + bytes(bad))
    assert (err.where, err.message) == (f"byte {len(first)}",
                                        "TABLE_DUMP record length does not match its attribute length")
