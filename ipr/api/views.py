"""The REST API: thin views over ipr.web.queries.

Each view checks its query parameters (an unknown one, or a bad value, is a
400 that says which and why), builds the query layer's Range and Filters,
and returns what the query layer returns. No SQL here: the pages and the
API read the same functions, so they show the same numbers. Every value is
parsed and bounded by ipr.web.params, as the pages parse it. A view whose
answer is a table also answers it as CSV: its ``csv_table`` says which
columns and rows (ipr.api.renderers).
"""
import math
from functools import cache
from pathlib import Path

from django.contrib.staticfiles import finders
from django.db.models import Prefetch
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics
from rest_framework.exceptions import NotFound, ParseError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from ipr.api import serializers as s
from ipr.api.renderers import FIGURES, CSVTable
from ipr.routing.models import ASName, Router, ServedNetwork
from ipr.web import params as p, queries, regress, regress_views, reports
from ipr.web.queries import QueryError

# -- parameters ------------------------------------------------------------------

# What the schema says of the parameters' spelling, so that a client (or a
# generated test) knows what is accepted; the views still check every value.
TIME_PATTERN = (r"^([0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?"
                r"(Z|[+-][0-9]{2}:?[0-9]{2})?)?)?$")
BIGINT_MAX = p.ROUTER_MAX
ASN_SCHEMA = {"type": "string", "pattern": r"^(([Aa][Ss])?[0-9]{1,10}|([Aa][Ss])?[0-9]{1,5}\.[0-9]{1,5})?$"}
COUNTRY_SCHEMA = {"type": "string", "pattern": "^([A-Za-z]{2}|--)?$"}

RANGE_PARAMS = [
    OpenApiParameter("range", str, enum=list(queries.PRESETS),
                     description=f"A preset range ending now (default {queries.DEFAULT_PRESET}). "
                                 "Ignored when `from` is given."),
    OpenApiParameter("from", {"type": "string", "pattern": TIME_PATTERN},
                     description="Start, ISO 8601 date or time (UTC unless an offset is given), "
                                 "e.g. 2026-03-01 or 2026-03-01T10:00Z; from 1970-01-01 to 2100-01-01."),
    OpenApiParameter("to", {"type": "string", "pattern": TIME_PATTERN},
                     description="End (exclusive; default now), at most 2100-01-01. A date alone means "
                                 "the end of that day."),
]
FILTER_PARAMS = {
    "router": OpenApiParameter("router", {"type": "integer", "minimum": 0, "maximum": BIGINT_MAX}, description="Router id (0: no router serves the server)."),
    "type": OpenApiParameter("type", {"type": "string", "pattern": "^[!-~]{0,16}$"}, description="Traffic type, as sent by the agents."),
    "asn": OpenApiParameter("asn", ASN_SCHEMA, description="Origin AS: 64500, AS64500 or asdot 1.10 "
                            "(0: no AS, unrouted or special-purpose)."),
    "neighbor": OpenApiParameter("neighbor", ASN_SCHEMA, description="Neighbour AS (the transit or peer)."),
    "country": OpenApiParameter("country", COUNTRY_SCHEMA, description="ISO 3166 alpha-2 code; `--` for unknown."),
    "prefix": OpenApiParameter("prefix", str, description="A prefix as the routing table has it, e.g. 192.0.2.0/24."),
}
ALL_FILTERS = list(FILTER_PARAMS)


def limit_param(default: int, high: int) -> OpenApiParameter:
    return OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": high}, description=f"How many groups (1..{high}, default {default}).")


ORDER_PARAM = OpenApiParameter("order", str, enum=list(queries.ORDERS),
                               description="Largest bytes or requests first, or worst retransmit rate / mean RTT "
                                           "first (default bytes).")
SPLIT_PARAM = OpenApiParameter("split", str, enum=[d for d in queries.DIMENSIONS if d != "as_path"],
                               description="One series per group of this dimension, plus 'other'.")
TOP_DIMENSIONS = list(queries.DIMENSIONS)
NEEDS_A_VALUE = {"range", "router", "limit", "order", "split", "by", "min_share"}


def answers(ok, not_found: bool = False) -> dict:
    """The responses of an archive endpoint, for the schema."""
    out = {200: ok,
           400: OpenApiResponse(s.ErrorSerializer, "A parameter is unknown, repeated or has a bad value."),
           401: OpenApiResponse(s.ErrorSerializer, "No credentials, or bad ones.")}
    if not_found:
        out[404] = OpenApiResponse(s.ErrorSerializer, "No such dimension, AS number or country code.")
    return out


class BadValuesAre400:
    """A bad parameter value (ipr.web.params, the query layer) is a 400."""

    def handle_exception(self, exc):
        if isinstance(exc, QueryError):
            exc = ParseError(str(exc))
        return super().handle_exception(exc)


class ArchiveView(BadValuesAre400, APIView):
    """A view over the archive. Subclasses name their extra parameters and
    the filters they take; ``get`` gets the parsed range and filters."""
    extra_params: tuple[str, ...] = ()
    filters_taken: list[str] = ALL_FILTERS
    fixed: dict = {}  # filter parameters the URL sets (an ASN or a country page)

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authentication first: no 400 before a 401
        allowed = {"range", "from", "to", "format"} | set(self.filters_taken) | set(self.extra_params)
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            raise ParseError(f"unknown parameter(s): {', '.join(unknown)}; this endpoint takes "
                             f"{', '.join(sorted(allowed - {'format'}))}")
        for name in request.query_params:
            if len(request.query_params.getlist(name)) > 1:
                raise ParseError(f"parameter {name!r} is given more than once")
            # A number or a choice must have a value; an empty filter or
            # time (as a form sends it) means "not given", as on the pages.
            if name in NEEDS_A_VALUE and request.query_params[name] == "":
                raise ParseError(f"{name}: give a value, or leave the parameter out")

    def parse(self, request, **fixed) -> tuple[queries.Range, queries.Filters]:
        """The range and filters, checked as the pages check them
        (ipr.web.params); ``fixed``: the Filters fields the path sets."""
        return (p.range_of(request.query_params),
                p.filters_of(request.query_params, self.filters_taken, **fixed))

    @staticmethod
    def int_param(request, name: str, default: int, low: int, high: int) -> int:
        return p.integer(request.query_params, name, default, low, high)

    @staticmethod
    def choice_param(request, name: str, choices, default):
        return p.choice(request.query_params, name, choices, default)


# -- the tables of the answers, for their CSV form ------------------------------------

ROW = ["key", "label", "share"]


def top_rows(result: dict) -> list[dict]:
    """A top-N's rows, then its other and total rows (as the pages' CSV)."""
    return result["rows"] + [r for r in (result.get("other"), result.get("total")) if r is not None]


def top_csv(extra: tuple[str, ...] = (), first: tuple[str, ...] = ()):
    """``csv_table`` of a view that answers a top-N: ``first`` before the
    key, ``extra`` after the share, then the figures."""
    def csv_table(self, data):
        return [*first, *ROW, *extra, *FIGURES], top_rows(data)
    return csv_table


def _without_table(d):
    # Which table answered is the query layer's business, not the API's.
    if isinstance(d, dict):
        return {k: _without_table(v) for k, v in d.items() if k != "table"}
    if isinstance(d, list):
        return [_without_table(v) for v in d]
    return d


# -- traffic ------------------------------------------------------------------------

class TotalsView(CSVTable, ArchiveView):
    def csv_table(self, data):
        return FIGURES, [data]

    @extend_schema(summary="Totals over a range", parameters=RANGE_PARAMS + list(FILTER_PARAMS.values()),
                   responses=answers(s.TotalsSerializer), tags=["traffic"])
    def get(self, request):
        rng, filters = self.parse(request)
        return Response({**_without_table(queries.totals(rng, filters)),
                         "range": rng.as_dict(), "filters": filters.as_dict()})


class SeriesView(CSVTable, ArchiveView):
    extra_params = ("split", "limit")

    def csv_table(self, data):
        """One row per bucket and series: time, key, label, figures."""
        fields = ["bytes", "bps", "requests", "retrans_rate", "rtt_mean_ms", "rtt_p50_ms", "rtt_p95_ms"]
        rows = [{"time": t, "key": one["key"], "label": one["label"], **{f: one[f][i] for f in fields}}
                for one in data["series"] for i, t in enumerate(data["times"])]
        return ["time", "key", "label", *fields], rows

    @extend_schema(summary="Time series", parameters=RANGE_PARAMS + list(FILTER_PARAMS.values()) +
                   [SPLIT_PARAM, limit_param(8, 50)], responses=answers(s.SeriesSerializer), tags=["traffic"])
    def get(self, request):
        rng, filters = self.parse(request)
        split = self.choice_param(request, "split", SPLIT_PARAM.enum, None)
        limit = self.int_param(request, "limit", 8, 1, 50)
        return Response(_without_table(queries.series(rng, filters, split=split, limit=limit)))


class TopView(CSVTable, ArchiveView):
    extra_params = ("limit", "order")
    csv_table = top_csv()

    @extend_schema(summary="Top-N by a dimension, with 'other' and the total",
                   parameters=[OpenApiParameter("by", str, OpenApiParameter.PATH, enum=TOP_DIMENSIONS)] +
                   RANGE_PARAMS + list(FILTER_PARAMS.values()) + [limit_param(10, 1000), ORDER_PARAM],
                   responses=answers(s.TopSerializer, not_found=True), tags=["traffic"])
    def get(self, request, by):
        if by not in TOP_DIMENSIONS:
            raise NotFound(f"no top-N by {by!r}: expected one of {', '.join(TOP_DIMENSIONS)}")
        rng, filters = self.parse(request)
        limit = self.int_param(request, "limit", 10, 1, 1000)
        order = self.choice_param(request, "order", queries.ORDERS, "bytes")
        if by == "as_path":
            return Response(_without_table(queries.paths(rng, filters, limit=limit)))
        return Response(_without_table(queries.top(rng, by, filters, limit=limit, order=order)))


class FlowsView(CSVTable, ArchiveView):
    extra_params = ("limit",)

    def csv_table(self, data):
        """One row per link: its two nodes (id and label) and its bytes."""
        nodes = data["nodes"]
        rows = [{"source": nodes[link["source"]]["id"], "source_label": nodes[link["source"]]["label"],
                 "target": nodes[link["target"]]["id"], "target_label": nodes[link["target"]]["label"],
                 "bytes": link["bytes"]} for link in data["links"]]
        return ["source", "source_label", "target", "target_label", "bytes"], rows

    @extend_schema(summary="Router → neighbour AS → origin AS flows (for a Sankey diagram)",
                   parameters=RANGE_PARAMS + list(FILTER_PARAMS.values()) + [limit_param(15, 200)],
                   responses=answers(s.FlowsSerializer), tags=["traffic"])
    def get(self, request):
        rng, filters = self.parse(request)
        return Response(queries.flows(rng, filters, limit=self.int_param(request, "limit", 15, 1, 200)))


def _parse_asn(text: str) -> int:
    try:
        return queries.parse_asn(text)
    except QueryError as exc:
        raise NotFound(str(exc)) from None


class AsnView(ArchiveView):
    filters_taken = ["router", "type", "neighbor"]
    extra_params = ("limit",)

    @extend_schema(summary="One origin AS: its series, and its traffic by router, type, neighbour AS, "
                           "prefix, country and AS path",
                   parameters=[OpenApiParameter("asn", ASN_SCHEMA, OpenApiParameter.PATH,
                                                description="64500, AS64500 or asdot 1.10")] + RANGE_PARAMS +
                   [FILTER_PARAMS[n] for n in filters_taken] + [limit_param(10, 1000)],
                   responses=answers(s.AsnDetailSerializer, not_found=True), tags=["detail"])
    def get(self, request, asn):
        asn = _parse_asn(asn)
        rng, filters = self.parse(request, origin_as=asn)
        limit = self.int_param(request, "limit", 10, 1, 1000)
        names = queries.as_names([asn])
        path_filters = filters.with_(country=None, prefix=None)
        return Response({
            "asn": asn, "label": queries.asn_label(asn, names), "name": names.get(asn),
            "totals": _without_table(queries.totals(rng, filters)),
            "series": _without_table(queries.series(rng, filters, split="router")),
            **{f"by_{by}": _without_table(queries.top(rng, by, filters, limit=limit))
               for by in ("router", "traffic_type", "neighbor_as", "prefix", "country")},
            "paths": _without_table(queries.paths(rng, path_filters, limit=limit)),
            "range": rng.as_dict(), "filters": filters.as_dict(),
        })


class CountryView(ArchiveView):
    filters_taken = ["router", "type"]
    extra_params = ("limit",)

    @extend_schema(summary="One country: its series, and its traffic by origin AS, neighbour AS, router and type",
                   parameters=[OpenApiParameter("country", COUNTRY_SCHEMA, OpenApiParameter.PATH,
                                                description="ISO 3166 alpha-2 code; `--` for unknown")] +
                   RANGE_PARAMS + [FILTER_PARAMS[n] for n in filters_taken] + [limit_param(10, 1000)],
                   responses=answers(s.CountryDetailSerializer, not_found=True), tags=["detail"])
    def get(self, request, country):
        try:
            code = queries.parse_country(country)
        except QueryError as exc:
            raise NotFound(str(exc)) from None
        rng, filters = self.parse(request, country=code)
        limit = self.int_param(request, "limit", 10, 1, 1000)
        return Response({
            "country": code, "label": queries.country_label(code),
            "totals": _without_table(queries.totals(rng, filters)),
            "series": _without_table(queries.series(rng, filters, split="router")),
            **{f"by_{by}": _without_table(queries.top(rng, by, filters, limit=limit))
               for by in ("origin_as", "neighbor_as", "router", "traffic_type")},
            "range": rng.as_dict(), "filters": filters.as_dict(),
        })


class TopAsnsReport(CSVTable, ArchiveView):
    extra_params = ("limit", "by")
    csv_table = top_csv(extra=("cumulative",), first=("rank",))

    @extend_schema(summary="Report: top ASes with their cumulative share, and how many ASes carry 50/90/99% "
                           "of the bytes",
                   parameters=RANGE_PARAMS + list(FILTER_PARAMS.values()) + [
                       limit_param(100, reports.TOP_ASNS_MAX),
                       OpenApiParameter("by", str, enum=["origin_as", "neighbor_as"],
                                        description="Origin ASes (default) or neighbour ASes.")],
                   responses=answers(s.TopAsnsSerializer), tags=["reports"])
    def get(self, request):
        rng, filters = self.parse(request)
        limit = self.int_param(request, "limit", 100, 1, reports.TOP_ASNS_MAX)
        by = self.choice_param(request, "by", reports.TOP_ASNS_BY, "origin_as")
        return Response(_without_table(reports.top_asns(rng, filters, limit, by)))


class PeeringReport(CSVTable, ArchiveView):
    extra_params = ("limit",)

    def csv_table(self, data):
        return ["rank", *ROW, "transit_share", "transits_text", *FIGURES], data["rows"]

    @extend_schema(summary="Report: peering candidates, the origin ASes most reached through another AS",
                   parameters=RANGE_PARAMS + list(FILTER_PARAMS.values()) + [limit_param(50, reports.PEERING_MAX)],
                   responses=answers(s.PeeringSerializer), tags=["reports"])
    def get(self, request):
        rng, filters = self.parse(request)
        limit = self.int_param(request, "limit", 50, 1, reports.PEERING_MAX)
        return Response(_without_table(reports.peering_candidates(rng, filters, limit)))


class CountriesReport(CSVTable, ArchiveView):
    extra_params = ("month",)
    csv_table = top_csv(extra=("previous_bytes", "change", "top_asn", "top_asn_label", "top_asn_share"))

    @extend_schema(summary="Report: every country over a month (or range), against the period before",
                   parameters=[OpenApiParameter("month", {"type": "string", "pattern": "^([0-9]{4}-[0-9]{2})?$"},
                                                description="YYYY-MM, 1970-01..2099-12 (default: this month), "
                                                "unless `range` or `from` is given.")] +
                   RANGE_PARAMS + list(FILTER_PARAMS.values()),
                   responses=answers(s.CountryReportSerializer), tags=["reports"])
    def get(self, request):
        params = request.query_params
        rng, filters = self.parse(request)
        by_month = p.month(params)  # checked even when range or from wins
        if not (params.get("range") or params.get("from")):
            rng = by_month
        return Response(_without_table(reports.country_report(rng, filters)))


QUALITY_BY = list(reports.QUALITY_BY)


class DeliveryReport(CSVTable, ArchiveView):
    extra_params = ("by", "limit", "min_share")

    def csv_table(self, data):
        """Both rankings, each row saying which (``worst``: retrans_rate or
        rtt_p95_ms), then the total (``worst`` empty)."""
        rows = ([{**r, "worst": "retrans_rate"} for r in data["worst_retrans"]] +
                [{**r, "worst": "rtt_p95_ms"} for r in data["worst_rtt"]] + [data["total"]])
        return ["worst", *ROW, *FIGURES], rows

    @extend_schema(summary="Report: delivery quality, the groups with the worst retransmit rate and RTT p95",
                   parameters=RANGE_PARAMS + list(FILTER_PARAMS.values()) + [
                       OpenApiParameter("by", str, enum=QUALITY_BY, description="What to rank (default origin_as)."),
                       limit_param(25, 1000),
                       OpenApiParameter("min_share", {"type": "number", "minimum": 0, "maximum": 1}, description="Rank only groups with at least this "
                                        f"share of the bytes (0..1, default {reports.MIN_SHARE}).")],
                   responses=answers(s.QualitySerializer), tags=["reports"])
    def get(self, request):
        rng, filters = self.parse(request)
        by = self.choice_param(request, "by", QUALITY_BY, "origin_as")
        limit = self.int_param(request, "limit", 25, 1, 1000)
        min_share = p.fraction(request.query_params, "min_share", reports.MIN_SHARE)
        return Response(_without_table(reports.quality_report(rng, by, filters, limit, min_share)))


class UplinksReport(CSVTable, ArchiveView):
    filters_taken = ["router", "type", "neighbor", "prefix"]
    extra_params = ("asn", "country")

    def csv_table(self, data):
        """The destination per neighbour AS, per router, per router ×
        neighbour (``by``), then its total; the series are left out."""
        rows = ([{**r, "by": "neighbor_as", "neighbor_as": r["key"]} for r in data["neighbors"]["rows"]] +
                [{**r, "by": "router", "router": r["key"]} for r in data["routers"]["rows"]] +
                [{**r, "by": "router_neighbor_as", "key": f"{r['router']} {r['neighbor_as']}"}
                 for r in data["grid"]] + [{**data["total"], "by": "total"}])
        return ["by", *ROW, "router", "neighbor_as", "retrans_vs_all", "p95_vs_all", *FIGURES], rows

    @extend_schema(summary="Report: one destination (an origin AS or a country) per neighbour AS and router, "
                           "with delivery quality side by side",
                   parameters=[OpenApiParameter("asn", ASN_SCHEMA, description="The destination origin AS (or `country`)."),
                               OpenApiParameter("country", COUNTRY_SCHEMA,
                                                description="The destination country (or `asn`).")] +
                   RANGE_PARAMS + [FILTER_PARAMS[n] for n in filters_taken],
                   responses=answers(s.UplinksSerializer), tags=["reports"])
    def get(self, request):
        rng, filters = self.parse(request)
        asn, country = request.query_params.get("asn"), request.query_params.get("country")
        if bool(asn) == (country is not None):
            raise ParseError("give the destination as asn or as country (one of them)")
        target = queries.Filters(origin_as=p.asn(asn) if asn else None,
                                 country=p.country(country) if country is not None else None)
        return Response(_without_table(reports.uplinks(rng, target, filters)))


def _finite(x):
    return None if isinstance(x, float) and not math.isfinite(x) else x


def regression_answer(result: dict, link: dict) -> dict:
    """ipr.web.regress.regressions' result in JSON's terms: a tuple key also
    as its named parts, no infinite number (null), and each finding's
    uplink comparison page."""
    kind = result["kind"]
    parts = {"prefix": ("prefix", "origin_as"), "uplink": ("router", "neighbor_as")}.get(kind, ())
    findings = []
    for f in result["findings"]:
        key = f["key"]
        findings.append({**{k: _finite(v) for k, v in f.items() if k != "kind"},
                         **(dict(zip(parts, key)) if parts else {}), "key": list(key) if parts else key,
                         "compare_url": regress_views.compare_url(kind, key, link)})
    return {**result, "findings": findings}


class RegressionsReport(CSVTable, ArchiveView):
    extra_params = ("kind", "baseline", "limit")

    def csv_table(self, data):
        return ["kind", "key", "label", "router", "neighbor_as", "prefix", "origin_as", "measure", "before", "now",
                "change", "factor", "z", "bytes", "requests", "requests_before", "compare_url"], \
            [{**f, "kind": data["kind"], "key": regress_views.csv_key(data["kind"], f["key"])}
             for f in data["findings"]]

    @extend_schema(summary="Report: what got worse, the groups whose delivery worsened against a baseline, "
                           "worst first (docs/regressions.md)",
                   parameters=RANGE_PARAMS + list(FILTER_PARAMS.values()) + [
                       OpenApiParameter("kind", str, enum=list(regress.KINDS),
                                        description="What to compare (default origin_as)."),
                       OpenApiParameter("baseline", str, enum=list(regress.BASELINES),
                                        description="The same hours this long before (default "
                                                    f"{regress.DEFAULT_BASELINE})."),
                       limit_param(50, 1000)],
                   responses=answers(s.RegressionsSerializer), tags=["reports"])
    def get(self, request):
        rng, filters = self.parse(request)
        kind = self.choice_param(request, "kind", list(regress.KINDS), "origin_as")
        baseline = self.choice_param(request, "baseline", list(regress.BASELINES), regress.DEFAULT_BASELINE)
        limit = self.int_param(request, "limit", 50, 1, 1000)
        link = {**rng.params(), **{k: v for k, v in filters.params().items() if k in ("router", "type")}}
        return Response(regression_answer(regress.regressions(rng, kind, filters, baseline, limit), link))


# -- metadata -------------------------------------------------------------------------

class RouterList(CSVTable, generics.ListAPIView):
    """Routers, with the networks they serve and their active table."""

    def csv_table(self, data):
        return list(s.RouterSerializer.Meta.fields), data
    serializer_class = s.RouterSerializer
    pagination_class = None
    queryset = Router.objects.select_related("active_table").prefetch_related(
        Prefetch("served_networks", ServedNetwork.objects.order_by("network")))

    @extend_schema(tags=["metadata"])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class TrafficTypeList(CSVTable, APIView):
    def csv_table(self, data):
        return list(s.TrafficTypeSerializer().fields), data

    @extend_schema(summary="Traffic types: those named in the admin and those in the archive",
                   responses=s.TrafficTypeSerializer(many=True), tags=["metadata"])
    def get(self, request):
        return Response(s.TrafficTypeSerializer.rows(queries.known_types()))


AS_NAMES_MAX = 1000


class ASNamePagination(LimitOffsetPagination):
    max_limit = AS_NAMES_MAX

    def get_schema_operation_parameters(self, view):
        bounds = {"limit": (1, AS_NAMES_MAX), "offset": (0, BIGINT_MAX)}
        out = super().get_schema_operation_parameters(view)
        for param in out:
            low, high = bounds[param["name"]]
            param["schema"].update(minimum=low, maximum=high)
        return out


class ASNameList(CSVTable, BadValuesAre400, generics.ListAPIView):
    """AS names (from the AS names data source), by number or by name."""

    def csv_table(self, data):
        """The page's names (``limit`` and ``offset`` page through them)."""
        return list(s.ASNameSerializer.Meta.fields), data["results"]
    serializer_class = s.ASNameSerializer
    pagination_class = ASNamePagination

    @extend_schema(parameters=[OpenApiParameter("asn", ASN_SCHEMA, description="One AS: 64500, AS64500 or asdot"),
                               OpenApiParameter("search", str, description="Part of the name, any case")],
                   responses={200: s.ASNameSerializer(many=True),
                              400: OpenApiResponse(s.ErrorSerializer, "An unknown parameter or a bad AS number.")},
                   tags=["metadata"])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        qs = ASName.objects.order_by("asn")
        params = self.request.query_params
        unknown = set(params) - {"asn", "search", "limit", "offset", "format"}
        if unknown:
            raise ParseError(f"unknown parameter(s): {', '.join(sorted(unknown))}; this endpoint takes "
                             "asn, search, limit, offset")
        for name in params:
            if len(params.getlist(name)) > 1:
                raise ParseError(f"parameter {name!r} is given more than once")
        # The paginator would quietly ignore a bad limit or offset.
        for name in ("limit", "offset"):
            if name in params and not params[name].isdigit():
                raise ParseError(f"{name}: {params[name]!r} is not a whole number")
        p.integer(params, "limit", 100, 1, AS_NAMES_MAX)
        p.integer(params, "offset", 0, 0, BIGINT_MAX)  # PostgreSQL's OFFSET is a bigint
        if params.get("asn"):
            qs = qs.filter(asn=p.asn(params["asn"]))
        if params.get("search"):
            if "\x00" in params["search"]:
                # PostgreSQL text cannot hold one, so no name has one (and it
                # cannot be a query parameter either).
                raise ParseError("search: an AS name has no NUL character")
            qs = qs.filter(name__icontains=params["search"])
        return qs


class ApiRoot(APIView):
    @extend_schema(exclude=True)
    def get(self, request, format=None):
        def link(name, **kwargs):
            return reverse(name, kwargs=kwargs or None, request=request, format=format)
        return Response({
            "totals": link("api-totals"), "series": link("api-series"),
            "top": {by: link("api-top", by=by) for by in TOP_DIMENSIONS},
            "flows": link("api-flows"),
            "asn": link("api-asn", asn="AS64500"), "country": link("api-country", country="FR"),
            "reports": {"top_asns": link("api-report-top-asns"), "peering": link("api-report-peering"),
                        "countries": link("api-report-countries"), "delivery": link("api-report-delivery"),
                        "uplinks": link("api-report-uplinks"), "regressions": link("api-report-regressions")},
            "routers": link("api-routers"), "traffic_types": link("api-traffic-types"),
            "as_names": link("api-as-names"),
            "schema": link("api-schema"), "docs": link("api-docs"),
        })


# -- the Redoc page's bundle ------------------------------------------------------------

REDOC_BUNDLE = "drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"
# Redoc's sidebar always draws the vendor's logo from its CDN; ipr's pages
# load nothing from another host, so the bundle is served with that address
# replaced by an empty image, which Redoc hides when it does not load.
REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"


@cache
def _redoc_bundle() -> bytes:
    return Path(finders.find(REDOC_BUNDLE)).read_bytes().replace(REDOC_LOGO, b"data:,")


def redoc_bundle(request):
    """The sidecar package's Redoc bundle without the CDN logo (public, as
    every static file is)."""
    return HttpResponse(_redoc_bundle(), content_type="text/javascript; charset=utf-8",
                        headers={"Cache-Control": "public, max-age=86400"})
