"""Load the country data sources (RIR delegated files, .mmdb) now."""
from django.core.management.base import BaseCommand, CommandError

from ipr.routing.load import RefreshError
from ipr.routing.models import DataSource
from ipr.routing.reference import refresh_source

KINDS = ["rir", "mmdb"]


class Command(BaseCommand):
    help = ("Reload every country data source, or add one: --rir 'PATH-OR-GLOB' / --mmdb PATH "
            "(kept as a data source, refreshed on its schedule from then on).")
    kinds = KINDS

    def add_arguments(self, parser):
        if "rir" in self.kinds:
            parser.add_argument("--rir", help="RIR delegated file(s): a path or a glob")
        if "mmdb" in self.kinds:
            parser.add_argument("--mmdb", help="a MaxMind-format .mmdb file")
        if "asnames" in self.kinds:
            parser.add_argument("--file", dest="asnames", help="AS names: text list or PeeringDB JSON")
        parser.add_argument("--priority", type=int, default=None,
                            help="where sources overlap the lower number wins (default: 100, .mmdb 50)")

    def handle(self, **options):
        for kind in self.kinds:
            path = options.get(kind)
            if path:
                priority = options["priority"] if options["priority"] is not None else (50 if kind == "mmdb" else 100)
                DataSource.objects.update_or_create(
                    name=f"{kind}:{path}", defaults={"kind": kind, "path": path, "priority": priority})
        sources = DataSource.objects.filter(kind__in=self.kinds, enabled=True)
        if not sources:
            raise CommandError(f"no {'/'.join(self.kinds)} data source: add one with --{self.kinds[0]}")
        failed = 0
        for source in sources:
            try:
                count = refresh_source(source.pk)
                self.stdout.write(f"{source.name}: {count} records")
            except RefreshError as exc:
                failed += 1
                self.stderr.write(f"{source.name}: refused, the previous data stays: {exc}")
        if failed:
            raise CommandError(f"{failed} source(s) refused")
