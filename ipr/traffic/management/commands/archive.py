"""The hourly archive now: the pending hours, or given hours, from the window."""
from datetime import datetime, timedelta, timezone

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from ipr.traffic import ingest, rollup, tables


def _hour(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{text!r}: expected an hour such as 2026-11-30T14 or '2026-11-30 14:00'") from None
    t = t.replace(tzinfo=t.tzinfo or timezone.utc).astimezone(timezone.utc)
    return t.replace(minute=0, second=0, microsecond=0)


class Command(BaseCommand):
    help = ("Compute the hourly tables from the per-minute window: the closed pending hours "
            "(the default), every pending hour (--all), or HOUR, or HOUR..LAST (UTC), again.")

    def add_arguments(self, parser):
        parser.add_argument("hour", nargs="?")
        parser.add_argument("last", nargs="?")
        parser.add_argument("--all", action="store_true", help="the open hour too")

    def handle(self, hour=None, last=None, all=False, **options):
        if hour is None:
            done = rollup.archive_pending(everything=all)
            self.stdout.write(f"{done} hours archived; {rollup.rollup_pending()} days rolled up")
            return
        first, end = _hour(hour), _hour(last or hour)
        oldest = datetime.fromtimestamp(ingest.window_start() * 60, timezone.utc)
        if first < oldest:
            raise CommandError(f"{first:%Y-%m-%d %H:00} is older than the window holds whole "
                               f"(from {oldest:%Y-%m-%d %H:00} UTC, IPR_KEEP_CURRENT_HOURS); "
                               f"its hourly rows are kept as they are")
        while first <= end:
            with transaction.atomic():
                rollup._claim("hour", rollup._stamp(first))  # computed now: no longer pending
                rows = rollup.archive_hour(first)
            tables.summarize(tables.HOURLY, [rollup._stamp(first)])
            self.stdout.write(f"{first:%Y-%m-%d %H:00}: {rows} hourly rows")
            first += timedelta(hours=1)
        self.stdout.write(f"{rollup.rollup_pending()} days rolled up")
