from django.core.management.base import BaseCommand, CommandError

from collector.config import ConfigError
from ipr.agents import keyfile


class Command(BaseCommand):
    help = ("Write the collector's key file from the sender keys in the database. "
            "A collector reading the file loads it by itself.")

    def add_arguments(self, parser):
        parser.add_argument("path", nargs="?", help="where to write it (default: IPR_KEY_FILE)")

    def handle(self, path=None, **options):
        try:
            written, count = keyfile.write(path)
        except (OSError, ConfigError) as exc:
            raise CommandError(f"key file not written: {exc}") from None
        self.stdout.write(f"wrote {count} key(s) to {written}")
