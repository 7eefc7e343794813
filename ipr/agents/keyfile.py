"""Publish the sender keys to the collector: its key file, the reload, and
the configuration snippet an operator pastes onto a web server.

The collector reads keys from a JSON file (docs/collector.md) and never from
the database, so every change to a key rewrites the whole file from the
database. The file is written beside the old one and renamed over it, so a
collector reloading at that moment reads either the old file or the new
one, never half of one; and it is checked with the collector's own loader
before the rename, so a file the collector would refuse never replaces a
good one.
"""
from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path

from django.conf import settings

from collector import config
from ipr.agents.models import SenderKey


def entries() -> list[dict]:
    return [k.key_file_entry() for k in SenderKey.objects.order_by("key_id")]


def write(path: Path | str | None = None) -> tuple[Path, int]:
    """Write every key to the key file (settings.KEY_FILE unless ``path``).

    Returns the path and the number of keys. Raises OSError when the file
    cannot be written and config.ConfigError when the collector would
    refuse it; the old file is then left as it was.
    """
    path = Path(path or settings.KEY_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = entries()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o600)  # it holds the secrets
            f.write(config.dump_keys(keys))
            f.flush()
            os.fsync(f.fileno())
        config.load_keys(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    # The rename itself survives a crash only once the directory is synced.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path, len(keys)


def reload_collector() -> tuple[bool, str]:
    """SIGHUP the collector whose pid is in settings.COLLECTOR_PID_FILE.

    Returns (done, what to tell the operator). Without the setting (the
    collector often runs on another host) it only says what to run.
    """
    pid_file = settings.COLLECTOR_PID_FILE
    if pid_file is None:
        return False, ("Reload the collector to apply it: kill -HUP <collector master pid> "
                       "(or systemctl reload ipr-collector).")
    try:
        pid = int(Path(pid_file).read_text().split()[0])
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError, IndexError) as exc:
        return False, (f"Could not signal the collector through {pid_file} ({exc}); "
                       "reload it with kill -HUP <collector master pid>.")
    return True, f"Sent SIGHUP to the collector (pid {pid}); it reloads its keys."


def publish() -> tuple[bool, str]:
    """Write the key file and reload the collector. Returns (ok, message)."""
    try:
        path, count = write()
    except (OSError, config.ConfigError) as exc:
        return False, f"The collector's key file was NOT written: {exc}"
    _done, reload_text = reload_collector()
    return True, f"Wrote {count} key(s) to {path}. {reload_text}"


def snippet(key: SenderKey, collector: str | None = None, sender_id: int | None = None) -> dict[str, str]:
    """What to paste onto a web server to send with ``key``: the nginx
    module's directives and key file, and the WSGI agent's environment."""
    collector = collector or settings.COLLECTOR_ADDRESS
    sender = key.key_id if sender_id is None else sender_id
    ttype = key.traffic_type.name if key.traffic_type else "default"
    secret = key.secret.lower()
    nginx = f"""\
# /etc/nginx/ipr.key, readable by root only (chmod 600): nginx reads it at start
{key.key_id}:{secret}

# nginx.conf: at the top level
load_module modules/ngx_http_ipr_module.so;
# in http {{ }}
ipr_collector    {collector};
ipr_key_file     /etc/nginx/ipr.key;
ipr_sender_id    {sender};    # one number per server or site
# in each server {{ }} (or location) to measure
ipr on;
ipr_traffic_type {ttype};
"""
    wsgi = f"""\
IPR_COLLECTOR={collector}
IPR_KEY_ID={key.key_id}
IPR_KEY_SECRET={secret}
# or, instead of IPR_KEY_SECRET, a file holding the secret (chmod 600):
# IPR_KEY_SECRET_FILE=/run/secrets/ipr_key
IPR_SENDER_ID={sender}
IPR_TRAFFIC_TYPE={ttype}
"""
    return {"nginx": nginx, "wsgi": wsgi}
