"""ipr's own Prometheus endpoint, ``GET /metrics``: the spool on this host,
the archive, the routing tables and the database, read when Prometheus
scrapes (a collector reads the state; nothing is counted in between).
Each metric and the access rule are described in docs/operations.md.
"""
import hmac
import ipaddress
import logging
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone as tz
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Count, Exists, Max, Min, OuterRef
from django.http import HttpResponse
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import CollectorRegistry

from collector import spool
from ipr import __version__
from ipr.routing.models import DataSource, RouteSource, Router
from ipr.traffic.models import IngestedSegment, Pending

log = logging.getLogger("ipr.metrics")

STATES = ("open", "incoming", "processing")
# Each part's queries are cut off after this long (PostgreSQL), so a slow
# database answers a scrape before Prometheus's own timeout (10 s by default).
QUERY_TIMEOUT_MS = 5000
# Headers a proxy adds: a request that has one did not come from this host,
# whatever its address says.
PROXY_HEADERS = ("HTTP_FORWARDED", "HTTP_X_REAL_IP")
PROXY_PREFIX = "HTTP_X_FORWARDED_"


# -- the view -------------------------------------------------------------------

@require_safe
def view(request):
    return respond(request, REGISTRY)


def respond(request, registry) -> HttpResponse:
    """``registry`` in Prometheus' text format, or the refusal (the rule of
    :func:`refusal`, the same for every metrics endpoint)."""
    refused = refusal(request)
    if refused:
        status, reason = refused
        response = HttpResponse(reason + "\n", status=status, content_type="text/plain; charset=utf-8")
        if status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="ipr metrics"'
        return response
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def refusal(request) -> tuple[int, str] | None:
    """Why a request may not read the metrics, with its status; None if it may.

    With IPR_METRICS_TOKEN set, every request needs ``Authorization: Bearer
    <token>``. Without it, only a request from a loopback address that no
    proxy passed on (no Forwarded, X-Forwarded-* or X-Real-IP header) is
    answered: one through the UI's TLS proxy, which connects from loopback
    too, carries such a header.
    """
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return 401, "a valid 'Authorization: Bearer' token (IPR_METRICS_TOKEN) is required"
        return None
    if not _loopback(request.META.get("REMOTE_ADDR", "")):
        return 403, "without IPR_METRICS_TOKEN, /metrics answers only to requests from this host"
    proxied = sorted(h[5:].replace("_", "-").title() for h in request.META
                     if h in PROXY_HEADERS or h.startswith(PROXY_PREFIX))
    if proxied:
        return 403, (f"without IPR_METRICS_TOKEN, /metrics does not answer through a proxy "
                     f"(this request has {', '.join(proxied)})")
    return None


def _loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # a Unix socket: no address
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


# -- what is read at each scrape ------------------------------------------------

def gauge(name: str, doc: str, labels=(), samples=()) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=list(labels))
    for values, value in samples:
        family.add_metric(list(values), value)
    return family


class Collector:
    def collect(self):
        info = InfoMetricFamily("ipr", "The ipr version serving this endpoint")
        info.add_metric([], {"version": __version__})
        yield info
        yield from spool_metrics(Path(settings.SPOOL_DIR), time.time())
        up = database_up()
        yield gauge("ipr_database_up", "1 if the database answered a query at this scrape, else 0",
                    samples=[((), 1 if up else 0)])
        if up:
            for part in (archive_metrics, routing_metrics):
                try:
                    with _bounded():
                        families = list(part())
                except DatabaseError as exc:
                    log.warning("metrics: %s failed, its metrics are left out: %s", part.__name__, exc)
                    continue
                yield from families


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(Collector())


def database_up() -> bool:
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
        return True
    except Exception:  # any driver error means "down"
        return False


@contextmanager
def _bounded():
    """A transaction whose statements PostgreSQL cuts off after QUERY_TIMEOUT_MS."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cur:
                cur.execute(f"SET LOCAL statement_timeout = {int(QUERY_TIMEOUT_MS)}")
        yield


def spool_metrics(spool_dir: Path, now: float):
    try:
        scan = spool.status(spool_dir, now, stale_after=settings.STALE_CLAIM_SECONDS)
    except OSError:
        # No spool here (a web UI on another host than the collector), or
        # not readable by this user: the spool's other metrics are left out.
        scan = None
    yield gauge("ipr_spool_readable", "1 if SPOOL_DIR could be read at this scrape, else 0",
                samples=[((), 1 if scan else 0)])
    if scan is None:
        return
    yield gauge("ipr_spool_segments", "Spool segments on this host, by directory (state)", ["state"],
                [((s,), scan[s]["segments"]) for s in STATES])
    yield gauge("ipr_spool_bytes", "Bytes of the spool segments on this host, by directory (state)", ["state"],
                [((s,), scan[s]["bytes"]) for s in STATES])
    yield gauge("ipr_spool_oldest_segment_age_seconds",
                "Age of the oldest segment by directory: since its last write (open, incoming: the ingest "
                "lag), since its claim (processing); 0 when there is none", ["state"],
                [((s,), scan[s]["oldest_age"] or 0.0) for s in STATES])
    yield gauge("ipr_spool_stale_claims",
                f"Segments claimed more than {settings.STALE_CLAIM_SECONDS} s ago (IPR_STALE_CLAIM_SECONDS: "
                "their worker died or hangs; the next ingest takes them back)", samples=[((), scan["stale_claims"])])
    yield gauge("ipr_spool_bad_segments", "Segments set aside as .seg.bad in incoming/ (they did not parse)",
                samples=[((), scan["bad"])])


def _unix(t) -> float:
    if isinstance(t, str):  # SQLite's archive tables keep times as text
        t = datetime.strptime(t[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=tz.utc)
    return t.timestamp()


def newest_archived_hour() -> float | None:
    """The newest hour of the hourly totals (a dozen rows an hour). The
    hour's rows are written by the hourly archive; the bound lets the BRIN
    index find the last days' rows, and only when they have none are all
    of them read."""
    pg = connection.vendor == "postgresql"
    since = (datetime.now(tz.utc) - timedelta(days=2)).strftime("%Y-%m-%d %H:00:00+00:00")
    with connection.cursor() as cur:
        cur.execute(f"SELECT max(hour) FROM traffic_total_hour WHERE hour >= {'%s::timestamptz' if pg else '%s'}",
                    [since])
        newest = cur.fetchone()[0]
        if newest is None:
            cur.execute("SELECT max(hour) FROM traffic_total_hour")
            newest = cur.fetchone()[0]
    return _unix(newest) if newest is not None else None


def archive_metrics():
    # The segment records' index on their time (the retention's) finds the newest.
    last = IngestedSegment.objects.aggregate(at=Max("at"))["at"]
    if last is not None:
        yield gauge("ipr_ingest_last_timestamp_seconds",
                    "When the newest spool segment was added to the per-minute window (Unix time)",
                    samples=[((), last.timestamp())])
    newest = newest_archived_hour()
    if newest is not None:
        yield gauge("ipr_archive_newest_hour_timestamp_seconds",
                    "Start of the newest hour in the hourly archive (Unix time)", samples=[((), newest)])
    # A handful of rows: the hours and days whose archive or rollup is due.
    pending = {row["level"]: row for row in
               Pending.objects.order_by().values("level").annotate(n=Count("id"), oldest=Min("start"))}
    hours, days = pending.get("hour"), pending.get("day")
    yield gauge("ipr_archive_pending_hours",
                "Hours of the per-minute window not archived yet since they last changed (the open hour too)",
                samples=[((), hours["n"] if hours else 0)])
    if hours:
        yield gauge("ipr_archive_oldest_pending_hour_timestamp_seconds",
                    "Start of the oldest hour waiting for the hourly archive (Unix time)",
                    samples=[((), hours["oldest"].timestamp())])
    yield gauge("ipr_rollup_pending_days", "Days waiting for the daily rollup (today too)",
                samples=[((), days["n"] if days else 0)])


def routing_metrics():
    routers = list(Router.objects.select_related("active_table").annotate(
        scheduled=Exists(RouteSource.objects.filter(router=OuterRef("pk"), enabled=True))))
    yield gauge("ipr_routing_router_active_routes", "Routes in the router's active table (0 with none)",
                ["router"], [((r.name,), r.active_table.routes if r.active_table else 0) for r in routers])
    yield gauge("ipr_routing_router_table_activated_timestamp_seconds",
                "When the router's active table was loaded: its last successful refresh (Unix time)",
                ["router"], [((r.name,), r.active_table.activated.timestamp()) for r in routers
                             if r.active_table and r.active_table.activated])
    yield gauge("ipr_routing_router_last_refresh_timestamp_seconds",
                "When the router's last refresh ended, successful or not (Unix time)",
                ["router"], [((r.name,), r.refreshed_at.timestamp()) for r in routers if r.refreshed_at])
    yield gauge("ipr_routing_router_refresh_failed",
                "1 if the router's last refresh was refused (the active table stays in use), else 0",
                ["router"], [((r.name,), 1 if r.refresh_error else 0) for r in routers])
    yield gauge("ipr_routing_router_refresh_interval_seconds",
                "The router's refresh interval; only routers with an enabled route source, which the "
                "schedule refreshes", ["router"], [((r.name,), r.refresh_minutes * 60) for r in routers if r.scheduled])
    sources = list(DataSource.objects.filter(enabled=True))
    labels = ["source", "kind"]
    yield gauge("ipr_routing_source_records", "Records (networks or AS names) the data source holds now",
                labels, [((s.name, s.kind), s.records) for s in sources])
    yield gauge("ipr_routing_source_last_refresh_timestamp_seconds",
                "When the data source's last refresh ended, successful or not (Unix time)",
                labels, [((s.name, s.kind), s.refreshed_at.timestamp()) for s in sources if s.refreshed_at])
    yield gauge("ipr_routing_source_refresh_failed",
                "1 if the data source's last refresh was refused (its previous data stays), else 0",
                labels, [((s.name, s.kind), 1 if s.refresh_error else 0) for s in sources])
    yield gauge("ipr_routing_source_refresh_interval_seconds", "The data source's refresh interval",
                labels, [((s.name, s.kind), s.refresh_minutes * 60) for s in sources])
