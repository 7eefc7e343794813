"""The beat schedule's defaults. Every entry expires after its period, so a
backlog of runs that could not start in time is dropped instead of piling up.

The schedule itself lives in the database (django-celery-beat's periodic
tasks, edited in the admin): ``install_defaults`` adds each entry below that
is missing, after every migrate, and never changes one an admin edited.
Celery beat reads it with the DatabaseScheduler (settings), and
``manage.py run_schedule`` runs it in process for the embedded default.
"""
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
    # The hourly archive: the closed hours the ingest added to, computed
    # from the per-minute window (a few minutes after each hour's end).
    "archive": {
        "task": "ipr.archive",
        "schedule": timedelta(minutes=5),
        "options": {"expires": 300},
    },
    # Daily rollups of the days the hourly archive changed (today's, as
    # its hours close; an older one when late traffic reached it).
    "rollup": {
        "task": "ipr.rollup",
        "schedule": timedelta(hours=1),
        "options": {"expires": 3600},
    },
    # The next day's partitions, ahead of the first write into them.
    "partitions": {
        "task": "ipr.partitions",
        "schedule": crontab(minute=40, hour=23),
        "options": {"expires": 3600},
    },
    # Alert rules (ipr.alerts): open, update and resolve alerts.
    "alerts": {
        "task": "ipr.check_alerts",
        "schedule": timedelta(minutes=5),
        "options": {"expires": 300},
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

# Beat reads the database, not this dict.
app.conf.beat_schedule = {}


def install_defaults(**kwargs) -> list[str]:
    """Add the entries of SCHEDULE that the database lacks; return their names."""
    import json

    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    added = []
    for name, entry in SCHEDULE.items():
        if PeriodicTask.objects.filter(name=name).exists():
            continue
        options = entry["options"]
        task = PeriodicTask(name=name, task=entry["task"], expire_seconds=options["expires"],
                            queue=options.get("queue"), kwargs=json.dumps({}))
        schedule = entry["schedule"]
        if isinstance(schedule, timedelta):
            task.interval, _ = IntervalSchedule.objects.get_or_create(
                every=int(schedule.total_seconds()), period=IntervalSchedule.SECONDS)
        else:
            task.crontab, _ = CrontabSchedule.objects.get_or_create(
                minute=str(schedule._orig_minute), hour=str(schedule._orig_hour),
                day_of_week="*", day_of_month="*", month_of_year="*")
        task.save()
        added.append(name)
    return added
