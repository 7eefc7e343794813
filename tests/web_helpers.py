"""Archive rows for the web tests, written straight into the tables.

A *fact* is one (minute, router, type, prefix, origin AS, neighbour AS,
country, AS path) with its measures; :func:`write_facts` sums the facts
into every archive table the way the ingest and the rollup do (per minute,
per hour, per day; per prefix key, origin, neighbour, country and path), so
the tests can compute what a page must show from the facts alone.
"""
import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from django.conf import settings
from django.db import connection

from ipr.routing.load import copy_rows
from ipr.traffic import tables

UTC = timezone.utc


@dataclass
class Fact:
    minute: datetime
    router: int
    traffic_type: str
    prefix: str
    origin_as: int
    neighbor_as: int
    country: str
    as_path: str
    sums: dict = field(default_factory=dict)   # every name in tables.SUMS
    min_rtt_us: int | None = None


def random_sums(rng: random.Random, scale: int = 1) -> dict:
    s = {m: 0 for m in tables.SUMS}
    s["records"] = s["requests"] = rng.randint(1, 500) * scale
    s["connections"] = s["requests"] // 2
    s["status_2xx"] = s["requests"]
    s["response_bytes"] = rng.randint(10_000, 50_000_000) * scale
    s["wire_bytes"] = s["response_bytes"] + 1000
    s["data_segs"] = s["response_bytes"] // 1400 + 1
    s["retrans_segs"] = rng.randint(0, s["data_segs"] // 20)
    s["bytes_records"] = s["segs_records"] = s["tcpinfo_records"] = s["records"]
    centre = rng.uniform(3.5, 6.5)  # 10..100 ms, where most clients are
    weights = [math.exp(-((b + 0.5 - centre) / 1.3) ** 2 / 2) for b in range(12)]
    counts = [int(s["records"] * w / sum(weights)) for w in weights]
    counts[int(centre)] += s["records"] - sum(counts)
    for b, n in enumerate(counts):
        s[f"rtt_h{b}"] = n
    s["rtt_sum_us"] = s["records"] * int(10 ** (3 + centre / 3.3))
    s["duration_sum_us"] = s["records"] * 1000
    return s


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S+00:00")


def _truncate(t: datetime, unit: str) -> datetime:
    if unit == "minute":
        return t.replace(second=0, microsecond=0)
    if unit == "hour":
        return t.replace(minute=0, second=0, microsecond=0)
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def _key(fact: Fact, column: str, table: str):
    if column == "asn":  # the per-origin and per-neighbour tables
        return fact.origin_as if "origin" in table else fact.neighbor_as
    return {"router_id": fact.router, "traffic_type": fact.traffic_type, "prefix": fact.prefix,
            "origin_as": fact.origin_as, "neighbor_as": fact.neighbor_as, "country": fact.country,
            "as_path": fact.as_path}[column]


def empty_archive() -> None:
    with connection.cursor() as cur:
        for name in tables.TABLES:
            cur.execute(f"DELETE FROM {name}")


def write_facts(facts: list[Fact], minute_window: bool = True) -> None:
    """Sum the facts into every archive table (traffic_current too unless
    ``minute_window`` is False)."""
    pg = connection.vendor == "postgresql"
    newest = max((f.minute for f in facts), default=None)
    for name, (unit, extra) in tables.TABLES.items():
        if name == "traffic_current" and not minute_window:
            continue
        cols = tables.key_columns(name)
        acc = defaultdict(lambda: {m: 0 for m in tables.SUMS})
        mins = {}
        for f in facts:
            if name == "traffic_current" and f.minute < newest - timedelta(hours=settings.KEEP_CURRENT_HOURS):
                continue  # as the retention leaves it
            k = (_truncate(f.minute, unit),) + tuple(_key(f, c, name) for c in cols[1:])
            row = acc[k]
            for m in tables.SUMS:
                row[m] += f.sums.get(m, 0)
            if f.min_rtt_us is not None:
                mins[k] = min(mins.get(k, f.min_rtt_us), f.min_rtt_us)
        if not acc:
            continue
        if pg:
            tables.ensure_partitions(name, {_stamp(k[0]) for k in acc})
        rows = [(_stamp(k[0]),) + k[1:] + tuple(v[m] for m in tables.SUMS) + (mins.get(k),)
                for k, v in acc.items()]
        copy_rows(name, tuple(cols + tables.MEASURES), rows)


# -- a small, realistic archive for the page and browser tests ------------------

TRANSITS = {64600: "TRANSIT-ALPHA", 64601: "TRANSIT-BETA"}
COUNTRIES = ["FR", "DE", "US", "GB", "NL", "ES", "IT", "BR", "JP", ""]


def origin_names(n: int = 40) -> dict[int, str]:
    names = {65000 + i: f"EYEBALL-{i:02d}" for i in range(1, n)}
    names[4200000001] = "FAR-AWAY-32BIT"
    return names


def demo_facts(now: datetime, seed: int = 7, hours: int = 24 * 40, per_hour: int = 12,
               minutes: int = 120, per_minute: int = 1, routers=(1, 2, 3)) -> list[Fact]:
    """Zipf-skewed traffic: a few origin ASes carry most of it, two transits
    and direct peers, some unknown (AS 0, router 0, country '')."""
    rng = random.Random(seed)
    origins = list(origin_names()) + [0]
    weights = [1 / (i + 1) ** 1.1 for i in range(len(origins))]
    country_of = {o: COUNTRIES[i % len(COUNTRIES)] for i, o in enumerate(origins)}
    routers = list(routers) + [0]
    facts = []

    def one(t: datetime, scale: int):
        origin = rng.choices(origins, weights)[0]
        if origin == 0:
            neighbor, path, prefix = 0, "", "0.0.0.0/0"
        else:
            neighbor = rng.choice([64600, 64601, origin])
            path = str(origin) if neighbor == origin else f"{neighbor} {origin}"
            prefix = f"198.{18 + origins.index(origin) % 2}.{origins.index(origin)}.0/24"
        sums = random_sums(rng, scale)
        if neighbor == 64601:  # the worse transit: more retransmits
            sums["retrans_segs"] = sums["data_segs"] // 12
        facts.append(Fact(t, rng.choice(routers), rng.choice(["web", "video", "api"]), prefix, origin,
                          neighbor, country_of[origin], path, sums, rng.randint(500, 90_000)))

    base = now.replace(minute=0, second=0, microsecond=0)
    for h in range(hours):
        for _ in range(per_hour):
            # Older than the per-minute window's facts: those are written below.
            t = base - timedelta(hours=h) + timedelta(minutes=rng.randint(0, 59))
            if t < now - timedelta(minutes=minutes):
                one(t, 5)
    minute0 = now.replace(second=0, microsecond=0)
    for m in range(minutes):
        for _ in range(per_minute):
            one(minute0 - timedelta(minutes=m), 1)
    return [f for f in facts if f.minute <= now]


def setup_names(routers=(1, 2, 3)) -> None:
    """Routers and AS names the pages show beside the numbers."""
    from ipr.routing.models import ASName, Router
    for i, name in zip(routers, ("edge-par1", "edge-fra1", "edge-ams1")):
        Router.objects.update_or_create(pk=i, defaults={"name": name, "asn": 64496})
    for asn, name in {**origin_names(), **TRANSITS}.items():
        ASName.objects.update_or_create(asn=asn, defaults={"name": name})


def module_archive(django_db_blocker, setup, make):
    """A module fixture's archive: ``setup()`` (names, routers), then the
    facts ``make()`` returns written once and committed; yields them, then
    empties the archive, the AS names and the routers."""
    from ipr.routing.models import ASName, Router
    with django_db_blocker.unblock():
        empty_archive()
        setup()
        made = make()
        write_facts(made)
    yield made
    with django_db_blocker.unblock():
        empty_archive()
        ASName.objects.all().delete()
        Router.objects.all().delete()


def two_routers(tmp_path, networks, routes, transits=(64601, 64602)):
    """Routers a (the default) and b, each serving its network of
    ``networks``, with the same ``routes`` ((prefix, AS path) pairs) through
    its own transit of ``transits``: their tables loaded."""
    from ipr.routing.load import refresh_router
    from ipr.routing.models import Router, ServedNetwork
    from ipr.routing.samples import bird_dump
    made = (Router.objects.create(name="a", asn=64500, is_default=True), Router.objects.create(name="b", asn=64500))
    for router, network, transit in zip(made, networks, transits):
        ServedNetwork.objects.create(router=router, network=network)
        dump = tmp_path / f"{router.name}.txt"
        dump.write_text(bird_dump([(prefix, f"{transit} {path}") for prefix, path in routes]))
        refresh_router(router.pk, [str(dump)])
    return made


def spool_rows(rng, n, minutes, clients, servers, types=(b"web", b"video"), client_index=None):
    """``n`` spool rows with random measures (a retransmitted share of 0.1 to
    10 % of the data segments), in ``minutes``, from ``clients`` (each row's
    index into them: ``client_index``, or at random) to ``servers``."""
    import numpy as np

    from collector import spool
    from ipr.routing.lookup import address_bytes
    r = np.zeros(n, spool.ROW)
    r["minute"] = rng.choice(minutes, n)
    which = rng.integers(0, len(clients), n) if client_index is None else client_index
    r["client"] = np.array([address_bytes(c) for c in clients], dtype="V16")[which]
    r["server"] = np.array([address_bytes(s) for s in servers], dtype="V16")[rng.integers(0, len(servers), n)]
    r["traffic_type"] = np.array(types)[rng.integers(0, len(types), n)]
    for f in ("records", "connections", "tcpinfo_records", "segs_records", "bytes_records"):
        r[f] = rng.integers(1, 50, n)
    r["requests"] = r["records"]
    r["status"] = rng.integers(0, 10, (n, len(spool.STATUS_CLASSES)))
    for f in ("response_bytes", "wire_bytes", "retrans_bytes", "data_segs", "rtt_sum_us", "duration_sum_us"):
        r[f] = rng.integers(0, 10**9, n)
    r["retrans_segs"] = r["data_segs"] // rng.integers(10, 1000, n)
    r["rtt_hist"] = rng.integers(0, 20, (n, spool.RTT_BUCKETS))
    r["min_rtt_us"] = rng.integers(100, 90_000, n)
    return r
