"""Structured logging: one JSON object per line, so log pipelines can index fields."""

from __future__ import annotations

import logging
import re
import sys

from pythonjsonlogger.json import JsonFormatter


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Routes the root logger to stderr as JSON (or plain text for a terminal)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{name}{message}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # A write that conflicts with another leads replica's is run again (leads.store.base);
    # psycopg warns "error ignored terminating <Pipeline>" for each: expected, not news.
    logging.getLogger("psycopg").setLevel(logging.ERROR)


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def redact_quoted(text: str) -> str:
    """Error messages quote the offending value, which may be personal data: drop it for logs."""
    return _QUOTED.sub("'…'", text)
