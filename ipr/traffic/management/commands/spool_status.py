import json

from django.core.management.base import BaseCommand

from ipr.traffic import health


class Command(BaseCommand):
    help = "Report the database and spool health (exit status 1 when unhealthy)."

    def handle(self, *args, **options):
        report = health.check()
        self.stdout.write(json.dumps(report, indent=2))
        if not report["ok"]:
            raise SystemExit(1)
