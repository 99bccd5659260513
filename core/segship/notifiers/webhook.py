"""The built-in ``webhook`` channel: the alert as JSON, signed when a secret is set.

The body is exactly ``{"event", "status", "export", "run_id", "message", "figures"}``. With
``secret``, the header ``X-Segship-Signature: sha256=<hex>`` is the HMAC-SHA256 of the body's
bytes with the secret, so the receiver can check the alert is segship's and unchanged.
"""

from __future__ import annotations

import hashlib
import hmac

import orjson

from segship.notifiers.contract import Alert, Notifier
from segship.notifiers.http_post import post_json, url_settings_schema

SIGNATURE_HEADER = "X-Segship-Signature"


class WebhookNotifier(Notifier):
    name = "webhook"
    settings_schema = url_settings_schema(
        "Where alerts are POSTed, by reference: ${env:ALERT_WEBHOOK_URL}.",
        secret={"type": "string", "minLength": 1, "x-secret": True,
                "description": "Signs each body (HMAC-SHA256, header X-Segship-Signature), by reference."})

    async def send(self, alert: Alert) -> None:
        body = orjson.dumps(alert.as_dict())
        secret = self.settings.get("secret")
        headers = {SIGNATURE_HEADER: signature(body, secret)} if secret else {}
        await post_json(self.channel, self.settings["url"], body, headers)


def signature(body: bytes, secret: str) -> str:
    """``sha256=<hex HMAC-SHA256 of body with secret>``, the value of X-Segship-Signature."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
