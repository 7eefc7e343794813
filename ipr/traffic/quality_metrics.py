"""Delivery quality for Prometheus, ``GET /metrics/quality``: the same
figures as the pages (ipr.web.queries) for the largest destinations and
uplinks over the last complete hour, with a bounded number of series.

- Destinations: the IPR_QUALITY_METRICS_TOP largest origin ASes and
  countries by bytes (default 20, at most 100), the rest summed as one
  ``other`` series each.
- Uplinks: router × neighbour AS, the IPR_QUALITY_METRICS_UPLINKS largest
  by bytes (default 50, at most 200), the rest as ``other``.

The window is the last complete hour, [start of this hour - 1 h, start of
this hour), read as the pages read an hour: from the hourly tables once
archived, from the per-minute window while it waits for its archive. A
whole hour, so that a figure does not move at each scrape with the few
minutes of a running window, and so that a scrape reads the small hourly
tables (one row per AS, country or uplink), not the per-minute rows. The
figures change once an hour; alerts should allow for that lag
(docs/examples/ipr-quality-alerts.yml).

The access rule (a token, or loopback without a proxy) and the query
timeout are those of ``/metrics`` (ipr.traffic.metrics). The series count,
caps included, is in docs/operations.md.
"""
import logging
import time
from datetime import datetime, timedelta, timezone as tz

from django.conf import settings
from django.db import DatabaseError
from django.views.decorators.http import require_safe
from prometheus_client.registry import CollectorRegistry

from ipr.traffic import metrics
from ipr.web import queries

log = logging.getLogger("ipr.metrics")

UTC = tz.utc
WINDOW = timedelta(hours=1)
TOP_CAP, UPLINKS_CAP = 100, 200          # the settings' hard caps (ipr/settings.py)
OTHER = "other"
# Scrapes within this many seconds (several Prometheus servers, or a short
# scrape interval) share one reading of the archive.
CACHE_SECONDS = 60

# (name suffix, help, the figure of ipr.web.queries.figures, scale)
MEASURES = [
    ("bytes", "Response bytes sent over the window", "bytes", 1),
    ("requests", "Responses over the window", "requests", 1),
    ("data_segments", "TCP data segments sent over the window", "data_segs", 1),
    ("retransmitted_segments", "TCP data segments retransmitted over the window", "retrans_segs", 1),
    ("retransmit_ratio", "Retransmitted / data segments over the window (absent without segments)",
     "retrans_rate", 1),
    ("rtt_samples", "Records that carried a smoothed RTT over the window", "rtt_samples", 1),
    ("rtt_p50_seconds", "Median smoothed RTT over the window, from the RTT histogram (absent without samples)",
     "rtt_p50_ms", 0.001),
    ("rtt_p95_seconds", "95th percentile of the smoothed RTT over the window, from the RTT histogram "
     "(absent without samples)", "rtt_p95_ms", 0.001),
]
# What each family is of, and its labels.
DIMENSIONS = {
    "origin_as": ("the largest origin ASes (destination AS), the rest as asn=\"other\"", ["asn", "as_name"]),
    "country": ("the largest destination countries (-- unknown), the rest as country=\"other\"", ["country"]),
    "uplink": ("the largest uplinks (router x neighbour AS), the rest as router=\"other\"",
               ["router", "neighbor_asn", "neighbor_name"]),
}


def max_series(top: int = TOP_CAP, uplinks: int = UPLINKS_CAP) -> int:
    """The most series an answer can have: each measure per kept group and
    its ``other``; ipr_quality_up, the window's two and the three counts."""
    return len(MEASURES) * (2 * (top + 1) + (uplinks + 1)) + 6


# -- the view ---------------------------------------------------------------------

@require_safe
def view(request):
    return metrics.respond(request, REGISTRY)


class Collector:
    def collect(self):
        try:
            families = cached(datetime.now(UTC))
        except DatabaseError as exc:
            log.warning("metrics: the quality figures failed, they are left out: %s", exc)
            families = []
        yield metrics.gauge("ipr_quality_up", "1 if the quality figures could be read at this scrape, else 0",
                            samples=[((), 1 if families else 0)])
        yield from families


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(Collector())
_cache: dict = {}


def cached(now: datetime) -> list:
    start = window_start(now)
    key = (start, settings.QUALITY_METRICS_TOP, settings.QUALITY_METRICS_UPLINKS)
    at = time.monotonic()
    if _cache.get("key") == key and at - _cache["at"] < CACHE_SECONDS:
        return _cache["families"]
    with metrics._bounded():
        families = list(quality_families(now))
    _cache.update(key=key, at=at, families=families)
    return families


# -- the figures --------------------------------------------------------------------

def window_start(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0) - WINDOW


def window(now: datetime) -> queries.Range:
    """The last complete hour, at hourly resolution (its open part, if
    not archived yet, read from the per-minute window)."""
    start = window_start(now)
    return queries.Range.between(start, start + WINDOW, now, resolution="hour")


def destinations(rng: queries.Range, by: str, top: int) -> tuple[list[tuple[list[str], dict]], int]:
    """([(label values, figures)], groups in all): the ``top`` largest
    groups of ``by`` and their ``other``, as queries.top gives them."""
    result = queries.top(rng, by, limit=top)
    names = queries.as_names(r["key"] for r in result["rows"]) if by == "origin_as" else {}
    out = []
    for row in result["rows"]:
        if by == "origin_as":
            out.append(([str(row["key"]), names.get(row["key"], "")], row))
        else:
            out.append(([row["key"] or "--"], row))
    if result["other"] is not None:
        out.append(([OTHER, ""] if by == "origin_as" else [OTHER], result["other"]))
    return out, result["count"]


def uplinks(rng: queries.Range, top: int) -> tuple[list[tuple[list[str], dict]], int]:
    """The same for router × neighbour AS (queries.groups, largest first),
    the groups after the ``top`` largest summed into ``other``."""
    groups = queries.groups(rng, ["router", "neighbor_as"])
    kept, rest = groups[:top], groups[top:]
    routers = queries.router_names()
    names = queries.as_names(g["key"][1] for g in kept)
    out = [([routers.get(g["key"][0], f"router #{g['key'][0]}"), str(g["key"][1]), names.get(g["key"][1], "")], g)
           for g in kept]
    if rest:
        out.append(([OTHER, OTHER, ""], queries.figures(_sums(rest), rng.seconds)))
    return out, len(groups)


def _sums(rows: list[dict]) -> dict[str, int]:
    """The archive's sums of several rows of figures (to make their figures again)."""
    sums = dict(queries.ZERO)
    for r in rows:
        for measure, figure in (("response_bytes", "bytes"), ("wire_bytes", "wire_bytes"), ("requests", "requests"),
                                ("data_segs", "data_segs"), ("retrans_segs", "retrans_segs"),
                                ("tcpinfo_records", "rtt_samples"), ("rtt_sum_us", "rtt_sum_us")):
            sums[measure] += r[figure]
        for h, n in zip(queries.HIST, r["rtt_hist"]):
            sums[h] += n
    return sums


def quality_families(now: datetime):
    rng = window(now)
    yield metrics.gauge("ipr_quality_window_start_timestamp_seconds",
                        "Start of the window the quality figures are over: the last complete hour (Unix time)",
                        samples=[((), rng.start.timestamp())])
    yield metrics.gauge("ipr_quality_window_seconds", "Length of the window the quality figures are over",
                        samples=[((), (rng.end - rng.start).total_seconds())])
    parts = {"origin_as": destinations(rng, "origin_as", settings.QUALITY_METRICS_TOP),
             "country": destinations(rng, "country", settings.QUALITY_METRICS_TOP),
             "uplink": uplinks(rng, settings.QUALITY_METRICS_UPLINKS)}
    yield metrics.gauge("ipr_quality_groups", "Groups with traffic in the window, by dimension (origin_as, "
                        "country, uplink): those beyond the largest are summed in the other series",
                        ["dimension"], [((dim,), count) for dim, (_, count) in parts.items()])
    for dim, (rows, _) in parts.items():
        what, labels = DIMENSIONS[dim]
        for suffix, doc, figure, scale in MEASURES:
            yield metrics.gauge(f"ipr_quality_{dim}_{suffix}", f"{doc}: {what}", labels,
                                [(values, row[figure] * scale) for values, row in rows if row[figure] is not None])
