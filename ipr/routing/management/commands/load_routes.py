"""Load a router's table now: from its configured sources, or from files."""
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from ipr.routing.load import RefreshError, refresh_router
from ipr.routing.models import FORMATS, Router


class Command(BaseCommand):
    help = "Load a new version of a router's BGP table and make it active (the old one stays on error)."

    def add_arguments(self, parser):
        parser.add_argument("router", help="router name")
        parser.add_argument("files", nargs="*", help="dump files to load instead of the router's sources")
        parser.add_argument("--format", default="auto", choices=[f for f, _ in FORMATS])
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, router, files, format, no_progress, **options):
        try:
            target = Router.objects.get(name=router)
        except Router.DoesNotExist:
            raise CommandError(f"no router named {router!r}") from None
        bar = tqdm(unit=" routes", unit_scale=True, disable=no_progress, file=self.stderr._out)

        def progress(count):
            bar.update(count - bar.n)

        try:
            table = refresh_router(target.pk, files or None, format, progress)
        except RefreshError as exc:
            raise CommandError(f"refused, the active table stays: {exc}") from None
        finally:
            bar.close()
        if table.unchanged:
            self.stdout.write(f"{target.name}: the dump is the active table's (#{table.pk}): unchanged, "
                              f"no new version")
            return
        self.stdout.write(f"{target.name}: table #{table.pk} active: {table.routes} routes, "
                          f"{table.prefixes} prefixes, {table.attr_sets} attribute sets, "
                          f"{table.seconds:.1f} s")
