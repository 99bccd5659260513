"""Hook implementations: the ``braze`` destination and the ``segship sandbox braze`` command."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer
from segship import hookimpl
from segship.sandbox_options import (
    ApiKeyOption,
    DropFractionOption,
    ErrorFractionOption,
    ErrorStatusOption,
    HostOption,
    LatencyOption,
    PortOption,
    SeedOption,
    TlsCertOption,
    TlsKeyOption,
    announce,
    fault_settings,
    server_tls,
    parse_key_assignments,
)
from segship.destination import Destination
from segship.http import RateLimit

from segship_braze.destination import BrazeDestination
from segship_braze.schemas import DEFAULT_REQUESTS_PER_3S


@hookimpl
def segship_register_destinations(register: Callable[[type[Destination]], None]) -> None:
    register(BrazeDestination)


def sandbox_braze(
    host: HostOption = "127.0.0.1",
    port: PortOption = 0,
    api_key: ApiKeyOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
    workspace: Annotated[list[str] | None, typer.Option(
        metavar="KEY=NAME", help="A REST key of another workspace, with users of its own (repeatable; two keys on "
                                 "one name are one workspace). --api-key (or, without it, any other key) reaches the "
                                 "default workspace.")] = None,
    forbidden_key: Annotated[list[str] | None, typer.Option(
        help="A key that authenticates but lacks the users.track permission: answered 403 (repeatable).")] = None,
    rate_limit: Annotated[int, typer.Option(
        help="/users/track requests allowed per 3 seconds (Braze's default: 3000); 0 turns the limit off.")]
        = DEFAULT_REQUESTS_PER_3S,
    error_fraction: ErrorFractionOption = 0.0,
    error_status: ErrorStatusOption = None,
    latency: LatencyOption = 0.0,
    drop_fraction: DropFractionOption = 0.0,
    refuse: Annotated[list[str] | None, typer.Option(
        help="external_id of a user whose attributes objects are refused in errors[] (repeatable).")] = None,
    seed: SeedOption = None,
) -> None:
    """Local emulator of Braze's /users/track; prints its base URL (the rest_endpoint to use) first."""
    # imported here: the sandbox (an aiohttp server) is not what a run needs to start
    from segship.sandbox import serve
    from segship_braze.sandbox import BrazeFaults, BrazeSandbox

    faults = BrazeFaults(**fault_settings(error_fraction, error_status, latency, drop_fraction, seed),
                         refuse_external_ids=list(refuse or ()))
    sandbox = BrazeSandbox(api_key=api_key, workspaces=parse_key_assignments(workspace, "NAME"),
                           rate_limit=RateLimit(rate_limit, 3.0) if rate_limit > 0 else None,
                           faults=faults, forbidden_keys=forbidden_key or ())
    serve(sandbox, host, port, announce=announce, ssl_context=server_tls(tls_cert, tls_key))


@hookimpl
def segship_register_commands(cli: typer.Typer, sandbox: typer.Typer) -> None:
    sandbox.command("braze")(sandbox_braze)
