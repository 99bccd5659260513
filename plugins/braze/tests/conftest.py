"""Fixtures: a Braze sandbox and destinations bound to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from segship.destination import ConnectionContext, ExportContext, Record
from segship.http import RetryPolicy

from segship_braze.destination import BrazeDestination
from segship_braze.sandbox import SANDBOX_API_KEY, BrazeSandbox, RunningBrazeSandbox

#: Retries as in production, only fast.
FAST_RETRY = RetryPolicy(attempts=6, base_delay=0.01, max_delay=0.05)
SEGMENT = "3c4a9e52-0000-4000-8000-000000000001"
MAPPING = {"customer_id": "customer_id", "email": "email",
           "attributes": {"first_name": "first_name", "tier": "tier", "lifetime_value": "lifetime_value"}}

DestinationFactory = Callable[..., BrazeDestination]


@pytest.fixture
def braze_sandbox() -> Iterator[RunningBrazeSandbox]:
    """A fresh sandbox accepting only ``SANDBOX_API_KEY``, without a rate limit."""
    with RunningBrazeSandbox(BrazeSandbox(api_key=SANDBOX_API_KEY)) as running:
        yield running


@pytest.fixture
async def make_destination() -> AsyncIterator[DestinationFactory]:
    """Builds destinations (SEGMENT, MAPPING) and finishes them after the test."""
    made: list[BrazeDestination] = []

    def make(url: str, *, settings: dict[str, Any] | None = None, mapping: dict[str, Any] | None = None,
             connection: dict[str, Any] | None = None, export: bool = True,
             retry: RetryPolicy = FAST_RETRY) -> BrazeDestination:
        context = ExportContext("vip-to-braze", {"segment_api_identifier": SEGMENT, **(settings or {})},
                                mapping or MAPPING, ("vip",))
        connection_settings = {"api_key": SANDBOX_API_KEY, "rest_endpoint": url, **(connection or {})}
        destination = BrazeDestination(ConnectionContext("braze-test", connection_settings),
                                       context if export else None, retry=retry)
        made.append(destination)
        return destination

    yield make
    for destination in made:
        await destination.finish()


def person(number: int, **columns: Any) -> dict[str, Any]:
    """A segment row."""
    return {"customer_id": number, "email": f"person{number}@example.com", "first_name": f"First{number}",
            "tier": "gold", "lifetime_value": 1000 + number, **columns}


def records(destination: BrazeDestination, rows: list[dict[str, Any]]) -> list[Record]:
    return [destination.map(row) for row in rows]
