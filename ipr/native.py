"""Compiled code or its pure-Python twin: one choice, made once per process.

Each compiled extension of ipr (setup.py) has a pure-Python twin with the
same interface, the same results and the same errors (tests run both on
the same inputs). ``IPR_NATIVE`` picks:

- ``auto`` (the default): the compiled one where it was built, else the twin;
- ``0`` / ``python``: the twin, always (for tests and comparisons);
- ``1`` / ``native``: the compiled one, and an ImportError if it is missing
  (a package that must have been built with it).

Which one runs is logged once per extension, at its first use, on the
``ipr.native`` logger: ``collector receive loop: compiled
(collector._receive)`` or ``... pure Python (no compiled module: ...)``.
"""
from __future__ import annotations

import importlib
import logging
import os

log = logging.getLogger("ipr.native")

_chosen: dict[str, object] = {}


def mode() -> str:
    value = os.environ.get("IPR_NATIVE", "auto").strip().lower()
    if value in ("0", "python", "no", "off"):
        return "python"
    if value in ("1", "native", "yes", "on"):
        return "native"
    return "auto"


def compiled(module: str, what: str):
    """The compiled ``module``, or None where the twin should run.

    ``what`` names the part in the log line (e.g. "MRT parser").
    """
    key = f"{module}:{mode()}"
    if key in _chosen:
        return _chosen[key]
    chosen = None
    how = mode()
    if how == "python":
        log.info("%s: pure Python (IPR_NATIVE=%s)", what, os.environ.get("IPR_NATIVE"))
    else:
        try:
            chosen = importlib.import_module(module)
        except ImportError as exc:
            if how == "native":
                raise ImportError(f"{what}: IPR_NATIVE={os.environ.get('IPR_NATIVE')} asks for the "
                                  f"compiled {module}, which cannot be imported: {exc}") from exc
            log.info("%s: pure Python (no compiled module: %s)", what, exc)
        else:
            log.info("%s: compiled (%s)", what, module)
    _chosen[key] = chosen
    return chosen


def reset() -> None:
    """Forget the choices (tests that change IPR_NATIVE)."""
    _chosen.clear()
