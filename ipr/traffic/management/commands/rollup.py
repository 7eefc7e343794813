"""Recompute the daily tables for a day or a range of days (a backfill)."""
from datetime import date, timedelta

from django.core.management.base import BaseCommand, CommandError

from ipr.traffic import tables
from ipr.traffic.rollup import DAILY, rollup_day, rollup_pending


class Command(BaseCommand):
    help = ("Recompute the daily rollups of DAY (YYYY-MM-DD), or of DAY..LAST, from the hourly "
            "archive; without DAY, of the pending days.")

    def add_arguments(self, parser):
        parser.add_argument("day", nargs="?")
        parser.add_argument("last", nargs="?")

    def handle(self, day=None, last=None, **options):
        if day is None:
            self.stdout.write(f"{rollup_pending()} pending days rolled up")
            return
        try:
            first, end = date.fromisoformat(day), date.fromisoformat(last or day)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        while first <= end:
            self.stdout.write(f"{first}: {rollup_day(first)} daily rows")
            tables.summarize(DAILY, [f"{first} 00:00:00"])
            first += timedelta(days=1)
