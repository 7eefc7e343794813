"""`manage.py demo`: the whole measured path, on loopback, in a minute.

Starts the collector and a gunicorn site instrumented with the WSGI agent,
sends the site real HTTP requests (keep-alive and not, small and large),
adds synthetic traffic from many client addresses, stops everything
cleanly and shows what reached the spool. Then, in process as the embedded
default's schedule does, ingests the spool with a made-up router table and
country file (ipr.routing.samples), archives the hours and shows the
archive: traffic by origin AS, neighbour AS and country.
"""
import http.client
import json
import os
import re
import secrets
import shutil
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


class Command(BaseCommand):
    help = ("Run the collector and an instrumented web site on loopback, send traffic, show the spool, "
            "then ingest and archive it and show the archive.")

    def add_arguments(self, parser):
        parser.add_argument("--synthetic", type=int, default=2000,
                            help="synthetic datagrams of 10 records to add (default 2000)")

    def handle(self, *args, **options):
        work = Path(settings.DATA_DIR) / "demo"
        work.mkdir(parents=True, exist_ok=True)
        spool_dir = work / "spool"  # a fresh one, so the report shows this run only
        shutil.rmtree(spool_dir, ignore_errors=True)
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
        self.report(spool_dir, sent, metrics)
        self.archive(spool_dir, work)

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

    def report(self, spool_dir, sent, metrics):
        rows = spool.read_dir(spool_dir)
        self.stdout.write("\n6. what arrived")
        self.stdout.write(f"   collector: {metrics.get('ipr_collector_datagrams_accepted_total', 0):.0f} datagrams "
                          f"accepted, {metrics.get('ipr_collector_records_accepted_total', 0):.0f} records; "
                          f"rejected: {sum(v for k, v in metrics.items() if 'rejected' in k):.0f}")
        self.stdout.write(f"   spool {spool_dir}/incoming: {len(rows)} rows "
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

    def archive(self, spool_dir, work):
        """Ingest the spool and archive it, as the schedule would; show the archive."""
        from ipr.routing import samples
        from ipr.routing.load import refresh_router
        from ipr.routing.models import DataSource, Router, ServedNetwork
        from ipr.routing.reference import refresh_source
        from ipr.traffic import ingest, rollup
        from ipr.web import queries

        self.stdout.write("\n7. ingest and archive, in process (as the embedded schedule runs them)")
        router, _ = Router.objects.get_or_create(name="demo-edge", defaults={"asn": 64500, "is_default": True})
        for network in ("127.0.0.0/8", "::1/128", "192.0.2.0/24", "2001:db8:100::/48"):
            ServedNetwork.objects.get_or_create(router=router, network=network)
        routes = work / "demo-routes.txt"
        routes.write_text(samples.demo_routes())
        table = refresh_router(router.pk, [str(routes)])
        delegated = work / "demo-delegated.txt"
        delegated.write_text(samples.demo_delegated())
        source, _ = DataSource.objects.update_or_create(
            name="demo-countries", defaults={"kind": DataSource.Kind.RIR, "path": str(delegated)})
        refresh_source(source.pk)
        self.stdout.write(f"   router {router.name}: {table.routes} routes (made up: {routes}); "
                          f"countries from {delegated}")
        rows = spool.read_dir(spool_dir)
        first = int(rows["minute"].min()) * 60 if len(rows) else int(time.time())
        start = datetime.fromtimestamp(first, timezone.utc)
        rng = queries.Range.between(start, datetime.now(timezone.utc) + timedelta(minutes=1))
        before = queries.totals(rng)["requests"]  # an earlier demo run's, in the same minutes
        started = time.perf_counter()
        result = ingest.ingest(spool_dir)
        hours = rollup.archive_pending(everything=True)
        days = rollup.rollup_pending()
        self.stdout.write(f"   {result.segments} segment(s), {result.rows} spool rows ingested; {hours} hour(s) "
                          f"archived, {days} day(s) rolled up, in {time.perf_counter() - started:.1f} s")
        for by, title in (("origin_as", "origin AS"), ("neighbor_as", "neighbour AS (the transit)"),
                          ("country", "country")):
            top = queries.top(rng, by, limit=5)
            total = top["total"]
            self.stdout.write(f"\n   By {title}, {rng.label}: {top['count']} of them; {total['requests']} "
                              f"requests, {total['bytes']} bytes in all")
            for row in top["rows"] + ([top["other"]] if top["other"] else []):
                rate = f"{row['retrans_rate']:.2%}" if row["retrans_rate"] is not None else "-"
                p95 = f"{row['rtt_p95_ms']:.0f} ms" if row["rtt_p95_ms"] is not None else "-"
                self.stdout.write(f"   {row['label'][:34]:<34} {row['share']:>6.1%} {row['requests']:>7} req "
                                  f"{row['bytes']:>12} B  retr. {rate:>6}  RTT p95 {p95:>7}")
        spooled = int(rows["requests"].sum())
        added = queries.totals(rng)["requests"] - before
        self.stdout.write(f"\n   This run added {added} requests to the archive; the spool held {spooled}.")
        self.stdout.write("\nNext: python manage.py createsuperuser, then python manage.py runserver "
                          "and open http://127.0.0.1:8000/ (the same figures, and more, in the pages)")

    @staticmethod
    def regroup(rows, *blank):
        """Merge rows over all minutes and over the ``blank`` key fields."""
        rows = rows.copy()
        rows["minute"] = 0
        for name in blank:
            rows[name] = b""
        return spool.merge(rows)
