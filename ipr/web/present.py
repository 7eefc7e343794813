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

from ipr.web import units

FORMAT = {"bytes": units.human_bytes, "bps": units.human_bps, "pct": units.human_pct,
          "ms": units.human_ms, "int": units.human_int, "pp": units.human_pp}


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

    def cells(self, rows):
        for row in rows:
            out = []
            for c in self.columns:
                value = row.get(c.key)
                if c.kind == "link":
                    out.append({"text": row.get("label", value), "url": row.get("url"), "numeric": False})
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
    if dim in ("origin_as", "neighbor_as"):
        url = reverse("web:asn", args=[int(key)])
    elif dim == "country":
        url = reverse("web:country", args=[key or "--"])
    elif dim == "prefix":
        url = reverse("web:prefix", args=[key])
    elif dim == "router":
        url = reverse("web:router", args=[int(key)])
    elif dim == "traffic_type":
        url = reverse("web:traffic_type", args=[key])
    else:
        return None
    return url + ("?" + urlencode(params) if params else "")


def top_table(name: str, title: str, result: dict, params: dict | None = None, note: str = "",
              extra: list[Column] | None = None) -> Table:
    """A Table from :func:`ipr.web.queries.top`'s result, rows linked to their pages."""
    by = result["by"]
    rows = [{**r, "url": url_for(by, r["key"], params)} for r in result["rows"]]
    foot = [r for r in (result["other"], result["total"]) if r is not None]
    columns = [Column("key", DIM_TITLES.get(by, by), "link")] + (extra or []) + QUALITY
    return Table(name, title, columns, rows, foot, note)


def csv_response(table: Table, filename: str) -> HttpResponse:
    """The table's raw values, one row per line, other and total rows last."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    header = []
    for c in table.columns:
        if c.kind == "link":
            header += [c.key if c.key != "key" else "key", "label"]
        else:
            header.append(c.key)
    writer.writerow(header)
    for row in table.rows + table.foot:
        line = []
        for c in table.columns:
            if c.kind == "link":
                line += [_raw(row.get("key")), row.get("label", "")]
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
    """A chart spec (read by static/web/charts.js) from a series result."""
    return {"id": chart_id, "title": title, "kind": kind, "unit": unit,
            "x": [t.isoformat() for t in result["times"]],
            "traces": [{"name": (names[i] if names else s["label"]), "y": s[measure]}
                       for i, s in enumerate(result["series"])]}


def chart_quality(chart_id: str, title: str, result: dict) -> dict:
    """RTT p50 and p95 (and mean) of an unsplit series, in ms."""
    s = result["series"][0]
    return {"id": chart_id, "title": title, "kind": "line", "unit": "ms",
            "x": [t.isoformat() for t in result["times"]],
            "traces": [{"name": "p50", "y": s["rtt_p50_ms"]}, {"name": "p95", "y": s["rtt_p95_ms"]},
                       {"name": "mean", "y": s["rtt_mean_ms"], "dash": "dot"}]}


def chart_bars(chart_id: str, title: str, result: dict, measure: str = "bytes", unit: str = "bytes") -> dict:
    rows = result["rows"]
    return {"id": chart_id, "title": title, "kind": "hbar", "unit": unit,
            "labels": [r["label"] for r in rows], "values": [r[measure] for r in rows]}


def chart_sankey(chart_id: str, title: str, flows: dict) -> dict:
    return {"id": chart_id, "title": title, "kind": "sankey", "unit": "bytes",
            "nodes": [n["label"] for n in flows["nodes"]], "kinds": [n["kind"] for n in flows["nodes"]],
            "links": flows["links"]}
