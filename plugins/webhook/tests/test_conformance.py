"""The webhook destination against segship's conformance suite, through its sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from segship.ratelimit import RateLimit
from segship.sandbox import BackgroundSandbox
from segship.testing import DestinationConformance

from segship_webhook.destination import WebhookDestination
from segship_webhook.sandbox import WebhookSandbox


class TestWebhookConformance(DestinationConformance):
    destination = WebhookDestination
    key_column = "customer_id"
    mapping = {"identity": "email", "fields": {"first_name": "first_name"}}
    settings: dict[str, Any] = {}  # an export's settings may be empty: the paths' defaults
    moved_settings = {"upsert_path": "/vip", "remove_path": "/vip/remove"}
    paced = ({"requests_per_second": 2}, RateLimit(2, 1.0))
    column_kinds = {"email": ["good_email"] * 4 + ["email", "large_text", "int64", "nothing"]}

    def row(self, number: int) -> dict[str, Any]:
        return {"customer_id": f"C{number}", "email": f"member{number}@example.com", "first_name": f"First{number}"}

    def connection_settings(self, url: str) -> dict[str, Any]:
        return {"url": url, "secret": self.api_key}

    @contextmanager
    def upstream(self) -> Iterator[str]:
        # the sandbox checks each body's signature with the secret: another secret is refused (401)
        with BackgroundSandbox(WebhookSandbox(secret=self.api_key)) as sandbox:
            yield sandbox.url
