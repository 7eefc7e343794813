"""The "what got worse" report: /reports/regressions (ipr.web.regress).

``?range=`` (or ``from``/``to``) and the page filters as every report;
``baseline=1d|7d|28d`` (default 7d: the same hours a week before);
``?format=csv&table=origin_as|country|prefix|uplink`` answers one table.
"""
from __future__ import annotations

import math

from django.urls import reverse
from django.utils.http import urlencode

from ipr.web import params, regress, units
from ipr.web.present import Column, Table, url_for
from ipr.web.views import _base_context, _here, _page_filters, _request_state, _respond, page

CSV_COLUMNS = [
    Column("key", "key", "link"),
    Column("measure", "measure"),
    Column("before", "before"),
    Column("now", "now"),
    Column("change", "change"),
    Column("factor", "factor"),
    Column("z", "z"),
    Column("bytes", "bytes"),
    Column("requests", "requests"),
    Column("requests_before", "requests_before"),
    Column("compare_url", "compare_url"),
]


def shown_change(f: dict) -> str:
    if f["change"] is None:
        return "–"
    if f["measure"] == "retrans_rate":
        return units.human_pp(f["change"])
    if f["measure"] in ("rtt_p50_ms", "rtt_p95_ms"):
        return f"{f['change']:+.0f} ms".replace("-", "−")
    return f"{f['change'] * 100:+.0f} %".replace("-", "−")


def compare_url(kind: str, key, link: dict) -> str | None:
    """The uplink comparison of a destination (of a prefix: its origin AS's,
    restricted to the prefix); an uplink's or neighbour's page."""
    uplinks = reverse("web:report_uplinks")
    if kind == "origin_as":
        return f"{uplinks}?{urlencode({'asn': key, **link})}"
    if kind == "country":
        return f"{uplinks}?{urlencode({'country': key or '--', **link})}"
    if kind == "prefix":
        return f"{uplinks}?{urlencode({'asn': key[1], 'prefix': key[0], **link})}"
    if kind == "uplink":
        return reverse("web:neighbor", args=[key[1]]) + "?" + urlencode({**link, "router": key[0]})
    return url_for("neighbor_as", key, link)


def page_url(kind: str, key, link: dict) -> str | None:
    if kind == "prefix":
        return url_for("prefix", key[0], link)
    if kind == "uplink":
        return url_for("router", key[0], link)
    return url_for(kind, key, link)


def decorate(result: dict, link: dict) -> dict:
    """The findings with their links and shown values (in place)."""
    kind = result["kind"]
    for f in result["findings"]:
        f["url"] = page_url(kind, f["key"], link)
        f["compare_url"] = compare_url(kind, f["key"], link)
        f["before_text"], f["now_text"] = regress.shown(f["measure"], f["before"]), regress.shown(f["measure"], f["now"])
        f["change_text"] = shown_change(f)
        f["responses_text"] = f"{units.human_int(f['requests_before'])} → {units.human_int(f['requests'])}"
        f["factor_text"] = "gone" if math.isinf(f["factor"]) else f"×{f['factor']:.2f}"
        f["z_text"] = "–" if f["z"] is None else ("∞" if math.isinf(f["z"]) else f"{f['z']:.1f}")
    return result


@page
def report_regressions(request):
    rng, filters = _request_state(request)
    baseline = params.choice(request.GET, "baseline", tuple(regress.BASELINES), regress.DEFAULT_BASELINE)
    link = {**rng.params(), **_page_filters(filters)}
    result = regress.report(rng, filters, baseline)
    for r in result["kinds"]:
        decorate(r, link)
    tables = []
    for r in result["kinds"]:
        # In CSV a prefix's key is "PREFIX ASN", an uplink's "ROUTER/NEIGHBOUR".
        rows = [{**f, "key": csv_key(r["kind"], f["key"])} for f in r["findings"]]
        tables.append(Table(r["kind"], r["title"], CSV_COLUMNS, rows))
    context = _base_context(request, rng, filters, "What got worse", tables=tables, result=result,
                            baseline=baseline, baselines=regress.BASELINES, note=rules_note(),
                            baseline_range=result["baseline"])
    _offer_filters(request, context, result["kinds"])
    return _respond(request, "web/regressions.html", context, "regressions")


def _filters_of(kind: str, key) -> dict:
    """The page filters that keep one finding's destination or uplink."""
    if kind == "prefix":
        return {"prefix": key[0]}
    if kind == "uplink":
        return {"router": key[0], "neighbor_as": key[1]}
    return {kind: key}


def _offer_filters(request, context: dict, kinds: list[dict]) -> None:
    """Each finding's address that adds its destination (an uplink: its
    router and neighbour AS) to the report's filters, as the tables of the
    other pages offer; none where one of those dimensions is filtered."""
    active, keep = context["active_dims"], context["kept_params"]
    for r in kinds:
        for f in r["findings"]:
            wanted = _filters_of(r["kind"], f["key"])
            if not set(wanted) & active:
                f["filter_url"] = _here(request, {**keep, **{params.FILTER_PARAM[d]: params.filter_value(d, v)
                                                            for d, v in wanted.items()}})
                f["filter_title"] = f"filter: {f['label']}"


def rules_note() -> str:
    r = regress
    return (f"A destination or uplink is compared only with at least {r.MIN_REQUESTS} responses in both periods "
            f"(for traffic lost, before). A change counts when it is large (retransmits "
            f"+{r.MIN_RETRANS_PP * 100:g} pp and ×{r.MIN_FACTOR:g} over ≥ {r.MIN_SEGMENTS} data segments; RTT p50 "
            f"and p95 +{r.MIN_RTT_MS:g} ms and ×{r.MIN_RTT_FACTOR:g} over ≥ {r.MIN_RTT_SAMPLES} samples; delivery "
            f"rate −{r.MIN_DELIVERY_DROP * 100:g} %; traffic −{r.MIN_TRAFFIC_DROP * 100:g} %) and significant "
            f"(one-sided z or t ≥ {r.Z_MIN:g}, the variance widened by how much the time buckets vary). "
            f"Worst first: how many times worse.")


def csv_key(kind: str, key) -> str:
    if kind == "prefix":
        return f"{key[0]} AS{key[1]}"
    if kind == "uplink":
        return f"{key[0]}/{key[1]}"
    return key
