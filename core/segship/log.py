"""Logging: structlog configured once, with secrets redacted and personal data masked.

Events go to stderr, as console lines or, with ``--log-format json``, one JSON object a
line. Two processors guard every event: known secrets become ``***`` always; personal
data is masked unless ``--log-pii`` is given, and nothing else is (a timestamp, an
address, a count or an id comes out as it went in). Personal data is an email address
or a phone number written in international form wherever it appears, and the value of a
field named for a member's identity (:data:`IDENTITY_FIELDS`), which no pattern could
tell from any other id.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

from segship.secrets import redactor

EMAIL = re.compile(
    # a URL's user (postgresql://segship@db.example.com) is a login, not someone's address: kept whole
    r"(?P<url_user>[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@]*@)"
    # an address matched from the first character of its name, so that character is the one shown
    r"|(?<![A-Za-z0-9._%+-])(?P<initial>[A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}")
PHONE_MASK = "***phone***"
#: Without a country, the library recognises only numbers written with one (a "+" and its calling
#: code); a plus sign, ASCII or full-width, is where every such number starts.
PHONE_PLUS_SIGNS = ("+", "\uff0b")
#: Fields whose value is a member's identity (a Braze external_id, a Brevo email), masked whole by name.
IDENTITY_FIELDS = frozenset({"identity", "identities"})
IDENTITY_MASK = "***identity***"
AUTH_HEADER = re.compile(r"(?i)(authorization|api-key|x-api-key)(['\"]?\s*[:=]\s*['\"]?)(bearer\s+)?[^'\",\s}]+")
#: the password of a URL's user; the email mask keeps a URL's user whole, so this must go first
URL_PASSWORD = re.compile(r"(://[^\s/?#:@]*:)[^\s/?#@]+@")


def mask_pii(text: str) -> str:
    """Mask email addresses (keep the first letter) and phone numbers written in international form."""
    if "@" in text:
        text = EMAIL.sub(_masked_email, text)
    if any(sign in text for sign in PHONE_PLUS_SIGNS):
        text = _mask_phone_numbers(text)
    return text


def _masked_email(match: re.Match[str]) -> str:
    return match["url_user"] or f"{match['initial']}***@***"


def _mask_phone_numbers(text: str) -> str:
    # imported when first needed: a process that logs no "+" never loads the library
    from phonenumbers import Leniency, PhoneNumberMatcher

    # No default region: a number without its calling code can't be told from a count, an epoch
    # second or an id (2147483648, a count of bytes, is a valid Dallas number). POSSIBLE rather
    # than VALID: a mistyped or unassigned number is still someone's.
    pieces, end = [], 0
    for number in PhoneNumberMatcher(text, None, leniency=Leniency.POSSIBLE):
        pieces += (text[end:number.start], PHONE_MASK)
        end = number.end
    return "".join(pieces) + text[end:] if pieces else text


def redact_text(text: str) -> str:
    """Remove secrets from text: known resolved values, anything in an auth header, a URL's password."""
    text = AUTH_HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}***", redactor.redact(text))
    return URL_PASSWORD.sub(r"\1***@", text)


def _scrub(value: Any, text_filter, masked_fields: frozenset[str] = frozenset()) -> Any:
    """``value`` with ``text_filter`` applied to every text in it; fields named in ``masked_fields``
    (at any depth) are masked whole instead."""
    if isinstance(value, str):
        return text_filter(value)
    if isinstance(value, dict):
        return {k: _masked_identity(v) if k in masked_fields else _scrub(v, text_filter, masked_fields)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_scrub(v, text_filter, masked_fields) for v in value)
    if isinstance(value, BaseException):
        return text_filter(str(value))
    return value


def _masked_identity(value: Any) -> Any:
    if value is None:  # a member without an identity says so
        return None
    if isinstance(value, (list, tuple)):
        return type(value)(_masked_identity(v) for v in value)
    return IDENTITY_MASK


def _redact_processor(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    return _scrub(event, redact_text)


def _pii_processor(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    return _scrub(event, mask_pii, IDENTITY_FIELDS)


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
    # the timestamp is segship's own clock, nobody's data: added after the scrubbers, which need not read it
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
