"""The ``ipr`` command: Django's management commands for an installed ipr
(``ipr migrate``, ``ipr createsuperuser``, ``ipr agent-key``, ...); in a
checkout, ``python manage.py`` runs the same.

With IPR_ENV_FILE set (the Debian package's /usr/bin/ipr sets it to
/etc/ipr/ipr.env), the settings come from that file, as the systemd units
read it; a variable already in the environment wins.
"""
import os
import sys


def main() -> None:
    path = os.environ.get("IPR_ENV_FILE")
    if path:
        from django.core.exceptions import ImproperlyConfigured

        from ipr.env import read_env_file
        try:
            variables = read_env_file(path)
        except OSError as exc:
            sys.exit(f"ipr: cannot read the settings {path}: {exc.strerror} "
                     "(run ipr as root or as the ipr user)")
        except ImproperlyConfigured as exc:
            sys.exit(f"ipr: {exc}")
        for name, value in variables.items():
            os.environ.setdefault(name, value)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ipr.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
