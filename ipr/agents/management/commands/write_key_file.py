from django.core.management.base import BaseCommand, CommandError

from collector.config import ConfigError
from ipr.agents import keyfile


class Command(BaseCommand):
    help = "Write the collector's key file from the sender keys in the database (and reload the collector)."

    def add_arguments(self, parser):
        parser.add_argument("path", nargs="?", help="where to write it (default: IPR_KEY_FILE)")
        parser.add_argument("--no-reload", action="store_true", help="do not signal the collector")

    def handle(self, path=None, no_reload=False, **options):
        try:
            written, count = keyfile.write(path)
        except (OSError, ConfigError) as exc:
            raise CommandError(f"key file not written: {exc}") from None
        self.stdout.write(f"wrote {count} key(s) to {written}")
        if not no_reload:
            done, text = keyfile.reload_collector()
            (self.stdout if done else self.stderr).write(text)
