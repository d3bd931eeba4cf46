"""Structured logging for the service: JSON lines for machines, plain lines for people.

`setup_logging()` installs one stderr handler on the root logger. When stderr is not a
terminal (a container, systemd, a pipe) each record is one JSON object per line:

    {"ts":"2026-11-02T08:00:00.123Z","level":"info","logger":"goodwill.kafka",
     "msg":"assigned partitions","partitions":"goodwill.events[0,1]"}

On a terminal the same record reads `08:00:00 info  goodwill.kafka: assigned partitions
partitions=goodwill.events[0,1]`. Fields passed as `extra={...}` become JSON keys.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Final, TextIO

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per record; exceptions as a `error` field with the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.gmtime(record.created)
        millis = int(record.msecs)
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{millis:03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(_fields(record))
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`HH:MM:SS level logger: message key=value ...` for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(record.created))
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{when} {record.levelname.lower():5} {record.name}: {record.getMessage()}"
        if extra:
            line += "  " + extra
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(
    level: int | str = logging.INFO, *, json_lines: bool | None = None, stream: TextIO | None = None
) -> None:
    """Route every logger to `stream` (stderr) as JSON lines, or as text on a terminal.

    `json_lines=None` decides by whether the stream is a terminal. Calling it again
    replaces the handler it installed, so tests and the CLI can call it freely.
    """
    stream = sys.stderr if stream is None else stream
    if json_lines is None:
        json_lines = not (hasattr(stream, "isatty") and stream.isatty())
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    handler.set_name("goodwill")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "goodwill"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # kafka-python logs every reconnect attempt at WARNING/ERROR; the service says it once.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
