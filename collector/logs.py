"""How ipr's processes write their log lines to standard error.

Under systemd (JOURNAL_STREAM is set), the journal stamps the time itself,
and a line that starts with its syslog priority, ``<4>`` for a warning, is
stored at that priority: ``journalctl -u ipr-worker -p warning`` then shows
the warnings and errors alone. Elsewhere a line starts with its time.
"""
from __future__ import annotations

import logging
import os

# syslog's priorities: err 3, warning 4, info 6, debug 7 (crit 2)
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


class LineFormatter(logging.Formatter):
    def __init__(self, fmt: str = "%(levelname)s %(name)s %(message)s", journal: bool | None = None):
        self.journal = bool(os.environ.get("JOURNAL_STREAM")) if journal is None else journal
        super().__init__(fmt if self.journal else "%(asctime)s " + fmt)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if not self.journal:
            return text
        priority = next((p for level, p in _PRIORITIES if record.levelno >= level), 7)
        # Each line of a traceback is an entry of its own in the journal.
        return "\n".join(f"<{priority}>{line}" for line in text.split("\n"))
