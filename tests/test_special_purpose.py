"""Special-purpose addresses (loopback, private-use, documentation, CGNAT,
link-local, multicast...) are their own bucket: never an AS's or a
country's, even when a router's table and a country file cover them."""
import ipaddress
from datetime import datetime, timezone

import numpy as np
import pytest
from django.core.management import call_command
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from collector import spool
from ipr.routing import special
from ipr.routing.load import refresh_router
from ipr.routing.lookup import address_bytes, as_array, resolver
from ipr.routing.models import DataSource, Router, ServedNetwork
from ipr.routing.reference import refresh_source
from ipr.routing.samples import bird_dump
from ipr.traffic import ingest, rollup
from ipr.web import queries
from tests import web_helpers

pytestmark = pytest.mark.django_db

# Client, and what it must be: its special-purpose block or None (routed).
CLIENTS = {
    "127.0.0.1": "127.0.0.0/8", "10.20.30.40": "10.0.0.0/8", "172.20.0.1": "172.16.0.0/12",
    "192.168.1.1": "192.168.0.0/16", "100.64.1.1": "100.64.0.0/10", "169.254.9.9": "169.254.0.0/16",
    "192.0.2.77": "192.0.2.0/24", "198.51.100.1": "198.51.100.0/24", "203.0.113.5": "203.0.113.0/24",
    "198.19.0.1": "198.18.0.0/15", "224.0.0.251": "224.0.0.0/4", "0.1.2.3": "0.0.0.0/8",
    "::1": "::1/128", "::": "::/128", "2001:db8::1": "2001:db8::/32", "fd12:3456::1": "fc00::/7",
    "fe80::1": "fe80::/10", "ff02::1": "ff00::/8", "3fff:1::1": "3fff::/20",
    # routed like any address: globally reachable blocks inside special ones, and public space
    "192.0.0.9": None, "2001::1": None, "2001:4:112::1": None, "8.8.8.8": None, "11.0.0.1": None,
    "2a00:1450::1": None, "100.128.0.1": None,
}
# A table that covers every client above, as a lab router's or a default
# route would: the special-purpose blocks must not take its routes.
ROUTES = [("0.0.0.0/1", "64601 64999"), ("128.0.0.0/1", "64601 64998"), ("8.0.0.0/8", "64601 15169"),
          ("127.0.0.0/8", "64601 64777"), ("10.0.0.0/8", "64601 64778"), ("::/1", "64601 64997"),
          ("2000::/3", "64601 64996"), ("2001:db8::/32", "64601 64779"), ("8000::/1", "64601 64995")]
COUNTRIES = ("2.3|demo|20261201|3|19700101|20261201|+0000\n"
             "demo|IN|ipv4|0.0.0.0|2147483648|20200101|allocated\n"
             "demo|IN|ipv4|128.0.0.0|2147483648|20200101|allocated\n"
             "demo|IN|ipv6|::|1|20200101|allocated\n"
             "demo|IN|ipv6|8000::|1|20200101|allocated\n")


@pytest.fixture(autouse=True)
def empty_archive(django_db_blocker):
    with django_db_blocker.unblock():
        web_helpers.empty_archive()


@pytest.fixture
def router(tmp_path):
    edge = Router.objects.create(name="edge", asn=64500, is_default=True)
    ServedNetwork.objects.create(router=edge, network="192.0.2.0/24")
    dump = tmp_path / "edge.txt"
    dump.write_text(bird_dump(ROUTES))
    refresh_router(edge.pk, [str(dump)])
    delegated = tmp_path / "countries.txt"
    delegated.write_text(COUNTRIES)
    source = DataSource.objects.create(name="cc", kind=DataSource.Kind.RIR, path=str(delegated))
    refresh_source(source.pk)
    return edge


def test_each_address_is_classified_by_the_most_specific_block_and_holes_are_routed():
    for block, label in special.BLOCKS:
        assert ipaddress.ip_network(block) and label  # strict: no host bits
    for block in special.ROUTED:
        assert any(ipaddress.ip_network(block).subnet_of(ipaddress.ip_network(b)) for b, _ in special.BLOCKS
                   if ipaddress.ip_network(b).version == ipaddress.ip_network(block).version)
    found = special.classify(as_array(list(CLIENTS)))
    got = {c: (special.BLOCKS[i][0] if i >= 0 else None) for c, i in zip(CLIENTS, found.tolist())}
    assert got == CLIENTS


def test_the_resolver_gives_a_special_address_its_block_no_as_and_no_country(router):
    got = resolver().resolve(list(CLIENTS), ["192.0.2.1"] * len(CLIENTS))
    for i, (client, block) in enumerate(CLIENTS.items()):
        if block is None:
            assert got.special[i] == -1 and got.route[i] >= 0 and got.origin_as[i] > 0, client
            assert got.country[i] == "IN", client
        else:
            assert special.BLOCKS[got.special[i]][0] == block, client
            assert (got.route[i], got.origin_as[i], got.neighbor_as[i]) == (-1, 0, 0), client
            assert got.country[i] == special.COUNTRY, client


def test_the_lookup_explains_the_block(router, capsys):
    call_command("lookup", "127.0.0.1")
    out = capsys.readouterr().out
    assert "prefix      127.0.0.0/8 (loopback: a special-purpose address" in out and "country     ZZ" in out
    (row,) = resolver().explain("127.0.0.1")
    assert row["prefix"] == "127.0.0.0/8" and row["special_purpose"] == "loopback"
    assert (row["origin_as"], row["neighbor_as"], row["country"]) == (0, 0, "ZZ")
    (row,) = resolver().explain("8.8.8.8")
    assert row["prefix"] == "8.0.0.0/8" and row["origin_as"] == 15169 and row["special_purpose"] is None


def test_a_network_in_the_setting_is_routed_like_any_address(router, settings):
    settings.ROUTE_SPECIAL = ["10.0.0.0/8"]
    got = resolver().resolve(["10.20.30.40", "127.0.0.1"], ["192.0.2.1"] * 2)
    assert got.origin_as.tolist() == [64778, 0] and got.country.tolist() == ["IN", "ZZ"]
    assert got.special.tolist() == [-1, special.BLOCKS.index(("127.0.0.0/8", "loopback"))]


def spool_rows():
    minute = int(datetime.now(timezone.utc).timestamp()) // 60 - 3 * 60  # an hour archived straight
    rows = np.zeros(len(CLIENTS), spool.ROW)
    rows["minute"] = minute
    rows["client"] = np.array([address_bytes(c) for c in CLIENTS], "V16")
    rows["server"] = address_bytes("192.0.2.1")
    rows["traffic_type"] = b"web"
    rows["requests"] = rows["records"] = np.arange(1, len(CLIENTS) + 1)
    rows["response_bytes"] = 1000 * rows["requests"]
    rows["min_rtt_us"] = spool.NO_MIN_RTT
    return rows


def test_the_archive_and_the_api_show_the_bucket(router, django_user_model):
    rows = spool_rows()
    ingest.write(ingest.summarise(rows))
    rollup.archive_pending(everything=True)
    want = {}
    for client, block in CLIENTS.items():
        if block:
            want[block] = want.get(block, 0) + int(rows["requests"][list(CLIENTS).index(client)])
    key = "prefix::text" if connection.vendor == "postgresql" else "prefix"
    with connection.cursor() as cur:
        cur.execute(f"SELECT {key}, origin_as, neighbor_as, country, sum(requests) FROM traffic_prefix_hour "
                    "WHERE country = 'ZZ' GROUP BY 1, 2, 3, 4")
        got = {p: (o, n, int(r)) for p, o, n, c, r in cur.fetchall()}
        assert got == {p: (0, 0, r) for p, r in want.items()}
        # Nothing special was counted as India, nor to the table's AS 64777 (127/8).
        cur.execute("SELECT count(*) FROM traffic_origin_hour WHERE asn IN (64777, 64778, 64779)")
        assert cur.fetchone()[0] == 0

    user = django_user_model.objects.create_user("ops", password="a-long-password")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    body = api.get("/api/top/prefix/", {"limit": 100}).json()
    labels = {r["key"]: r["label"] for r in body["rows"]}
    assert labels["127.0.0.0/8"] == "127.0.0.0/8 (loopback)"
    assert labels["2001:db8::/32"] == "2001:db8::/32 (documentation)"
    assert labels["100.64.0.0/10"] == "100.64.0.0/10 (shared address space, CGNAT)"
    countries = {r["key"]: (r["label"], r["requests"]) for r in api.get("/api/top/country/").json()["rows"]}
    assert countries["ZZ"] == ("ZZ special-purpose addresses (no country)", sum(want.values()))
    assert queries.asn_label(0) == "AS0 (no AS: unrouted or special-purpose)"

    web = APIClient()
    web.force_login(user)
    page = web.get("/prefix/127.0.0.0/8").content.decode()
    assert "127.0.0.0/8 (loopback)" in page
    page = web.get("/country/ZZ").content.decode()
    assert "special-purpose addresses" in page and "3fff::/20 (documentation)" in page  # the largest
    csv = web.get("/country/ZZ", {"format": "csv", "table": "prefix", "limit": 100})
    assert csv.status_code == 200, csv.content[:300]
    assert "\n2001:db8::/32,2001:db8::/32 (documentation)," in csv.content.decode()
