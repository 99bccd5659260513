"""The Braze destination against segship's conformance suite, through its sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from segship.ratelimit import RateLimit
from segship.sandbox import BackgroundSandbox
from segship.testing import DestinationConformance

from segship_braze.destination import BrazeDestination
from segship_braze.sandbox import BrazeSandbox


class TestBrazeConformance(DestinationConformance):
    destination = BrazeDestination
    key_column = "customer_id"
    mapping = {"customer_id": "customer_id", "email": "email", "attributes": {"first_name": "first_name"}}
    settings = {"segment_api_identifier": "segment-a"}
    moved_settings = {"segment_api_identifier": "segment-b"}
    paced = ({"requests_per_3s": 2}, RateLimit(2, 3.0))
    column_kinds = {"customer_id": ["good_text"] * 3 + ["text", "int64", "int8", "large_text", "huge_text", "decimal",
                                                        "big_decimal", "float64", "bool", "nothing"],
                    "email": ["good_email"] * 4 + ["email", "large_text", "int64", "nothing"]}

    def row(self, number: int) -> dict[str, Any]:
        return {"customer_id": f"C{number}", "email": f"member{number}@example.com", "first_name": f"First{number}"}

    def connection_settings(self, url: str) -> dict[str, Any]:
        return {"api_key": self.api_key, "rest_endpoint": url}

    @contextmanager
    def upstream(self) -> Iterator[str]:
        with BackgroundSandbox(BrazeSandbox(api_key=self.api_key)) as sandbox:
            yield sandbox.url
