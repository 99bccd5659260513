"""The Brevo destination against segship's conformance suite, through its sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from segship.ratelimit import RateLimit
from segship.sandbox import BackgroundSandbox
from segship.testing import DestinationConformance

from segship_sendinblue.destination import SendinblueDestination
from segship_sendinblue.sandbox import BrevoSandbox


class TestBrevoConformance(DestinationConformance):
    destination = SendinblueDestination
    key_column = "id"
    mapping = {"email": "email", "first_name": "first_name", "phone": "phone"}
    settings = {"list_id": 3}
    moved_settings = {"list_id": 4}
    paced = ({"requests_per_second": 10}, RateLimit(10, 1.0))
    paced_path = "/v3/contacts/import"
    column_kinds = {"email": ["good_email"] * 4 + ["email", "large_text", "int64", "nothing"],
                    "phone": ["good_phone"] * 3 + ["phone", "int64", "float64", "nothing"]}

    def row(self, number: int) -> dict[str, Any]:
        return {"id": f"C{number}", "email": f"member{number}@example.com", "first_name": f"First{number}",
                "phone": f"+3361234{number:04d}"}

    def connection_settings(self, url: str) -> dict[str, Any]:
        return {"api_key": self.api_key, "base_url": url, "process_poll_interval": 0.005,
                "process_poll_max_interval": 0.02}

    @contextmanager
    def upstream(self) -> Iterator[str]:
        with BackgroundSandbox(BrevoSandbox(api_key=self.api_key, process_delay=0.01)) as sandbox:
            yield sandbox.url
