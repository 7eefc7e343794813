import json

from django.core.management.base import BaseCommand

from ipr.traffic import health


class Command(BaseCommand):
    help = ("Report the database and spool health, as /healthz does for staff (exit status 1 when "
            "unhealthy: the database does not answer, a segment waits longer than "
            "IPR_SPOOL_MAX_BACKLOG_SECONDS, or one is claimed for longer than IPR_STALE_CLAIM_SECONDS).")

    def handle(self, *args, **options):
        report = health.check()
        self.stdout.write(json.dumps(report, indent=2))
        if not report["ok"]:
            raise SystemExit(1)
