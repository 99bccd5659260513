"""Options every ``segship sandbox NAME`` command shares, so each plugin declares only its own."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated, Any

import typer

HostOption = Annotated[str, typer.Option(help="Interface to listen on.")]
PortOption = Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one.")]
ApiKeyOption = Annotated[str | None, typer.Option(help="Accept only this API key (default: any non-empty key).",
                                                  envvar="SEGSHIP_SANDBOX_API_KEY")]
ErrorFractionOption = Annotated[float, typer.Option(help="Share of API requests answered with an error status.")]
ErrorStatusOption = Annotated[list[int] | None, typer.Option(
    help="Status(es) used by --error-fraction (repeatable; default 500).")]
LatencyOption = Annotated[float, typer.Option(help="Seconds added to every API request.")]
DropFractionOption = Annotated[float, typer.Option(help="Share of API requests whose connection is dropped.")]
SeedOption = Annotated[int | None, typer.Option(help="Random seed of the fault knobs.")]
TlsCertOption = Annotated[Path | None, typer.Option(
    help="Serve HTTPS with this PEM certificate (chain); its key in it or in --tls-key.")]
TlsKeyOption = Annotated[Path | None, typer.Option(help="The PEM private key of --tls-cert.")]


def fault_settings(error_fraction: float, error_status: list[int] | None, latency: float, drop_fraction: float,
                   seed: int | None) -> dict[str, Any]:
    """The shared options as keyword arguments of ``segship.sandbox.Faults`` (or a subclass)."""
    return {"error_fraction": error_fraction, "error_statuses": tuple(error_status or (500,)), "latency": latency,
            "drop_fraction": drop_fraction, "seed": seed}


def server_tls(certificate: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """The HTTPS context of ``--tls-cert``/``--tls-key``, or None to serve plain HTTP."""
    if certificate is None:
        if key is not None:
            raise typer.BadParameter("--tls-key needs --tls-cert")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certificate, key)
    except (OSError, ssl.SSLError) as exc:
        raise typer.BadParameter(f"can't load the certificate {certificate}"
                                 f"{f' with the key {key}' if key else ''}: "
                                 f"{getattr(exc, 'reason', None) or exc.strerror or type(exc).__name__}") from None
    return context


def parse_key_assignments(entries: list[str] | None, value_name: str) -> dict[str, str]:
    """Repeated ``KEY=VALUE`` options (an API key and the account or workspace it belongs to) as a dict."""
    assignments = {}
    for entry in entries or ():
        key, _, value = entry.partition("=")
        if not key.strip() or not value.strip():
            raise typer.BadParameter(f"expected KEY={value_name}, got {entry!r}")
        assignments[key.strip()] = value.strip()
    return assignments


def announce(url: str) -> None:
    """Print the base URL as the first line of output, at once (a parent process is reading it)."""
    print(url, flush=True)
