"""The gateway's log lines, on the `ttc.serve` logger: one access line per request, an error line
with the traceback on every 5xx, one line per start, reload (HTTP or signal) and shutdown.

Lines are plain text (`ttc serve: access request_id=... status=200 ...`) or, with `--log-json`,
one JSON object per line (`{"ts", "level", "event", "message", ...fields}`), the form log
shippers read without a parser of their own. uvicorn's own warnings and errors take the same
form; its access log is off (the gateway writes its own, with the decision in it).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

LOGGER = logging.getLogger("ttc.serve")
_OURS = "_ttc_serve_handler"


def event(name: str, message: str, level: int = logging.INFO, exc: Any = None, **fields: Any):
    """Log one line: `name` is the event (access, error, reload, start, shutdown)."""
    exc_info = None
    if isinstance(exc, BaseException):
        exc_info = (type(exc), exc, exc.__traceback__)
    LOGGER.log(level, message, exc_info=exc_info, extra={"event": name, "fields": fields})


def _value(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, float):
        return f"{v:.6g}"
    text = str(v)
    return json.dumps(text) if (not text or any(c in text for c in ' "=')) else text


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {}) or {}
        line = f"ttc serve: {record.getMessage()}"
        if fields:
            line += " " + " ".join(f"{k}={_value(v)}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        out: dict[str, Any] = {
            "ts": f"{ts}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": getattr(record, "event", record.name),
            "message": record.getMessage(),
        }
        out.update(getattr(record, "fields", {}) or {})
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class _Stderr(logging.StreamHandler):
    """A handler on whatever sys.stderr is when a line is written (a test runner swaps it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def configure(json_lines: bool = False, stream: TextIO | None = None) -> logging.Handler:
    """Send the gateway's lines (and uvicorn's warnings) to `stream` (default: stderr) in one
    form; calling it again replaces the handler it added before."""
    handler = logging.StreamHandler(stream) if stream is not None else _Stderr()
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    setattr(handler, _OURS, True)
    for name, level in (("ttc.serve", logging.INFO), ("uvicorn.error", logging.WARNING)):
        logger = logging.getLogger(name)
        for h in [h for h in logger.handlers if getattr(h, _OURS, False)]:
            logger.removeHandler(h)
        logger.addHandler(handler)
        logger.setLevel(level)
    return handler
