"""Publish the sender keys: the collector's key file, and what a web server
sends with (the nginx module's key file, the WSGI agent's environment, and
the snippet the admin shows with both).

The collector reads keys from a JSON file (docs/collector.md) and never from
the database, so every change to a key rewrites the whole file from the
database. The file is written beside the old one and renamed over it, so a
collector reading it at that moment reads either the old file or the new
one, never half of one; and it is checked with the collector's own loader
before the rename, so a file the collector would refuse never replaces a
good one. The collector notices the new file by itself (the rename makes it
a new inode) and loads it within config.KEY_PICKUP_SECONDS: nothing signals
it, so the web UI needs no right over the collector's process.
"""
from __future__ import annotations

import os
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
    refuse it; the old file is then left as it was. A file that already
    holds exactly these keys is left alone, so that rewriting it from a
    timer (a collector on another host) does not make the collector reload.
    """
    path = Path(path or settings.KEY_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = entries()
    text = config.dump_keys(keys)
    try:
        unchanged = path.read_text() == text and path.stat().st_mode & 0o777 == 0o600
    except (OSError, ValueError):  # missing or unreadable: write it
        unchanged = False
    if unchanged:
        return path, len(keys)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o600)  # it holds the secrets
            f.write(text)
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


def publish() -> tuple[bool, str]:
    """Write the key file. Returns (ok, what to tell the operator)."""
    try:
        path, count = write()
    except (OSError, config.ConfigError) as exc:
        return False, f"The collector's key file was NOT written: {exc}"
    return True, (f"Wrote {count} key(s) to {path}. A collector reading this file loads them "
                  f"within about {config.KEY_PICKUP_SECONDS} seconds.")


def nginx_key_file(key: SenderKey) -> str:
    """The nginx module's key file (``ipr_key_file``): one line KEY_ID:SECRET_HEX."""
    return f"{key.key_id}:{key.secret.lower()}\n"


def sender_for(key: SenderKey, sender_id: int | None = None) -> int:
    """The sender id a snippet sets: ``sender_id`` if the key lists it
    (ValueError if not), else the key's first (lowest) sender id."""
    allowed = key.sender_id_list
    if sender_id is None:
        return allowed[0]
    if sender_id not in allowed:
        raise ValueError(f"sender id {sender_id} is not one of key {key.key_id}'s "
                         f"({', '.join(map(str, allowed))}): the collector would refuse it")
    return sender_id


def wsgi_environment(key: SenderKey, collector: str | None = None, sender_id: int | None = None) -> str:
    """The WSGI agent's environment (docs/agent.md), one VARIABLE=value a line.

    The sender id is one the key lists (sender_for); each server or site
    should have its own, since the collector counts losses per sender."""
    return "".join(f"{name}={value}\n" for name, value in (
        ("IPR_COLLECTOR", collector or settings.COLLECTOR_ADDRESS),
        ("IPR_KEY_ID", key.key_id),
        ("IPR_KEY_SECRET", key.secret.lower()),
        ("IPR_SENDER_ID", sender_for(key, sender_id)),
        ("IPR_TRAFFIC_TYPE", traffic_type(key)),
    ))


def traffic_type(key: SenderKey) -> str:
    return key.traffic_type.name if key.traffic_type else "default"


def snippet(key: SenderKey, collector: str | None = None, sender_id: int | None = None,
            reveal: bool = True) -> dict[str, str]:
    """What to paste onto a web server to send with ``key``: the nginx
    module's key file and directives, and the WSGI agent's environment.

    With ``reveal`` false the secret is left out (the admin shows it once,
    when it is made or replaced), and the snippet says how to print it."""
    collector = collector or settings.COLLECTOR_ADDRESS
    sender = sender_for(key, sender_id)
    if not reveal:
        hidden = f"<secret {key.secret_fingerprint}: run `ipr agent-key --id {key.key_id}` to print it>"
        return {name: text.replace(key.secret.lower(), hidden)
                for name, text in snippet(key, collector, sender).items()}
    allowed = ", ".join(map(str, key.sender_id_list))
    nginx = f"""\
# /etc/nginx/ipr.key, mode 600 (nginx reads it as root), as
# `ipr agent-key --id {key.key_id}` prints it:
{nginx_key_file(key)}
# The libnginx-mod-http-ipr package loads the module; one built by hand
# needs, at the top level of nginx.conf:
# load_module modules/ngx_http_ipr_module.so;

# in http {{ }}
ipr_collector    {collector};
ipr_key_file     /etc/nginx/ipr.key;
ipr_sender_id    {sender};    # one per server or site; this key allows: {allowed}
# in each server {{ }} (or location) to measure
ipr on;
ipr_traffic_type {traffic_type(key)};
"""
    wsgi = f"""\
# as `ipr agent-key --id {key.key_id} --format env` prints it
# (IPR_SENDER_ID: one per server or site; this key allows: {allowed}):
{wsgi_environment(key, collector, sender)}\
# or, instead of IPR_KEY_SECRET, a file holding the secret (chmod 600):
# IPR_KEY_SECRET_FILE=/run/secrets/ipr_key
"""
    return {"nginx": nginx, "wsgi": wsgi}
