"""Ingest the spool now (what the beat task does every minute)."""
from django.core.management.base import BaseCommand

from ipr.traffic import ingest


class Command(BaseCommand):
    help = "Claim the spool's closed segments and add them to the archive, exactly once."

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=1000, help="segments at most")

    def handle(self, limit, **options):
        result = ingest.ingest(limit=limit)
        self.stdout.write(f"{result.segments} segments, {result.rows} spool rows ingested; "
                          f"{result.skipped} already ingested; {result.bad} set aside as bad")
