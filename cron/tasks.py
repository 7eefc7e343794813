"""Thin tasks: each calls one function that commands and tests call too."""
import logging

from cron.celery import app

log = logging.getLogger("ipr.tasks")


@app.task(name="ipr.check_spool")
def check_spool() -> bool:
    from ipr.traffic import health

    report = health.check()
    if report["ok"]:
        log.info("ipr healthy: spool %s", report["spool"])
    else:
        log.warning("ipr unhealthy: %s", "; ".join(report["problems"]))
    return report["ok"]
