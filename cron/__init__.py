from cron.celery import app
from cron import schedule  # noqa: F401  (sets the beat schedule)

__all__ = ["app"]
