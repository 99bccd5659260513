"""Fixtures: a Brevo sandbox and destinations bound to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from segship.destination import ConnectionContext, ExportContext, Record
from segship.http import RetryPolicy

from segship_sendinblue.destination import SendinblueDestination
from segship_sendinblue.sandbox import SANDBOX_API_KEY, BrevoSandbox, RunningBrevoSandbox

#: Retries as in production, only fast.
FAST_RETRY = RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.05)
MAPPING = {"email": "email", "first_name": "first_name", "last_name": "last_name", "phone": "phone",
           "attributes": {"TIER": "tier"}}

DestinationFactory = Callable[..., SendinblueDestination]


def connection_settings(url: str, **overrides: Any) -> dict[str, Any]:
    return {"api_key": SANDBOX_API_KEY, "base_url": url, "requests_per_second": 1000,
            "process_poll_interval": 0.005, "process_poll_max_interval": 0.02, **overrides}


@pytest.fixture
def sendinblue_sandbox() -> Iterator[RunningBrevoSandbox]:
    """A fresh sandbox accepting only ``SANDBOX_API_KEY``, without a rate limit."""
    with RunningBrevoSandbox(BrevoSandbox(api_key=SANDBOX_API_KEY, process_delay=0.01)) as running:
        yield running


@pytest.fixture
async def make_destination() -> AsyncIterator[DestinationFactory]:
    """Builds destinations (list 2, MAPPING) and finishes them after the test."""
    made: list[SendinblueDestination] = []

    def make(url: str, *, settings: dict[str, Any] | None = None, mapping: dict[str, Any] | None = None,
             connection: dict[str, Any] | None = None, export: bool = True, **kwargs: Any) -> SendinblueDestination:
        context = ExportContext("vip-to-brevo", {"list_id": 2, **(settings or {})}, mapping or MAPPING, ("vip",))
        destination = SendinblueDestination(
            ConnectionContext("brevo-test", connection_settings(url, **(connection or {}))),
            context if export else None, retry=kwargs.pop("retry", FAST_RETRY), **kwargs)
        made.append(destination)
        return destination

    yield make
    for destination in made:
        await destination.finish()


def person(number: int, **columns: Any) -> dict[str, Any]:
    """A segment row."""
    return {"email": f"Person{number}@Example.com ", "first_name": f"First{number}", "last_name": f"Last{number}",
            "phone": f"+33 6 12 34 {number // 100 % 100:02d} {number % 100:02d}", "tier": "gold", **columns}


def records(destination: SendinblueDestination, rows: list[dict[str, Any]]) -> list[Record]:
    return [destination.map(row) for row in rows]
