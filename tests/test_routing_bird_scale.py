"""BIRD text at table scale: the generated multi-peer table reads back as the
MRT file it was written from, and the block loop of bird.parse (the fast way
through birdc text) gives what the line machine gives, routes and errors
alike, on real captures, generated tables, cut and mutated dumps, and any
chunking of the stream; bird.batches gives the batches from_routes makes of
bird.parse's routes, on the same inputs."""
from __future__ import annotations

import io
import ipaddress
import random
import sys
from pathlib import Path

import pytest

from ipr.routing.dumps import Attrs, DumpError, Route, bird, mrt
from ipr.routing.dumps.batches import SIZE, from_routes

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import bird_table, mrt_table  # noqa: E402

SAMPLES = ROOT.parent / "shared" / "formats" / "samples"
CAPTURES = sorted(SAMPLES.glob("bird/*")) + sorted(SAMPLES.glob("lab-generated/bird-*/*"))
CAPTURES = [p for p in CAPTURES if p.name != "SOURCE.txt"]


def outcome(data: bytes, blocks: bool, **kw) -> tuple[list[Route], str | None]:
    """The routes yielded, and the error that ended the parse (or None)."""
    routes: list[Route] = []
    try:
        for route in bird._Parser("t", blocks=blocks, **kw).routes(io.BytesIO(data)):
            routes.append(route)
    except DumpError as e:
        return routes, str(e)
    return routes, None


def same_both_ways(data: bytes, **kw) -> tuple[list[Route], str | None]:
    fast = outcome(data, True, **kw)
    assert fast == outcome(data, False, **kw)
    return fast


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A small table of three peers: the MRT file, and what it holds, best first per prefix."""
    path = tmp_path_factory.mktemp("bird") / "table.mrt"
    mrt_table.write(str(path), v4=3000, v6=1000, peers=3, seed=7, sets=0.05)
    with open(path, "rb") as f:
        entries = list(mrt.entries(f))
    return path, entries


def best_first(entries) -> list[Route]:
    routes, group = [], []
    for e in entries + [None]:
        if group and (e is None or e.route.prefix != group[0].prefix):
            routes += [r for r in group if r.best] + [r for r in group if not r.best]
            group = []
        if e is not None:
            group.append(e.route)
    return routes


@pytest.mark.parametrize("socket", [False, True], ids=["birdc", "socket"])
def test_the_generated_bird_table_reads_back_as_its_mrt_file(table, tmp_path, socket):
    path, entries = table
    out = tmp_path / "table.txt"
    summary = bird_table.write(str(path), str(out), socket)
    assert summary["routes"] == len(entries)
    routes = list(bird.parse(open(out, "rb"), "t"))
    assert routes == best_first(entries)
    # Every prefix has exactly one best path, the peers' routes are all there.
    assert sum(r.best for r in routes) == len({e.route.prefix for e in entries})
    assert len({e.peer_as for e in entries}) == 3
    assert any(":" in r.prefix for r in routes) and any("{" in r.attrs.as_path for r in routes)
    assert any(r.attrs.communities.count(":") > r.attrs.communities.count(" ") + 1 for r in routes)


def test_the_generated_text_is_laid_out_as_bird_2_prints_it(table, tmp_path):
    path, entries = table
    out = tmp_path / "table.txt"
    bird_table.write(str(path), str(out))
    lines = out.read_text().splitlines()
    assert lines[:2] == ["BIRD 2.0.12 ready.", "Table master4:"]
    assert lines[lines.index("Table master6:") - 1] == ""
    first = lines[2]
    assert first[:20].strip() == entries[0].route.prefix and first[20] == " " and first[21:28] == "unicast"
    assert " * (100" in first and first[-2:] in ("i]", "e]", "?]")
    assert lines[3].startswith("\tvia ") and lines[4] == "\tType: BGP univ"
    assert lines[5].startswith("\tBGP.origin: ") and lines[6].startswith("\tBGP.as_path: ")
    second = next(line for line in lines if line.startswith(" " * 21 + "unicast"))
    assert "*" not in second.split("]")[1]
    sock = tmp_path / "table.sock"
    bird_table.write(str(path), str(sock), socket=True)
    raw = sock.read_text().splitlines()
    assert raw[:3] == ["0001 BIRD 2.0.12 ready.", "1007-Table master4:", " " + first]
    assert raw[-1] == "0000 " and raw[4] == "1008-\tType: BGP univ" and raw[5].startswith("1012-\tBGP.origin")


def test_long_community_lists_wrap_where_bird_wraps_them_and_read_back():
    items = [f"({65000 + i},{i})" for i in range(150)]
    lines = bird_table.wrapped("community", items)
    assert len(lines) >= 3 and lines[0].startswith("\tBGP.community: (65000,0) ")
    assert all(line.startswith("\t\t") for line in lines[1:])
    assert all(len(line) <= 500 for line in lines)
    text = ("BIRD 2.0.12 ready.\nTable master4:\n"
            "192.0.2.0/24         unicast [bgp_1 2024-06-01] * (100) [AS1i]\n\tvia 192.0.2.1 on eth0\n"
            "\tType: BGP univ\n\tBGP.origin: IGP\n\tBGP.as_path: 1\n\tBGP.next_hop: 192.0.2.1\n"
            + "\n".join(lines) + "\n")
    routes, error = same_both_ways(text.encode())
    assert error is None
    assert routes[0].attrs.communities == " ".join(f"{65000 + i}:{i}" for i in range(150))


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_the_block_loop_reads_real_captures_as_the_line_machine_does(path):
    data = path.read_bytes()
    same_both_ways(data)
    same_both_ways(data, accept_truncated=True)
    # Cut at every line end and a sample of bytes: the same routes, the same error.
    ends = [i + 1 for i, b in enumerate(data) if b == 10]
    for cut in ends + list(range(0, len(data), 97)):
        same_both_ways(data[:cut])


def mutate(rng: random.Random, lines: list[bytes]) -> list[bytes]:
    """A copy of ``lines`` with a few lines dropped, repeated, swapped or changed."""
    out = list(lines)
    changes = [b"\n", b"\t\tcontinued (1,2)\n", b"\tBGP.med: x\n", b"  \n", b"Table master6:\n",
               b"\tBGP.as_path: 1 {2 3\n", b"10.0.0.1/8           unicast [p 2024-06-01] * (100) [AS1i]\n",
               b"                     unicast [p 2024-06-01] (100)\n", b"\tdev eth1\n", b"\tvia 10.0.0.300 on x\n",
               b"junk\n", b"BIRD 1.6.3 ready.\n", b"\tBGP.next_hop: ::\n", b"\tBGP.community: (1,2\n",
               b"1007-\tBGP.med: 5\n", b"0000 \n", b"\tType: static univ\n", b"\r\n", b"\xff\xfe\n"]
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(out))
        what = rng.random()
        if what < 0.3:
            del out[i]
        elif what < 0.5:
            out.insert(i, out[i])
        elif what < 0.6 and i + 1 < len(out):
            out[i], out[i + 1] = out[i + 1], out[i]
        else:
            out.insert(i, rng.choice(changes))
    return out


def mutated_tables(path, tmp_path, socket: bool, rng: random.Random, count: int):
    """``count`` pieces of the generated table in birdc (or socket) form,
    most of them mutated (:func:`mutate`), most with the header lines."""
    out = tmp_path / "t.txt"
    bird_table.write(str(path), str(out), socket)
    lines = out.read_bytes().splitlines(keepends=True)[:3000]
    starts = [i for i, line in enumerate(lines[:-200]) if b" unicast [" in line and line[:1] != b" "]
    for _ in range(count):
        start = rng.choice(starts)
        head = lines[:2] if rng.random() < 0.9 else []
        end = rng.choice([i for i in starts if start < i < start + 200] or [start + 1])
        part = lines[start:end]
        yield b"".join(head + (mutate(rng, part) if rng.random() < 0.8 else part) + ([b"0000 \n"] if socket else []))


def test_the_block_loop_reads_mutated_tables_as_the_line_machine_does(table, tmp_path):
    path, _ = table
    for socket in (False, True):
        errors = 0
        for data in mutated_tables(path, tmp_path, socket, random.Random(socket), 300):
            routes, error = same_both_ways(data)
            errors += error is not None
        assert 30 < errors < 270  # both refused and read dumps were compared


def test_any_chunking_of_the_stream_gives_the_same_routes(table, tmp_path, monkeypatch):
    path, entries = table
    for socket in (False, True):
        out = tmp_path / "t.txt"
        bird_table.write(str(path), str(out), socket=socket)
        data = out.read_bytes()
        monkeypatch.setattr(bird, "_CHUNK", 1 << 20)
        whole = list(bird.parse(io.BytesIO(data), "t"))
        assert whole == best_first(entries)
        for size in (1, 7, 64, 1000, 4097):
            monkeypatch.setattr(bird, "_CHUNK", size)
            assert list(bird.parse(io.BytesIO(data), "t")) == whole
    # A stream without read1, whose reads return less than asked.
    class Trickle(io.RawIOBase):
        def __init__(self, data):
            self.data, self.pos = data, 0

        def readable(self):
            return True

        def readinto(self, buf):
            n = min(len(buf), 13, len(self.data) - self.pos)
            buf[:n] = self.data[self.pos:self.pos + n]
            self.pos += n
            return n
    monkeypatch.setattr(bird, "_CHUNK", 100)
    assert list(bird.parse(Trickle(data), "t")) == whole


def test_an_error_deep_in_a_large_dump_names_the_same_line_both_ways(table, tmp_path):
    path, entries = table
    out = tmp_path / "t.txt"
    bird_table.write(str(path), str(out))
    lines = out.read_bytes().splitlines(keepends=True)
    for at, bad in ((len(lines) - 50, b"\tBGP.local_pref: 4294967296\n"), (len(lines) // 2, b"oops\n"),
                    (9000, b"\tBGP.as_path: 1 99999999999\n")):
        data = b"".join(lines[:at] + [bad] + lines[at:])
        routes, error = same_both_ways(data)
        assert error is not None and f"line {at + 1}:" in error
        assert len(routes) > 1000


@pytest.mark.parametrize("text", [
    "192.0.2.0/24", "192.0.2.1/24", "192.0.2.0/33", "192.0.02.0/24", "192.0.2/24", "0.0.0.0/0", "255.255.255.255/32",
    "1.2.3.4/032", "2001:db8::/32", "2001:DB8::/32", "2001:db8:0:0:0:0:0:0/32", "2001:db8::1/64", "::/0",
    "::ffff:1.2.3.0/120", "::1/128", "2001:db8::/129", "fe80::/10", "1:0:0:1:0:0:0:1/128", "1:0:0:1::1/128",
    "1::1:0:0:1/128", "2001:db8:0:0:1::/80", "1.2.3.4/+8", "1.2.3.4/ 8", "1.2.3.4/٣",
])
def test_the_quick_prefix_check_takes_only_what_ipaddress_writes_back_unchanged(text):
    fast = bird._fast_prefix(text.encode())
    try:
        written = str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        written = None
    if fast is not None:
        assert fast == written == text
    else:
        assert written != text


def test_the_quick_prefix_check_agrees_with_ipaddress_on_random_prefixes():
    rng = random.Random(3)
    taken = canonical = 0
    for _ in range(20000):
        v6 = rng.random() < 0.5
        bits = 128 if v6 else 32
        # Runs of zero groups of any length, where inet_ntop and ipaddress might part ways.
        value = 0
        for i in range(bits // 16 if v6 else 4):
            width = 16 if v6 else 8
            value = value << width | (0 if rng.random() < 0.5 else rng.getrandbits(width))
        plen = rng.randrange(bits + 1)
        if rng.random() < 0.8:
            value &= ~((1 << (bits - plen)) - 1)
        address = ipaddress.IPv6Address(value) if v6 else ipaddress.IPv4Address(value)
        for text in (f"{address}/{plen}", f"{address.exploded}/{plen}"):
            fast = bird._fast_prefix(text.encode())
            written = str(ipaddress.ip_network(text, strict=False))
            assert fast is None or fast == written == text
            canonical += text == written
            taken += fast is not None
    # It may leave a prefix to ipaddress (inet_ntop writes ::a.b.c.d where
    # ipaddress does not), but takes nearly every one written as ipaddress does.
    assert taken > 0.95 * canonical


def test_equal_attributes_are_one_object_in_a_large_table(table, tmp_path):
    path, entries = table
    out = tmp_path / "t.txt"
    bird_table.write(str(path), str(out))
    routes = list(bird.parse(open(out, "rb"), "t"))
    distinct = {r.attrs for r in routes}
    assert len({id(r.attrs) for r in routes}) == len(distinct) < len(routes) / 2
    assert all(isinstance(a, Attrs) for a in distinct)


# -- bird.batches: the loader's columns, without a Route per route ----------------------------

def batch_outcome(make) -> tuple[list[tuple], str | None]:
    """Every batch ``make()`` hands out, column by column (type, shape and
    bytes), and the error that ended it (or None)."""
    got: list[tuple] = []
    try:
        for b in make():
            got.append((b.v6, b.first_attr, b.attrs, len(b))
                       + tuple((a.dtype.str, a.shape, a.tobytes()) for a in (b.addr, b.plen, b.attr, b.best)))
    except DumpError as e:
        return got, str(e)
    return got, None


def same_batches(data: bytes, size: int = SIZE, **kw) -> tuple[list[tuple], str | None]:
    """bird.batches gives the batches from_routes makes of bird.parse's routes, errors alike."""
    ours = batch_outcome(lambda: bird.batches(io.BytesIO(data), "t", size=size, **kw))
    assert ours == batch_outcome(lambda: from_routes(bird.parse(io.BytesIO(data), "t", **kw), size))
    return ours


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_batches_of_real_captures_are_those_of_their_routes(path):
    data = path.read_bytes()
    for size in (1, 3, SIZE):
        same_batches(data, size)
    same_batches(data, 2, accept_truncated=True)
    for cut in [i + 1 for i, b in enumerate(data) if b == 10][::3] + list(range(0, len(data), 211)):
        same_batches(data[:cut], 2)


@pytest.mark.parametrize("socket", [False, True], ids=["birdc", "socket"])
def test_batches_of_a_generated_table_are_those_of_its_routes(table, tmp_path, monkeypatch, socket):
    path, entries = table
    out = tmp_path / "t.txt"
    bird_table.write(str(path), str(out), socket)
    data = out.read_bytes()
    for size in (1, 5, 640, SIZE):
        batches, error = same_batches(data, size)
        assert error is None
        # Both families, every route; a batch passes its size by at most the
        # other routes of its last prefix (three peers: two more).
        assert {b[0] for b in batches} == {False, True}
        assert sum(b[3] for b in batches) == len(entries)
        assert all(b[3] <= size + 2 for b in batches) and len(batches) >= len(entries) // (size + 2)
    for chunk in (1, 64, 4097):  # any chunking of the stream
        monkeypatch.setattr(bird, "_CHUNK", chunk)
        assert same_batches(data, 100) == same_batches(data, 100)
        monkeypatch.undo()


def test_batches_of_mutated_tables_are_those_of_their_routes(table, tmp_path):
    path, _ = table
    errors = 0
    for socket in (False, True):
        rng = random.Random(10 + socket)
        for data in mutated_tables(path, tmp_path, socket, rng, 200):
            batches, error = same_batches(data, rng.choice([1, 4, 50, SIZE]))
            errors += error is not None
    assert 40 < errors < 360  # both refused and read dumps were compared


def test_batches_before_an_error_deep_in_a_dump_are_those_of_its_routes(table, tmp_path):
    path, _ = table
    out = tmp_path / "t.txt"
    bird_table.write(str(path), str(out))
    lines = out.read_bytes().splitlines(keepends=True)
    data = b"".join(lines[:9000] + [b"\tBGP.as_path: 1 99999999999\n"] + lines[9000:])
    batches, error = same_batches(data, 100)
    assert error is not None and "line 9001:" in error
    assert len(batches) > 5


def test_the_loader_reads_birdc_text_with_bird_batches(table, tmp_path, monkeypatch):
    from ipr.routing import load

    path, entries = table
    out = tmp_path / "t.txt"
    bird_table.write(str(path), str(out))
    called = []
    real = bird.batches
    monkeypatch.setattr(bird, "batches", lambda *a, **kw: called.append(1) or real(*a, **kw))
    loaded = batch_outcome(lambda: load.parse_dump(load.Dump(name="t", path=str(out))))
    assert called and loaded == batch_outcome(lambda: from_routes(bird.parse(open(out, "rb"), "t")))
    assert sum(b[3] for b in loaded[0]) == len(entries)


def test_small_caches_give_the_same_routes_and_batches(table, tmp_path, monkeypatch):
    """With room for a few entries only, the block loop forgets (and reads
    again) nearly everything: the same routes and batches all the same."""
    path, entries = table
    out = tmp_path / "t.txt"
    bird_table.write(str(path), str(out))
    data = out.read_bytes()
    whole = list(bird.parse(io.BytesIO(data), "t"))
    batches = same_batches(data, 300)
    for name in ("_BODIES_KEPT", "_TAILS_KEPT", "_BLOCKS_KEPT", "_LINES_KEPT"):
        monkeypatch.setattr(bird, name, 7)
    parser = bird._Parser("t")
    assert list(parser.routes(io.BytesIO(data))) == whole == best_first(entries)
    assert len(parser.bodies) <= 7 and 0 < len(parser.old_bodies) <= 7
    assert same_batches(data, 300) == batches
