"""Hook implementations: the ``webhook`` destination and the ``segship sandbox webhook`` command."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer
from segship import hookimpl
from segship.destination import Destination

from segship_webhook.destination import WebhookDestination


@hookimpl
def segship_register_destinations(register: Callable[[type[Destination]], None]) -> None:
    register(WebhookDestination)


def sandbox_webhook(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one.")] = 0,
    secret: Annotated[str | None, typer.Option(
        help="Accept only bodies signed with this secret (default: any well-formed signature).",
        envvar="SEGSHIP_SANDBOX_SECRET")] = None,
    rate_limit: Annotated[float, typer.Option(
        help="Requests allowed per second, answered 429 beyond; 0 (the default) turns the limit off.")] = 0.0,
    refuse: Annotated[list[str] | None, typer.Option(
        help="Identity of a member answered in refused (repeatable).")] = None,
) -> None:
    """Local service speaking segship's webhook protocol; prints its base URL (the url to use) first."""
    # imported here: the sandbox (an aiohttp server) is not what a run needs to start
    from segship.ratelimit import RateLimit
    from segship.sandbox import serve
    from segship_webhook.sandbox import WebhookSandbox

    sandbox = WebhookSandbox(secret=secret, rate_limit=RateLimit.per_second(rate_limit) if rate_limit > 0 else None,
                             refuse_identities=refuse or ())
    # the first line of output at once: a parent process reads the URL from it
    serve(sandbox, host, port, announce=lambda url: print(url, flush=True))


@hookimpl
def segship_register_commands(cli: typer.Typer, sandbox: typer.Typer) -> None:
    sandbox.command("webhook")(sandbox_webhook)
