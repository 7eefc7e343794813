"""The query parameters of the pages and the API, parsed and bounded in one place.

Every value a page or an API endpoint takes from the query string (or from
its path: a router id, an ASN, a country) goes through these functions, so
both accept and refuse the same values. A bad value raises
:class:`ParamError`, which names the parameter; the pages answer it with a
400 page, the API with a 400 JSON ``detail``. An empty value (``?router=``,
as a form sends it) means "not given".

Bounds (docs/web.md, docs/api.md):

- times: 1970-01-01T00:00Z to 2100-01-01T00:00Z (a range's end included);
- ``month``: 1970-01 to 2099-12;
- ``router``: 0 to 2⁶³−1 (a bigint id);
- ``asn``, ``neighbor``: 0 to 2³²−1;
- ``type``: 1 to 16 printable ASCII characters, no spaces (as the agents send it);
- ``limit``: 1 to a maximum each page or endpoint states;
- ``min_share``: a finite number from 0 to 1.
"""
from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from typing import Mapping

from ipr.web import queries as q, reports
from ipr.web.queries import Filters, QueryError, Range

TIME_MIN = datetime(1970, 1, 1, tzinfo=q.UTC)
TIME_MAX = datetime(2100, 1, 1, tzinfo=q.UTC)
ROUTER_MAX = 2**63 - 1  # router ids are bigint: a larger one never reaches the database
TRAFFIC_TYPE = re.compile(r"[!-~]{1,16}")  # as the agents send it (ipr.agents.models)
MONTH = re.compile(r"(\d{4})-(\d{2})")

# The filters a query string may carry: parameter -> Filters field.
FILTERS = {"router": "router", "type": "traffic_type", "asn": "origin_as", "neighbor": "neighbor_as",
           "country": "country", "prefix": "prefix"}
# Filters field (a dimension of the archive) -> its parameter.
FILTER_PARAM = {field: name for name, field in FILTERS.items()}


class ParamError(QueryError):
    """A bad value of one parameter; the message starts with its name."""

    def __init__(self, name: str, message: str):
        self.param = name
        super().__init__(f"{name}: {message}")


def _given(params: Mapping, name: str) -> str | None:
    value = params.get(name)
    return None if value in (None, "") else str(value)


# -- time ------------------------------------------------------------------------------

def time(name: str, text: str, end_of_day: bool = False) -> datetime:
    """An ISO 8601 date or time within TIME_MIN..TIME_MAX; with ``end_of_day``
    a date alone means the end of that day."""
    try:
        t = q.parse_time(text)
    except (QueryError, OverflowError):
        raise ParamError(name, f"{text!r} is not a date or time (expected e.g. 2026-03-01 or "
                               "2026-03-01T10:00)") from None
    if end_of_day and len(text.strip()) == 10 and TIME_MIN <= t <= TIME_MAX:
        t += timedelta(days=1)  # a date as the end: the end of that day (no overflow: t <= 2100)
    if not TIME_MIN <= t <= TIME_MAX:
        raise ParamError(name, f"{text!r} is outside {TIME_MIN:%Y-%m-%d}..{TIME_MAX:%Y-%m-%d} (UTC)")
    return t


def range_of(params: Mapping, default: str = q.DEFAULT_PRESET, now: datetime | None = None) -> Range:
    """``range`` (a preset) or ``from``/``to``: ``from`` wins over ``range``
    (which must still be a preset, so a typo never passes); ``to`` needs
    ``from``; ``to`` defaults to now."""
    preset, start, end = _given(params, "range"), _given(params, "from"), _given(params, "to")
    if preset is not None and preset not in q.PRESETS:
        raise ParamError("range", f"unknown range {preset!r}: expected one of {', '.join(q.PRESETS)}")
    if end is not None and start is None:
        raise ParamError("to", "give from as well (or a range preset without to)")
    if start is None:
        return Range.last(preset or default, now)
    t0 = time("from", start)
    if end is None:
        t1 = now or q._now()
        if t1 <= t0:
            raise ParamError("from", f"{start!r} is not before now (give to as well)")
    else:
        t1 = time("to", end, end_of_day=True)
        if t1 <= t0:
            raise ParamError("to", "the range ends before it starts")
    return Range.between(t0, t1, now)


def month(params: Mapping, now: datetime | None = None) -> Range:
    """``month`` (YYYY-MM, 1970-01..2099-12; default the current one) as a
    range at daily resolution."""
    text = _given(params, "month")
    if text is None:
        return reports.month_range(None, now)
    m = MONTH.fullmatch(text.strip())
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise ParamError("month", f"{text!r} is not a month (expected e.g. 2026-11)")
    if not TIME_MIN.year <= int(m.group(1)) < TIME_MAX.year:
        raise ParamError("month", f"{text!r} is outside {TIME_MIN:%Y-%m}..{TIME_MAX.year - 1}-12")
    return reports.month_range(text.strip(), now)


# -- filters -----------------------------------------------------------------------------

def router(text: str, name: str = "router") -> int:
    """A router id: 0 (no router) to ROUTER_MAX."""
    s = str(text).strip()
    if not (s.isascii() and s.isdigit()) or int(s) > ROUTER_MAX:
        raise ParamError(name, f"{text!r} is not a router id (0..{ROUTER_MAX})")
    return int(s)


def traffic_type(text: str, name: str = "type") -> str:
    if not TRAFFIC_TYPE.fullmatch(text):
        raise ParamError(name, f"{text!r} is not a traffic type (at most 16 printable ASCII characters, "
                               "no spaces)")
    return text


def asn(text: str, name: str = "asn") -> int:
    try:
        return q.parse_asn(text)
    except QueryError as exc:
        raise ParamError(name, str(exc)) from None


def country(text: str, name: str = "country") -> str:
    try:
        return q.parse_country(text)
    except QueryError as exc:
        raise ParamError(name, str(exc)) from None


def prefix(text: str, name: str = "prefix") -> str:
    if "\x00" in text:
        raise ParamError(name, "a prefix has no NUL character")
    try:
        return q.parse_prefix(text)
    except QueryError as exc:
        raise ParamError(name, str(exc)) from None


_PARSERS = {"router": router, "type": traffic_type, "asn": asn, "neighbor": asn, "country": country,
            "prefix": prefix}


def filters_of(params: Mapping, taken=tuple(FILTERS), **fixed) -> Filters:
    """The filters among ``taken`` that the query string gives, checked;
    ``fixed`` are the Filters fields a page's or endpoint's path sets
    (already parsed), which win."""
    values = {}
    for name in taken:
        text = _given(params, name)
        if text is not None:
            values[FILTERS[name]] = _PARSERS[name](text, name)
    values.update({k: v for k, v in fixed.items() if v is not None})
    return Filters(**values)


def filter_value(dim: str, key) -> str:
    """A dimension's key as its filter parameter takes it (the unknown
    country '' is '--')."""
    if dim == "country" and not key:
        return "--"
    return str(key)


# -- numbers and choices ------------------------------------------------------------------

def integer(params: Mapping, name: str, default: int, low: int, high: int) -> int:
    text = _given(params, name)
    if text is None:
        return default
    s = text.strip()
    if not re.fullmatch(r"[+-]?\d{1,20}", s):
        raise ParamError(name, f"{text!r} is not an integer")
    value = int(s)
    if not low <= value <= high:
        raise ParamError(name, f"{value} is not in {low}..{high}")
    return value


def fraction(params: Mapping, name: str, default: float) -> float:
    """A finite number from 0 to 1 (nan, inf and 1e999 are refused)."""
    text = _given(params, name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ParamError(name, f"{text!r} is not a number") from None
    if not (math.isfinite(value) and 0 <= value <= 1):
        raise ParamError(name, f"{text!r} is not a fraction in 0..1, e.g. 0.001")
    return value


def choice(params: Mapping, name: str, choices, default):
    text = _given(params, name)
    if text is None:
        return default
    if text not in choices:
        raise ParamError(name, f"{text!r} is not one of {', '.join(choices)}")
    return text
