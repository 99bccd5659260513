"""Logging: structlog configured once, with secrets redacted and personal data masked.

Events go to stderr, as console lines or, with ``--log-format json``, one JSON object a
line. Two processors guard every event: known secrets become ``***`` always; emails
and phone numbers are masked unless ``--log-pii`` is given.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

from segship.secrets import redactor

EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9-]+\.)+[A-Za-z]{2,}")
PHONE = re.compile(r"\+?\d[\d\s().-]{7,}\d")
AUTH_HEADER = re.compile(r"(?i)(authorization|api-key|x-api-key)(['\"]?\s*[:=]\s*['\"]?)(bearer\s+)?[^'\",\s}]+")


def mask_pii(text: str) -> str:
    """Mask emails (keep the first letter) and phone numbers."""
    text = EMAIL.sub(lambda m: f"{m.group(1)}***@***", text)
    return PHONE.sub("***phone***", text)


def redact_text(text: str) -> str:
    """Remove secrets from text: known resolved values and anything in an auth header."""
    return AUTH_HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}***", redactor.redact(text))


def _scrub(value: Any, text_filter) -> Any:
    if isinstance(value, str):
        return text_filter(value)
    if isinstance(value, dict):
        return {k: _scrub(v, text_filter) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_scrub(v, text_filter) for v in value)
    if isinstance(value, BaseException):
        return text_filter(str(value))
    return value


def _redact_processor(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    return _scrub(event, redact_text)


def _pii_processor(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    return _scrub(event, mask_pii)


def configure_logging(*, json_format: bool = False, level: str = "info", log_pii: bool = False) -> None:
    """Configure structlog for the process; safe to call again (the last call wins)."""
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        # tracebacks become text before the scrubbers run, so they are redacted too
        structlog.processors.format_exc_info,
    ]
    # secrets first: masking personal data could cut a key (digits that look like a phone number)
    # into pieces the redactor no longer recognises
    processors.append(_redact_processor)
    if not log_pii:
        processors.append(_pii_processor)
    # the timestamp is added after masking, which would take it for a phone number
    processors.append(structlog.processors.TimeStamper(fmt="iso", utc=True))
    if json_format:
        processors.append(structlog.processors.JSONRenderer())
    else:
        # plain tracebacks: rich's would print local variables, which may hold secrets or personal data
        processors.append(structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(),
                                                        exception_formatter=structlog.dev.plain_traceback))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        # stderr as it is when an event is logged, not when logging was set up: an in-process
        # invocation (typer's CliRunner) swaps sys.stderr for a stream it closes afterwards
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )
