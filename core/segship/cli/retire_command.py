"""``segship retire EXPORT [--dry-run]``: remove the members of an export gone from the config, then forget it.

The engine does the work (``segship/engine/retire.py``, which says why there is no safeguard
and no ``--yes``); this module picks the connection's role rule, runs it with Ctrl-C handled as
``export`` handles it, and prints what was (or would be) removed from where.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from segship import event_loop
from segship.cli.app import GlobalOptions, app, fail, load_config_or_exit
from segship.cli.exit_codes import EXIT_INVALID, OUTCOME_EXIT_CODES
from segship.cli.progress import progress_for_terminal
from segship.cli.run_commands import stop_on_signals
from segship.engine.report import RunReport
from segship.log import redact_text
from segship.plugins import get_plugins


def summary(report: RunReport) -> str:
    """What was removed (or would be) from where, then how it ended."""
    plan = report.plan or {}
    verb = "would remove" if report.dry_run else "removed"
    done = "" if report.dry_run else f"; {report.removed} removal(s) acknowledged, {report.rejected} refused"
    lines = [f"{report.export}: {'dry run ' if report.dry_run else ''}{report.outcome} (retire: {plan.get('remove', 0)} "
             f"member(s), {plan.get('stale_identities', 0)} old identit(ies) through connection "
             f"{plan.get('connection', '?')!r}){done}"]
    for target in plan.get("targets", []):
        where = ", ".join(f"{setting} {value}" for setting, value in target["target"].items())
        lines.append(f"  {verb} from {where}: {target['members']} member(s), {target['stale_identities']} old "
                     "identit(ies)")
    return "\n".join(lines + ([f"  {report.message}"] if report.message else []))


@app.command("retire")
def retire_command(
    ctx: typer.Context,
    export: Annotated[str, typer.Argument(help="An export no longer in the config whose members to remove.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be removed from where; send nothing, "
                                                            "forget nothing.")] = False,
) -> None:
    """Remove an export's members from its destination (connection and target from state), then forget its state.

    For an export deleted from the config: state knows its members, where they are and the
    connection its last run used (which must still be in the config). Every member is removed:
    no removal safeguard applies. Run it with --dry-run first. Stopped or refused part-way, it
    keeps what is left in state: run it again. Exit 0 done, 1 failed or stopped, 2 a problem with
    the config or the export named, 3 some removals were refused.
    """
    from segship.engine.retire import ExportRetirement
    from segship.engine.state import open_state

    loaded = load_config_or_exit(ctx)
    state = open_state(loaded)

    async def run() -> RunReport:
        stop = asyncio.Event()
        stop_on_signals(stop)
        retirement = ExportRetirement(loaded, export, get_plugins(), state, dry_run=dry_run,
                                      progress=progress_for_terminal(), stop=stop)
        role = GlobalOptions.of(ctx).role
        if not retirement.connection.usable_by_role(role):
            raise fail(f"export {export!r} was sent through connection {retirement.connection.name!r}, which only "
                       f"admins may use; you run as {role}", EXIT_INVALID)
        return await retirement.run()

    try:
        report = event_loop.run(run())
    finally:
        state.close()
    typer.echo(redact_text(summary(report)))
    raise typer.Exit(OUTCOME_EXIT_CODES.get(report.outcome, 1))
