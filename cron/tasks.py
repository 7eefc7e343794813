"""Thin tasks: each calls one function that commands and tests call too."""
import logging

from cron.celery import app

log = logging.getLogger("ipr.tasks")


@app.task(name="ipr.check_spool")
def check_spool() -> bool:
    """What /healthz says, logged when it changes (ERROR with the reasons on
    turning unhealthy, WARNING when healthy again), not at every run."""
    from ipr.traffic import health

    report = health.check()
    health.log_change(report)
    return report["ok"]


@app.task(name="ipr.refresh_due")
def refresh_due() -> int:
    """Queue a refresh of every router and data source whose interval has
    passed (each admin-editable on the router or source)."""
    from ipr.routing.load import due_routers
    from ipr.routing.reference import due_sources

    routers, sources = due_routers(), due_sources()
    for router_id in routers:
        refresh_router.delay(router_id)
    for source_id in sources:
        refresh_source.delay(source_id)
    return len(routers) + len(sources)


@app.task(name="ipr.refresh_router", ignore_result=True)
def refresh_router(router_id: int) -> None:
    from ipr.routing.load import refresh_router as refresh
    _refresh(refresh, router_id)


@app.task(name="ipr.refresh_source", ignore_result=True)
def refresh_source(source_id: int) -> None:
    from ipr.routing.reference import refresh_source as refresh
    _refresh(refresh, source_id)


def _refresh(refresh, pk: int) -> None:
    from ipr.routing.load import Busy, RefreshError

    try:
        refresh(pk)
    except Busy as exc:
        log.info("%s", exc)
    except RefreshError:
        pass  # kept on the router or source (and its failed version), and logged


@app.task(name="ipr.ingest", ignore_result=True)
def ingest() -> int:
    """Add the spool's closed segments to the archive, exactly once."""
    from ipr.traffic.ingest import ingest as run

    result = run()
    if result.segments or result.skipped:
        log.info("ingested %d segments (%d spool rows); %d were in already",
                 result.segments, result.rows, result.skipped)
    if result.bad:
        log.error("%d spool segments did not parse: set aside as .bad in incoming/", result.bad)
    return result.rows


@app.task(name="ipr.archive", ignore_result=True)
def archive(everything: bool = False) -> int:
    """Compute the closed pending hours of the hourly tables from the window
    (every pending hour, the open one too, with ``everything``)."""
    from ipr.traffic.rollup import archive_pending

    return archive_pending(everything=everything)


@app.task(name="ipr.rollup", ignore_result=True)
def rollup(day: str | None = None) -> int:
    """Recompute the daily tables of ``day`` (ISO date), or of every pending day."""
    from datetime import date

    from ipr.traffic.rollup import rollup_day, rollup_pending

    if day:
        rollup_day(date.fromisoformat(day))
        return 1
    return rollup_pending()


@app.task(name="ipr.retention", ignore_result=True)
def retention() -> None:
    from ipr.traffic.rollup import retention as run

    dropped = run()
    log.info("retention: %s", ", ".join(f"{k} {v}" for k, v in dropped.items() if v))


@app.task(name="ipr.partitions", ignore_result=True)
def partitions() -> None:
    """Create the partitions of the next day ahead of the writes (PostgreSQL)."""
    from ipr.traffic.rollup import prepare_partitions

    made = prepare_partitions()
    if made:
        log.info("partitions created: %s", ", ".join(made))


@app.task(name="ipr.check_alerts", ignore_result=True)
def check_alerts() -> int:
    """Evaluate the alert rules; send what opened and what resolved."""
    from ipr.alerts.check import check_rules

    result = check_rules()
    if result["opened"] or result["resolved"]:
        log.info("alerts: %d opened, %d resolved, %d firing", result["opened"], result["resolved"],
                 result["firing"])
    return result["firing"]
