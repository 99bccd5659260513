"""Notification channels: the contract (``contract.py``) and the built-in channels, one module each.

This package is also the built-in plugin that registers ``slack``, ``webhook`` and ``email``
through ``segship_register_notifiers``, as a third party registers a PagerDuty or Teams channel.
Which alerts are sent when is ``segship.alerts``'s business; a channel only delivers one.
"""

from __future__ import annotations

from collections.abc import Callable

from segship import hookimpl
from segship.notifiers.contract import Notifier


@hookimpl
def segship_register_notifiers(register: Callable[[type[Notifier]], None]) -> None:
    from segship.notifiers.email import EmailNotifier
    from segship.notifiers.slack import SlackNotifier
    from segship.notifiers.webhook import WebhookNotifier

    for notifier in (SlackNotifier, WebhookNotifier, EmailNotifier):
        register(notifier)
