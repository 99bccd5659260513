"""segship's structlog events, sent to the Dagster step's logger while an export runs.

segship logs through structlog, configured for the process by ``segship.log``
(secrets redacted, personal data masked). While a step runs an export, one more
processor, placed just before the renderer, hands each event to the step's
``context.log`` instead of stderr: the event has been redacted and masked by then, and
the Dagster UI shows it with the step's other logs. Events from anywhere else (no step
is running in this context) still go to stderr as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import structlog
from segship.log import configure_logging

_step_log: ContextVar[logging.Logger | None] = ContextVar("segship_dagster_step_log", default=None)


def _to_step_log(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    step_log = _step_log.get()
    if step_log is None:
        return event
    level = event.pop("level", method)
    event.pop("timestamp", None)  # Dagster stamps its own
    name = event.pop("event", "")
    fields = " ".join(f"{key}={value}" for key, value in event.items())
    step_log.log(logging.getLevelName(level.upper()), f"{name} {fields}".strip())
    raise structlog.DropEvent


def _install() -> None:
    """Put the step-log processor into segship's structlog chain (once per configuration)."""
    processors = structlog.get_config()["processors"]
    if _to_step_log in processors:
        return
    if not any(getattr(p, "__module__", "") == "segship.log" for p in processors):
        configure_logging()  # structlog was never configured by segship in this process
        processors = structlog.get_config()["processors"]
    structlog.configure(processors=[*processors[:-1], _to_step_log, processors[-1]])


@contextmanager
def events_to(step_log: logging.Logger) -> Iterator[None]:
    """Within the block (and the tasks and threads it starts), segship's events go to ``step_log``."""
    _install()
    token = _step_log.set(step_log)
    try:
        yield
    finally:
        _step_log.reset(token)
