"""The Notifier contract: a notification channel, and the alert it is given to deliver.

A notifier is a class registered through ``segship_register_notifiers``; the built-in ``slack``,
``webhook`` and ``email`` channels are registered through the same hook. A ``notifications:``
entry of the config selects one by its ``type``; the entry's other keys (``exports`` and
``events`` aside, which segship keeps for itself) are the channel's settings, checked by the
class's ``settings_schema`` and given to it with every ``${env:…}``/``${file:…}`` resolved.

``send`` delivers one :class:`Alert` or raises :class:`NotifierError`; segship logs the error and
goes on (a channel that fails never fails a run) and bounds each ``send`` in time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from segship.destination import ConfigProblem
from segship.errors import SegshipError

#: The conditions an alert is about, in the order the docs list them.
EVENTS = ("failed", "safeguard", "rejects", "drop", "stale")
#: What each condition is, in a headline.
EVENT_HEADLINES = {"failed": "run failed", "safeguard": "a safeguard stopped a run", "rejects": "rows refused",
                   "drop": "members dropped", "stale": "no successful run"}


class NotifierError(SegshipError):
    """A channel could not deliver an alert; the message says why and never holds a secret."""


@dataclass(frozen=True)
class Alert:
    """A condition of an export that started (``open``) or cleared (``resolved``)."""

    event: str                      # one of EVENTS
    status: str                     # "open" or "resolved"
    export: str
    run_id: int | None              # the run that opened or cleared it; None for the scheduler's stale check
    message: str                    # one or two sentences for people, secrets and personal data out
    figures: dict[str, Any] = field(default_factory=dict)  # the numbers behind it, by name

    @property
    def headline(self) -> str:
        """``vip-to-braze: run failed`` (``… (resolved)`` once it cleared)."""
        resolved = " (resolved)" if self.status == "resolved" else ""
        return f"{self.export}: {EVENT_HEADLINES.get(self.event, self.event)}{resolved}"

    def figure_lines(self) -> list[tuple[str, str]]:
        """The figures as (name, text) pairs for a message a person reads."""
        return [(name, _figure_text(value)) for name, value in self.figures.items()]

    def as_dict(self) -> dict[str, Any]:
        """The alert as the webhook channel sends it: exactly these six keys."""
        return {"event": self.event, "status": self.status, "export": self.export, "run_id": self.run_id,
                "message": self.message, "figures": self.figures}


def _figure_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{key} {_figure_text(item)}" for key, item in value.items()) or "none"
    return "none" if value is None else str(value)


class Notifier(ABC):
    """Base class of notification channels. Subclasses set the class attributes and ``send``."""

    #: The ``type`` of a ``notifications:`` entry that selects this channel.
    name: ClassVar[str]
    #: JSON Schema of the channel's own keys of the entry (an object; ``type``, ``exports`` and
    #: ``events`` are added by segship); mark secrets ``"x-secret": true``: they must be references.
    settings_schema: ClassVar[dict[str, Any]]

    def __init__(self, channel: str, settings: Mapping[str, Any]) -> None:
        self.channel = channel  # the entry's name in ``notifications:``
        self.settings = settings  # resolved: holds secrets, never log it

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> Iterable[ConfigProblem]:
        """Checks beyond the JSON Schema, made by `segship validate` (no secrets resolved, no network);
        a problem's ``path`` is relative to the entry."""
        return ()

    @abstractmethod
    async def send(self, alert: Alert) -> None:
        """Deliver one alert; raise NotifierError when the channel refused it or could not be reached."""
