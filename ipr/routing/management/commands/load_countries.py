"""Load the country data sources (RIR delegated files, .mmdb) now."""
from django.core.management.base import BaseCommand, CommandError

from ipr.routing.load import RefreshError
from ipr.routing.models import DataSource
from ipr.routing.reference import refresh_source

KINDS = ["rir", "mmdb"]


class Command(BaseCommand):
    help = ("Reload every enabled country data source, or add one and load it: --rir 'PATH-OR-GLOB' / "
            "--mmdb PATH (kept as a data source, refreshed on its schedule from then on, only if this "
            "first load succeeds). Exit status 1 when a source was refused.")
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
        added = []  # (source, whether it is new)
        for kind in self.kinds:
            path = options.get(kind)
            if path:
                priority = options["priority"] if options["priority"] is not None else (50 if kind == "mmdb" else 100)
                added.append(DataSource.objects.update_or_create(
                    name=f"{kind}:{path}", defaults={"kind": kind, "path": path, "priority": priority}))
        # A path on the command line loads that source; without one, every enabled source.
        sources = [source for source, _ in added] or list(
            DataSource.objects.filter(kind__in=self.kinds, enabled=True))
        if not sources:
            raise CommandError(f"no enabled {'/'.join(self.kinds)} data source: add one with --{self.kinds[0]}")
        new = {source.pk for source, created in added if created}
        failed = []
        for source in sources:
            try:
                count = refresh_source(source.pk)
            except RefreshError as exc:
                failed.append(source.name)
                if source.pk in new:
                    # A source whose first load fails is not kept: a mistyped
                    # path would otherwise be refused at every later run.
                    source.delete()
                    self.stderr.write(f"{source.name}: refused, not added: {exc}")
                else:
                    self.stderr.write(f"{source.name}: refused, the previous data stays: {exc}")
                continue
            self.stdout.write(f"{source.name}: {count} records")
            notes = DataSource.objects.filter(pk=source.pk).values_list("refresh_notes", flat=True).first()
            for note in filter(None, (notes or "").splitlines()):
                self.stdout.write(f"  {note}")
        if failed:
            raise CommandError(f"{len(failed)} source(s) refused (of {len(sources)}): {', '.join(failed)}")
