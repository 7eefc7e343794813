"""Is ipr healthy? The database answers and the spool is being drained."""
import time

from django.conf import settings
from django.db import connection

from collector import spool


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
        report["spool"] = spool.status(settings.SPOOL_DIR, time.time())
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
    return report
