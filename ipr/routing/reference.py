"""Refresh the reference data: countries (RIR files, .mmdb) and AS names.

Like a router's table, a data source's rows are replaced in one transaction
only when the new files parse (an AS names list's unusable lines are
skipped and noted) and hold at least (1 - max_shrink) times the active
version's records; otherwise the old rows stay and the reason is kept on
the source.
"""
from __future__ import annotations

import glob
import logging
import os

from django.db import transaction
from django.utils import timezone

from ipr.routing.dumps import DumpError
from ipr.routing.load import RefreshError, claimed, copy_rows, due
from ipr.routing.models import ASName, CountryPrefix, DataSource

log = logging.getLogger("ipr.routing")


def source_files(source: DataSource) -> list[str]:
    """Every file the source's path or glob names, sorted (RIR files: all of
    them are combined; .mmdb and AS names: the newest only)."""
    paths = sorted(p for p in glob.glob(source.path) if os.path.isfile(p)) \
        if glob.has_magic(source.path) else [source.path]
    paths = [p for p in paths if os.path.exists(p)]
    if not paths:
        raise RefreshError(f"{source.path}: no such file")
    if source.kind != DataSource.Kind.RIR:
        paths = [max(paths, key=os.path.getmtime)]
    return paths


def _open(path: str):
    from ipr.routing.dumps.mrt import open_dump  # decompresses gzip/bzip2 by magic
    return open_dump(path)


def _country_rows(source: DataSource, paths: list[str]) -> list[tuple]:
    rows = []
    for path in paths:
        if source.kind == DataSource.Kind.MMDB:
            from ipr.routing.dumps import mmdb
            items = mmdb.parse(path, source=path)
        else:
            from ipr.routing.dumps import rir
            items = rir.parse(_open(path), source=path)
        rows.extend((source.pk, prefix, cc) for prefix, cc in items)
    return rows


def _asname_rows(source: DataSource, paths: list[str], notes: list[str]) -> dict[int, tuple]:
    from ipr.routing.dumps import asnames

    limit = ASName._meta.get_field("name").max_length
    names: dict[int, tuple] = {}
    for path in paths:
        found = asnames.Notes()
        for asn, name, cc in asnames.parse(_open(path), source=path, notes=found, max_name=limit):
            names[asn] = (asn, name, cc or "", source.pk)
        notes.extend(found.lines(path))
    _keep_good_names(names, notes)
    return names


def _keep_good_names(names: dict[int, tuple], notes: list[str]) -> None:
    """A name with replacement characters (U+FFFD: mangled before it reached
    this file) does not replace a name without any: the good one stays."""
    mangled = [asn for asn, row in names.items() if "\ufffd" in row[1]]
    kept = []
    for i in range(0, len(mangled), 500):  # SQLite caps a query's parameters
        for asn, name, country, source_id in ASName.objects.filter(asn__in=mangled[i:i + 500]).exclude(
                name__contains="\ufffd").values_list("asn", "name", "country", "source_id"):
            names[asn] = (asn, name, country, source_id)
            kept.append(asn)
    if kept:
        kept.sort()
        first = ", ".join(f"AS{asn}" for asn in kept[:5]) + (", ..." if len(kept) > 5 else "")
        notes.append(f"{len(kept)} name(s) with replacement characters (U+FFFD) not loaded over the "
                     f"good name already there, which stays ({first})")


def refresh_source(source_id: int) -> int:
    """Reload one data source; returns the number of records now active.
    What the load skipped or changed is kept on the source (``refresh_notes``)
    and logged."""
    source = DataSource.objects.get(pk=source_id)
    with claimed(source):
        return _refresh(source)


def _refresh(source: DataSource) -> int:
    notes: list[str] = []
    try:
        paths = source_files(source)
        if source.kind == DataSource.Kind.ASNAMES:
            rows = _asname_rows(source, paths, notes)
        else:
            rows = _country_rows(source, paths)
        if not rows:
            raise RefreshError(f"{', '.join(paths)}: no records")
        # The same rule as a router's table (Refreshed.shrink_refusal); the
        # source was read under its refresh claim, so its count is current.
        refusal = source.shrink_refusal(len(rows), source.records if source.version else None)
        if refusal:
            raise RefreshError(f"{', '.join(paths)}: {refusal}; kept the active version")
        with transaction.atomic():
            if source.kind == DataSource.Kind.ASNAMES:
                # A name from this source replaces any earlier one for that ASN.
                ASName.objects.filter(source=source).delete()
                asns = list(rows)
                for i in range(0, len(asns), 500):  # SQLite caps a query's parameters
                    ASName.objects.filter(asn__in=asns[i:i + 500]).delete()
                copy_rows("routing_asname", ("asn", "name", "country", "source_id"), list(rows.values()))
            else:
                CountryPrefix.objects.filter(source=source).delete()
                copy_rows("routing_countryprefix", ("source_id", "prefix", "country"), rows)
            DataSource.objects.filter(pk=source.pk).update(
                refreshed_at=timezone.now(), refresh_error="", records=len(rows),
                version=source.version + 1, refresh_notes="\n".join(notes))
    except (RefreshError, DumpError, OSError, EOFError, ValueError) as exc:
        reason = str(exc) if isinstance(exc, (RefreshError, DumpError)) else f"{source.path}: {exc}"
        DataSource.objects.filter(pk=source.pk).update(refreshed_at=timezone.now(), refresh_error=reason)
        log.warning("data source %s: refresh refused: %s", source.name, reason)
        raise RefreshError(reason) from None
    log.info("data source %s: %d records from %s", source.name, len(rows), ", ".join(paths))
    for note in notes:
        log.warning("data source %s: %s", source.name, note)
    return len(rows)


def due_sources() -> list[int]:
    return due(DataSource, enabled=True)
