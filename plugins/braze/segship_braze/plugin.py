"""Hook implementations: the ``braze`` destination and the ``segship sandbox braze`` command."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer
from segship import hookimpl
from segship.destination import Destination
from segship.ratelimit import RateLimit
from segship.sandbox import serve

from segship_braze.destination import BrazeDestination
from segship_braze.sandbox import BrazeFaults, BrazeSandbox
from segship_braze.schemas import DEFAULT_REQUESTS_PER_3S


@hookimpl
def segship_register_destinations(register: Callable[[type[Destination]], None]) -> None:
    register(BrazeDestination)


def sandbox_braze(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one.")] = 0,
    api_key: Annotated[str | None, typer.Option(help="Accept only this API key (default: any non-empty key).",
                                                envvar="SEGSHIP_SANDBOX_API_KEY")] = None,
    forbidden_key: Annotated[list[str] | None, typer.Option(
        help="A key that authenticates but lacks the users.track permission: answered 403 (repeatable).")] = None,
    rate_limit: Annotated[int, typer.Option(
        help="/users/track requests allowed per 3 seconds (Braze's default: 3000); 0 turns the limit off.")]
        = DEFAULT_REQUESTS_PER_3S,
    error_fraction: Annotated[float, typer.Option(help="Share of API requests answered with an error status.")]
        = 0.0,
    error_status: Annotated[list[int] | None, typer.Option(
        help="Status(es) used by --error-fraction (repeatable; default 500).")] = None,
    latency: Annotated[float, typer.Option(help="Seconds added to every API request.")] = 0.0,
    drop_fraction: Annotated[float, typer.Option(help="Share of API requests whose connection is dropped.")] = 0.0,
    refuse: Annotated[list[str] | None, typer.Option(
        help="external_id of a user whose attributes objects are refused in errors[] (repeatable).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed of the fault knobs.")] = None,
) -> None:
    """Local emulator of Braze's /users/track; prints its base URL (the rest_endpoint to use) first."""
    faults = BrazeFaults(error_fraction=error_fraction, error_statuses=tuple(error_status or (500,)),
                         latency=latency, drop_fraction=drop_fraction, seed=seed,
                         refuse_external_ids=list(refuse or ()))
    sandbox = BrazeSandbox(api_key=api_key, rate_limit=RateLimit(rate_limit, 3.0) if rate_limit > 0 else None,
                           faults=faults, forbidden_keys=forbidden_key or ())
    serve(sandbox, host, port, announce=lambda url: print(url, flush=True))


@hookimpl
def segship_register_commands(cli: typer.Typer, sandbox: typer.Typer) -> None:
    sandbox.command("braze")(sandbox_braze)
