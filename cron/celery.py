"""The Celery app. Without REDIS_URL, tasks run in process (eager)."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ipr.settings")

app = Celery("ipr")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["cron"], related_name="tasks", force=True)
