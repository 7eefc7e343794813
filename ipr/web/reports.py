"""Reports: what operators decide from (where to peer, which transit to push,
where delivery is poor). Built on ipr.web.queries; plain dicts and lists.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta

from ipr.web import queries as q
from ipr.web.queries import Filters, Range

# "Enough traffic" for the delivery-quality report: a group is ranked only
# when it carries at least MIN_SHARE of the range's bytes and has at least
# MIN_SAMPLES RTT samples (records with TCP_INFO) and MIN_SEGMENTS data
# segments, so that a handful of connections cannot top the list.
MIN_SHARE = 0.001
MIN_SAMPLES = 1000
MIN_SEGMENTS = 10_000
# The uplink comparison calls a neighbour or router "best" only among those
# carrying at least this share of the destination's bytes.
UPLINK_MIN_SHARE = 0.05
# What the reports rank, and the largest limits the pages and the API take.
TOP_ASNS_BY = ("origin_as", "neighbor_as")
QUALITY_BY = ("origin_as", "neighbor_as", "country", "prefix")
TOP_ASNS_MAX = 10000
PEERING_MAX = 5000


def top_asns(rng: Range, filters: Filters | None = None, limit: int = 100, by: str = "origin_as") -> dict:
    """The top ASes with their share and cumulative share of the bytes, and
    how many ASes carry 50/90/99% (``coverage``)."""
    result = q.top(rng, by, filters, limit)
    acc = 0.0
    for i, row in enumerate(result["rows"], 1):
        acc += row["share"] or 0.0
        row["rank"] = i
        row["cumulative"] = acc
    result["coverage"] = q.coverage(rng, by, filters)
    return result


def peering_candidates(rng: Range, filters: Filters | None = None, limit: int = 50,
                       now_range: Range | None = None) -> dict:
    """Origin ASes reached through another AS (neighbour ≠ origin), ranked by
    the bytes that went through one over ``rng``.

    Each row: the origin's figures over its transit traffic, ``transit_share``
    (of that origin's bytes, how much went through another AS), and
    ``transits_now``: the neighbours carrying it over ``now_range`` (the last
    24 hours by default) with their share of its bytes there. Direct traffic
    (neighbour = origin: already a peer or a customer) is what peering would
    make of the rest. Ranked by the database (queries.TRANSIT): only the
    ``limit`` origins' figures leave it.
    """
    filters = filters or Filters()
    now_range = now_range or Range.last("24h")
    ranked, _, _ = q._ranked(rng, filters, ["origin_as"], "response_bytes", limit, count=False, transit=True)
    origins = [int(r[0]) for r in ranked]
    among = ("origin_as", origins)
    through = {int(r[0]): q._sums_of(r[1:]) for r in
               q._grouped(rng, filters, ["origin_as"], among=among, few=True, transit=True)[0]}
    every = {int(r[0]): int(r[1] or 0) for r in
             q._grouped(rng, filters, ["origin_as"], ["response_bytes"], among=among, few=True)[0]}
    total_bytes = q._total(rng, filters)[0]["response_bytes"]
    transit_total = int(q._grouped(rng, filters, [], ["response_bytes"], few=True, transit=True)[0][0][0] or 0)
    now_by_origin: dict[int, list] = {}
    if origins:
        for r in q._grouped(now_range, filters, ["origin_as", "neighbor_as"], ["response_bytes"], among=among,
                            few=True)[0]:
            now_by_origin.setdefault(int(r[0]), []).append((int(r[1]), int(r[2] or 0)))
    ranked = [(o, {"all": every.get(o, 0), "transit": through.get(o, q.ZERO)}) for o in origins]
    names = q.as_names(set(origins) | {n for v in now_by_origin.values() for n, _ in v})
    rows = []
    for rank, (origin, e) in enumerate(ranked, 1):
        figs = q.figures(e["transit"], rng.seconds)
        now_total = sum(b for _, b in now_by_origin.get(origin, []))
        transits = [{"asn": n, "label": q.asn_label(n, names), "share": b / now_total if now_total else None,
                     "direct": n == origin}
                    for n, b in sorted(now_by_origin.get(origin, []), key=lambda x: (-x[1], x[0]))]
        rows.append({"rank": rank, "key": origin, "label": q.asn_label(origin, names), **figs,
                     "share": figs["bytes"] / total_bytes if total_bytes else None,
                     "transit_share": figs["bytes"] / e["all"] if e["all"] else None,
                     "transits_now": transits,
                     "transits_text": " · ".join(
                         f"{'direct' if t['direct'] else t['label']} {t['share'] * 100:.0f}%"
                         for t in transits if t["share"] is not None)})
    return {"rows": rows, "total_bytes": total_bytes, "transit_bytes": transit_total,
            "transit_share": transit_total / total_bytes if total_bytes else None,
            "range": rng.as_dict(), "now_range": now_range.as_dict()}


def month_range(month: str | None = None, now: datetime | None = None) -> Range:
    """A calendar month ('2026-11'; default: the current one) at daily resolution."""
    now = now or q._now()
    if month:
        try:
            start = datetime.strptime(month, "%Y-%m").replace(tzinfo=q.UTC)
        except ValueError:
            raise q.QueryError(f"{month!r} is not a month (expected e.g. 2026-11)") from None
    else:
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + (start.month == 12), month=start.month % 12 + 1)
    return Range.between(start, end, now, resolution="day")


def previous_month(rng: Range) -> Range:
    start = (rng.start - timedelta(days=1)).replace(day=1)
    return Range.between(start, rng.start, rng.now, resolution="day")


def country_report(rng: Range, filters: Filters | None = None) -> dict:
    """Every country over the period (a month by default), with the period
    before it for comparison and each country's largest origin AS."""
    filters = filters or Filters()
    current = q.top(rng, "country", filters, limit=0)
    before_rng = previous_month(rng) if rng.resolution == "day" and rng.start.day == 1 else \
        Range.between(rng.start - (rng.end - rng.start), rng.start, rng.now, resolution=rng.resolution)
    before = {r["key"]: r["bytes"] for r in q.top(before_rng, "country", filters, limit=0)["rows"]}
    leaders: dict[str, tuple[int, int]] = {}
    for g in q.groups(rng, ["country", "origin_as"], filters):
        country, origin = g["key"]
        if country not in leaders or g["bytes"] > leaders[country][1]:
            leaders[country] = (origin, g["bytes"])
    names = q.as_names(o for o, _ in leaders.values())
    for row in current["rows"]:
        prev = before.get(row["key"], 0)
        row["previous_bytes"] = prev
        row["change"] = (row["bytes"] - prev) / prev if prev else None
        origin, b = leaders.get(row["key"], (None, 0))
        row["top_asn"] = origin
        row["top_asn_label"] = "" if origin is None else q.asn_label(origin, names)
        row["top_asn_share"] = b / row["bytes"] if row["bytes"] else None
    current["previous_range"] = before_rng.as_dict()
    return current


def quality_report(rng: Range, by: str = "origin_as", filters: Filters | None = None, limit: int = 25,
                   min_share: float = MIN_SHARE) -> dict:
    """The groups (ASes or countries) with the worst retransmit rate and the
    worst RTT p95 among those with enough traffic (thresholds above)."""
    if by not in ("origin_as", "neighbor_as", "country", "prefix"):
        raise q.QueryError("the quality report ranks origin ASes, neighbour ASes, countries or prefixes")
    everything = q.top(rng, by, filters, limit=0)
    total = everything["total"]
    floor = min_share * total["bytes"]
    eligible = [r for r in everything["rows"]
                if r["bytes"] >= floor and r["rtt_samples"] >= MIN_SAMPLES and r["data_segs"] >= MIN_SEGMENTS]
    by_retrans = sorted(eligible, key=lambda r: (-(r["retrans_rate"] or 0), str(r["key"])))[:limit]
    by_rtt = sorted(eligible, key=lambda r: (-(r["rtt_p95_ms"] or 0), str(r["key"])))[:limit]
    return {"by": by, "worst_retrans": by_retrans, "worst_rtt": by_rtt, "eligible": len(eligible),
            "count": everything["count"], "total": total,
            "threshold": {"min_share": min_share, "min_bytes": floor, "min_samples": MIN_SAMPLES,
                          "min_segments": MIN_SEGMENTS},
            "range": rng.as_dict()}


def uplinks(rng: Range, target: Filters, filters: Filters | None = None, series_limit: int = 5) -> dict:
    """One destination (``target``: an origin AS or a country) per neighbour
    AS, per router, and per router × neighbour, with delivery quality side by
    side, and series per neighbour over time: which transit or peer delivers
    it better.

    ``best``: among the neighbours (routers) carrying at least
    UPLINK_MIN_SHARE of the destination's bytes, the lowest retransmit rate
    and the lowest RTT p95. Each row's ``vs_all`` figures are its retransmit
    rate and p95 minus the destination's overall ones (negative is better).
    """
    if target.origin_as is None and target.country is None:
        raise q.QueryError("the uplink comparison needs a destination AS or country")
    # The target wins over a filter on its own dimension; other filters narrow it.
    f = (filters or Filters()).with_(**{d: getattr(target, d) for d in target.dims()})
    by_neighbor = q.top(rng, "neighbor_as", f, limit=0)
    by_router = q.top(rng, "router", f, limit=0)
    total = by_neighbor["total"]
    for result in (by_neighbor, by_router):
        for row in result["rows"]:
            row["retrans_vs_all"] = _diff(row["retrans_rate"], total["retrans_rate"])
            row["p95_vs_all"] = _diff(row["rtt_p95_ms"], total["rtt_p95_ms"])
        result["best"] = _best(result["rows"])
    grid = q.groups(rng, ["router", "neighbor_as"], f)
    routers = q.router_names()
    names = q.as_names({g["key"][1] for g in grid})
    for g in grid:
        g["router"], g["neighbor_as"] = g["key"]
        g["label"] = f"{routers.get(g['router'], g['router'])} via {q.asn_label(g['neighbor_as'], names)}"
        g["share"] = g["bytes"] / total["bytes"] if total["bytes"] else None
    per_neighbor = q.series(rng, f, split="neighbor_as", limit=series_limit)
    per_router = q.series(rng, f, split="router", limit=series_limit)
    return {"target": target.as_dict(), "total": total, "neighbors": by_neighbor, "routers": by_router,
            "grid": grid, "series_neighbors": per_neighbor, "series_routers": per_router,
            "min_share": UPLINK_MIN_SHARE, "range": rng.as_dict()}


def _diff(a, b):
    return None if a is None or b is None else a - b


def _best(rows: list[dict]) -> dict:
    big = [r for r in rows if (r["share"] or 0) >= UPLINK_MIN_SHARE]
    out = {}
    with_retrans = [r for r in big if r["retrans_rate"] is not None]
    with_rtt = [r for r in big if r["rtt_p95_ms"] is not None]
    if len(with_retrans) > 1:
        out["retrans_rate"] = min(with_retrans, key=lambda r: r["retrans_rate"])["key"]
    if len(with_rtt) > 1:
        out["rtt_p95_ms"] = min(with_rtt, key=lambda r: r["rtt_p95_ms"])["key"]
    return out


def months(back: int = 12, now: datetime | None = None) -> list[str]:
    """The last ``back`` months, newest first ('2026-11', ...): the month menu."""
    now = now or q._now()
    d = date(now.year, now.month, 1)
    out = []
    for _ in range(back):
        out.append(f"{d:%Y-%m}")
        d = (d - timedelta(days=1)).replace(day=1)
    return out
