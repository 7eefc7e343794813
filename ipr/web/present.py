"""Tables and charts as the pages show them, and every table as CSV.

A page is a list of :class:`Table` (and chart specs). The template renders
a table's cells with the units of its columns; ``?format=csv&table=NAME``
answers the same table's raw values (bytes as integers, rates as fractions,
RTT in ms), so what is downloaded is what is shown.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime

from django.http import HttpResponse
from django.urls import reverse
from django.utils.http import urlencode

from ipr.routing import special
from ipr.web import params, units

FORMAT = {"bytes": units.human_bytes, "bps": units.human_bps, "pct": units.human_pct,
          "ms": units.human_ms, "int": units.human_int, "pp": units.human_pp,
          "ms_change": units.human_ms_change}


@dataclass
class Column:
    key: str
    label: str
    kind: str = "text"      # text, link, bytes, bps, pct, ms, int
    help: str = ""

    @property
    def numeric(self) -> bool:
        return self.kind in FORMAT


@dataclass
class Table:
    name: str                       # the ?table= of its CSV
    title: str
    columns: list[Column]
    rows: list[dict]
    foot: list[dict] = field(default_factory=list)   # 'other' and 'total' rows
    note: str = ""
    dim: str | None = None          # what the key column holds (origin_as, country, ...): its rows filter by it

    def cells(self, rows):
        for row in rows:
            out = []
            for c in self.columns:
                value = row.get(c.key)
                if c.kind == "link" and c.key != "key":  # another link: its <key>_label and <key>_url
                    out.append({"text": row.get(c.key + "_label", value), "url": row.get(c.key + "_url"),
                                "numeric": False})
                elif c.kind == "link":
                    out.append({"text": row.get("label", value), "url": row.get("url"), "numeric": False,
                                "filter_url": row.get("filter_url"), "filter_title": row.get("filter_title")})
                elif c.numeric:
                    out.append({"text": FORMAT[c.kind](value), "numeric": True, "raw": value})
                else:
                    out.append({"text": "–" if value is None else value, "numeric": False})
            yield out

    def body(self):
        return list(self.cells(self.rows))

    def footer(self):
        return list(self.cells(self.foot))


# The figures beside every top-N: volume and delivery quality.
QUALITY = [
    Column("bytes", "bytes", "bytes"),
    Column("bps", "avg bits/s", "bps", "bytes × 8 / elapsed seconds of the range"),
    Column("share", "share", "pct", "of the total bytes"),
    Column("requests", "requests", "int"),
    Column("retrans_rate", "retransmits", "pct", "retransmitted / data segments"),
    Column("rtt_p50_ms", "RTT p50", "ms", "estimated from the RTT histogram"),
    Column("rtt_p95_ms", "RTT p95", "ms", "estimated from the RTT histogram"),
]

DIM_TITLES = {"origin_as": "origin AS", "neighbor_as": "neighbour AS", "country": "country",
              "prefix": "prefix", "router": "router", "traffic_type": "traffic type", "as_path": "AS path"}


def url_for(dim: str, key, params: dict | None = None) -> str | None:
    """The page of one ASN, country, prefix, router or traffic type."""
    if key is None:
        return None
    # Each page's path sets one filter (own): the same filter is not carried to it.
    if dim in ("origin_as", "neighbor_as"):
        url, own = reverse("web:asn", args=[int(key)]), "asn"
    elif dim == "country":
        url, own = reverse("web:country", args=[key or "--"]), "country"
    elif dim == "prefix":
        url, own = reverse("web:prefix", args=[key]), "prefix"
    elif dim == "router":
        url, own = reverse("web:router", args=[int(key)]), "router"
    elif dim == "traffic_type":
        url, own = reverse("web:traffic_type", args=[key]), "type"
    else:
        return None
    params = {k: v for k, v in (params or {}).items() if k != own}
    return url + ("?" + urlencode(params) if params else "")


def top_table(name: str, title: str, result: dict, params: dict | None = None, note: str = "",
              extra: list[Column] | None = None) -> Table:
    """A Table from :func:`ipr.web.queries.top`'s result, rows linked to their pages."""
    by = result["by"]
    rows = [{**r, "url": url_for(by, r["key"], params)} for r in result["rows"]]
    foot = [r for r in (result["other"], result["total"]) if r is not None]
    columns = [Column("key", DIM_TITLES.get(by, by), "link")] + (extra or []) + QUALITY
    return Table(name, title, columns, rows, foot, note, dim=by)


def csv_response(table: Table, filename: str) -> HttpResponse:
    """The table's raw values, one row per line, other and total rows last."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    header = []
    for c in table.columns:
        if c.kind == "link":
            header += [c.key, "label" if c.key == "key" else c.key + "_label"]
        else:
            header.append(c.key)
    writer.writerow(header)
    for row in table.rows + table.foot:
        line = []
        for c in table.columns:
            if c.kind == "link":
                line += [_raw(row.get(c.key)), row.get("label" if c.key == "key" else c.key + "_label", "")]
            else:
                line.append(_raw(row.get(c.key)))
        writer.writerow(line)
    response = HttpResponse(buf.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
    return response


def _raw(value):
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


# -- charts ------------------------------------------------------------------------

def chart_series(chart_id: str, title: str, result: dict, measure: str, unit: str,
                 kind: str = "line", names: list[str] | None = None) -> dict:
    """A chart spec (read by static/web/charts.js) from a series result.

    A split series names its dimension (``dim``) and each trace its
    ``key`` (None for 'other'): static/web/filters.js filters by the
    legend entry clicked."""
    split = result.get("split")
    return {"id": chart_id, "title": title, "kind": kind, "unit": unit, "dim": split,
            "x": [t.isoformat() for t in result["times"]], "step": result.get("step"),
            "traces": [{"name": (names[i] if names else s["label"]), "y": s[measure],
                        "key": _filter_key(split, s["key"])}
                       for i, s in enumerate(result["series"])]}


def _filter_key(dim: str | None, key):
    """A key as its filter parameter takes it; None where there is nothing
    to filter on (no dimension, an 'other' row or node)."""
    if dim not in params.FILTER_PARAM or key is None:
        return None
    return params.filter_value(dim, key)


def chart_quality(chart_id: str, title: str, result: dict) -> dict:
    """RTT p50 and p95 (and mean) of an unsplit series, in ms."""
    s = result["series"][0]
    return {"id": chart_id, "title": title, "kind": "line", "unit": "ms",
            "x": [t.isoformat() for t in result["times"]], "step": result.get("step"),
            "traces": [{"name": "p50", "y": s["rtt_p50_ms"]}, {"name": "p95", "y": s["rtt_p95_ms"]},
                       {"name": "mean", "y": s["rtt_mean_ms"], "dash": "dot"}]}


def chart_bars(chart_id: str, title: str, result: dict, measure: str = "bytes", unit: str = "bytes") -> dict:
    """Horizontal bars, largest first; ``keys`` (in the order of ``labels``)
    let a click on a bar filter by it."""
    rows, dim = result["rows"], result.get("by")
    return {"id": chart_id, "title": title, "kind": "hbar", "unit": unit, "dim": dim,
            "labels": [r["label"] for r in rows], "values": [r[measure] for r in rows],
            "keys": [_filter_key(dim, r["key"]) for r in rows]}


# A flow diagram's node kinds and the dimension each filters on.
NODE_DIMS = {"router": "router", "neighbor": "neighbor_as", "origin": "origin_as"}


def chart_map(chart_id: str, title: str, result: dict) -> dict:
    """The world map's data (web/map.js): each country's bytes and quality.
    The unknown country and special-purpose addresses' ZZ are not places:
    they are in the table, not on the map."""
    rows = [r for r in result["rows"] if r["key"] and r["key"].isalpha() and r["key"] != special.COUNTRY]
    return {"id": chart_id, "title": title,
            "countries": [{"code": r["key"], "name": r["label"], "bytes": r["bytes"], "share": r["share"],
                           "bps": r["bps"], "retrans_rate": r["retrans_rate"], "rtt_p95_ms": r["rtt_p95_ms"]}
                          for r in rows]}


def chart_sankey(chart_id: str, title: str, flows: dict) -> dict:
    """The flow diagram; per node its ``dims`` and ``keys`` (None for the
    'other' nodes), so a click on a node filters by it."""
    dims = [NODE_DIMS.get(n["kind"]) for n in flows["nodes"]]
    keys = [n["id"].split(":", 1)[1] for n in flows["nodes"]]
    return {"id": chart_id, "title": title, "kind": "sankey", "unit": "bytes",
            "nodes": [n["label"] for n in flows["nodes"]], "kinds": [n["kind"] for n in flows["nodes"]],
            "links": flows["links"], "dims": dims,
            "keys": [None if k == "other" else _filter_key(d, k) for d, k in zip(dims, keys)]}
