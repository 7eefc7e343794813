"""`manage.py demo`: the whole measured path, on loopback, in a minute.

Starts the collector (spooling to the spool the settings name, as an
installed one does) and a gunicorn site instrumented with the WSGI agent,
sends the site real HTTP requests (keep-alive and not, small and large),
adds synthetic traffic from many client addresses, stops everything
cleanly and shows what reached the spool. Then, in process as the embedded
default's schedule does, loads made-up router tables, a country file and AS
names (ipr.routing.samples), adds eight days of backdated history to the
spool (:func:`history`), ingests the spool, archives the hours and shows
the archive: traffic by origin AS, neighbour AS and country.
"""
import http.client
import json
import logging
import math
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from collector import spool, synth
from ipr.traffic.health import check

ROOT = Path(settings.BASE_DIR)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, check, proc, log: Path, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc.poll() is not None:
            raise CommandError(f"{what} exited:\n{log.read_text()}")
        time.sleep(0.1)
    raise CommandError(f"{what} did not start:\n{log.read_text()}")


def segment_names(spool_dir: Path) -> list[str]:
    return [p.name for p in (spool_dir / "incoming").glob("*.seg")]


def shown(path: Path, here: Path) -> str:
    """A path as the user would type it from ``here``."""
    try:
        return str(path.relative_to(here))
    except ValueError:
        return str(path)


# -- the history -------------------------------------------------------------------

# Origins the history sends traffic to: public /8s of the demo table (so each
# is its own origin AS and country), and some IPv6 blocks.
HISTORY_V4 = (5, 8, 12, 13, 17, 23, 24, 31, 37, 41, 46, 49, 52, 58, 62, 66, 72, 77, 80, 81, 85, 88, 91,
              94, 101, 104, 109, 114, 122, 131, 141, 151, 162, 176, 185, 188, 195, 212, 213, 217)
HISTORY_V6 = (0x2a, 0x24, 0x26, 0x28, 0x2c, 0x20)
# Round-trip time from the demo's servers (in Europe) to each country, ms.
BASE_RTT_MS = {"US": 95, "DE": 18, "GB": 14, "FR": 20, "NL": 9, "JP": 240, "BR": 195, "IN": 150,
               "ZA": 175, "AU": 280, "SE": 32, "PL": 38}
# Retransmitted share of segments per neighbour AS (the rest, direct peers: 0.2 %).
RETRANS = {64601: 0.006, 64602: 0.004, 64603: 0.013, 64604: 0.005}
# Traffic types: (share of requests, mean response bytes).
TYPES = {b"static": (0.5, 40_000), b"api": (0.3, 2_500), b"video": (0.15, 1_500_000), b"download": (0.05, 6_000_000)}
# The demo's servers: one per router (demo-edge carries more).
SERVERS = (("192.0.2.10", 0.6), ("198.51.100.10", 0.4))
WORSE_HOURS = 6
MSS = 1448
# Requests a minute at the daily peak: about what the live synthetic
# traffic sends in its minute, so that its minute is no spike.
PEAK_PER_MINUTE = 18_000
RTT_SPREAD = 0.3  # sigma of ln(RTT) within a row
FULL_MINUTES = 12  # destinations with a row per traffic type every minute


def normal_cdf(z: np.ndarray) -> np.ndarray:
    """The standard normal distribution function, from the error function's
    approximation 7.1.26 of Abramowitz and Stegun (error below 1.5e-7)."""
    x = np.abs(z) / math.sqrt(2)
    k = 1 / (1 + 0.3275911 * x)
    poly = k * (0.254829592 + k * (-0.284496736 + k * (1.421413741 + k * (-1.453152027 + k * 1.061405429))))
    erf = 1 - poly * np.exp(-x * x)
    return 0.5 * (1 + np.sign(z) * erf)


def history(spool_dir: Path, now: datetime, days: int, seed: int = 1) -> dict:
    """Write ``days`` of backdated spool rows into ``spool_dir``/incoming, as
    closed segments the way the collector writes them.

    The shape: a daily curve (busiest at 20:00 UTC, a tenth of that at
    08:00, a little less at weekends), Zipf-skewed origins over two routers
    and their transits, RTT by country and retransmits by transit, with
    noise. Rows every minute for the last six hours or so (the minute
    charts) and every hour before (the other charts are per hour or per
    day); PEAK_PER_MINUTE requests a minute at the peak. The neighbour of
    each client is the one the loaded tables give (the resolver), so the
    retransmits follow the real transit.

    One of the largest origins, one that the two routers reach over
    different neighbours, gets worse over the first router's uplink for
    the last WORSE_HOURS hours: six times the retransmits and 90 ms more
    RTT. So the "what got worse" report has the origin, its prefix, its
    country and that uplink to show, and the uplink comparison shows the
    other uplink as the better one."""
    from ipr.routing.lookup import address_bytes, resolver
    from ipr.routing.samples import DEMO_COUNTRIES

    rng = np.random.default_rng(seed)
    dests = [(f"{first}.{rng.integers(0, 256)}.{rng.integers(0, 256)}.{rng.integers(1, 255)}",
              DEMO_COUNTRIES[first % len(DEMO_COUNTRIES)]) for first in HISTORY_V4]
    dests += [(f"{top:x}01:db{i}::{rng.integers(1, 1 << 16):x}",
               DEMO_COUNTRIES[((top - 0x20) * 5) % len(DEMO_COUNTRIES)]) for i, top in enumerate(HISTORY_V6)]
    # The largest first: one destination per country in turn, in this order.
    by_country: dict[str, list] = {}
    for dest in dests:
        by_country.setdefault(dest[1], []).append(dest)
    ranked = [by_country[cc] for cc in ("DE", "US", "GB", "FR", "NL", "IN", "PL", "BR", "SE", "JP", "ZA", "AU")
              if cc in by_country]
    dests = [group[i] for i in range(max(map(len, ranked))) for group in ranked if i < len(group)]
    clients = np.array([address_bytes(a) for a, _ in dests], "V16")
    servers = np.array([address_bytes(a) for a, _ in SERVERS], "V16")
    # Per (destination, server): its neighbour and origin AS, as the tables resolve them.
    pair_c = np.repeat(clients, len(servers))
    pair_s = np.tile(servers, len(clients))
    got = resolver().resolve(pair_c, pair_s)
    neighbor = got.neighbor_as.reshape(len(clients), len(servers))
    retrans = np.vectorize(lambda n: RETRANS.get(int(n), 0.002))(neighbor)
    base_rtt = np.array([BASE_RTT_MS[cc] for _, cc in dests], float) * 1000
    weight = 1 / np.arange(1, len(dests) + 1) ** 1.1
    weight /= weight.sum()
    worse = next(i for i in range(1, len(dests)) if neighbor[i, 0] != neighbor[i, 1])
    worse_as, worse_via = int(got.origin_as[worse * len(servers)]), int(neighbor[worse, 0])

    end = int(now.timestamp() // 60) - 1  # the live traffic has the current minute
    fine = end - 6 * 60
    minutes = np.concatenate([np.arange((end - days * 1440) // 60 * 60, fine // 60 * 60, 60),
                              np.arange(fine // 60 * 60, end + 1)])
    step = np.where(minutes < fine // 60 * 60, 60, 1)
    # Busiest at 20:00 UTC, a tenth of that at 08:00, a little less at weekends.
    hour = (minutes % 1440) / 60
    curve = 0.55 + 0.45 * np.cos((hour - 20) / 24 * 2 * np.pi)
    curve *= 1 - 0.12 * (((minutes // 1440) + 4) % 7 >= 5)
    # A row per destination and traffic type each hour, and each minute for
    # the largest destinations; each minute, the others have one row, of a
    # type drawn by the types' shares (fewer rows, with little noise). Each
    # row over one of the servers.
    names = list(TYPES)
    share = np.array([TYPES[k][0] for k in names])
    big = np.arange(len(dests)) < FULL_MINUTES
    whole = np.flatnonzero(step == 60)[:, None, None] * len(dests) + np.arange(len(dests))[None, :, None]
    whole = np.concatenate([whole.ravel(), (np.flatnonzero(step == 1)[:, None] * len(dests)
                                             + np.flatnonzero(big)[None, :]).ravel()])
    t1, d1 = np.repeat(whole // len(dests), len(names)), np.repeat(whole % len(dests), len(names))
    ty1 = np.tile(np.arange(len(names)), len(whole))
    drawn = (np.flatnonzero(step == 1)[:, None] * len(dests) + np.flatnonzero(~big)[None, :]).ravel()
    t2, d2 = drawn // len(dests), drawn % len(dests)
    ty2 = rng.choice(len(names), len(drawn), p=share)
    t, d, ty = np.concatenate([t1, t2]), np.concatenate([d1, d2]), np.concatenate([ty1, ty2])
    of_type = np.concatenate([share[ty1], np.ones(len(t2))])
    sv = rng.choice(len(servers), len(t), p=[w for _, w in SERVERS])
    # The largest destinations' hourly rows go over every server, by the
    # servers' shares (their uplinks compare hour by hour).
    split = (step[t] == 60) & big[d]
    whole = [a[split] for a in (t, d, ty, of_type)]
    t, d, ty, of_type, sv = (a[~split] for a in (t, d, ty, of_type, sv))
    for i, (_, w) in enumerate(SERVERS):
        t, d, ty = (np.concatenate([a, b]) for a, b in ((t, whole[0]), (d, whole[1]), (ty, whole[2])))
        of_type = np.concatenate([of_type, whole[3] * w])
        sv = np.concatenate([sv, np.full(len(whole[0]), i)])
    n = len(t)
    expected = PEAK_PER_MINUTE * step[t] * curve[t] * weight[d] * of_type * rng.lognormal(0, 0.15, n)
    requests = rng.poisson(expected)
    keep = requests > 0
    t, d, ty, sv, requests, n = t[keep], d[keep], ty[keep], sv[keep], requests[keep], int(keep.sum())
    late = minutes[t] > end - WORSE_HOURS * 60
    hit = (d == worse) & late & (sv == 0)

    rows = np.zeros(n, spool.ROW)
    rows["minute"] = minutes[t]
    rows["client"] = clients[d]
    rows["server"] = servers[sv]
    rows["traffic_type"] = np.array(names, "S16")[ty]
    rows["requests"] = rows["records"] = requests
    for f in ("tcpinfo_records", "segs_records", "bytes_records", "rate_records"):
        rows[f] = requests
    rows["connections"] = np.maximum(1, requests // 3)
    rows["status"] = rng.multinomial(requests, [0, 0.93, 0.04, 0.025, 0.005, 0])
    size = np.array([TYPES[k][1] for k in names], float)[ty]
    body = (requests * size * rng.lognormal(0, 0.4, n)).astype(np.uint64)
    rows["response_bytes"] = body
    wire = body + requests.astype(np.uint64) * 380  # status line and headers
    segs = wire // MSS + requests.astype(np.uint64)
    rate = retrans[d, sv] * rng.lognormal(0, 0.35, n) * np.where(hit, 6, 1)
    lost = rng.binomial(segs.astype(np.int64), np.minimum(rate, 0.5)).astype(np.uint64)
    rows["data_segs"], rows["retrans_segs"] = segs, lost
    rows["retrans_bytes"] = lost * MSS
    rows["wire_bytes"] = wire + lost * MSS
    # RTT: one sample per record around the destination's base.
    # RTT: log-normal around the destination's median; each record's sample
    # falls in a histogram bucket with the distribution's probability.
    rtt_median = (base_rtt[d] + np.where(hit, 90_000, 0)) * rng.lognormal(0, 0.1, n)
    z = (np.log(np.array(spool.RTT_EDGES_US, float))[None, :] - np.log(rtt_median)[:, None]) / RTT_SPREAD
    below = normal_cdf(z)
    probs = np.diff(np.concatenate([np.zeros((n, 1)), below, np.ones((n, 1))], axis=1), axis=1)
    rows["rtt_hist"] = rng.multinomial(requests, np.clip(probs, 0, None) / probs.sum(axis=1, keepdims=True))
    rtt_mean = rtt_median * math.exp(RTT_SPREAD ** 2 / 2)
    rows["rtt_sum_us"] = (requests * rtt_mean).astype(np.uint64)
    rows["min_rtt_us"] = (rtt_median * math.exp(-2.5 * RTT_SPREAD)).astype(np.uint32)
    # Delivery rate: the window a loss rate allows over the RTT (bytes/s).
    per_request = MSS / (rtt_mean / 1e6) * 1.2 / np.sqrt(np.maximum(rate, 1e-4))
    rows["rate_sum"] = (np.minimum(per_request, 60e6) * requests).astype(np.uint64)
    rows["duration_sum_us"] = (requests * (rtt_mean * 2 + size / 5)).astype(np.uint64)

    rows = spool.merge(rows)
    # A rerun adds only the minutes no earlier history covers, so that the
    # archive never counts a demo minute twice.
    earlier = history_covered(spool_dir)
    if earlier:
        covered = np.zeros(len(rows), bool)
        for first, last in earlier:
            covered |= (rows["minute"] >= first) & (rows["minute"] <= last)
        rows = rows[~covered]
    # A segment a day, named by the minutes it covers.
    now_ms = int(time.time() * 1000)
    day = rows["minute"] // 1440
    for i, d in enumerate(np.unique(day)):
        part = rows[day == d]
        name = f"{HISTORY_SEGMENT}{int(part['minute'].min())}-{int(part['minute'].max())}.seg"
        writer = spool.SegmentWriter(spool_dir, name, i, now_ms)
        writer.append(part, now_ms)
        writer.close()
    return {"rows": len(rows), "requests": int(rows["requests"].sum()), "first_minute": int(minutes[0]),
            "worse": worse_as, "worse_via": worse_via, "earlier": len(earlier)}


HISTORY_SEGMENT = "demo-history-"


def history_covered(spool_dir: Path) -> list[tuple[int, int]]:
    """The minutes (first, last) that an earlier demo's history segments
    cover: the ingested ones and those still in the spool."""
    from ipr.traffic.models import IngestedSegment
    names = set(IngestedSegment.objects.filter(name__startswith=HISTORY_SEGMENT).values_list("name", flat=True))
    for sub in ("incoming", "processing"):
        names |= {p.name for p in (spool_dir / sub).glob(HISTORY_SEGMENT + "*")}
    found = (re.fullmatch(re.escape(HISTORY_SEGMENT) + r"(\d+)-(\d+)\.seg", name) for name in names)
    return sorted((int(m.group(1)), int(m.group(2))) for m in found if m)


class Command(BaseCommand):
    help = ("Run the collector and an instrumented web site on loopback, send traffic, show the spool, "
            "then ingest and archive it and show the archive.")

    def add_arguments(self, parser):
        parser.add_argument("--synthetic", type=int, default=2000,
                            help="synthetic datagrams of 10 records to add (default 2000)")
        parser.add_argument("--history-days", type=int, default=8, choices=range(0, 32), metavar="0-31",
                            help="days of backdated traffic to add (default 8: the last day and its "
                                 "week-before baseline)")

    def handle(self, *args, **options):
        work = Path(settings.DATA_DIR) / "demo"
        work.mkdir(parents=True, exist_ok=True)
        # The settings' spool, so that spool_status, /healthz and the
        # schedule see the one the demo fills; the report shows the
        # segments this run's collector wrote.
        spool_dir = Path(settings.SPOOL_DIR)
        spool.make_dirs(spool_dir)
        before = set(segment_names(spool_dir))
        secret = secrets.token_hex(32)
        (work / "keys.json").write_text(json.dumps({"keys": [
            {"id": 1, "name": "demo", "secret": secret, "enabled": True,
             "networks": ["127.0.0.0/8", "::1/128"],
             # The demo site's agent sends as 100, the synthetic senders as 200.
             "sender_ids": [100, 200]}]}))
        (work / "keys.json").chmod(0o600)
        metrics_port, web_port = free_port(), free_port()
        (work / "collector.toml").write_text(
            f'listen = ["127.0.0.1:0"]\nprocesses = 2\nspool_dir = "{spool_dir}"\n'
            f'key_file = "keys.json"\nmetrics_listen = "127.0.0.1:{metrics_port}"\n')
        procs = []
        try:
            self.stdout.write(f"1. collector: python -m collector -c {work / 'collector.toml'}")
            clog = work / "collector.log"
            collector = subprocess.Popen([sys.executable, "-m", "collector", "-c", str(work / "collector.toml")],
                                         cwd=ROOT, stdout=open(clog, "wb"), stderr=subprocess.STDOUT)
            procs.append(collector)
            port_of = lambda: re.search(r"listening on \[.*?\]:(\d+)", clog.read_text())  # noqa: E731
            wait_for("the collector", lambda: port_of() and self.up(metrics_port), collector, clog)
            cport = int(port_of().group(1))
            self.stdout.write(f"   listening on 127.0.0.1:{cport}/udp, metrics on 127.0.0.1:{metrics_port}")

            self.stdout.write(f"2. web site: gunicorn ipr.demo_site:app on 127.0.0.1:{web_port}, "
                              "with the ipr WSGI agent")
            wlog = work / "gunicorn.log"
            env = {**os.environ, "IPR_COLLECTOR": f"127.0.0.1:{cport}", "IPR_KEY_ID": "1",
                   "IPR_KEY_SECRET": secret, "IPR_SENDER_ID": "100"}
            web = subprocess.Popen([sys.executable, "-m", "gunicorn", "--worker-class", "gthread",
                                    "--threads", "4", "--workers", "2", "--bind", f"127.0.0.1:{web_port}",
                                    "ipr.demo_site:app"], cwd=ROOT, env=env,
                                   stdout=open(wlog, "wb"), stderr=subprocess.STDOUT)
            procs.append(web)
            wait_for("gunicorn", lambda: self.up(web_port, "/static/1"), web, wlog)

            self.stdout.write("3. real HTTP requests to the site")
            sent = self.browse(web_port)
            for kind, n in sent["summary"]:
                self.stdout.write(f"   {n:3d} x {kind}")
            self.stdout.write(f"   {sent['requests']} requests, {sent['body_bytes']} body bytes received")

            self.stdout.write(f"4. synthetic traffic: {options['synthetic']} signed datagrams "
                              "from many client addresses (collector/synth.py)")
            traffic = synth.Traffic(seed=int(time.time()), clients=5000)
            grams = synth.datagrams(traffic, options["synthetic"], 10, 1, bytes.fromhex(secret), sender_id=200)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for i, g in enumerate(grams):
                    s.sendto(g, ("127.0.0.1", cport))
                    if i % 200 == 199:
                        time.sleep(0.01)  # a steady sender, not a flood

            self.stdout.write("5. stopping the site (the agent flushes) and the collector (SIGTERM flushes)")
            time.sleep(1.5)  # the agent's flush interval
            web.send_signal(signal.SIGTERM)
            web.wait(30)
            time.sleep(0.5)
            metrics = self.metrics(metrics_port)
            collector.send_signal(signal.SIGTERM)
            if collector.wait(60) != 0:
                raise CommandError(f"collector exited with {collector.returncode}:\n{clog.read_text()}")
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        self.report(spool_dir, set(segment_names(spool_dir)) - before, sent, metrics)
        self.archive(spool_dir, work, options["history_days"])

    def up(self, port, path="/metrics"):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1).read()
            return True
        except OSError:
            return False

    def browse(self, port):
        """Keep-alive and one-shot requests, small and multi-megabyte, and 404s."""
        summary, total, count = [("readiness probe GET /static/1", 1)], 1, 1
        plan = [("keep-alive", "/static/2048", 20), ("keep-alive", "/api/300", 20),
                ("keep-alive", "/video/4000000", 3), ("new connection", "/static/150000", 10),
                ("new connection", "/missing", 5)]
        conn = http.client.HTTPConnection("127.0.0.1", port)
        for mode, path, n in plan:
            for _ in range(n):
                if mode != "keep-alive":
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port)
                conn.request("GET", path, headers={} if mode == "keep-alive" else {"Connection": "close"})
                total += len(conn.getresponse().read())
                count += 1
            summary.append((f"{mode:<14} GET {path}", n))
        conn.close()
        return {"summary": summary, "body_bytes": total, "requests": count}

    def metrics(self, port):
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        return {line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
                for line in text.splitlines() if line.startswith("ipr_")}

    def report(self, spool_dir, names, sent, metrics):
        arrays = [spool.read_segment(spool_dir / "incoming" / n) for n in sorted(names)]
        rows = np.concatenate(arrays) if arrays else np.zeros(0, spool.ROW)
        self.stdout.write("\n6. what arrived")
        self.stdout.write(f"   collector: {metrics.get('ipr_collector_datagrams_accepted_total', 0):.0f} datagrams "
                          f"accepted, {metrics.get('ipr_collector_records_accepted_total', 0):.0f} records; "
                          f"rejected: {sum(v for k, v in metrics.items() if 'rejected' in k):.0f}")
        self.stdout.write(f"   spool {spool_dir}/incoming: {len(rows)} rows in {len(names)} segment(s) "
                          "(minute x server x client x traffic type)")
        local = rows[np.isin(rows["client"], np.array([b"\0" * 10 + b"\xff\xff\x7f\0\0\x01"], "V16"))]
        self.stdout.write(f"\n   From the real requests (client 127.0.0.1): {int(local['requests'].sum())} "
                          f"requests, {int(local['response_bytes'].sum())} body bytes "
                          f"(the client received {sent['requests']} and {sent['body_bytes']})")
        self.stdout.write(f"   {'type':<8} {'requests':>8} {'bytes':>10} {'2xx':>5} {'4xx':>5} "
                          f"{'wire bytes':>11} {'segments':>8} {'retr.':>5} {'avg rtt':>8} {'conns':>5}")
        for d in sorted(spool.row_dicts(self.regroup(local, "server")), key=lambda d: d["traffic_type"]):
            rtt = f"{d['rtt_sum_us'] / d['tcpinfo_records']:.0f}us" if d["tcpinfo_records"] else "-"
            self.stdout.write(f"   {d['traffic_type']:<8} {d['requests']:>8} {d['response_bytes']:>10} "
                              f"{d['status']['2xx']:>5} {d['status']['4xx']:>5} {d['wire_bytes']:>11} "
                              f"{d['data_segs']:>8} {d['retrans_segs']:>5} {rtt:>8} {d['connections']:>5}")
        others = rows[~np.isin(rows["client"], local["client"][:1])] if len(local) else rows
        merged = self.regroup(others, "server", "traffic_type")
        top = sorted(spool.row_dicts(merged), key=lambda d: -d["response_bytes"])[:10]
        self.stdout.write(f"\n   Synthetic traffic: {len(merged)} client addresses; top 10 by bytes:")
        for d in top:
            rtt = d["rtt_sum_us"] / d["tcpinfo_records"] / 1000 if d["tcpinfo_records"] else 0
            self.stdout.write(f"   {d['client']:<40} {d['requests']:>6} req {d['response_bytes']:>12} B "
                              f"{d['retrans_segs']:>5} retr. {rtt:7.1f} ms")

    def archive(self, spool_dir, work, history_days):
        """Load the made-up routing data, add the history to the spool,
        ingest and archive it as the schedule would, and show the archive."""
        from ipr.routing import samples
        from ipr.routing.load import refresh_router
        from ipr.routing.models import DataSource, Router, ServedNetwork
        from ipr.routing.reference import refresh_source
        from ipr.traffic import ingest, rollup
        from ipr.web import queries

        self.stdout.write("\n7. routing data, history, ingest and archive, in process (as the embedded "
                          "schedule runs them)")
        for name, asn, default, networks, routes_text in (
                ("demo-edge", 64500, True, ("127.0.0.0/8", "::1/128", "192.0.2.0/24", "2001:db8:100::/48"),
                 samples.demo_routes()),
                ("demo-edge-2", 64500, False, ("198.51.100.0/24", "2001:db8:200::/48"),
                 samples.demo_routes(samples.DEMO_TRANSITS_2, peer_every=5))):
            router, _ = Router.objects.get_or_create(name=name, defaults={"asn": asn, "is_default": default})
            for network in networks:
                ServedNetwork.objects.get_or_create(router=router, network=network)
            routes = work / f"{name}-routes.txt"
            routes.write_text(routes_text)
            table = refresh_router(router.pk, [str(routes)])
            self.stdout.write(f"   router {router.name}: {table.routes} routes (made up: {routes}), "
                              f"serving {', '.join(networks)}")
        for kind, name, text in ((DataSource.Kind.RIR, "demo-countries", samples.demo_delegated()),
                                 (DataSource.Kind.ASNAMES, "demo-as-names", samples.demo_asnames())):
            path = work / f"{name}.txt"
            path.write_text(text)
            source, _ = DataSource.objects.update_or_create(name=name, defaults={"kind": kind, "path": str(path)})
            count = refresh_source(source.pk)
            self.stdout.write(f"   {source.get_kind_display()}: {count} from {path}")

        live = spool.read_dir(spool_dir)
        first = int(live["minute"].min()) * 60 if len(live) else int(time.time())
        if history_days:
            made = history(spool_dir, datetime.now(timezone.utc), history_days)
            first = min(first, made["first_minute"] * 60)
            self.stdout.write(f"   history: {made['rows']} spool rows, {made['requests']} requests over the last "
                              f"{history_days} day(s) (backdated; AS{made['worse']} gets worse in the last "
                              f"{WORSE_HOURS} hours over demo-edge's uplink AS{made['worse_via']})")
            if made["earlier"]:
                self.stdout.write("   (only the minutes that an earlier run's history did not cover)")
        rows = spool.read_dir(spool_dir)
        start = datetime.fromtimestamp(first, timezone.utc)
        rng = queries.Range.between(start, datetime.now(timezone.utc) + timedelta(minutes=1))
        before = queries.totals(rng)["requests"]  # an earlier demo run's, in the same minutes
        started = time.perf_counter()
        quiet = logging.getLogger("ipr.rollup")
        level = quiet.level
        quiet.setLevel(logging.WARNING)  # not a line per archived hour
        try:
            result = ingest.ingest(spool_dir)
            hours = rollup.archive_pending(everything=True)
            days = rollup.rollup_pending()
        finally:
            quiet.setLevel(level)
        self.stdout.write(f"   {result.segments} segment(s), {result.rows} spool rows ingested; {hours} hour(s) "
                          f"archived, {days} day(s) rolled up, in {time.perf_counter() - started:.1f} s")
        for by, title in (("origin_as", "origin AS"), ("neighbor_as", "neighbour AS (the transit)"),
                          ("country", "country"), ("prefix", "prefix")):
            top = queries.top(rng, by, limit=5)
            total = top["total"]
            self.stdout.write(f"\n   By {title}, {rng.label}: {top['count']} of them; {total['requests']} "
                              f"requests, {total['bytes']} bytes in all")
            for row in top["rows"] + ([top["other"]] if top["other"] else []):
                rate = f"{row['retrans_rate']:.2%}" if row["retrans_rate"] is not None else "-"
                p95 = f"{row['rtt_p95_ms']:.0f} ms" if row["rtt_p95_ms"] is not None else "-"
                self.stdout.write(f"   {row['label'][:40]:<40} {row['share']:>6.1%} {row['requests']:>8} req "
                                  f"{row['bytes']:>14} B  retr. {rate:>6}  RTT p95 {p95:>7}")
        # The loopback site's own requests: a special-purpose address, in a bucket of its own.
        local = queries.top(rng, "prefix", queries.Filters(prefix="127.0.0.0/8"), limit=1)["rows"]
        if local:
            self.stdout.write(f"\n   The site's own client 127.0.0.1: {local[0]['label']}, "
                              f"{local[0]['requests']} requests, no AS and no country")
        spooled = int(rows["requests"].sum())
        added = queries.totals(rng)["requests"] - before
        self.stdout.write(f"\n   This run added {added} requests to the archive; the spool held {spooled}.")
        health = check()
        self.stdout.write(f"   Health (spool_status, /healthz): {'ok' if health['ok'] else 'UNHEALTHY'}"
                          + "".join(f"\n     {p}" for p in health["problems"]))
        bindir = Path(sys.executable).parent
        here = Path.cwd()
        python = shown(Path(sys.executable), here)
        gunicorn = shown(bindir / "gunicorn", here) if (bindir / "gunicorn").exists() else f"{python} -m gunicorn"
        self.stdout.write(f"\nNext: {python} manage.py createsuperuser, then {gunicorn} --bind 127.0.0.1:8000 "
                          "--workers 3 ipr.wsgi and open http://127.0.0.1:8000/ (the same figures, and more, "
                          "in the pages)")

    @staticmethod
    def regroup(rows, *blank):
        """Merge rows over all minutes and over the ``blank`` key fields."""
        rows = rows.copy()
        rows["minute"] = 0
        for name in blank:
            rows[name] = b""
        return spool.merge(rows)
