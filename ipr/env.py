"""Read settings from the environment and fail loudly on a bad value.

Every secret can also come from a file: FOO_FILE=/run/secrets/foo reads
FOO from that file (a trailing newline is dropped). Setting both is an
error, so it is never unclear which one is in use.
"""
import os

from django.core.exceptions import ImproperlyConfigured

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    path = os.environ.get(name + "_FILE")
    if value is not None and path is not None:
        raise ImproperlyConfigured(f"set {name} or {name}_FILE, not both")
    if path is not None:
        try:
            with open(path) as f:
                return f.read().rstrip("\n")
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE: cannot read {path}: {exc}") from None
    return default if value is None else value


def envbool(name: str, default: bool) -> bool:
    value = env(name)
    if value is None:
        return default
    if value.strip().lower() in TRUE:
        return True
    if value.strip().lower() in FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r}: expected one of {sorted(TRUE | FALSE - {''})}")


def envint(name: str, default: int, low: int = 0, high: int = 2**31) -> int:
    value = env(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r}: expected an integer") from None
    if not low <= number <= high:
        raise ImproperlyConfigured(f"{name}={number}: expected {low}..{high}")
    return number


def envlist(name: str, default: list[str]) -> list[str]:
    value = env(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def read_env_file(path: str) -> dict[str, str]:
    """The variables of an environment file as systemd's EnvironmentFile=
    reads it: NAME=value lines, '#' or ';' comments, a value in single or
    double quotes taken as it is, no expansion. The Debian package's
    /etc/ipr/ipr.env is read this way by the units and by the ipr command."""
    variables = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            name, sep, value = line.partition("=")
            name, value = name.strip(), value.strip()
            if not sep or not name.replace("_", "a").isalnum() or name[0].isdigit():
                raise ImproperlyConfigured(f"{path}, line {number}: expected NAME=value, not {line!r}")
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            variables[name] = value
    return variables
