"""Hook implementations: the ``sendinblue`` destination and the ``segship sandbox sendinblue`` command."""

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

from segship_sendinblue.destination import SendinblueDestination
from segship_sendinblue.schemas import DEFAULT_REQUESTS_PER_SECOND


@hookimpl
def segship_register_destinations(register: Callable[[type[Destination]], None]) -> None:
    register(SendinblueDestination)


def parse_list_ids(text: str) -> list[int]:
    try:
        list_ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter("expected list IDs separated by commas, e.g. 3,7") from None
    if not list_ids or min(list_ids) < 1:
        raise typer.BadParameter("expected at least one list ID, each 1 or more")
    return list_ids


def sandbox_sendinblue(
    host: HostOption = "127.0.0.1",
    port: PortOption = 0,
    api_key: ApiKeyOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
    account: Annotated[list[str] | None, typer.Option(
        metavar="KEY=ORGANIZATION_ID", help="An API key of another account, with contacts and lists of its own "
             "(repeatable; two keys on one organization id are one account). --api-key (or, without it, any "
             "other key) reaches the default account.")] = None,
    lists: Annotated[str, typer.Option(help="IDs of the contact lists that exist, comma-separated.")]
        = "1,2,3,4,5,6,7,8,9,10",
    process_delay: Annotated[float, typer.Option(help="Seconds an import stays queued before it is processed.")]
        = 1.0,
    requests_per_second: Annotated[float, typer.Option(
        help="Rate limit of the API (Brevo's General plan: 10); 0 turns it off.")] = DEFAULT_REQUESTS_PER_SECOND,
    error_fraction: ErrorFractionOption = 0.0,
    error_status: ErrorStatusOption = None,
    latency: LatencyOption = 0.0,
    drop_fraction: DropFractionOption = 0.0,
    fail_imports: Annotated[int, typer.Option(help="Make the next N import processes fail.")] = 0,
    import_failure_fraction: Annotated[float, typer.Option(help="Share of import processes that fail.")] = 0.0,
    seed: SeedOption = None,
) -> None:
    """Local emulator of the Brevo (Sendinblue) v3 contacts API; prints its base URL (…/v3) first."""
    # imported here: the sandbox (an aiohttp server) is not what a run needs to start
    from segship.sandbox import serve
    from segship_sendinblue.sandbox import BrevoFaults, BrevoSandbox

    faults = BrevoFaults(**fault_settings(error_fraction, error_status, latency, drop_fraction, seed),
                         fail_next_imports=fail_imports, import_failure_fraction=import_failure_fraction)
    rate_limit = RateLimit(max(1, round(requests_per_second)), 1.0) if requests_per_second > 0 else None
    sandbox = BrevoSandbox(api_key=api_key, accounts=parse_key_assignments(account, "ORGANIZATION_ID"),
                           list_ids=parse_list_ids(lists), process_delay=process_delay, rate_limit=rate_limit,
                           faults=faults)
    serve(sandbox, host, port, announce=announce, ssl_context=server_tls(tls_cert, tls_key))


@hookimpl
def segship_register_commands(cli: typer.Typer, sandbox: typer.Typer) -> None:
    sandbox.command("sendinblue")(sandbox_sendinblue)
