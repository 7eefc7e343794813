"""The beat schedule. Every entry expires after its period, so a backlog of
runs that could not start in time is dropped instead of piling up."""
from datetime import timedelta

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
}

app.conf.beat_schedule = SCHEDULE
