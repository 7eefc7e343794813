"""The loader reads route batches (columns): what it writes and the engine
it builds must be what a route-by-route load gives, for every format, batch
size, several sources, and with the MRT parser compiled or pure Python."""
import functools
import io
from pathlib import Path

import numpy as np
import pytest

from bench import mrt_table
from ipr import native
from ipr.routing import load, lpm
from ipr.routing.dumps import Attrs, open_dump
from ipr.routing.dumps import batches as batches_module
from ipr.routing.dumps.batches import Batch, from_routes
from ipr.routing.load import refresh_router
from ipr.routing.models import PathAttrs, Route, Router, Table, TableEngine

pytestmark = pytest.mark.django_db

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "formats" / "samples"
LAB = SAMPLES / "lab-generated"
OWN_ASN = 64500

# A BIRD dump with a route of the router's own (empty AS path).
OWN_ROUTE = """BIRD 2.0.12 ready.
Table master4:
203.0.113.0/24       unicast [p1 2026-11-22 10:18:24] * (100) [AS64700i]
\tvia 192.0.2.1 on eth0
\tType: BGP univ
\tBGP.origin: IGP
\tBGP.as_path: 64601 64700
\tBGP.next_hop: 192.0.2.1
\tBGP.local_pref: 100
                     unicast [p1 2026-11-22 10:18:24] (100) [AS64700i]
\tvia 192.0.2.2 on eth0
\tType: BGP univ
\tBGP.origin: IGP
\tBGP.as_path: 64602 64701 64700
\tBGP.next_hop: 192.0.2.2
\tBGP.local_pref: 90
198.51.100.0/24      unicast [p1 2026-11-22 10:18:24] * (100) [AS64500i]
\tvia 192.0.2.3 on eth0
\tType: BGP univ
\tBGP.origin: IGP
\tBGP.as_path: 
\tBGP.next_hop: 192.0.2.3
\tBGP.local_pref: 100
"""


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    """Generated tables (written once for the module) and the real samples."""
    tmp = tmp_path_factory.mktemp("dumps")
    mrt_table.write(str(tmp / "p1.mrt"), v4=2000, v6=300, peers=1, seed=2)
    mrt_table.write(str(tmp / "p2.mrt"), v4=3000, v6=500, peers=2, seed=5)
    mrt_table.write(str(tmp / "p4.mrt"), v4=1500, v6=200, peers=4, seed=7)
    mrt_table.write(str(tmp / "transit.mrt"), v4=3000, v6=400, peers=2, seed=3, distinct=0.75)
    (tmp / "appended.mrt").write_bytes((tmp / "p1.mrt").read_bytes() + (tmp / "p2.mrt").read_bytes())
    (tmp / "own.txt").write_text(OWN_ROUTE)
    named = {name: tmp / name for name in ("p1.mrt", "p2.mrt", "p4.mrt", "transit.mrt", "appended.mrt", "own.txt")}
    named.update({
        "bird4": LAB / "bird-2.0.12" / "b4_show_route_all.txt",
        "bird6": LAB / "bird-2.0.12" / "b4_show_route_all_table_master6.txt",
        "frr-text": LAB / "frr-8.4.4" / "r3_show_ip_bgp.txt",
        "frr-json": LAB / "frr-8.4.4" / "r3_show_bgp_ipv4_unicast.json",
        "frr-json6": LAB / "frr-8.4.4" / "r3_show_bgp_ipv6_unicast.json",
    })
    for path in sorted((SAMPLES / "mrt").iterdir()):
        if "EXPECTED" not in path.name and path.suffix != ".txt" and not path.name.startswith("pyasn"):
            named[path.name] = path
    return named


MRT_CASES = [["p1.mrt"], ["p2.mrt"], ["p4.mrt"], ["transit.mrt"], ["appended.mrt"], ["p1.mrt", "p2.mrt"],
             ["p2.mrt", "p2.mrt"],
             ["bgpdump__bview.64k_stream_overflow.gz"], ["bgpdump__bview.ipv4_unicast_add_path.gz"],
             ["bgpdump__bview.ipv6_unicast_add_path.gz"], ["mrtparse__bird-mrtdump_rib.mrt"],
             ["mrtparse__bird6-mrtdump_rib.mrt"], ["mrtparse__openbgpd_rib_table-v2.mrt"],
             ["mrtparse__openbgpd_rib_table.mrt"], ["mrtparse__quagga_rib.mrt"]]
TEXT_CASES = [["own.txt"], ["bird4"], ["bird4", "bird6"], ["frr-text"], ["frr-json"], ["frr-json6"],
              ["own.txt", "bird4", "frr-text"]]


@pytest.fixture(params=["0", "1"], ids=["python", "compiled"])
def mrt_parser(request, monkeypatch):
    """IPR_NATIVE for the MRT parser; "1" fails where the compiled one is missing."""
    monkeypatch.setenv("IPR_NATIVE", request.param)
    native.reset()
    if request.param == "1":
        assert native.compiled("ipr.routing.dumps._mrt", "MRT parser") is not None
    yield request.param
    native.reset()


def route_by_route(paths: list[Path]) -> dict:
    """What a load of ``paths`` must give, computed one route at a time from
    the formats' Route parsers: sets numbered by value in order of first
    appearance across all dumps; ids table-relative."""
    from ipr.routing.dumps import mrt

    numbers: dict = {}
    attrs_rows, route_rows, best = [], [], []
    origins, neighbors = [], []
    prefixes, last = 0, None
    for path in paths:
        fmt = load.detect_format(open_dump(str(path)).peek(64))
        module, function = load.PARSERS[fmt]
        with open_dump(str(path)) as stream:
            if fmt == "mrt":
                stats = mrt.Stats()
                routes = list(mrt.parse(stream, source=str(path), stats=stats))
                if stats.peer_tables > 1:  # several appended dumps: the last one
                    with open_dump(str(path)) as again:
                        again.read(stats.last_peer_table_at)
                        routes = list(mrt.parse(again, source=str(path)))
            else:
                parser = getattr(__import__(f"ipr.routing.dumps.{module}", fromlist=[function]), function)
                routes = list(parser(stream, source=str(path)))
        for prefix, attrs, is_best in routes:
            number = numbers.get(attrs)
            if number is None:
                number = numbers[attrs] = len(numbers)
                origin = OWN_ASN if attrs.origin_as is None and attrs.neighbor_as is None else attrs.origin_as
                attrs_rows.append((number, attrs.next_hop or "", attrs.as_path, origin, attrs.neighbor_as,
                                   attrs.local_pref, attrs.med, attrs.communities))
                origins.append(-1 if origin is None else origin)
                neighbors.append(-1 if attrs.neighbor_as is None else attrs.neighbor_as)
            if prefix != last:
                prefixes += 1
                last = prefix
            route_rows.append((len(route_rows), prefix, number, is_best is not False))
            if is_best is not False:
                best.append((prefix, number))
    engine = lpm.Table.build((prefix, i) for i, (prefix, _) in enumerate(best))
    return {"counts": (len(route_rows), prefixes, len(numbers)), "routes": route_rows, "attrs": attrs_rows,
            "engine": {"route_attr": np.array([n for _, n in best], np.uint32),
                       "attr_origin": np.array(origins, np.int64), "attr_neighbor": np.array(neighbors, np.int64),
                       **{f"lpm{name}": value for name, value in engine.arrays().items()}}}


def loaded(table: Table) -> dict:
    base = table.pk << 32
    routes = [(i - base, str(p), a - base, b) for i, p, a, b in Route.objects.filter(table_id=table.pk)
              .order_by("id").values_list("id", "prefix", "attrs_id", "best")]
    attrs = [(r[0] - base, *r[1:]) for r in PathAttrs.objects.filter(table_id=table.pk).order_by("id").values_list(
        "id", "next_hop", "as_path", "origin_as", "neighbor_as", "local_pref", "med", "communities")]
    with np.load(io.BytesIO(bytes(TableEngine.objects.get(table_id=table.pk).data))) as npz:
        engine = {name: npz[name].copy() for name in npz.files}
    return {"counts": (table.routes, table.prefixes, table.attr_sets), "routes": routes, "attrs": attrs,
            "engine": engine}


def assert_same_load(got: dict, expected: dict) -> None:
    assert got["counts"] == expected["counts"]
    assert got["routes"] == expected["routes"]
    assert got["attrs"] == expected["attrs"]
    assert got["engine"].keys() == expected["engine"].keys()
    for name, value in expected["engine"].items():
        assert got["engine"][name].dtype == value.dtype and np.array_equal(got["engine"][name], value), name


@pytest.fixture
def router():
    return Router.objects.create(name="edge1", asn=OWN_ASN)


@pytest.mark.parametrize("names", MRT_CASES, ids="+".join)
def test_an_mrt_load_writes_what_a_route_by_route_load_gives(router, dumps, names, mrt_parser):
    paths = [dumps[n] for n in names]
    table = refresh_router(router.pk, [str(p) for p in paths])
    assert table.routes > 0
    assert_same_load(loaded(table), route_by_route(paths))


@pytest.mark.parametrize("names", TEXT_CASES, ids="+".join)
def test_a_text_dump_load_writes_what_a_route_by_route_load_gives(router, dumps, names):
    paths = [dumps[n] for n in names]
    assert_same_load(loaded(refresh_router(router.pk, [str(p) for p in paths])), route_by_route(paths))


@pytest.mark.parametrize("size", [1, 7, 500])
def test_batches_of_any_size_load_the_same(router, dumps, size, monkeypatch, mrt_parser):
    """Prefixes counted, sets numbered and best routes kept across batch boundaries."""
    monkeypatch.setattr(batches_module, "SIZE", size)
    monkeypatch.setattr(load, "from_routes", functools.partial(from_routes, size=size))
    paths = [dumps["p4.mrt"], dumps["bird4"], dumps["transit.mrt"]]
    assert_same_load(loaded(refresh_router(router.pk, [str(p) for p in paths])), route_by_route(paths))


def test_the_own_asn_is_the_origin_of_the_routers_own_routes(router, dumps):
    table = refresh_router(router.pk, [str(dumps["own.txt"])])
    rows = list(Route.objects.filter(table_id=table.pk).order_by("id")
                .values_list("prefix", "best", "attrs__origin_as", "attrs__neighbor_as"))
    assert rows == [("203.0.113.0/24", True, 64700, 64601), ("203.0.113.0/24", False, 64700, 64602),
                    ("198.51.100.0/24", True, OWN_ASN, None)]


def batch(prefixes, attr, best, attrs, first=0):
    """A Batch of IPv4 prefix texts."""
    import socket
    addr = np.frombuffer(b"".join(socket.inet_aton(p.split("/")[0]) for p in prefixes), np.uint8).reshape(-1, 4)
    return Batch(False, addr, np.array([int(p.split("/")[1]) for p in prefixes], np.uint8),
                 np.array(attr, np.uint32), np.array(best, bool), attrs, first)


ATTRS = Attrs("192.0.2.1", "64601 64700", 64700, 64601, 100, None, "")


def test_text_that_copy_must_escape_is_stored_as_it_was(router, tmp_path, monkeypatch):
    odd = Attrs("192.0.2.1", "64601 64700", 64700, 64601, 100, 5, "a\tb\\c\nd\re")
    monkeypatch.setattr(load, "parse_dump", lambda dump, stats=None: iter(
        [batch(["10.0.0.0/8", "10.1.0.0/16"], [0, 1], [True, True], [ATTRS, odd])]))
    (tmp_path / "d").write_text("parsed by the batches above")
    table = refresh_router(router.pk, [str(tmp_path / "d")])
    assert list(PathAttrs.objects.filter(table_id=table.pk).order_by("id").values_list("communities", "med")) == \
        [("", None), ("a\tb\\c\nd\re", 5)]


@pytest.mark.parametrize("bad, message", [
    (batch(["10.0.0.0/8"], [0], [True], [ATTRS], first=1), "numbers its new attribute sets from 1; 0 were"),
    (batch(["10.0.0.0/8"], [1], [True], [ATTRS]), "has attribute set 1; only 1 are numbered"),
])
def test_a_batch_that_breaks_the_numbering_is_refused_as_an_internal_fault(router, tmp_path, monkeypatch,
                                                                           bad, message):
    (tmp_path / "good").write_text(OWN_ROUTE)
    (tmp_path / "bad").write_text("parsed by the batches above")
    good = refresh_router(router.pk, [str(tmp_path / "good")])
    monkeypatch.setattr(load, "parse_dump", lambda dump, stats=None: iter([bad]))
    with pytest.raises(RuntimeError, match=message):
        refresh_router(router.pk, [str(tmp_path / "bad")])
    router.refresh_from_db()
    assert router.active_table_id == good.pk and message.split(";")[0] in router.refresh_error
    failed = Table.objects.get(state="failed")
    assert failed.error == "interrupted" and not Route.objects.filter(table_id=failed.pk).exists()
