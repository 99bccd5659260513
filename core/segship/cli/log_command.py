"""``segship log EXPORT [--key K | --identity ID | --run RUN_ID]``: the member-level sync log, newest first.

State keeps it (``SyncLogStore``); this module asks for one member's, one identity's or one run's
changes and prints them, identities and reasons masked as log lines are unless ``--log-pii``.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from segship.cli.app import GlobalOptions, app, fail, load_config_or_exit
from segship.cli.exit_codes import EXIT_INVALID
from segship.cli.run_commands import HistoryFormat
from segship.log import mask_pii, redact_text

console = Console(width=160)


@app.command("log")
def log_command(
    ctx: typer.Context,
    export: Annotated[str, typer.Argument(help="The export whose sync log to show.")],
    key: Annotated[str | None, typer.Option("--key", help="Only this member's changes (its segment key).")] = None,
    identity: Annotated[str | None, typer.Option(
        "--identity", help="Only the changes naming this destination identity (a Brevo email, a Braze external "
                           "id), exactly as segship sent it.")] = None,
    run_id: Annotated[int | None, typer.Option("--run", metavar="RUN_ID",
                                               help="Only this run's changes (`segship runs` lists them).")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many changes, newest first.")] = 50,
    output: Annotated[HistoryFormat, typer.Option(
        "--format", help="text: a table; json: the changes as the view segship_sync_log reads them.")
                      ] = HistoryFormat.text,
) -> None:
    """The member-level sync log: what happened to whom, when and why.

    Each member a run added, updated (with the changed columns), removed, moved, refused (with the
    reason) or sent with a field dropped, newest first, kept for sync_log.retention_days (default
    30). Identities and reasons are masked unless --log-pii. An export neither in the config nor
    in state is an error (exit 2).
    """
    from segship.engine.state import open_state

    if sum(option is not None for option in (key, identity, run_id)) > 1:
        raise fail("give at most one of --key, --identity and --run", EXIT_INVALID)
    loaded = load_config_or_exit(ctx)
    state = open_state(loaded)
    try:
        if export not in loaded.exports and not state.summary(export):
            raise fail(f"unknown export {export!r} (exports: {', '.join(sorted(loaded.exports)) or 'none'})",
                       EXIT_INVALID)
        changes, total = state.sync_log(export, key=key, identity=identity, run_id=run_id, limit=limit)
    finally:
        state.close()
    shown = [_shown(change, GlobalOptions.of(ctx).log_pii) for change in changes]
    if output is HistoryFormat.json:
        typer.echo(orjson.dumps({"export": export, "total": total, "changes": shown},
                                option=orjson.OPT_INDENT_2).decode())
        return
    table = Table("run", "at", "key", "identity", "action", "target", "fields", "reason")
    for change in shown:
        table.add_row(str(change["run_id"]), change["at"], change["key"], change["identity"] or "-",
                      change["action"], _target(change), change["fields"] or "", change["reason"] or "")
    console.print(table)
    more = f" (newest first; --limit {total} shows them all)" if total > len(shown) else ""
    typer.echo(f"showing {len(shown)} of {total} change(s){more}")


def _shown(change: dict[str, Any], log_pii: bool) -> dict[str, Any]:
    """A change as printed: secrets never, identities and reasons masked unless ``--log-pii``."""
    def text(value: str | None) -> str | None:
        if value is None:
            return None
        return redact_text(value) if log_pii else mask_pii(redact_text(value))

    return {**change, "identity": text(change["identity"]), "reason": text(change["reason"])}


def _target(change: dict[str, Any]) -> str:
    settings = change["target_settings"]
    if not settings:
        return str(change["target"] or "-")
    return ", ".join(f"{name} {value}" for name, value in settings.items())
