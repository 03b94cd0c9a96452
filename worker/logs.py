"""Logging set-up: one JSON object per line for Kubernetes, or plain text for people.

The Kafka client logs a condition each time it meets it: a missing topic ten times a second.
Its repeats are held back (`Repeats`), so one condition stays one line a minute.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """ts, level, logger, message, any `extra` fields, and the exception if there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class Repeats(logging.Filter):
    """Lets each distinct message of the Kafka client (loggers `kafka.*`) through at most once
    per `every_s`; the next one through says how many were held back meanwhile."""

    def __init__(self, every_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.every_s, self.clock = every_s, clock
        self.seen: dict[tuple[str, int, str], tuple[float, int]] = {}  # last shown, held

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("kafka"):
            return True
        key, now = (record.name, record.levelno, record.getMessage()), self.clock()
        shown, held = self.seen.get(key, (-float("inf"), 0))
        if now - shown < self.every_s:
            self.seen[key] = (shown, held + 1)
            return False
        if len(self.seen) >= 1000:  # messages that differ each time: forget the old ones
            self.seen = {k: v for k, v in self.seen.items() if now - v[0] < self.every_s}
        self.seen[key] = (now, 0)
        if held:
            record.msg = f"{key[2]} (and {held} times more in {now - shown:.0f} s)"
            record.args = None
        return True


def configure(level: str, fmt: str) -> None:
    """Send the root logger's records to stderr in `fmt` ('json' or 'text')."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(Repeats())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("kafka").setLevel(max(logging.WARNING, root.level))
