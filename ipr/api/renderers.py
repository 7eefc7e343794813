"""CSV answers of the API's tables, and a clear 406 where there is no table.

A view that answers a table mixes in :class:`CSVTable` and says, in
``csv_table``, which columns and rows its JSON answer holds; the renderer
writes them as they are in the JSON (the same numbers, floats in the same
shortest form, ``null`` as an empty cell), one item a line after a header
row. Nested figures are spread over columns: the RTT histogram gets one
column per bucket (``rtt_hist_le_1ms`` ... ``rtt_hist_gt_2000ms``), a
list of values (a router's served networks) one cell, space-separated.

An error keeps its JSON body (``{"detail": ...}``), whatever the format
asked. An endpoint with no table (one AS's or one country's page of
several tables, the index, the schema) answers ``?format=csv`` with a 400
and ``Accept: text/csv`` with a 406 that say so (ipr.api.negotiation).
"""
import csv
import io
from datetime import datetime

from rest_framework import renderers
from rest_framework.settings import api_settings
from drf_spectacular.openapi import AutoSchema

from ipr.web.queries import EDGES_MS

HIST_COLUMNS = [f"rtt_hist_le_{e:g}ms" for e in EDGES_MS] + [f"rtt_hist_gt_{EDGES_MS[-1]:g}ms"]
# The figures of a row, total or bucket (docs/api.md, "Figures"), in the JSON's order.
FIGURES = ["bytes", "wire_bytes", "bps", "requests", "data_segs", "retrans_segs", "retrans_rate",
           "rtt_samples", "rtt_mean_ms", "rtt_p50_ms", "rtt_p95_ms", "rtt_sum_us", "rtt_hist"]
CSV_TYPE = "text/csv"


def columns_of(names: list[str]) -> list[str]:
    """The header: ``rtt_hist`` spread over one column per bucket."""
    out = []
    for name in names:
        out += HIST_COLUMNS if name == "rtt_hist" else [name]
    return out


def cell(value) -> str:
    """A JSON value as a CSV cell, written as the JSON writes it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)   # the shortest form that reads back as the same float, as in JSON
    if isinstance(value, datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, (list, tuple)):
        return " ".join(cell(v) for v in value)
    return str(value)


def cells(row: dict, names: list[str]) -> list[str]:
    out = []
    for name in names:
        value = row.get(name)
        if name == "rtt_hist":
            out += [cell(v) for v in (value or [None] * len(HIST_COLUMNS))]
        else:
            out.append(cell(value))
    return out


class TableCSVRenderer(renderers.BaseRenderer):
    """Writes the table a :class:`CSVTable` view finds in its answer."""
    media_type = CSV_TYPE
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        context = renderer_context or {}
        view, response = context.get("view"), context.get("response")
        names, rows = view.csv_table(data)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n")   # RFC 4180
        writer.writerow(columns_of(names))
        for row in rows:
            writer.writerow(cells(row, names))
        if response is not None:
            name = context["request"].path.strip("/").removeprefix("api/").replace("/", "-") or "api"
            response["Content-Disposition"] = f'attachment; filename="ipr-{name}.csv"'
        return buf.getvalue().encode(self.charset)


class TableSchema(AutoSchema):
    """The schema of a table view: its success answers are also CSV (a
    string, for the schema); its errors are JSON only, and a bad ``format``
    is a 400."""

    def _get_response_bodies(self, direction="response"):
        out = super()._get_response_bodies(direction)
        if "400" not in out:
            from ipr.api.serializers import ErrorSerializer
            out["400"] = self._get_response_for_code(ErrorSerializer, "400")
            out["400"]["description"] = "A parameter is unknown or has a bad value (e.g. format)."
        return out

    def _get_response_for_code(self, serializer, status_code, media_types=None, direction="response"):
        out = super()._get_response_for_code(serializer, status_code, media_types, direction)
        content = out.get("content", {})
        if CSV_TYPE in content:
            if str(status_code).startswith("2"):
                content[CSV_TYPE] = {"schema": {
                    "type": "string", "description": "With format=csv or Accept: text/csv: a header row, "
                    "then one row per item, the same figures as the JSON (docs/api.md, CSV)."}}
            else:
                del content[CSV_TYPE]
        return out


class CSVTable:
    """A view whose answer is a table: it answers CSV too. ``csv_table(data)``
    returns (column names, rows as dicts) from the JSON answer."""
    renderer_classes = [*api_settings.DEFAULT_RENDERER_CLASSES, TableCSVRenderer]
    schema = TableSchema()

    def csv_table(self, data) -> tuple[list[str], list[dict]]:
        raise NotImplementedError

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if isinstance(getattr(response, "accepted_renderer", None), TableCSVRenderer) and (
                response.status_code >= 400 or request.method not in ("GET", "HEAD")):
            # An error is a {"detail": ...}, and OPTIONS a description of
            # the endpoint, not a table: answered as JSON.
            response.accepted_renderer = renderers.JSONRenderer()
            response.accepted_media_type = renderers.JSONRenderer.media_type
        return response
