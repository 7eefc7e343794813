"""Is ipr healthy? The database answers and the spool is being drained."""
import logging
import threading
import time

from django.conf import settings
from django.db import connection

from collector import spool

log = logging.getLogger("ipr.health")


def check() -> dict:
    """A report with ``ok`` and the reason for each failed part."""
    report = {"ok": True, "problems": []}
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
        report["database"] = connection.vendor
    except Exception as exc:  # any driver error means "down"
        report["ok"] = False
        report["problems"].append(f"database: {exc}")
    try:
        report["spool"] = spool.status(settings.SPOOL_DIR, time.time(),
                                       stale_after=settings.STALE_CLAIM_SECONDS)
    except OSError as exc:
        report["ok"] = False
        report["problems"].append(f"spool {settings.SPOOL_DIR}: {exc}")
        return report
    age = report["spool"]["incoming"]["oldest_age"]
    if age is not None and age > settings.SPOOL_MAX_BACKLOG_SECONDS:
        report["ok"] = False
        report["problems"].append(
            f"spool: the oldest incoming segment waits for {age:.0f} s "
            f"(limit {settings.SPOOL_MAX_BACKLOG_SECONDS} s): is the aggregation running?")
    stale = report["spool"]["stale_claims"]
    if stale:
        report["ok"] = False
        report["problems"].append(
            f"spool: {stale} segment(s) claimed more than {settings.STALE_CLAIM_SECONDS} s ago "
            f"(IPR_STALE_CLAIM_SECONDS): their worker died or hangs, and no ingest has taken "
            f"them back: is the aggregation running?")
    return report


_last_ok = None
_last_lock = threading.Lock()


def log_change(report: dict) -> None:
    """Log when this process sees the health change: ERROR with the reasons
    when it turns unhealthy, WARNING when it is healthy again; nothing while
    it stays the same, however often it is polled."""
    global _last_ok
    with _last_lock:
        before, _last_ok = _last_ok, report["ok"]
    if report["ok"] == before:
        return
    if not report["ok"]:
        log.error("unhealthy: %s", "; ".join(report["problems"]))
    elif before is not None:  # not at this process's first check
        log.warning("healthy again")
