"""Collector configuration (TOML) and sender keys (JSON).

Both are documented in docs/collector.md. Loading either returns a new
immutable object or raises ConfigError naming the file and the problem, so
a reload can keep the old one when the new one is bad. A key file that does
not exist is no keys, not an error: a new install's collector starts before
anyone has made a key, and loads the file once the admin writes it.
"""
from __future__ import annotations

import ipaddress
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ipr_agent import wire

DEFAULT_PORT = 9477
# At most this long after the key file is replaced, the collector uses the
# new keys: the master looks at the file every second (daemon.py,
# KEY_CHECK_INTERVAL) and each worker takes the reload within its receive
# timeout, 0.2 s. Measured: 0.02 to 0.97 s while datagrams arrive, 0.23 to
# 1.20 s when the workers are idle.
KEY_PICKUP_SECONDS = 2


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Key:
    id: int
    secret: bytes
    enabled: bool
    networks: tuple  # of ipaddress networks
    name: str = ""
    # The sender ids a datagram signed with this key may claim; any other
    # is rejected as sender_not_allowed.
    sender_ids: frozenset = frozenset()

    def allows(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if ip.version == 6 and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.networks)


@dataclass(frozen=True)
class Config:
    path: Path | None = None
    listen: tuple = (("::", DEFAULT_PORT),)
    processes: int = 1
    rcvbuf: int = 32 * 1024 * 1024
    spool_dir: Path = Path("spool")
    key_file: Path = Path("keys.json")
    metrics_listen: tuple | None = ("127.0.0.1", DEFAULT_PORT + 1)
    max_datagram: int = 9000
    min_tag_len: int = wire.TAG_MIN
    max_age: float = 60.0
    max_future: float = 5.0
    flush_interval: float = 1.0
    segment_seconds: float = 60.0
    replay_window: int = 1024
    keys: dict = field(default_factory=dict, compare=False)
    # The key file's identity (key_file_state) as it was before it was read.
    key_state: tuple | None = field(default=None, compare=False)

    # Settings a running collector can take on SIGHUP; the rest need a restart.
    RELOADABLE = ("key_file", "max_datagram", "min_tag_len", "max_age",
                  "max_future", "flush_interval", "segment_seconds")


def reloaded(running: Config, new: Config) -> tuple[Config, list[str]]:
    """The configuration a running collector takes on SIGHUP: ``new``'s
    reloadable settings and keys, ``running``'s others. Also returns the
    names of changed settings that only a restart applies."""
    fixed = [n for n in Config.__dataclass_fields__
             if n not in Config.RELOADABLE and n not in ("keys", "key_state", "path")
             and getattr(new, n) != getattr(running, n)]
    merged = Config(**{**running.__dict__, **{n: getattr(new, n) for n in Config.RELOADABLE},
                       "keys": new.keys, "key_state": new.key_state})
    return merged, fixed


def key_file_state(path: Path | str) -> tuple | None:
    """The key file's identity: (inode, mtime in ns, size, mode), or None
    when it does not exist. Any write changes it: the admin's replaces the
    file by a rename, so even a rewrite with the same size within one clock
    tick is a new inode. The mode is part of it so that the ``chmod`` a
    refusal asks for is taken without a signal."""
    try:
        st = os.stat(path)
    except OSError:  # missing, or not reachable: loading it says which
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size, st.st_mode


def parse_hostport(text: str, what: str, allow_zero: bool = False) -> tuple[str, int]:
    """'host:port', '[v6]:port' or ':port' (all addresses) to (host, port).

    Port 0 (with allow_zero) lets the kernel pick one, which the log names.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not (0 if allow_zero else 1) <= int(port) < 65536:
        raise ConfigError(f"{what}: {text!r} is not host:port")
    host = host.strip("[]") or "::"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"{what}: {host!r} is not an IP address") from None
    return host, int(port)


def _number(raw: dict, name: str, kind, low, high, default, origin: str):
    value = raw.pop(name, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{origin}: {name} must be a {kind.__name__} in {low}..{high}, not {value!r}")
    return value


def load_config(path: Path | str) -> Config:
    """Read the collector's TOML configuration and its key file."""
    path = Path(path)
    origin = str(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    d = Config()
    listen = raw.pop("listen", [f"[::]:{DEFAULT_PORT}"])
    if isinstance(listen, str):
        listen = [listen]
    if not listen or not all(isinstance(x, str) for x in listen):
        raise ConfigError(f"{origin}: listen must be a list of 'host:port' strings")
    metrics = raw.pop("metrics_listen", f"127.0.0.1:{DEFAULT_PORT + 1}")
    base = path.parent
    cfg = Config(
        path=path,
        listen=tuple(parse_hostport(x, f"{origin}: listen", allow_zero=True) for x in listen),
        processes=_number(raw, "processes", int, 1, 64, d.processes, origin),
        rcvbuf=_number(raw, "rcvbuf", int, 65536, 1 << 31, d.rcvbuf, origin),
        spool_dir=base / raw.pop("spool_dir", str(d.spool_dir)),
        key_file=base / raw.pop("key_file", str(d.key_file)),
        metrics_listen=parse_hostport(metrics, f"{origin}: metrics_listen") if metrics else None,
        max_datagram=_number(raw, "max_datagram", int, 512, wire.MAX_DATAGRAM, d.max_datagram, origin),
        min_tag_len=_number(raw, "min_tag_len", int, wire.TAG_MIN, wire.TAG_MAX, d.min_tag_len, origin),
        max_age=_number(raw, "max_age", float, 1.0, 3600.0, d.max_age, origin),
        max_future=_number(raw, "max_future", float, 0.0, 600.0, d.max_future, origin),
        flush_interval=_number(raw, "flush_interval", float, 0.05, 1.0, d.flush_interval, origin),
        segment_seconds=_number(raw, "segment_seconds", float, 1.0, 3600.0, d.segment_seconds, origin),
        replay_window=_number(raw, "replay_window", int, 64, 65536, d.replay_window, origin),
    )
    if raw:
        raise ConfigError(f"{origin}: unknown setting(s): {', '.join(sorted(raw))}")
    # Taken before the read, so a change during the read is seen later.
    state = key_file_state(cfg.key_file)
    return Config(**{**cfg.__dict__, "keys": load_keys(cfg.key_file, missing_ok=True), "key_state": state})


def key_file_mode_problem(path: Path | str, mode: int) -> str | None:
    """Why a key file with permission bits ``mode`` must not be used, or None.

    As ssh does for private keys: the file holds every sender's secret, so
    no one but its owner (and the collector's group, read-only: the Debian
    package runs the admin and the collector as one user, and an operator
    may give a collector of another user the file through its group) may
    read it, and no one but its owner may write it."""
    if mode & 0o027:
        return (f"{path}: mode {mode & 0o777:04o} lets other users read or change the sender "
                f"secrets; run: chmod 600 {path} (or chmod 640 {path} with the collector's group)")
    return None


def _u32_list(value, where: str, name: str) -> frozenset:
    if (not isinstance(value, list) or not value
            or not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= wire.U32
                       for x in value)):
        raise ConfigError(f"{where}: {name} must be a non-empty list of integers in 0..{wire.U32}")
    return frozenset(value)


def load_keys(path: Path | str, missing_ok: bool = False) -> dict[int, Key]:
    """Read the key file: {"keys": [{"id", "secret", "enabled", "networks",
    "sender_ids", "name"}]}.

    With ``missing_ok``, a file that does not exist is no keys. A file that
    users other than its owner and group may read, or that anyone but its
    owner may write, is refused (key_file_mode_problem). An entry without
    ``sender_ids`` (a file written before keys named their senders) speaks
    for the sender id equal to its key id only, what the admin's snippet
    has always set."""
    origin = str(path)
    try:
        with open(path, "rb") as f:
            problem = key_file_mode_problem(origin, os.fstat(f.fileno()).st_mode)
            text = f.read()
    except FileNotFoundError as exc:
        if missing_ok:
            return {}
        raise ConfigError(f"{origin}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    if problem:
        raise ConfigError(problem)
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    entries = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f'{origin}: expected an object with a "keys" list')
    keys: dict[int, Key] = {}
    for i, e in enumerate(entries):
        where = f"{origin}: keys[{i}]"
        if not isinstance(e, dict):
            raise ConfigError(f"{where}: expected an object")
        unknown = set(e) - {"id", "secret", "enabled", "networks", "sender_ids", "name"}
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        kid = e.get("id")
        if not isinstance(kid, int) or isinstance(kid, bool) or not 0 <= kid <= wire.U32:
            raise ConfigError(f"{where}: id must be an integer in 0..{wire.U32}")
        if kid in keys:
            raise ConfigError(f"{where}: duplicate key id {kid}")
        try:
            secret = bytes.fromhex(e.get("secret", ""))
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: secret must be hex") from None
        if len(secret) < 16:
            raise ConfigError(f"{where}: secret must be at least 16 bytes (32 hex digits)")
        enabled = e.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{where}: enabled must be true or false")
        nets = e.get("networks")
        if not isinstance(nets, list) or not all(isinstance(n, str) for n in nets):
            raise ConfigError(f"{where}: networks must be a list of CIDR strings "
                              '(["0.0.0.0/0", "::/0"] allows any source)')
        try:
            networks = tuple(ipaddress.ip_network(n) for n in nets)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        senders = _u32_list(e["sender_ids"], where, "sender_ids") if "sender_ids" in e else frozenset([kid])
        keys[kid] = Key(kid, secret, enabled, networks, str(e.get("name", "")), senders)
    return keys


def dump_keys(keys: list[dict]) -> str:
    """The key file text for a list of key dicts (as the admin will write it)."""
    return json.dumps({"keys": keys}, indent=2) + "\n"
