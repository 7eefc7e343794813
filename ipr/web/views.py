"""The pages: thin views over ipr.web.queries and ipr.web.reports.

Every page reads its range (``?range=`` or ``?from=&to=``) and filters
(``?router=&type=&asn=&neighbor=&country=&prefix=``, any mix; an entity
page's path wins over the same filter) from the query string, builds
tables and chart specs, and renders them with the filters as chips and
each row's "add this filter" link; ``?format=csv&table=NAME`` answers one
of its tables as CSV instead. Login is required everywhere.
"""
from __future__ import annotations

import ipaddress
import re
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode

from ipr.web import params, queries as q, reports, units
from ipr.web.present import (QUALITY, Column, Table, chart_bars, chart_map, chart_quality, chart_sankey,
                             chart_series, csv_response, top_table, url_for)
from ipr.web.queries import Filters, QueryError, Range


def page(view):
    """Login required; a bad range or filter answers 400 with the reason."""
    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except QueryError as exc:
            return render(request, "web/error.html", {"message": str(exc)}, status=400)
    return wrapper


def _request_state(request) -> tuple[Range, Filters]:
    return params.range_of(request.GET), params.filters_of(request.GET)


def _respond(request, template: str, context: dict, filename: str):
    tables: list[Table] = context.get("tables", [])
    if request.GET.get("format") == "csv":
        wanted = request.GET.get("table") or (tables[0].name if tables else "")
        for t in tables:
            if t.name == wanted:
                return csv_response(t, f"{filename}-{t.name}")
        raise Http404(f"no table {wanted!r} on this page")
    _offer_filters(request, context)
    return render(request, template, context)


def _base_context(request, rng: Range, filters: Filters, title: str, fixed: Filters | None = None,
                  target: Filters | None = None, **extra) -> dict:
    """What base.html needs. ``filters`` are the query string's filters that
    apply on this page (shown as chips, kept by the links); ``fixed`` what
    the page's path sets (an entity page's own AS, country, ...), and
    ``target`` what a report's query names as its subject (the uplink
    comparison's destination): neither is offered as a filter."""
    keep = {k: v for k, v in request.GET.items() if k not in ("format", "table")}
    # What this page's own links (chips, filter controls) keep: not a filter its path overrides.
    own = {params.FILTER_PARAM[d] for d in (fixed.dims() if fixed else ())}
    kept = {k: v for k, v in keep.items() if k not in own}
    chips = _chips(request, filters, kept)
    shown = {c["param"] for c in chips}
    return {"title": title, "range": rng, "filters": filters, "presets": q.PRESETS, "kept_params": kept,
            "query": urlencode(keep), "range_query": urlencode(rng.params()),
            "link_params": {**rng.params(), **_page_filters(filters)},
            "link_query": urlencode({**rng.params(), **_page_filters(filters)}),
            "filter_params": _page_filters(filters), "filter_query": urlencode(_page_filters(filters)),
            "chips": chips, "clear_url": _here(request, {k: v for k, v in kept.items() if k not in shown}),
            "active_dims": filters.dims() | (fixed or Filters()).dims() | (target or Filters()).dims(),
            "fixed_dims": (fixed or Filters()).dims(),  # the range picker leaves out the menu of the page's own
            "routers": sorted(q.router_names().items()), "types": _types(),
            **extra}


def _page_filters(filters: Filters) -> dict:
    # What a link to another page keeps: every filter of this page's query.
    return filters.params()


def _here(request, query: dict) -> str:
    """This page with another query string."""
    return request.path + ("?" + urlencode(query) if query else "")


# What a chip calls each filter.
FILTER_TITLES = {"router": "router", "traffic_type": "type", "origin_as": "origin", "neighbor_as": "neighbour",
                 "country": "country", "prefix": "prefix"}


def _filter_label(dim: str, value, names: dict) -> str:
    if dim in ("origin_as", "neighbor_as"):
        return q.asn_label(value, names)
    if dim == "router":
        return q.router_names().get(value, f"router #{value}")
    if dim == "country":
        return q.country_label(value)
    if dim == "prefix":
        return q.prefix_label(value)
    return str(value)


def _chips(request, filters: Filters, keep: dict) -> list[dict]:
    """One chip per filter: its title, its value with its name, and this
    page without it (``keep``: the query this page's links keep)."""
    values = {d: v for d, v in filters.as_dict().items() if v is not None}
    names = q.as_names(v for d, v in values.items() if d in ("origin_as", "neighbor_as"))
    chips = []
    for dim, value in values.items():
        param = params.FILTER_PARAM[dim]
        chips.append({"dim": dim, "param": param, "value": params.filter_value(dim, value),
                      "title": FILTER_TITLES[dim], "label": _filter_label(dim, value, names),
                      "remove_url": _here(request, {k: v for k, v in keep.items() if k != param})})
    return chips


def _offer_filters(request, context: dict) -> None:
    """Give every table row and chart key of a dimension that is not
    filtered yet the address that adds it to this page's filters (tables),
    or leave it for static/web/filters.js to add (charts). A dimension
    filtered already, or set by the page's path, offers nothing."""
    active, keep = context.get("active_dims", set()), context.get("kept_params", {})
    for table in context.get("tables", []):
        if table.dim not in params.FILTER_PARAM or table.dim in active:
            continue
        param = params.FILTER_PARAM[table.dim]
        for row in table.rows:
            if row.get("key") is not None:
                row["filter_url"] = _here(request, {**keep, param: params.filter_value(table.dim, row["key"])})
                row["filter_title"] = f"filter: {FILTER_TITLES[table.dim]} {row.get('label', row['key'])}"
    specs = list(context.get("charts", [])) + [v for k, v in context.items() if k.endswith("_chart") and v]
    for spec in specs:
        if spec.get("dim") in active:
            spec["dim"] = None
        if "dims" in spec:  # the flow diagram: a dimension per node
            spec["keys"] = [None if d in active else k for d, k in zip(spec["dims"], spec.get("keys", []))]


def _types() -> list[str]:
    try:
        return q.known_types()
    except Exception:  # an archive not migrated yet must not break the menus
        return []


# -- dashboard -----------------------------------------------------------------

MAP_COUNTRIES = 400


@page
def dashboard(request):
    rng, filters = _request_state(request)
    link = {**rng.params(), **_page_filters(filters)}
    head = q.overview(rng, filters)
    total, by_router, by_type, overall = head["totals"], head["by_router"], head["by_type"], head["series"]
    charts = [
        chart_series("bps-router", "Traffic by router", by_router, "bps", "bps", kind="area"),
        chart_series("bps-type", "Traffic by traffic type", by_type, "bps", "bps", kind="area"),
        chart_series("retrans", "Retransmit rate", overall, "retrans_rate", "pct"),
        chart_quality("rtt", "RTT (smoothed, per response)", overall),
    ]
    # The tables' total is the overview's: the same traffic, summed once.
    origins = q.top(rng, "origin_as", filters, 15, total=head["sums"])
    # The countries table and the map, which colours every country (more
    # than there are country codes), from one reading.
    countries, all_countries = q.tops(rng, "country", filters, (15, MAP_COUNTRIES), total=head["sums"])
    tables = [
        top_table("origins", "Top origin ASes", origins, link),
        top_table("neighbors", "Top neighbour ASes (transits and peers)", q.top(rng, "neighbor_as", filters, 10, total=head["sums"]), link),
        top_table("countries", "Top countries", countries, link),
        top_table("prefixes", "Top prefixes", q.top(rng, "prefix", filters, 15, total=head["sums"]), link),
        top_table("routers", "Routers", head["routers"], link),
        top_table("types", "Traffic types", head["types"], link),
    ]
    flow_chart = chart_sankey("flows", "Router → neighbour AS → origin AS (bytes)",
                              q.flows(rng, filters, 20, origins=[r["key"] for r in origins["rows"]]))
    country_chart = chart_bars("country-bars", "Countries by bytes", countries)
    country_map = chart_map("country-map", "Countries by bytes (map)", all_countries)
    context = _base_context(request, rng, filters, "Dashboard", total=total, charts=charts,
                            tables=tables, flow_chart=flow_chart, country_chart=country_chart,
                            country_map=country_map)
    return _respond(request, "web/dashboard.html", context, "dashboard")


# -- one ASN, country, prefix, router or traffic type ---------------------------

SPLIT_TITLES = {"router": "By router", "traffic_type": "By traffic type", "neighbor_as": "By neighbour AS",
                "origin_as": "By origin AS", "prefix": "By prefix", "country": "Countries"}


def _entity(request, *, title: str, subtitle: str, entity: Filters, splits: list[str], name: str,
            paths: bool = False, sankey: bool = False, uplinks_target: dict | None = None,
            facts: list | None = None, about: list | None = None):
    rng, asked = _request_state(request)
    # The page's own dimension comes from its path: the same one in the
    # query string is ignored (no chip, dropped from the links). Every
    # other filter of the query applies.
    chosen = asked.with_(**{d: None for d in entity.dims()})
    filters = chosen.with_(**{d: getattr(entity, d) for d in entity.dims()})
    link = {**rng.params(), **_page_filters(chosen)}
    head = q.overview(rng, filters)
    total, overall = head["totals"], head["series"]
    split_series = "router" if entity.router is None else "traffic_type"
    by_split = head["by_router"] if split_series == "router" else head["by_type"]
    charts = [
        chart_series("bps", f"Traffic by {split_series.replace('_', ' ')}", by_split, "bps", "bps", kind="area"),
        chart_series("requests", "Requests per " + rng.resolution, overall, "requests", "int", names=["requests"]),
        chart_series("retrans", "Retransmit rate", by_split, "retrans_rate", "pct"),
        chart_quality("rtt", "RTT percentiles", overall),
    ]
    tables = []
    for dim in splits:
        if dim in ("router", "traffic_type"):  # already summed by the overview
            result = head["routers"] if dim == "router" else head["types"]
        else:
            result = q.top(rng, dim, filters, 15, total=head["sums"])
        tables.append(top_table(dim, SPLIT_TITLES[dim], result, link))
    context = {"total": total, "charts": charts, "tables": tables, "subtitle": subtitle, "facts": facts or [],
               "about": about or []}
    if paths and (filters.country is not None or filters.prefix is not None):
        # The path tables have no country or prefix: an unfiltered table would mislead.
        context["paths_note"] = "AS paths: not shown under a country or prefix filter (the path tables have neither)."
    elif paths:
        p = q.paths(rng, filters, 20)
        context["paths_available"] = p["available"]
        if p["available"]:
            tables.append(top_table("paths", "AS paths", p, link))
    if sankey:
        context["flow_chart"] = chart_sankey("flows", "Router → neighbour AS → origin AS (bytes)",
                                             q.flows(rng, filters, 15))
    if uplinks_target:
        context["uplinks_url"] = reverse("web:report_uplinks") + "?" + urlencode({**uplinks_target, **link})
    context = _base_context(request, rng, chosen, title, fixed=entity, **context)
    return _respond(request, "web/entity.html", context, name)


@page
def asn(request, asn: str):
    number = params.asn(asn)
    names = q.as_names([number])
    return _entity(request, title=q.asn_label(number, names), subtitle="origin AS", name=f"as{number}",
                   entity=Filters(origin_as=number),
                   splits=["router", "traffic_type", "neighbor_as", "prefix", "country"],
                   paths=True, sankey=True, uplinks_target={"asn": number},
                   facts=[("as the neighbour AS (transit or peer) of others",
                           reverse("web:neighbor", args=[number]) + "?" + urlencode(_keep(request)))])


@page
def neighbor(request, asn: str):
    number = params.asn(asn)
    names = q.as_names([number])
    return _entity(request, title=q.asn_label(number, names), subtitle="neighbour AS (the traffic it carries)",
                   name=f"neighbor-as{number}", entity=Filters(neighbor_as=number),
                   splits=["router", "traffic_type", "origin_as", "prefix", "country"], sankey=True,
                   facts=[("as an origin AS", reverse("web:asn", args=[number]) + "?" + urlencode(_keep(request)))])


@page
def country(request, code: str):
    cc = params.country(code)
    return _entity(request, title=q.country_label(cc), subtitle="country", name=f"country-{cc or 'unknown'}",
                   entity=Filters(country=cc), splits=["origin_as", "router", "traffic_type", "neighbor_as", "prefix"],
                   sankey=True, uplinks_target={"country": cc or "--"})


@page
def prefix(request, prefix: str):
    net = params.prefix(prefix)
    return _entity(request, title=q.prefix_label(net), subtitle="prefix", name="prefix-" + net.replace("/", "_").replace(":", "-"),
                   entity=Filters(prefix=net), splits=["router", "traffic_type", "origin_as", "neighbor_as", "country"])


@page
def router(request, router_id: int):
    router_id = params.router(str(router_id))
    # A router deleted since keeps its traffic in the archive: shown by id.
    title = q.router_names().get(router_id, f"router #{router_id}")
    return _entity(request, title=title, subtitle="router", name=f"router-{router_id}",
                   entity=Filters(router=router_id),
                   splits=["traffic_type", "neighbor_as", "origin_as", "country", "prefix"], sankey=True,
                   about=router_table(router_id))


def router_table(router_id: int) -> list[tuple[str, str, bool]]:
    """What the router page says of the router's active table and its last
    refresh, as (label, text, is_an_error) lines."""
    from ipr.routing.models import Router
    if router_id == 0:
        return [("routing table", "none: the traffic no router's table matched", False)]
    found = Router.objects.select_related("active_table").filter(pk=router_id).first()
    if found is None:
        return [("routing table", "none: this router was deleted; its traffic stays in the archive", False)]

    def when(t):
        return "never" if t is None else f"{t:%Y-%m-%d %H:%M} UTC"
    table = found.active_table
    if table is None:
        lines = [("active table", "none loaded yet", True)]
    else:
        lines = [("active table", f"version {table.pk}", False),
                 ("routes", units.human_int(table.routes), False),
                 ("prefixes", units.human_int(table.prefixes), False),
                 ("loaded", when(table.activated or table.created), False)]
    lines.append(("last refresh", when(found.refreshed_at), False))
    if found.refresh_error:
        lines.append(("its error", found.refresh_error, True))
    elif found.refreshed_at is not None:
        lines.append(("its outcome", "succeeded", False))
    return lines


@page
def traffic_type(request, name: str):
    name = params.traffic_type(name)
    return _entity(request, title=name, subtitle="traffic type", name=f"type-{name}",
                   entity=Filters(traffic_type=name),
                   splits=["router", "origin_as", "neighbor_as", "country", "prefix"], sankey=True)


def _keep(request) -> dict:
    # The range and every filter (a page whose path sets one of them ignores it).
    return {k: v for k, v in request.GET.items() if k in ("range", "from", "to", *params.FILTERS)}


# -- search -----------------------------------------------------------------------

ASN_RE = re.compile(r"^(?:AS\s*)?\d+(?:\.\d+)?$", re.I)


@page
def search(request):
    """An address (its prefix), a prefix, an ASN (AS64500, 64500, asdot) or
    a country code; else AS names that contain the text."""
    text = (request.GET.get("q") or "").strip()
    keep = _keep(request)
    suffix = ("?" + urlencode(keep)) if keep else ""
    if not text:
        return redirect(reverse("web:dashboard") + suffix)
    if "/" in text:
        return redirect(url_for("prefix", params.prefix(text, "q")) + suffix)
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        address = None
    if address is not None:
        found = prefix_of(str(address))
        if found:
            return redirect(url_for("prefix", found) + suffix)
        return render(request, "web/search.html", {"title": f"Search: {text}", "text": text, "message":
                      f"No prefix in the archive or in the routers' tables holds {address}.", "matches": []},
                      status=404)
    if ASN_RE.match(text):
        return redirect(url_for("origin_as", params.asn(text, "q")) + suffix)
    if len(text) == 2 and text.isalpha():
        return redirect(url_for("country", text.upper()) + suffix)
    from ipr.routing.models import ASName
    # (No AS name holds a NUL, which PostgreSQL text cannot store nor take.)
    matches = [] if "\x00" in text else list(ASName.objects.filter(name__icontains=text).order_by("asn")[:50])
    if len(matches) == 1:
        return redirect(url_for("origin_as", matches[0].asn) + suffix)
    rows = [{"label": q.asn_label(m.asn, {m.asn: m.name}), "url": url_for("origin_as", m.asn, keep)}
            for m in matches]
    return render(request, "web/search.html", {"title": f"Search: {text}", "text": text, "matches": rows, "message":
                  "" if rows else "Not an address, prefix, AS number, country code or AS name."},
                  status=200 if rows else 404)


def prefix_of(address: str) -> str | None:
    """The most specific prefix holding ``address``: as the archive recorded
    it (the prefix tables over all routers), else as a router's active table has it."""
    addr = ipaddress.ip_address(address)
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            # The most specific of the archive's prefixes that contains it;
            # sentinels (/0) only when nothing else does.
            cur.execute("SELECT prefix::text FROM traffic_prefix_all_day WHERE prefix >>= %s::inet "
                        "AND masklen(prefix) > 0 ORDER BY masklen(prefix) DESC LIMIT 1", [address])
            row = cur.fetchone()
            if row is None:
                cur.execute("SELECT prefix::text FROM traffic_prefix_all_hour WHERE prefix >>= %s::inet "
                            "AND masklen(prefix) > 0 ORDER BY masklen(prefix) DESC LIMIT 1", [address])
                row = cur.fetchone()
            if row:
                return row[0]
    else:
        best = None
        with connection.cursor() as cur:
            cur.execute("SELECT DISTINCT prefix FROM traffic_prefix_all_day UNION SELECT DISTINCT prefix "
                        "FROM traffic_prefix_all_hour")
            for (text,) in cur.fetchall():
                net = ipaddress.ip_network(text)
                if net.prefixlen and net.version == addr.version and addr in net and \
                        (best is None or net.prefixlen > best.prefixlen):
                    best = net
        if best is not None:
            return str(best)
    try:
        from ipr.routing.lookup import resolver
        found = [r["prefix"] for r in resolver().explain(address) if r.get("prefix")]
    except Exception:  # no router table loaded yet
        found = []
    if found:
        return max(found, key=lambda p: ipaddress.ip_network(p).prefixlen)
    return None


# -- reports ----------------------------------------------------------------------

@page
def reports_index(request):
    rng, filters = _request_state(request)
    return render(request, "web/reports.html", _base_context(request, rng, filters, "Reports"))


@page
def report_top_asns(request):
    rng, filters = _request_state(request)
    by = params.choice(request.GET, "by", reports.TOP_ASNS_BY, "origin_as")
    limit = params.integer(request.GET, "limit", 100, 1, reports.TOP_ASNS_MAX)
    result = reports.top_asns(rng, filters, limit, by)
    table = top_table("top", f"Top {limit} {'origin' if by == 'origin_as' else 'neighbour'} ASes", result,
                      {**rng.params(), **_page_filters(filters)},
                      extra=[Column("cumulative", "cumulative", "pct")])
    table.columns.insert(0, Column("rank", "#", "int"))
    cov = Table("coverage", "How many ASes carry the bytes",
                [Column("level", "share of bytes", "pct"), Column("groups", "ASes", "int")],
                [{"level": lv["share"], "groups": lv["groups"]} for lv in result["coverage"]["levels"]],
                note=f"{result['coverage']['count']} ASes in all.")
    context = _base_context(request, rng, filters, "Top ASNs", tables=[table, cov], by=by, limit=limit,
                            coverage=result["coverage"])
    return _respond(request, "web/report.html", context, "top-asns")


@page
def report_peering(request):
    rng, filters = _request_state(request)
    limit = params.integer(request.GET, "limit", 50, 1, reports.PEERING_MAX)
    result = reports.peering_candidates(rng, filters, limit)
    link = {**rng.params(), **_page_filters(filters)}
    for row in result["rows"]:
        row["url"] = url_for("origin_as", row["key"], link)
    table = Table("candidates", "Origin ASes reached through another AS",
                  [Column("rank", "#", "int"), Column("key", "origin AS", "link"),
                   Column("bytes", "bytes via others", "bytes"), Column("bps", "avg bits/s", "bps"),
                   Column("share", "of all traffic", "pct"),
                   Column("transit_share", "of its traffic", "pct", "bytes through another AS / all its bytes"),
                   Column("retrans_rate", "retransmits", "pct"), Column("rtt_p50_ms", "RTT p50", "ms"),
                   Column("rtt_p95_ms", "RTT p95", "ms"),
                   Column("transits_text", "carried in the last 24 h by")],
                  result["rows"], dim="origin_as")
    note = (f"{units.human_pct(result['transit_share'])} of the range's bytes went through another AS "
            "(neighbour AS ≠ origin AS; unknown AS 0 excluded).")
    context = _base_context(request, rng, filters, "Peering candidates", tables=[table], note=note)
    return _respond(request, "web/report.html", context, "peering")


@page
def report_countries(request):
    month = request.GET.get("month")
    rng = params.month(request.GET)  # checked even when range or from wins
    if request.GET.get("range") or request.GET.get("from"):
        rng = params.range_of(request.GET)
    filters = params.filters_of(request.GET)
    result = reports.country_report(rng, filters)
    link = {**rng.params(), **_page_filters(filters)}
    for row in result["rows"]:
        row["top_asn_url"] = url_for("origin_as", row["top_asn"], link)
    table = top_table("countries", f"Countries, {rng.label}", result, link)
    # This period's bytes, then the period before's and the change; the
    # largest origin AS (a link to its page) last.
    after_bytes = next(i for i, c in enumerate(table.columns) if c.key == "bytes") + 1
    table.columns[after_bytes:after_bytes] = [Column("previous_bytes", "bytes, period before", "bytes"),
                                              Column("change", "change", "pct")]
    table.columns += [Column("top_asn", "largest origin AS", "link"),
                      Column("top_asn_share", "its share", "pct", "of the country's bytes")]
    # One period control: the month menu, in the range picker's place (an
    # explicit range= or from= still picks any other period).
    context = _base_context(request, rng, filters, "Countries report", tables=[table],
                            months=reports.months(), month=month or (None if request.GET.get("range") or
                                                                      request.GET.get("from") else
                                                                      f"{rng.start:%Y-%m}"),
                            country_chart=chart_bars("country-bars", "Countries by bytes",
                                                     {"by": "country", "rows": result["rows"][:25]}),
                            country_map=chart_map("country-map", "Countries by bytes (map)", result))
    return _respond(request, "web/report.html", context, f"countries-{rng.start:%Y-%m}")


@page
def report_quality(request):
    rng, filters = _request_state(request)
    by = params.choice(request.GET, "by", reports.QUALITY_BY, "origin_as")
    min_share = params.fraction(request.GET, "min_share", reports.MIN_SHARE)
    result = reports.quality_report(rng, by, filters, 25, min_share)
    link = {**rng.params(), **_page_filters(filters)}
    shaped = {"by": by, "other": None, "total": result["total"]}
    tables = [top_table("retrans", "Worst retransmit rate", {**shaped, "rows": result["worst_retrans"]}, link),
              top_table("rtt", "Worst RTT p95", {**shaped, "rows": result["worst_rtt"]}, link)]
    for t in tables:
        t.foot = [result["total"]]
    th = result["threshold"]
    note = (f"Ranked: the {result['eligible']} of {result['count']} groups with at least "
            f"{th['min_share'] * 100:g} % of the bytes ({units.human_bytes(th['min_bytes'])}), "
            f"{th['min_samples']} RTT samples and {th['min_segments']} data segments.")
    context = _base_context(request, rng, filters, "Delivery quality", tables=tables, note=note, by=by)
    return _respond(request, "web/report.html", context, "quality")


@page
def report_uplinks(request):
    rng, asked = _request_state(request)
    asn_text, cc = request.GET.get("asn"), request.GET.get("country")
    # The destination is ?asn=, else ?country=; when both are given the
    # country is a filter, as router, type, neighbor and prefix are.
    target = Filters(origin_as=params.asn(asn_text)) if asn_text else \
        Filters(country=params.country(cc)) if cc is not None else Filters()
    filters = asked.with_(**{d: None for d in target.dims()})
    context = _base_context(request, rng, filters, "Uplink comparison", target=target, asn_text=asn_text or "",
                            country_text=cc or "")
    if not target.dims():
        return render(request, "web/uplinks.html", context)
    result = reports.uplinks(rng, target, filters)
    link = {**rng.params(), **_page_filters(filters)}
    compare = [Column("retrans_vs_all", "retransmits vs all", "pp", "minus the destination's overall rate"),
               Column("p95_vs_all", "p95 vs all", "ms_change", "minus the destination's overall p95")]
    neighbors = top_table("neighbors", "Per neighbour AS", result["neighbors"], link, extra=[])
    routers = top_table("routers", "Per router", result["routers"], link, extra=[])
    for t, r in ((neighbors, result["neighbors"]), (routers, result["routers"])):
        t.columns += compare
        best = r["best"]
        for row in t.rows:
            marks = []
            if best.get("retrans_rate") == row["key"]:
                marks.append("fewest retransmits")
            if best.get("rtt_p95_ms") == row["key"]:
                marks.append("lowest p95")
            row["best"] = ", ".join(marks)
        t.columns.append(Column("best", "best"))
    grid = Table("grid", "Per router and neighbour AS", [Column("label", "router via neighbour")] + QUALITY,
                 result["grid"], [result["total"]])
    sn, sr = result["series_neighbors"], result["series_routers"]
    charts = [
        chart_series("n-bps", "Traffic per neighbour AS", sn, "bps", "bps", kind="area"),
        chart_series("n-retrans", "Retransmit rate per neighbour AS", sn, "retrans_rate", "pct"),
        chart_series("n-p95", "RTT p95 per neighbour AS", sn, "rtt_p95_ms", "ms"),
        chart_series("r-retrans", "Retransmit rate per router", sr, "retrans_rate", "pct"),
        chart_series("r-p95", "RTT p95 per router", sr, "rtt_p95_ms", "ms"),
    ]
    if target.origin_as is not None:
        dest = q.asn_label(target.origin_as, q.as_names([target.origin_as]))
        dest_url = url_for("origin_as", target.origin_as, link)
    else:
        dest, dest_url = q.country_label(target.country), url_for("country", target.country, link)
    context.update(tables=[neighbors, routers, grid], charts=charts, result=result, destination=dest,
                   destination_url=dest_url, total=result["total"], min_share=reports.UPLINK_MIN_SHARE)
    return _respond(request, "web/uplinks.html", context, "uplinks")

