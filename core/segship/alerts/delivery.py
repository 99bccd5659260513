"""Sending alerts to the channels that hear of them; a channel that fails is logged, never raised.

Every alert is logged (``alert.open`` as a warning, ``alert.resolved``), channels or not. Each
channel whose ``exports`` and ``events`` take it gets it: the channels at once, a channel's alerts
one after the other in the order they were judged, each send bounded in time. A channel's
settings are resolved when it sends, so a missing ``${env:…}`` is that channel's failure,
logged like any other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import replace

import structlog

from segship.config.model import NotificationConfig
from segship.log import redact_text
from segship.notifiers.contract import Alert, NotifierError
from segship.plugins import Plugins

log = structlog.get_logger("segship.alerts")

#: The most one channel may take to send one alert; its own timeouts should end it well before.
SEND_SECONDS = 30


async def deliver(channels: Iterable[NotificationConfig], plugins: Plugins, alerts: Iterable[Alert]) -> None:
    """Log each alert and send it to every channel (``Config.notifications``) that hears of it: the
    channels at once, each channel's alerts in order."""
    alerts = [replace(alert, message=redact_text(alert.message)) for alert in alerts]
    for alert in alerts:
        # without the message: it is the run's own (a failed run's error line already says it), and a
        # log that said a failure twice would read as two
        report = log.warning if alert.status == "open" else log.info
        report(f"alert.{alert.status}", export=alert.export, alert_event=alert.event, run_id=alert.run_id)
    await asyncio.gather(*(_send_each(channel, plugins, heard) for channel in channels
                           if (heard := [alert for alert in alerts if channel.hears(alert.export, alert.event)])))


async def _send_each(channel: NotificationConfig, plugins: Plugins, alerts: list[Alert]) -> None:
    for alert in alerts:
        await _send(channel, plugins, alert)


async def _send(channel: NotificationConfig, plugins: Plugins, alert: Alert) -> None:
    try:
        cls = plugins.notifier(channel.type)
        if cls is None:
            raise NotifierError(f"the notifier {channel.type!r} is not installed (see `segship plugins`)")
        await asyncio.wait_for(cls(channel.name, channel.resolved_settings()).send(alert), SEND_SECONDS)
    except Exception as exc:  # noqa: BLE001 - a channel that fails must not fail the run that raised the alert
        log.warning("alert.not_sent", channel=channel.name, export=alert.export, alert_event=alert.event,
                    status=alert.status, error=redact_text(f"{type(exc).__name__}: {exc}"))
    else:
        log.info("alert.sent", channel=channel.name, export=alert.export, alert_event=alert.event,
                 status=alert.status)
