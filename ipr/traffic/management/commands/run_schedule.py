"""The beat schedule, run in this process: the embedded default's scheduler."""
import signal
import time

from django.core.management.base import BaseCommand

from cron.celery import app


class Command(BaseCommand):
    help = ("Run the beat schedule's tasks in this process (for the embedded default without "
            "REDIS_URL; with Redis, run `celery -A cron beat` and workers instead).")

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="run every entry once, then stop")

    def handle(self, once=False, **options):
        self.stopping = False
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        entries = {name: (entry["task"], entry["schedule"]) for name, entry in app.conf.beat_schedule.items()}
        due = {name: 0.0 for name in entries}
        while not self.stopping:
            now = time.monotonic()
            for name, (task, schedule) in entries.items():
                if due[name] <= now:
                    try:
                        app.tasks[task].apply().get()
                    except Exception as exc:  # one failing entry must not stop the others
                        self.stderr.write(f"{name}: {exc}")
                    # A crontab's next run, or the interval's; both drift-free enough here.
                    seconds = schedule.remaining_estimate(schedule.now()).total_seconds() \
                        if hasattr(schedule, "remaining_estimate") else schedule.total_seconds()
                    due[name] = now + max(seconds, 1.0)
            if once:
                return
            time.sleep(max(0.0, min(due.values()) - time.monotonic()))
