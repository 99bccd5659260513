"""The built-in ``slack`` channel: an incoming webhook, a readable Block Kit message.

The message carries ``text`` (what a notification or an old client shows) and ``blocks``: a
header with the headline, the message, the figures as fields, and a context line naming the
export, the event and the run. Text from segship is escaped for Slack's mrkdwn.
"""

from __future__ import annotations

from typing import Any

import orjson

from segship.notifiers.contract import Alert, Notifier
from segship.notifiers.http_post import post_json, url_settings_schema

#: Block Kit's limits: a header's text, a section's text, a section's fields and each field's text.
HEADER_CHARACTERS = 150
SECTION_CHARACTERS = 3000
FIELDS = 10
FIELD_CHARACTERS = 2000
ICONS = {"open": ":rotating_light:", "resolved": ":white_check_mark:"}


class SlackNotifier(Notifier):
    name = "slack"
    settings_schema = url_settings_schema("The Slack incoming-webhook URL, by reference: ${env:SLACK_WEBHOOK_URL}.")

    async def send(self, alert: Alert) -> None:
        await post_json(self.channel, self.settings["url"], orjson.dumps(slack_message(alert)))


def slack_message(alert: Alert) -> dict[str, Any]:
    """The webhook's JSON body for ``alert``."""
    icon = ICONS.get(alert.status, "")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                    "text": _cut(f"{icon} {alert.headline}", HEADER_CHARACTERS)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(escape(alert.message), SECTION_CHARACTERS)}},
    ]
    fields = [{"type": "mrkdwn", "text": _cut(f"*{escape(name)}*\n{escape(text)}", FIELD_CHARACTERS)}
              for name, text in alert.figure_lines()[:FIELDS]]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    run = f" · run {alert.run_id}" if alert.run_id is not None else ""
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": escape(
        f"segship · export {alert.export} · event {alert.event} ({alert.status}){run}")}]})
    return {"text": f"{icon} {escape(alert.headline)}: {escape(alert.message)}", "blocks": blocks}


def escape(text: str) -> str:
    """Text as Slack's mrkdwn shows it literally (its three control characters escaped)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
