"""The beat schedule (the periodic tasks in the admin), run in this process."""
import json
import signal
import time

from django.core.management.base import BaseCommand
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from cron.celery import app


class Command(BaseCommand):
    help = ("Run the enabled periodic tasks in this process when they are due: the scheduler of "
            "the embedded default (no REDIS_URL). With Redis, run `celery -A cron beat` and workers.")

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="run every enabled task once, then stop")

    def handle(self, once=False, **options):
        # SIGTERM (systemctl stop) and ^C stop it between two tasks, never
        # in one; a task's own transaction is what makes that safe.
        self.stopping = False
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: setattr(self, "stopping", True))
        while not self.stopping:
            wait = 60.0
            for entry in PeriodicTask.objects.filter(enabled=True).exclude(task=""):
                if self.stopping:
                    return
                due, next_seconds = (True, 60.0) if once else entry.schedule.is_due(
                    entry.last_run_at or timezone.now() - timezone.timedelta(days=365))
                if due:
                    self.run(entry)
                wait = min(wait, next_seconds)
            if once:
                return
            self.sleep(max(1.0, wait))

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake within a fraction of a second of a stop signal
        (a signal does not cut time.sleep short)."""
        end = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < end:
            time.sleep(min(0.2, end - time.monotonic()))

    def run(self, entry: PeriodicTask) -> None:
        try:
            app.tasks[entry.task].apply(kwargs=json.loads(entry.kwargs or "{}")).get()
        except Exception as exc:  # one failing task must not stop the others
            self.stderr.write(f"{entry.name}: {exc}")
        PeriodicTask.objects.filter(pk=entry.pk).update(last_run_at=timezone.now(),
                                                        total_run_count=entry.total_run_count + 1)
