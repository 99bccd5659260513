"""``segship state``: inspect run state, move it between SQLite and PostgreSQL, drop an export's, rebuild
an export's from its destination.

State that can't be used (locked, unreachable, an unset ``state.url`` or ``--to`` reference)
raises a segship error, which ``cli/app.py`` prints with its exit code (1; 2 for the reference).
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import orjson
import typer
from rich.console import Console
from rich.table import Table

from segship import event_loop
from segship.cli.app import GlobalOptions, app, fail, fail_with, fail_with_config, load_config_or_exit
from segship.cli.exit_codes import EXIT_INVALID
from segship.config import ConfigError
from segship.config.validate import role_issues
from segship.errors import SegshipError
from segship.plugins import get_plugins
from segship.secrets import is_reference, resolve

if TYPE_CHECKING:
    from segship.engine.state import StateStore

state_app = typer.Typer(help="Inspect, move (SQLite <-> PostgreSQL), drop and rebuild run state.",
                        no_args_is_help=True)
app.add_typer(state_app, name="state")
console = Console(width=160)


@state_app.command("show")
def show_command(
    ctx: typer.Context,
    export: Annotated[str | None, typer.Argument(help="Only this export.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Where state lives (backend, schema version) and, per export, members, rejects and the last run."""
    from segship.engine.state import open_state

    loaded = load_config_or_exit(ctx)
    state = open_state(loaded)
    try:
        exports = state.summary(export)
        for row in exports:  # a warehouse planner keeps them: said where, not counted (state can't)
            location = state.members_location(row["export"])
            if location is not None:
                row["members"], row["members_location"] = None, location._asdict()
        header = {"backend": state.backend, "where": state.describe(), "schema_version": state.schema_version()}
    finally:
        state.close()
    if as_json:
        typer.echo(orjson.dumps({**header, "exports": exports}, option=orjson.OPT_INDENT_2).decode())
        return
    typer.echo(f"state: {header['backend']}, {header['where']}, schema {header['schema_version']}")
    table = Table("export", "members", "rejects", "stale identities", "last run", "outcome", "started", "finished")
    for row in exports:
        last = row["last_run"] or {}
        name = row["export"] + ("" if row["export"] in loaded.exports else " (not in the config)")
        location = row.get("members_location")
        members = str(row["members"]) if location is None else f"in {location['source']}/{location['schema']}"
        table.add_row(name, members, str(row["rejects"]), str(row["stale_identities"]),
                      str(last.get("id", "-")), last.get("outcome", "-") + (" (dry run)" if last.get("dry_run") else ""),
                      last.get("started_at", "-"), last.get("finished_at") or "-")
    console.print(table)
    if export is not None and not exports:
        typer.echo(f"no state for export {export!r}")


def _target(to: str) -> str | Path:
    """``--to``: a ${env:…}/${file:…} reference (a URL is a secret) or a SQLite file path."""
    if is_reference(to):
        return resolve(to, Path.cwd(), where="--to", secret=True)
    if "://" in to:
        if urlsplit(to).password is not None:
            raise fail("--to: a database URL holds a password: give it by reference, e.g. "
                       "--to '${env:NEW_STATE_URL}', never on the command line", EXIT_INVALID)
        return to
    return Path(to).resolve()


@state_app.command("copy")
def copy_command(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--to", help="Target: a SQLite file path, or a PostgreSQL URL by reference: "
                                                 "'${env:VAR}' or '${file:PATH}'.")],
    force: Annotated[bool, typer.Option("--force", help="Replace a target that already holds state.")] = False,
) -> None:
    """Copy the config's state to another backend (SQLite <-> PostgreSQL) and verify the row counts.

    The exports are locked meanwhile, so no run changes the state being copied. Point the
    config at the target (state.url / state.path) afterwards.
    """
    from segship.engine.state import open_state, open_state_at

    loaded = load_config_or_exit(ctx)
    target_place = _target(to)
    source = open_state(loaded)
    try:
        target = open_state_at(target_place, where="--to")
        try:
            if target.describe() == source.describe():
                raise fail("--to names the state the config already uses: nothing to copy", EXIT_INVALID)
            with ExitStack() as locks:
                for row in source.summary():
                    locks.enter_context(source.export_lock(row["export"]))
                counts = source.counts()
                held = target.counts()
                if any(held.values()) and not force:
                    raise fail(f"the target ({target.describe()}) already holds state ({held['members']} members, "
                               f"{held['runs']} runs); add --force to replace it")
                target.replace_all({table: source.read_table(table) for table in counts})
                copied = target.counts()
            if copied != counts:
                raise fail(f"copy to {target.describe()} does not match: source {counts}, target {copied}")
        finally:
            target.close()
    finally:
        source.close()
    typer.echo(f"copied {source.backend} state {source.describe()} to {target.backend} {target.describe()}: "
               + ", ".join(f"{count} {table}" for table, count in copied.items()) + " (counts verified)")


@state_app.command("forget")
def forget_command(
    ctx: typer.Context,
    export: Annotated[str, typer.Argument(help="The export whose state to drop.")],
    left_in: Annotated[str | None, typer.Option(
        "--left-in", metavar="CONNECTION",
        help="Drop only what is left to remove from another destination instance reached through this "
             "connection (as `plan` and runs report it): the export's state otherwise stays.")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: drop its members, rejects and runs (with "
                                                    "--left-in: what is left in that instance).")] = False,
) -> None:
    """Drop everything state keeps about an export (an export that no longer exists), or only what is left
    in an instance no run can reach any more (--left-in).

    Nothing is removed from the destination. Without --left-in, if the export is still in the
    config, its next run sends every member again and removes nobody who left before.
    """
    from segship.engine.state import open_state

    loaded = load_config_or_exit(ctx)
    state = open_state(loaded)
    try:
        found = state.summary(export)
        if not found:
            raise fail(f"no state for export {export!r}")
        if left_in is not None:
            _forget_left_in(state, export, left_in, yes)
            return
        what = f"{found[0]['members']} members, {found[0]['rejects']} rejects and the run history"
        if not yes:
            raise fail(f"this drops the state of export {export!r} ({what}); add --yes to confirm", EXIT_INVALID)
        with state.export_lock(export):
            state.forget(export)
    finally:
        state.close()
    typer.echo(f"forgot export {export!r}: {what}")
    if export in loaded.exports:
        typer.echo(f"note: {export!r} is still in the config: its next run sends every member again", err=True)


def _forget_left_in(state: StateStore, export: str, connection: str, yes: bool) -> None:
    """Stop tracking what is left in the export's targets of another instance than its last run's,
    reached through ``connection``: an instance gone (a sandbox) or pointed away from in place."""
    from segship.engine.report import describe_instance

    recorded = state.recorded_instance(export)
    current = recorded.instance if recorded is not None else None
    places = {target: place for target, place in state.target_instances(export).items()
              if place.connection == connection and place.instance not in (None, current)}
    if not places:
        raise fail(f"export {export!r} has nothing left in another instance through connection {connection!r}")
    where = "; ".join(describe_instance(place.instance, connection) for place in places.values())
    if not yes:
        raise fail(f"this stops tracking what export {export!r} left to remove in {where}: they stay there; add "
                   "--yes to confirm", EXIT_INVALID)
    with state.export_lock(export):
        state.settle_in_flight(export)  # a killed run's batches to those targets are among them
        forgotten = sum(state.forget_target(export, target) for target in places)
    typer.echo(f"export {export!r}: stopped tracking {forgotten} member identities left in {where} "
               "(they stay in that destination)")


@state_app.command("rebuild")
def rebuild_command(
    ctx: typer.Context,
    export: Annotated[str, typer.Argument(help="The export whose membership to rebuild from its destination.")],
) -> None:
    """Rebuild an export's membership in state from what its destination lists (Brevo: the list's contacts).

    For lost state. A listed member whose identity a segment row has becomes that key's member (the
    next run sends its row again whole); one that no row has is removed by the next run; what state
    knows is kept. Sends nothing: `segship plan EXPORT` shows what the next run does.
    """
    from segship.engine.rebuild import rebuild_membership
    from segship.engine.state import open_state

    loaded = load_config_or_exit(ctx)
    if export not in loaded.exports:
        raise fail(f"unknown export {export!r} (exports: {', '.join(sorted(loaded.exports)) or 'none'})",
                   EXIT_INVALID)
    issues = role_issues(loaded, GlobalOptions.of(ctx).role, [export])
    if issues:
        raise fail_with_config(ConfigError(issues))
    state = open_state(loaded)
    try:
        rebuilt = event_loop.run(rebuild_membership(loaded, export, get_plugins(), state))
    except SegshipError as exc:
        raise fail_with(exc, export) from None
    finally:
        state.close()
    typer.echo(f"rebuilt export {export!r} from its destination: {rebuilt.listed} member(s) listed; "
               f"{rebuilt.members} match a segment row and are members again (the next run sends their rows "
               f"whole); {rebuilt.leavers} match none and the next run removes them; {rebuilt.known} were in "
               f"state already. See what the next run does: segship plan {export}")
