"""Loading router tables: atomic swap, refusals that keep the active table,
sources (files, globs, commands), and the in-memory resolver."""
import bz2
import gzip
import lzma
from pathlib import Path
import os
import re
import shutil
import socket
import threading
import time

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from bench import mrt_table
from ipr.routing import load
from ipr.routing.load import Busy, RefreshError, refresh_router
from ipr.routing.models import (ASName, DataSource, OriginOverride, Route, RouteSource, Router,
                                ServedNetwork, Table)

# The routes here resolve clients in 10/8, 192.0.2/24, 2001:db8::/32...
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("routed_stand_ins")]


def bird_dump(routes) -> str:
    """BIRD 2 `show route all` text for (prefix, as_path, next_hop, local_pref[, best])."""
    lines = ["BIRD 2.0.12 ready.", "Table master4:"]
    last = None
    for prefix, path, hop, pref, *rest in routes:
        best = rest[0] if rest else True
        origin = path.split()[-1] if path else ""
        net = prefix if prefix != last else ""
        last = prefix
        lines.append(f"{net:<20} unicast [p1 2026-11-22 10:18:24] {'* ' if best else ''}(100) [AS{origin}i]")
        lines.append(f"\tvia {hop} on eth0")
        lines.append("\tType: BGP univ")
        lines.append("\tBGP.origin: IGP")
        lines.append(f"\tBGP.as_path: {path}")
        lines.append(f"\tBGP.next_hop: {hop}")
        lines.append(f"\tBGP.local_pref: {pref}")
    return "\n".join(lines) + "\n"


def many_routes(count, transit=64600):
    return [(f"10.{i // 256}.{i % 256}.0/24", f"{transit} {65000 + i % 50}", "192.0.2.1", 100)
            for i in range(count)]


@pytest.fixture
def router():
    return Router.objects.create(name="edge1", asn=64500)


def write_bytes(tmp_path, name, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def route_rows(table_id):
    return list(Route.objects.filter(table_id=table_id).order_by("id")
                .values_list("prefix", "best", "attrs__as_path", "attrs__origin_as", "attrs__neighbor_as"))


def test_it_loads_a_dump_and_makes_it_the_active_table(router, tmp_path):
    path = write(tmp_path, "t.txt", bird_dump([
        ("203.0.113.0/24", "64601 64700", "192.0.2.1", 100),
        ("203.0.113.0/24", "64602 64701 64700", "192.0.2.2", 90, False),
        ("198.51.100.0/24", "", "192.0.2.3", 100),
    ]))
    table = refresh_router(router.pk, [path])
    router.refresh_from_db()
    assert router.active_table_id == table.pk and router.refresh_error == "" and router.refresh_ok
    assert (table.state, table.routes, table.prefixes, table.attr_sets) == ("active", 3, 2, 3)
    assert route_rows(table.pk) == [
        ("203.0.113.0/24", True, "64601 64700", 64700, 64601),
        ("203.0.113.0/24", False, "64602 64701 64700", 64700, 64602),
        # An empty path is the router's own route: its origin is the router's ASN.
        ("198.51.100.0/24", True, "", 64500, None),
    ]


def test_a_new_version_replaces_the_old_and_retired_versions_are_dropped(router, tmp_path, settings):
    settings.ROUTING_KEEP_RETIRED = 1
    first = refresh_router(router.pk, [write(tmp_path, "a", bird_dump(many_routes(10)))])
    second = refresh_router(router.pk, [write(tmp_path, "b", bird_dump(many_routes(11)))])
    third = refresh_router(router.pk, [write(tmp_path, "c", bird_dump(many_routes(12)))])
    router.refresh_from_db()
    assert router.active_table_id == third.pk
    states = dict(Table.objects.values_list("pk", "state"))
    assert states == {second.pk: "retired", third.pk: "active"}  # the first is gone, rows and all
    assert len(route_rows(first.pk)) == 0 and len(route_rows(second.pk)) == 11
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SELECT relname FROM pg_class WHERE relkind = 'r' AND relname LIKE 'routing_route_t%%' ORDER BY 1")
            assert [r[0] for r in cur.fetchall()] == sorted([f"routing_route_t{second.pk}",
                                                             f"routing_route_t{third.pk}"])


def test_a_dump_that_does_not_parse_is_refused_with_its_line_and_the_active_table_stays(router, tmp_path):
    good = refresh_router(router.pk, [write(tmp_path, "good", bird_dump(many_routes(20)))])
    text = bird_dump(many_routes(20)).replace("\tBGP.local_pref: 100", "\tBGP.local_pref: lots", 1)
    bad = write(tmp_path, "bad.txt", text)
    with pytest.raises(RefreshError) as err:
        refresh_router(router.pk, [bad])
    message = str(err.value)
    assert bad in message and "line 9" in message
    router.refresh_from_db()
    assert router.active_table_id == good.pk
    assert bad in router.refresh_error and router.refresh_ok is False
    failed = Table.objects.get(state="failed")
    assert failed.error == message and route_rows(failed.pk) == []
    assert len(route_rows(good.pk)) == 20


def test_a_dump_cut_in_its_first_route_never_becomes_a_new_routers_table(router, tmp_path):
    text = bird_dump([("203.0.113.0/24", "4242423391 4242420000", "192.0.2.1", 100)])
    path_line = "BGP.as_path: 4242423391 42424"  # cut mid-ASN
    cut = write(tmp_path, "cut.txt", text[:text.index(path_line) + len(path_line)])
    with pytest.raises(RefreshError, match=r"cut\.txt: line 7: .*cut short"):
        refresh_router(router.pk, [cut])
    router.refresh_from_db()
    assert router.active_table_id is None and "cut short" in router.refresh_error


def test_an_internal_fault_while_loading_is_recorded_and_the_active_table_stays(router, tmp_path, monkeypatch):
    good = refresh_router(router.pk, [write(tmp_path, "good", bird_dump(many_routes(5)))])

    def broken_parser(dump, stats=None):
        yield from ()
        raise RuntimeError("a parser bug")

    monkeypatch.setattr(load, "parse_dump", broken_parser)
    with pytest.raises(RuntimeError):
        refresh_router(router.pk, [write(tmp_path, "other", bird_dump(many_routes(6)))])
    router.refresh_from_db()
    assert router.active_table_id == good.pk
    assert router.refresh_error == "internal error: RuntimeError: a parser bug"
    assert Table.objects.get(state="failed").error == "interrupted"


def test_an_empty_dump_is_refused(router, tmp_path):
    good = refresh_router(router.pk, [write(tmp_path, "good", bird_dump(many_routes(5)))])
    with pytest.raises(RefreshError, match="no routes"):
        refresh_router(router.pk, [write(tmp_path, "empty", "BIRD 2.0.12 ready.\n")])
    router.refresh_from_db()
    assert router.active_table_id == good.pk


def test_a_table_that_shrinks_by_more_than_the_allowed_share_is_refused(router, tmp_path):
    router.max_shrink = 0.25
    router.save()
    good = refresh_router(router.pk, [write(tmp_path, "100", bird_dump(many_routes(100)))])
    with pytest.raises(RefreshError, match=r"70 routes against 100 .* shrink of 30%"):
        refresh_router(router.pk, [write(tmp_path, "70", bird_dump(many_routes(70)))])
    router.refresh_from_db()
    assert router.active_table_id == good.pk
    # 75 routes is a 25% shrink: allowed.
    smaller = refresh_router(router.pk, [write(tmp_path, "75", bird_dump(many_routes(75)))])
    router.refresh_from_db()
    assert router.active_table_id == smaller.pk


def test_a_compressed_dump_is_read(router, tmp_path):
    path = tmp_path / "t.txt.gz"
    path.write_bytes(gzip.compress(bird_dump(many_routes(30)).encode()))
    assert refresh_router(router.pk, [str(path)]).routes == 30


# Each compression's format and where its first compressed block starts
# (after the gzip header, the bzip2 stream header, the xz magic).
COMPRESSIONS = {"gzip": (gzip.compress, 10), "bzip2": (bz2.compress, 4), "xz": (lzma.compress, 6)}


def damaged(packed: bytes, damage: str, start: int) -> bytes:
    def flip(at):
        return packed[:at] + bytes(b ^ 0x55 for b in packed[at:at + 4]) + packed[at + 4:]

    if damage == "corrupt start":  # the decompressor fails at once
        return flip(start)
    if damage == "corrupt middle":  # it may hand out garbage before its checksum fails
        return flip(len(packed) // 2)
    if damage == "cut":
        return packed[:len(packed) * 3 // 5]
    return packed + b"garbage after the stream\n"


@pytest.mark.parametrize("damage", ["corrupt start", "corrupt middle", "cut", "trailing garbage"])
@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("fmt", ["bird", "mrt"])
def test_damaged_compressed_data_is_refused_with_its_offset_and_the_active_table_stays(
        router, tmp_path, fmt, compression, damage):
    if fmt == "mrt":
        raw = tmp_path / "table.mrt"
        mrt_table.write(str(raw), v4=500, v6=50, seed=3)
        data = raw.read_bytes()
    else:
        data = bird_dump(many_routes(500)).encode()
    compress, start = COMPRESSIONS[compression]
    good = refresh_router(router.pk, [str(write_bytes(tmp_path, "good", compress(data)))])
    bad = str(write_bytes(tmp_path, "bad", damaged(compress(data), damage, start)))
    with pytest.raises(RefreshError) as err:
        refresh_router(router.pk, [bad])
    message = str(err.value)
    # Garbage from a corrupt middle may fail the parser (at a line) before the checksum.
    where = r"(byte|line) \d+" if damage == "corrupt middle" else r"byte \d+"
    assert re.match(rf"{re.escape(bad)}: {where}: ", message), message
    expected = {"corrupt start": f"byte 0: corrupt {compression} data",
                "cut": "compressed stream cut short",
                "trailing garbage": f"after the end of the {compression} data are not {compression}"}
    assert expected.get(damage, "") in message
    router.refresh_from_db()
    assert router.active_table_id == good.pk and router.refresh_error == message
    failed = Table.objects.get(state="failed")
    assert failed.error == message and route_rows(failed.pk) == []
    assert Table.objects.count() == 2


def test_an_unchanged_dump_keeps_its_version_and_records_the_refresh(router, tmp_path, capsys):
    path = write(tmp_path, "t.txt", bird_dump(many_routes(9)))
    RouteSource.objects.create(router=router, path=path)
    first = refresh_router(router.pk)
    router.refresh_from_db()
    loaded_at = router.refreshed_at
    # A refused refresh in between leaves its error, which the next success clears.
    with pytest.raises(RefreshError):
        refresh_router(router.pk, [write(tmp_path, "empty", "")])
    again = refresh_router(router.pk)
    router.refresh_from_db()
    assert again.pk == first.pk and again.unchanged
    assert router.active_table_id == first.pk and router.refresh_error == ""
    assert router.refreshed_at > loaded_at
    assert set(Table.objects.values_list("state", flat=True)) == {"active", "failed"}
    call_command("load_routes", "edge1", "--no-progress")
    assert f"#{first.pk}): unchanged" in capsys.readouterr().out
    assert Table.objects.filter(state="active").count() == 1 and Table.objects.count() == 2
    # Changed bytes make a new version, even with the same routes.
    Path(path).write_text(bird_dump(many_routes(9)).replace("10:18:24", "10:18:25"))
    changed = refresh_router(router.pk)
    assert changed.pk != first.pk and not changed.unchanged and changed.state == "active"


def test_a_file_source_given_as_a_glob_reads_the_newest_file(router, tmp_path):
    old = write(tmp_path, "rib-1.txt", bird_dump(many_routes(3)))
    new = write(tmp_path, "rib-2.txt", bird_dump(many_routes(4)))
    os.utime(old, (time.time() - 60, time.time() - 60))
    RouteSource.objects.create(router=router, kind="file", path=str(tmp_path / "rib-*.txt"))
    table = refresh_router(router.pk)
    assert table.routes == 4 and table.sources.startswith(f"{new} sha256:")


def test_a_command_source_is_run_and_its_failures_are_refused(router, tmp_path):
    dump = write(tmp_path, "t.txt", bird_dump(many_routes(7)))
    source = RouteSource.objects.create(router=router, kind="command", command=f"cat {dump}", timeout=5)
    active = refresh_router(router.pk)
    assert active.routes == 7
    pid_file = tmp_path / "child.pid"
    failures = [
        ("sh -c 'echo connection refused >&2; exit 255'", 5, "exit status 255: connection refused"),
        # Its output is complete, but a command that was killed is not trusted.
        (f"sh -c 'cat {dump}; echo dying >&2; kill -9 $$'", 5, "killed by signal SIGKILL: dying"),
        # The timeout kills the command and what it started, and keeps its stderr.
        (f"sh -c 'sleep 60 & echo $! > {pid_file}; echo waiting for the router >&2; wait'", 1,
         "no answer within 1 s \\(killed\\): waiting for the router"),
    ]
    for command, timeout, message in failures:
        source.command, source.timeout = command, timeout
        source.save()
        with pytest.raises(RefreshError, match=message):
            refresh_router(router.pk)
        router.refresh_from_db()
        assert router.active_table_id == active.pk
        assert router.refresh_error.startswith(f"{command}: ")
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 10  # SIGKILL is delivered asynchronously
    while running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(child)


@pytest.mark.skipif(not shutil.which("birdc"), reason="birdc is not installed (Debian package bird2)")
def test_a_birdc_whose_bird_drops_the_connection_mid_reply_is_refused(router, tmp_path):
    """birdc prints no end mark; its exit status says whether the reply was whole."""
    good = refresh_router(router.pk, [write(tmp_path, "good", bird_dump(many_routes(3)))])
    path = str(tmp_path / "bird.ctl")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)

    def bird_that_dies():  # the welcome, then a reply cut after its first lines
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"0001 BIRD 2.0.12 ready.\n")
            conn.recv(100)
            conn.sendall(b"1007-Table master4:\n 10.0.0.0/8 unicast [p1 10:18:24] * (100) [AS64600i]\n"
                         b"1008-\tType: BGP univ\n")

    thread = threading.Thread(target=bird_that_dies)
    thread.start()
    RouteSource.objects.create(router=router, kind="command", timeout=10,
                               command=f"birdc -s {path} 'show route all'")
    try:
        with pytest.raises(RefreshError, match="exit status 1: Connection closed by server"):
            refresh_router(router.pk)
    finally:
        thread.join()
        server.close()
    router.refresh_from_db()
    assert router.active_table_id == good.pk


def running(pid: int) -> bool:
    """The process exists and is not a zombie (nothing may reap orphans here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def test_two_sources_make_one_version(router, tmp_path):
    RouteSource.objects.create(router=router, path=write(tmp_path, "v4", bird_dump(many_routes(5))))
    RouteSource.objects.create(router=router, path=write(tmp_path, "v4b", bird_dump(
        [("192.0.2.0/24", "64601", "192.0.2.9", 100)])))
    assert refresh_router(router.pk).routes == 6


def test_a_router_being_refreshed_is_not_refreshed_twice(router, tmp_path):
    path = write(tmp_path, "t", bird_dump(many_routes(3)))
    with load.claimed(router):
        with pytest.raises(Busy):
            refresh_router(router.pk, [path])
    assert refresh_router(router.pk, [path]).routes == 3


def test_the_beat_task_refreshes_only_the_routers_that_are_due(router, tmp_path, monkeypatch):
    from cron.celery import app
    from cron.tasks import refresh_due

    # The queued refreshes run here, whatever broker the test run has.
    monkeypatch.setitem(app.conf, "task_always_eager", True)

    RouteSource.objects.create(router=router, path=write(tmp_path, "t", bird_dump(many_routes(3))))
    idle = Router.objects.create(name="no-sources", asn=64501)
    assert refresh_due() == 1
    router.refresh_from_db()
    assert router.active_table is not None
    assert refresh_due() == 0  # refreshed a moment ago: not due for refresh_minutes
    idle.refresh_from_db()
    assert idle.active_table is None


def test_the_load_routes_command_reports_the_new_table_or_the_refusal(router, tmp_path, capsys):
    call_command("load_routes", "edge1", write(tmp_path, "t", bird_dump(many_routes(12))), "--no-progress")
    assert "table #" in capsys.readouterr().out
    with pytest.raises(CommandError, match="refused, the active table stays: .*no routes"):
        call_command("load_routes", "edge1", write(tmp_path, "e", ""), "--no-progress")
    with pytest.raises(CommandError, match="no router named 'nope'"):
        call_command("load_routes", "nope", "--no-progress")


# -- the resolver ------------------------------------------------------------

@pytest.fixture
def two_routers(tmp_path):
    a = Router.objects.create(name="a", asn=64500, is_default=True)
    b = Router.objects.create(name="b", asn=64500)
    ServedNetwork.objects.create(router=a, network="198.18.0.0/15")
    ServedNetwork.objects.create(router=b, network="198.18.1.0/24")  # more specific: wins
    refresh_router(a.pk, [write(tmp_path, "a", bird_dump([
        ("10.0.0.0/8", "64601 64700", "192.0.2.1", 100),
        ("10.1.0.0/16", "64601 64701", "192.0.2.1", 100),
        ("2001:db8::/32", "64601 64702", "2001:db8::1", 100),
    ]))])
    refresh_router(b.pk, [write(tmp_path, "b", bird_dump([
        ("10.0.0.0/8", "64602 64700", "192.0.2.2", 100),
    ]))])
    return a, b


def test_the_resolver_uses_the_table_of_the_router_that_carried_the_response(two_routers):
    a, b = two_routers
    from ipr.routing.lookup import Resolver
    resolver = Resolver()
    resolver.refresh()
    got = resolver.resolve(["10.1.2.3", "10.1.2.3", "10.200.0.1", "2001:db8::5", "192.0.2.1", "10.1.2.3"],
                           ["198.18.0.1", "198.18.1.1", "198.18.0.1", "198.18.0.1", "198.18.0.1", "203.0.113.1"])
    assert got.router_id.tolist() == [a.pk, b.pk, a.pk, a.pk, a.pk, a.pk]  # unserved → the default router
    assert got.origin_as.tolist() == [64701, 64700, 64700, 64702, -1, 64701]
    assert got.neighbor_as.tolist() == [64601, 64602, 64601, 64601, -1, 64601]


def test_an_origin_override_replaces_the_routers_origin(two_routers):
    OriginOverride.objects.create(prefix="10.1.2.0/24", origin_as=65111)
    from ipr.routing.lookup import Resolver
    resolver = Resolver()
    resolver.refresh()
    got = resolver.resolve(["10.1.2.3", "10.1.3.3"], ["198.18.0.1"] * 2)
    assert got.origin_as.tolist() == [65111, 64701]


def test_the_resolver_rebuilds_only_when_a_new_version_is_active(two_routers, tmp_path):
    a, _ = two_routers
    from ipr.routing.lookup import Resolver
    resolver = Resolver()
    resolver.refresh()
    before = resolver.tables[a.pk]
    resolver.refresh()
    assert resolver.tables[a.pk] is before
    refresh_router(a.pk, [write(tmp_path, "a2", bird_dump([
        ("10.0.0.0/8", "64603 64709", "192.0.2.1", 100)] * 1 + many_routes(2, 64603)))])
    resolver.refresh()
    assert resolver.tables[a.pk] is not before
    assert resolver.resolve(["10.200.0.1", "10.0.1.1"], router_id=a.pk).origin_as.tolist() == [64709, 65001]


def test_countries_come_from_the_source_with_the_lowest_priority_number(two_routers, tmp_path):
    from ipr.routing.reference import refresh_source

    rir = write(tmp_path, "delegated-test", "\n".join([
        "2|ripencc|1404165599|3|19830705|20140630|+0200",
        "ripencc|*|ipv4|*|2|summary",
        "ripencc|NL|ipv4|10.0.0.0|16777216|20100101|allocated",
        "ripencc|DE|ipv4|10.1.0.0|65536|20100101|allocated",
        "ripencc|FR|ipv6|2001:db8::|32|20100101|allocated",
    ]) + "\n")
    low = DataSource.objects.create(name="rir", kind="rir", path=rir, priority=100)
    assert refresh_source(low.pk) == 3
    from ipr.routing.lookup import Resolver
    resolver = Resolver()
    resolver.refresh()
    clients = ["10.1.2.3", "10.9.9.9", "2001:db8::1", "192.0.2.1"]
    assert resolver.resolve(clients, router_id=two_routers[0].pk).country.tolist() == ["DE", "NL", "FR", ""]
    high = DataSource.objects.create(name="rir2", kind="rir", priority=10, path=write(
        tmp_path, "delegated-2", "2|arin|1|1|19830705|20140630|-0400\narin|US|ipv4|10.9.0.0|256|20100101|assigned\n"))
    refresh_source(high.pk)
    resolver.refresh()
    assert resolver.resolve(["10.9.0.7", "10.9.1.7"], router_id=two_routers[0].pk).country.tolist() == ["US", "NL"]


def test_the_lookup_command_prints_prefix_path_origin_and_country_per_router(two_routers, capsys):
    ASName.objects.create(asn=64701, name="EXAMPLE-NET", country="DE")
    call_command("lookup", "10.1.2.3")
    out = capsys.readouterr().out
    assert "a (AS64500), table #" in out and "b (AS64500), table #" in out
    assert "prefix      10.1.0.0/16" in out and "origin      AS64701 EXAMPLE-NET" in out
    assert "prefix      10.0.0.0/8" in out and "as path     64602 64700" in out
    with pytest.raises(CommandError, match="not an IP address"):
        call_command("lookup", "10.1.2")


def test_batch_addresses_in_the_spool_form_resolve_like_text(two_routers):
    from ipr.routing.lookup import Resolver, as_array
    resolver = Resolver()
    resolver.refresh()
    raw = np.frombuffer(b"\0" * 10 + b"\xff\xff" + bytes([10, 1, 2, 3]), dtype="V16")
    assert resolver.resolve(raw, router_id=two_routers[0].pk).origin_as.tolist() == \
        resolver.resolve(as_array(["10.1.2.3"]), router_id=two_routers[0].pk).origin_as.tolist()


LAB = Path(__file__).resolve().parents[2] / "shared" / "formats" / "samples" / "lab-generated"
MRT_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "formats" / "samples" / "mrt"


@pytest.mark.parametrize("path, fmt", [
    (LAB / "frr-8.4.4" / "r3_show_ip_bgp.txt", "frr-text"),
    (LAB / "frr-8.4.4" / "r3_show_bgp_ipv4_unicast.json", "frr-json"),
    (LAB / "bird-2.0.12" / "b4_show_route_all.txt", "bird"),
    (LAB / "bird-2.0.12" / "b4_rawsocket_show_route_all.txt", "bird"),
    (MRT_SAMPLES / "mrtparse__bird-mrtdump_rib.mrt", "mrt"),
    (MRT_SAMPLES / "bgpdump__bview.ipv4_unicast_add_path.gz", "mrt"),
])
def test_the_format_is_detected_from_the_content(path, fmt):
    from ipr.routing.dumps.mrt import open_dump

    assert load.detect_format(open_dump(str(path)).peek(64)) == fmt


def test_frr_text_and_json_of_one_table_load_the_same_best_routes(router):
    def best(table):
        return sorted((p, path) for p, b, path, _, _ in route_rows(table.pk) if b)

    text = refresh_router(router.pk, [str(LAB / "frr-8.4.4" / "r3_show_ip_bgp.txt")])
    json = refresh_router(router.pk, [str(LAB / "frr-8.4.4" / "r3_show_bgp_ipv4_unicast.json")])
    assert text.routes == json.routes > 0
    assert best(text) == best(json)


def test_an_mrt_file_with_several_appended_dumps_loads_only_the_last(router, tmp_path):
    from bench import mrt_table

    older, newer = tmp_path / "older.mrt", tmp_path / "newer.mrt"
    mrt_table.write(str(older), v4=300, v6=50, seed=1)
    mrt_table.write(str(newer), v4=280, v6=40, seed=2)
    appended = tmp_path / "rib.mrt"  # what BIRD's mrt protocol makes of a fixed file name
    appended.write_bytes(older.read_bytes() + newer.read_bytes())
    alone = refresh_router(router.pk, [str(newer)])
    both = refresh_router(router.pk, [str(appended)])
    assert both.routes == alone.routes == 320
    assert [r[:3] for r in route_rows(both.pk)] == [r[:3] for r in route_rows(alone.pk)]
