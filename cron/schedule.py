"""The beat schedule. Every entry expires after its period, so a backlog of
runs that could not start in time is dropped instead of piling up."""
from datetime import timedelta

from celery.schedules import crontab
from django.conf import settings

from cron.celery import app

SCHEDULE = {
    "check-spool": {
        "task": "ipr.check_spool",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 60},
    },
    # Each router and data source has its own interval (admin-editable);
    # this only looks every minute for the ones that are due.
    "refresh-due": {
        "task": "ipr.refresh_due",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 60},
    },
    # Daily rollups of today and yesterday (late segments of yesterday
    # are folded in), then the archive's retention.
    "rollup": {
        "task": "ipr.rollup",
        "schedule": timedelta(hours=1),
        "options": {"expires": 3600},
    },
    "retention": {
        "task": "ipr.retention",
        "schedule": crontab(minute=17, hour=3),
        "options": {"expires": 86400},
    },
}
# Spool ingestion runs where the spool is: one entry per collector host's
# queue (IPR_INGEST_QUEUES), each served by a worker on that host
# (`celery -A cron worker -Q ingest.HOST`).
for queue in settings.INGEST_QUEUES:
    SCHEDULE[f"ingest-{queue}"] = {
        "task": "ipr.ingest",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 60, "queue": queue},
    }

app.conf.beat_schedule = SCHEDULE
