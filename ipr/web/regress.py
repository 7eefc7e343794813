"""What got worse: destinations and uplinks whose delivery worsened against
a baseline (by default the same hours a week before).

Every figure is read through ipr.web.queries, as the other reports are: the
range and its baseline are each grouped by the dimensions of a kind (origin
AS, country, prefix, neighbour AS, router × neighbour AS), and a group is
compared with itself. A group is compared only when both periods hold
enough of it (MIN_REQUESTS responses, MIN_SEGMENTS data segments,
MIN_RTT_SAMPLES RTT samples), and a change counts only when it is large
(the MIN_* changes below) and when it is significant: a one-sided test at
Z_MIN (two proportions for retransmits and RTT, Poisson counts for the
traffic, Welch's t over the time buckets for the delivery rate), its
variance widened by how much the group's time buckets vary beyond what
independent samples would (the quasi-binomial and quasi-Poisson
dispersion). The rules are in docs/regressions.md.

A *finding* is one group and one measure that worsened: ``{"kind", "key",
"label", "measure", "before", "now", "factor", "z", ...}``. ``factor`` is
how many times worse (now / before for retransmits and RTT, before / now
for the delivery rate and the traffic), the order of the ranking.
"""
from __future__ import annotations

import math
from datetime import timedelta

import numpy as np

from ipr.web import queries as q
from ipr.web import units
from ipr.web.queries import Filters, QueryError, Range

# What can be compared: a kind is a dimension or two of the archive.
KINDS = {
    "origin_as": ("origin AS", ["origin_as"]),
    "country": ("country", ["country"]),
    # With its origin AS, so that a prefix's row links to the uplink
    # comparison of that AS restricted to the prefix.
    "prefix": ("prefix", ["prefix", "origin_as"]),
    "neighbor_as": ("neighbour AS", ["neighbor_as"]),
    "uplink": ("uplink (router via neighbour AS)", ["router", "neighbor_as"]),
}
DESTINATIONS = ("origin_as", "country", "prefix")
UPLINKS = ("uplink", "neighbor_as")

# The measures, and whether a higher value is worse.
MEASURES = {
    "retrans_rate": ("retransmits", True),
    "rtt_p50_ms": ("RTT p50", True),
    "rtt_p95_ms": ("RTT p95", True),
    "delivery_rate": ("delivery rate", False),
    "bps": ("traffic", False),
}

# Baselines: the same hours this long before.
BASELINES = {"1d": timedelta(days=1), "7d": timedelta(days=7), "28d": timedelta(days=28)}
DEFAULT_BASELINE = "7d"

# Enough samples, in BOTH periods, for a group to be compared at all.
MIN_REQUESTS = 200          # responses
MIN_SEGMENTS = 5_000        # data segments (retransmit rate)
MIN_RTT_SAMPLES = 200       # responses that carried an RTT (percentiles)
# A one-sided z-test at p < 0.001.
Z_MIN = 3.09
# How large a change must be to count.
MIN_RETRANS_PP = 0.005      # +0.5 percentage points ...
MIN_FACTOR = 1.5            # ... and 1.5 times the baseline's rate
MIN_RTT_MS = 10.0           # RTT p50/p95: +10 ms ...
MIN_RTT_FACTOR = 1.25       # ... and 1.25 times the baseline's
MIN_DELIVERY_DROP = 0.25    # delivery rate: at least 25 % lower
MIN_TRAFFIC_DROP = 0.5      # traffic (bits/s): at least 50 % lower
# The delivery rate's test compares the rates of the time buckets: at
# least this many buckets with traffic in each period.
MIN_BUCKETS = 3
# The tests read each group per time bucket; beyond this many buckets of
# the range's resolution (a month per hour is 720), per day.
MAX_BUCKETS = 400

_MEASURES = q.SUMS + ["duration_sum_us"]
_DURATION = len(q.SUMS)
_AT = {m: i for i, m in enumerate(_MEASURES)}


def baseline_of(rng: Range, shift: str | timedelta = DEFAULT_BASELINE) -> Range:
    """The same hours ``shift`` before (a BASELINES name or a timedelta), at
    the resolution the archive has for them (the per-minute window is gone
    a week later, so a minute range's baseline is read per hour: its rates
    compare the same, and the traffic is compared per second)."""
    delta = BASELINES[shift] if isinstance(shift, str) else shift
    return Range.between(rng.start - delta, rng.end - delta, rng.now)


def measured(rng: Range, kind: str, filters: Filters | None = None) -> dict:
    """{key: figures} of every group of ``kind`` over the range: the
    figures of :func:`queries.figures` plus ``delivery_rate`` (response
    bytes per second of response duration), ``duration_s``, and the sums
    per time bucket that holds the group (``buckets``: a matrix, one row
    per bucket, one column per measure) over ``n_buckets`` in the range,
    from which the tests below estimate how much the group varies. A range
    of more than MAX_BUCKETS buckets (a month per hour) takes its buckets
    per day (its whole days), and its figures from the range itself."""
    if kind not in KINDS:
        raise QueryError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
    dims, filters = KINDS[kind][1], filters or Filters()
    coarse = len(rng.buckets()) > MAX_BUCKETS and rng.resolution != "day"
    step = Range.between(rng.start, rng.end, rng.now, resolution="day") if coarse else rng
    rows, _ = q._grouped(step, filters, ["time"] + dims, _MEASURES)
    per = _per_key([r[1:] for r in rows], dims)
    n_buckets = len(step.buckets())
    if not coarse:
        return {key: _figures(m, rng.seconds, n_buckets) for key, m in per.items()}
    empty = np.zeros((0, len(_MEASURES)), dtype=np.int64)
    totals = _per_key(q._grouped(rng, filters, dims, _MEASURES)[0], dims)
    return {key: _figures(per.get(key, empty), rng.seconds, n_buckets, total.sum(axis=0))
            for key, total in totals.items()}


def _per_key(rows: list[tuple], dims: list[str]) -> dict:
    """{key: its rows' sums as a matrix} of rows (the values of ``dims``,
    then the sums of _MEASURES), a key of one dimension as its value."""
    if not rows:
        return {}
    n = len(dims)
    keys = [tuple(q._key(d, v) for d, v in zip(dims, r[:n])) for r in rows]
    # One matrix of every row's sums (floats below 2**53 are exact, see
    # queries._summed), then each key's rows as one slice of it.
    sums = np.nan_to_num(np.array([r[n:] for r in rows], dtype=np.float64)).astype(np.int64)
    code: dict = {}
    which = np.array([code.setdefault(k, len(code)) for k in keys], dtype=np.int64)
    order = np.argsort(which, kind="stable")
    bounds = np.searchsorted(which[order], np.arange(len(code) + 1))
    return {(key if n > 1 else key[0]): sums[order[bounds[c]:bounds[c + 1]]] for key, c in code.items()}


def _figures(buckets: np.ndarray, seconds: float, n_buckets: int, total: np.ndarray | None = None) -> dict:
    if total is None:
        total = buckets.sum(axis=0) if len(buckets) else np.zeros(len(_MEASURES), dtype=np.int64)
    figs = q.figures(q._sums_of(total[:_DURATION].tolist()), seconds)
    duration = int(total[_DURATION]) / 1e6
    return {**figs, "duration_s": duration, "delivery_rate": figs["bytes"] / duration if duration > 0 else None,
            "buckets": buckets, "n_buckets": n_buckets}


def nothing(seconds: float, n_buckets: int) -> dict:
    """The figures of a group without traffic in a range."""
    return _figures(np.zeros((0, len(_MEASURES)), dtype=np.int64), seconds, n_buckets)


def z_two_proportions(x1: float, n1: float, x0: float, n0: float) -> float | None:
    """z of the rise from x0/n0 (before) to x1/n1 (now), pooled: positive
    when the proportion rose. None without samples on either side."""
    if n1 <= 0 or n0 <= 0:
        return None
    pooled = (x1 + x0) / (n1 + n0)
    var = pooled * (1 - pooled) * (1 / n1 + 1 / n0)
    if var <= 0:
        return 0.0 if x1 / n1 == x0 / n0 else math.inf
    return (x1 / n1 - x0 / n0) / math.sqrt(var)


def share_above(hist: list[int], value_ms: float) -> float:
    """How many of the histogram's samples lie above ``value_ms``, linear
    within the bucket that holds it (as queries.percentile_ms reads it)."""
    above = 0.0
    lo = 0.0
    for i, n in enumerate(hist):
        hi = q.EDGES_MS[i] if i < len(q.EDGES_MS) else math.inf
        if value_ms < lo:
            above += n
        elif value_ms < hi:
            above += n * ((hi - value_ms) / (hi - lo) if hi != math.inf else 1.0)
        lo = hi
    return above


def _dispersion(x: np.ndarray, n: np.ndarray, p: float) -> tuple[float, int]:
    """(Pearson chi², degrees of freedom) of per-bucket counts ``x`` out of
    ``n`` about the proportion ``p``: chi² / df is 1 for binomial counts,
    more where the buckets vary more than that (the overdispersion)."""
    ok = n > 0
    if not 0 < p < 1:
        return 0.0, max(0, int(ok.sum()) - 1)
    chi2 = float((((x[ok] - n[ok] * p) ** 2) / (n[ok] * p * (1 - p))).sum())
    return chi2, int(ok.sum()) - 1


def _phi(*parts: tuple[float, int]) -> float:
    """The dispersion factor of both periods (at least 1; 1 when fewer
    than 2 degrees of freedom leave nothing to estimate it from)."""
    chi2, df = sum(c for c, _ in parts), sum(d for _, d in parts)
    return max(1.0, chi2 / df) if df >= 2 else 1.0


def retrans_z(now: dict, before: dict) -> float | None:
    """The two-proportion z of the retransmit rate's rise, divided by the
    square root of the dispersion of the periods' per-bucket rates (a
    quasi-binomial test: retransmits cluster on connections, so segments
    are not independent draws)."""
    z = z_two_proportions(now["retrans_segs"], now["data_segs"], before["retrans_segs"], before["data_segs"])
    if z is None:
        return None
    r, d = _AT["retrans_segs"], _AT["data_segs"]
    phi = _phi(*(_dispersion(f["buckets"][:, r], f["buckets"][:, d], f["retrans_segs"] / f["data_segs"])
                 for f in (now, before)))
    return z / math.sqrt(phi)


def rtt_z(now: dict, before: dict, measure: str) -> float | None:
    """The z of the rise of the share of RTT samples above the baseline's
    quantile (``measure``: rtt_p50_ms or rtt_p95_ms), adjusted for the
    dispersion of that share across buckets like :func:`retrans_z`."""
    v0 = before[measure]
    if v0 is None:
        return None
    hist = slice(_AT[q.HIST[0]], _AT[q.HIST[-1]] + 1)
    parts, shares = [], []
    for f in (now, before):
        rows = f["buckets"][:, hist]
        x = np.array([share_above(h, v0) for h in rows.tolist()])
        n = rows.sum(axis=1) if len(rows) else np.zeros(0)
        shares.append((float(x.sum()), float(n.sum())))
        parts.append(_dispersion(x, n, shares[-1][0] / shares[-1][1]) if shares[-1][1] else (0.0, 0))
    z = z_two_proportions(shares[0][0], shares[0][1], shares[1][0], shares[1][1])
    return None if z is None else z / math.sqrt(_phi(*parts))


def traffic_z(now: dict, before: dict, seconds_now: float, seconds_before: float) -> float | None:
    """The z of the fall of the responses: the count now against the
    baseline's count scaled to the elapsed time, as Poisson counts, divided
    by the square root of the baseline's dispersion (its per-bucket counts,
    buckets without traffic included, about their mean: a quasi-Poisson
    test; the day's rhythm counts as variance, which makes it cautious)."""
    expected = before["requests"] * seconds_now / seconds_before
    if expected <= 0:
        return None
    z = (expected - now["requests"]) / math.sqrt(expected)
    counts = before["buckets"][:, _AT["requests"]].astype(float)
    k = before["n_buckets"]
    mean = counts.sum() / k if k else 0.0
    if k < 3 or mean <= 0:
        return z
    chi2 = float(((counts - mean) ** 2).sum() + (k - len(counts)) * mean ** 2) / mean
    return z / math.sqrt(_phi((chi2, k - 1)))


def delivery_t(now: dict, before: dict) -> float | None:
    """Welch's t of the fall of the delivery rate, over the per-bucket rates
    (bytes / duration of each time bucket with traffic, unweighted); None
    with fewer than MIN_BUCKETS buckets in either period."""
    rates = []
    for f in (now, before):
        b = f["buckets"]
        ok = b[:, _DURATION] > 0 if len(b) else np.zeros(0, dtype=bool)
        rates.append(b[ok, _AT["response_bytes"]] / (b[ok, _DURATION] / 1e6) if len(b) else np.zeros(0))
    r1, r0 = rates
    if len(r1) < MIN_BUCKETS or len(r0) < MIN_BUCKETS:
        return None
    se = math.sqrt(r1.var(ddof=1) / len(r1) + r0.var(ddof=1) / len(r0))
    diff = float(r0.mean() - r1.mean())
    if se == 0:
        return math.inf if diff > 0 else 0.0
    return diff / se


def _enough(f: dict) -> bool:
    return f["requests"] >= MIN_REQUESTS


def compare(now: dict, before: dict, seconds_now: float, seconds_before: float) -> list[dict]:
    """The measures of one group that worsened from ``before`` to ``now``
    (figures of :func:`measured`), each ``{"measure", "before", "now",
    "factor", "z"}``. Traffic lost needs MIN_REQUESTS responses before;
    every other measure needs them in both periods."""
    out = _traffic_lost(now, before, seconds_now, seconds_before)
    if not (_enough(now) and _enough(before)):
        return out
    # Retransmits: the rate rose by MIN_RETRANS_PP and MIN_FACTOR times, and
    # the test on retransmitted / data segments (retrans_z) passes Z_MIN.
    if now["data_segs"] >= MIN_SEGMENTS and before["data_segs"] >= MIN_SEGMENTS:
        r1, r0 = now["retrans_rate"], before["retrans_rate"]
        z = retrans_z(now, before)
        if r1 - r0 >= MIN_RETRANS_PP and r1 >= MIN_FACTOR * r0 and z is not None and z >= Z_MIN:
            out.append({"measure": "retrans_rate", "before": r0, "now": r1,
                        "factor": r1 / r0 if r0 else math.inf, "z": z})
    # RTT p50/p95: the quantile rose by MIN_RTT_MS and MIN_RTT_FACTOR times,
    # and the share of samples above the baseline's quantile rose
    # significantly (rtt_z; that share is 1 - q before, by definition).
    if now["rtt_samples"] >= MIN_RTT_SAMPLES and before["rtt_samples"] >= MIN_RTT_SAMPLES:
        for measure in ("rtt_p50_ms", "rtt_p95_ms"):
            v1, v0 = now[measure], before[measure]
            if v1 is None or v0 is None or v1 - v0 < MIN_RTT_MS or v1 < MIN_RTT_FACTOR * v0:
                continue
            z = rtt_z(now, before, measure)
            if z is not None and z >= Z_MIN:
                out.append({"measure": measure, "before": v0, "now": v1, "factor": v1 / v0 if v0 else math.inf,
                            "z": z})
    # Delivery rate (bytes per second of response duration): a large drop,
    # and Welch's t over the buckets' rates.
    d1, d0 = now["delivery_rate"], before["delivery_rate"]
    if d1 is not None and d0 and d1 <= (1 - MIN_DELIVERY_DROP) * d0:
        t = delivery_t(now, before)
        if t is not None and t >= Z_MIN:
            out.append({"measure": "delivery_rate", "before": d0, "now": d1,
                        "factor": d0 / d1 if d1 else math.inf, "z": t})
    return out


def _traffic_lost(now: dict, before: dict, seconds_now: float, seconds_before: float) -> list[dict]:
    """Traffic: bits per elapsed second fell by MIN_TRAFFIC_DROP, and the
    responses fell significantly (traffic_z). Needs enough responses before
    only: a destination that is gone is the worst case."""
    if not _enough(before):
        return []
    b1, b0 = now["bytes"] * 8 / seconds_now, before["bytes"] * 8 / seconds_before
    if not b0 or b1 > (1 - MIN_TRAFFIC_DROP) * b0:
        return []
    z = traffic_z(now, before, seconds_now, seconds_before)
    if z is None or z < Z_MIN:
        return []
    return [{"measure": "bps", "before": b0, "now": b1, "factor": b0 / b1 if b1 else math.inf, "z": z}]


def _labels(kind: str, keys: list) -> dict:
    """{key: label} of the keys of a kind."""
    if kind == "uplink":
        routers = q.router_names()
        names = q.as_names({k[1] for k in keys})
        return {k: f"{routers.get(k[0], f'router #{k[0]}')} via {q.asn_label(k[1], names)}" for k in keys}
    if kind == "prefix":
        names = q.as_names({k[1] for k in keys})
        return {k: f"{q._labels('prefix', [k[0]])[0]} ({q.asn_label(k[1], names)})" for k in keys}
    dim = KINDS[kind][1][0]
    return dict(zip(keys, q._labels(dim, keys)))


def regressions(rng: Range, kind: str, filters: Filters | None = None,
                baseline: str | timedelta = DEFAULT_BASELINE, limit: int = 0) -> dict:
    """Every finding of the groups of ``kind``, worst first (``factor``, then
    the bytes now); ``compared``: how many groups had enough samples in both
    periods, of ``count`` groups in the range."""
    filters = filters or Filters()
    base = baseline_of(rng, baseline)
    now_groups = measured(rng, kind, filters)
    before_groups = measured(base, kind, filters)
    findings, compared = [], 0
    empty = nothing(rng.seconds, len(rng.buckets()))
    for key, before in before_groups.items():
        now = now_groups.get(key, empty)
        compared += _enough(now) and _enough(before)
        for f in compare(now, before, rng.seconds, base.seconds):
            findings.append({"kind": kind, "key": key, "bytes": now["bytes"], "requests": now["requests"],
                             "requests_before": before["requests"], "measure_label": MEASURES[f["measure"]][0],
                             **f})
    findings.sort(key=lambda f: (-f["factor"], -f["bytes"], str(f["key"]), f["measure"]))
    if limit:
        findings = findings[:limit]
    labels = _labels(kind, list(dict.fromkeys(f["key"] for f in findings)))
    for f in findings:
        f["label"] = labels[f["key"]]
        f["change"] = _change(f)
    return {"kind": kind, "title": KINDS[kind][0], "findings": findings, "compared": compared,
            "count": len(now_groups), "range": rng.as_dict(), "baseline": base.as_dict(),
            "filters": filters.as_dict()}


def _change(f: dict):
    """now − before: percentage points for retransmits (as a fraction), ms
    for RTT, a fraction of before for the delivery rate and the traffic."""
    if f["measure"] in ("delivery_rate", "bps"):
        return (f["now"] - f["before"]) / f["before"] if f["before"] else None
    return f["now"] - f["before"]


def report(rng: Range, filters: Filters | None = None, baseline: str | timedelta = DEFAULT_BASELINE,
           kinds=("origin_as", "country", "prefix", "uplink"), limit: int = 50) -> dict:
    """The findings of each kind (destinations, then uplinks)."""
    return {"kinds": [regressions(rng, k, filters, baseline, limit) for k in kinds],
            "range": rng.as_dict(), "baseline": baseline_of(rng, baseline).as_dict(),
            "rules": rules()}


def rules() -> dict:
    """The thresholds, as the page and the docs state them."""
    return {"min_requests": MIN_REQUESTS, "min_segments": MIN_SEGMENTS, "min_rtt_samples": MIN_RTT_SAMPLES,
            "z_min": Z_MIN, "min_retrans_pp": MIN_RETRANS_PP, "min_factor": MIN_FACTOR,
            "min_rtt_ms": MIN_RTT_MS, "min_rtt_factor": MIN_RTT_FACTOR,
            "min_delivery_drop": MIN_DELIVERY_DROP, "min_traffic_drop": MIN_TRAFFIC_DROP}


def shown(measure: str, value) -> str:
    """A measure's value as the pages show it."""
    if value is None:
        return "–"
    if measure == "retrans_rate":
        return units.human_pct(value)
    if measure in ("rtt_p50_ms", "rtt_p95_ms"):
        return units.human_ms(value)
    if measure == "delivery_rate":
        return units.human_bytes(value) + "/s"
    return units.human_bps(value)
