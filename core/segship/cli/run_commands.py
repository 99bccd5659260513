"""Commands that plan, run and explain exports: plan, export, schedule, runs, rejects, connections test."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from segship import event_loop
from segship.cli import plan_format, rejects_format
from segship.cli.app import ConfigOption, GlobalOptions, app, fail, fail_with, load_config_or_exit
from segship.cli.exit_codes import EXIT_INVALID, combined_exit_code
from segship.cli.progress import progress_for_terminal
from segship.config import Config, ConfigError
from segship.config.validate import resolve_connection_settings, role_issues
from segship.destination import ConnectionContext
from segship.errors import SegshipError
from segship.log import redact_text
from segship.plugins import get_plugins

if TYPE_CHECKING:
    from segship.engine.report import ExportPlan, RunReport
    from segship.engine.run import RunOptions
    from segship.engine.state import StateStore

# The engine (DuckDB, Arrow) is imported by the commands that run it, so that
# `segship validate` and friends start fast.

connections_app = typer.Typer(help="Check destination connections.", no_args_is_help=True)
app.add_typer(connections_app, name="connections")
console = Console(width=160)


def _select(ctx: typer.Context, config: Config, names: Iterable[str] | None, run_all: bool) -> list[str]:
    names = list(names or [])
    if run_all:
        names = list(config.exports)
    if not names:
        raise fail("name one or more exports, or use --all", EXIT_INVALID)
    unknown = [name for name in names if name not in config.exports]
    if unknown:
        raise fail(f"unknown export {unknown[0]!r} (exports: {', '.join(sorted(config.exports)) or 'none'})",
                   EXIT_INVALID)
    issues = role_issues(config, GlobalOptions.of(ctx).role, names)
    if issues:
        typer.echo(ConfigError(issues).render(), err=True)
        raise typer.Exit(EXIT_INVALID)
    return names


def _state(config: Config) -> StateStore:
    from segship.engine.state import open_state

    return open_state(config)


# -- plan -----------------------------------------------------------------------------------------

def _safeguard_stop(config: Config, plan: ExportPlan) -> str | None:
    """Why a run of this plan would stop before sending, or None (the destination is built offline,
    as for a dry run, for its own limit)."""
    from segship.engine.safeguards import safeguard_problem

    export = config.exports[plan.export]
    connection = config.connections[export.connection]
    destination = get_plugins().destination(connection.type)(
        ConnectionContext(connection.name, dict(connection.settings)), export.context())
    return safeguard_problem(plan, config, plan.export, destination.limits.max_profiles)


def _plan_one(config: Config, name: str, state: StateStore, verbose: bool) -> ExportPlan:
    from segship.engine.planning import plan_against_state
    from segship.engine.snapshot import Snapshot, changed_columns

    plugins = get_plugins()
    export = config.exports[name]
    cls = plugins.destination(config.connections[export.connection].type)
    columns = cls.source_columns(export.mapping)
    snapshot = Snapshot(config, export, plugins, columns)
    try:
        plan = plan_against_state(snapshot, state, cls, export, columns, full_resync=False, write=False)
        if verbose and plan.examples.get("update"):
            keys = plan.examples["update"]
            before = state.details(name, keys)
            for reader in snapshot.rows_to_send(keys=keys):
                for row in reader.read_all().to_pylist():
                    key = row["__segship_key"]
                    changed = changed_columns(columns, before[key][0], row["__segship_column_hashes"])
                    plan.changed_fields[key] = sorted(changed) if changed is not None else ["(all: settings changed)"]
        return plan
    finally:
        snapshot.close()


@app.command("plan")
def plan_command(
    ctx: typer.Context,
    exports: Annotated[list[str] | None, typer.Argument(help="Exports to plan (default: all).")] = None,
    config: ConfigOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the changed fields of example keys.")] = False,
    output: Annotated[plan_format.PlanFormat, typer.Option(
        "--format", help="text, json, or markdown (a pull-request comment).")] = plan_format.PlanFormat.text,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.", hidden=True)] = False,
) -> None:
    """Show what a run would add, update, remove and leave alone; sends nothing, opens no connection."""
    loaded = load_config_or_exit(config)
    names = _select(ctx, loaded, exports, run_all=not exports)
    state = _state(loaded)
    plans = []
    for name in names:
        try:
            plans.append(_plan_one(loaded, name, state, verbose))
        except SegshipError as exc:  # an unset ${env:…} of a source is usage (2), as for export
            raise fail_with(exc, name) from None
    stops = {plan.export: _safeguard_stop(loaded, plan) for plan in plans}
    if as_json or output is plan_format.PlanFormat.json:
        typer.echo(plan_format.as_json(plans, stops))
    elif output is plan_format.PlanFormat.markdown:
        typer.echo(redact_text(plan_format.as_markdown(plans, stops)), nl=False)
    else:
        plan_format.print_text(plans, stops, console)


# -- export ---------------------------------------------------------------------------------------

def _summary(report: RunReport) -> str:
    from segship.engine.report import ExportPlan

    plan = report.plan or {}
    planned = (f"plan +{plan.get('add', 0)} ~{plan.get('update', 0)} -{plan.get('remove', 0)} "
               f"={plan.get('unchanged', 0)}" + (f" >{plan['move']}" if plan.get("move") else "")
               + (f" retry {plan['retry']}" if plan.get("retry") else "")
               + (f" still refused {plan['refused']}" if plan.get("refused") else "")) \
        if plan else "not planned"
    verb = "would send" if report.dry_run else "sent"
    line = (f"{report.export}: {report.outcome} ({planned}); {verb}: {report.upserted} upserted, "
            f"{report.removed} removed, {report.rejected} rejected; {report.http.get('requests', 0)} requests "
            f"in {report.seconds:.1f} s")
    if report.dry_run:
        sends = sum(plan.get(action, 0) for action in ("add", "update", "move", "retry")) - report.rejected
        line = (f"{report.export}: dry run {report.outcome} ({planned}); would send {sends} upserts and "
                f"{plan.get('remove', 0)} removals; {report.rejected} row(s) would be rejected")
    moves = ExportPlan(report.export, target=plan.get("target", {}), moves=plan.get("moves", [])).move_lines()
    details = [*moves, *rejects_format.run_detail_lines(report.as_dict())]
    if report.rejected or plan.get("refused") or report.dropped:
        details.append(f"`segship rejects {report.export} --summary` tells them all")
    return line + "".join(f"\n  {detail}" for detail in details) + (f"\n  {report.message}" if report.message else "")


def _stop_on_signals(stop: asyncio.Event) -> None:
    """First Ctrl-C (or SIGTERM): finish the batches in flight, commit, stop. A second: abort now."""
    loop = asyncio.get_running_loop()

    def interrupted() -> None:
        if stop.is_set():  # state stays consistent: it only ever holds acknowledged rows
            raise KeyboardInterrupt
        typer.echo("stopping: finishing the batches in flight (Ctrl-C again to abort them)", err=True)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted)


async def _run_exports(loaded: Config, names: list[str], state: StateStore, run_options: RunOptions,
                       stop: asyncio.Event) -> list[RunReport]:
    """Run exports one after the other; a Ctrl-C ends the current one and starts no other."""
    from segship.engine.run import ExportRun

    reports = []
    for name in names:
        if stop.is_set():
            break
        run = ExportRun(loaded, name, get_plugins(), state, run_options, progress_for_terminal(), stop)
        reports.append(await run.run())
    return reports


@app.command("export")
def export_command(
    ctx: typer.Context,
    exports: Annotated[list[str] | None, typer.Argument(help="Exports to run.")] = None,
    run_all: Annotated[bool, typer.Option("--all", help="Run every export.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Map and check every record; send nothing.")] = False,
    full_resync: Annotated[bool, typer.Option("--full-resync", help="Send every member again, whatever state says "
                                                                    "(leavers known to state are still removed).")
                           ] = False,
    report_file: Annotated[Path | None, typer.Option("--report", help="Write a JSON run report to this file.")
                           ] = None,
    allow_mass_removal: Annotated[bool, typer.Option(
        "--allow-mass-removal", help="Let this run remove more than the removal safeguard allows "
                                     "(safeguards.max_removed_fraction, default 0.5), once, deliberately.")] = False,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Exit 3 when any row is refused, rows still refused as before too (by default only "
                         "rows refused for the first time or for a new reason do).")] = False,
    config: ConfigOption = None,
) -> None:
    """Run exports now: plan, safeguards, send changes, commit as acknowledged, report.

    Exit 0 when all succeeded (rows known to be refused, unchanged, don't change that), 3 when rows were
    refused for the first time or for a new reason (--strict: any refused row), 1 when a run failed or was
    stopped.
    """
    from segship.engine.run import RunOptions

    loaded = load_config_or_exit(config)
    names = _select(ctx, loaded, exports, run_all)
    state = _state(loaded)

    async def run() -> list[RunReport]:
        stop = asyncio.Event()
        _stop_on_signals(stop)
        run_options = RunOptions(dry_run=dry_run, full_resync=full_resync, allow_mass_removal=allow_mass_removal,
                                 strict=strict)
        return await _run_exports(loaded, names, state, run_options, stop)

    try:
        reports = event_loop.run(run())
    finally:  # before the interpreter exits: a connection collected before its cursor complains on stderr
        state.close()
    code = combined_exit_code(report.outcome for report in reports)
    for report in reports:
        typer.echo(redact_text(_summary(report)))
    if report_file is not None:
        document = {"exit_code": code, "exports": [report.as_dict() for report in reports]}
        report_file.parent.mkdir(parents=True, exist_ok=True)
        report_file.write_text(redact_text(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()) + "\n")
    raise typer.Exit(code)


# -- history --------------------------------------------------------------------------------------

@app.command("runs")
def runs_command(
    export: Annotated[str | None, typer.Argument(help="Only this export's runs.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many recent runs.")] = 20,
    config: ConfigOption = None,
) -> None:
    """Recent runs: when, outcome, counts (rows refused, fields left out of records)."""
    loaded = load_config_or_exit(config)
    state = _state(loaded)
    table = Table("run", "export", "started", "seconds", "outcome", "upserted", "removed", "rejected", "dropped",
                  "message")
    runs = state.runs(export, limit)
    for run in runs:
        report = run["report"] or {}
        outcome = run["outcome"] + (" (dry run)" if run["dry_run"] else "")
        table.add_row(str(run["id"]), run["export"], run["started_at"], str(report.get("seconds", "")), outcome,
                      str(report.get("upserted", "")), str(report.get("removed", "")),
                      str(report.get("rejected", "")), _dropped_cell(report), redact_text(report.get("message", "")))
    console.print(table)
    shown = rejects_format.shown_line(len(runs), state.count_runs(export), "runs", "--limit N shows more")
    if shown:
        typer.echo(shown)


def _dropped_cell(report: dict) -> str:
    """The fields a run left out: their count, and by field (a report from before dropped fields: empty)."""
    if "dropped" not in report:
        return ""
    by_field = {column: sum(kinds.values()) for column, kinds in report.get("dropped_fields", {}).items()}
    return str(report["dropped"]) + (f" ({', '.join(f'{column} {count}' for column, count in by_field.items())})"
                                     if by_field else "")


@app.command("rejects")
def rejects_command(
    export: Annotated[str, typer.Argument(help="The export whose rejected rows to show.")],
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many rows.")] = 100,
    reason: Annotated[str | None, typer.Option("--reason", help="Only rows whose reason holds this text "
                                                                "(any case).")] = None,
    summary: Annotated[bool, typer.Option("--summary", help="Counts and example keys by reason, and the fields "
                                                            "left out of members' records by field and reason.")
                       ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    config: ConfigOption = None,
) -> None:
    """Rows the destination or its mapping rules refused, with the reason. The destination's are retried on
    the next run; the mapping rules' when the row or the mapping changes."""
    loaded = load_config_or_exit(config)
    if export not in loaded.exports:
        raise fail(f"unknown export {export!r}", EXIT_INVALID)
    state = _state(loaded)
    total = state.count_rejects(export, reason)
    if summary:
        by_kind = [kind for kind in state.rejects_by_kind(export)
                   if reason is None or reason.lower() in kind["reason"].lower()]
        dropped = state.dropped_fields_by_kind(export)
        if as_json:
            document = {"export": export, "rejects": total, "by_reason": by_kind, "dropped_fields": dropped}
            typer.echo(redact_text(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()))
            return
        for line in rejects_format.summary_lines(export, total, by_kind, dropped):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
        return
    rows = state.rejects(export, limit, reason)
    if as_json:
        typer.echo(redact_text(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode()))
        return
    table = Table("key", "reason", "by", "since run", "first seen", "last seen", "attempts")
    for row in rows:
        table.add_row(row["key"], redact_text(row["reason"]), row["origin"], str(row["since_run"] or ""),
                      row["first_seen"], row["last_seen"], str(row["attempts"]))
    console.print(table)
    shown = rejects_format.shown_line(len(rows), total, "rejects", "--limit N shows more, --summary counts them "
                                                                  "by reason")
    if shown:
        typer.echo(shown)


# -- connections test -----------------------------------------------------------------------------

async def _test_connection(loaded: Config, name: str) -> list[str]:
    connection = loaded.connections[name]
    cls = get_plugins().destination(connection.type)
    context = ConnectionContext(name, resolve_connection_settings(loaded, name, get_plugins()))
    lines = []
    targets = [None] + [export for export in loaded.exports.values() if export.connection == name]
    for export in targets:
        destination = cls(context, export.context() if export else None)
        try:
            description = await destination.check_connection()
        finally:
            await destination.finish()
        lines.append(f"{name}{f' (export {export.name})' if export else ''}: ok: {description}")
    return lines


@connections_app.command("test")
def connections_test_command(
    name: Annotated[str, typer.Argument(help="The connection to test.")],
    config: ConfigOption = None,
) -> None:
    """Check the connection's API key and endpoint (and each export's target) without changing any data."""
    loaded = load_config_or_exit(config)
    if name not in loaded.connections:
        raise fail(f"unknown connection {name!r} (connections: {', '.join(sorted(loaded.connections))})",
                   EXIT_INVALID)
    try:
        lines = event_loop.run(_test_connection(loaded, name))
    except SegshipError as exc:
        raise fail_with(exc, name) from None
    for line in lines:
        typer.echo(redact_text(line))


# -- schedule -------------------------------------------------------------------------------------

@app.command("schedule")
def schedule_command(
    ctx: typer.Context,
    config: ConfigOption = None,
    once: Annotated[bool, typer.Option("--once", help="Run what is due now, then exit (for cron or CI).")] = False,
) -> None:
    """Run exports on their cron schedules until stopped (Ctrl-C or SIGTERM end the run in progress cleanly).

    One run at a time; a tick missed during a run runs once when it ends; a failed run doesn't stop the
    scheduler. With --once, run what is due now and exit with the exports' combined exit code.
    """
    from segship.engine.run import RunOptions
    from segship.engine.schedule import run_schedule

    loaded = load_config_or_exit(config)
    names = [name for name, export in loaded.exports.items() if export.schedule]
    if not names:
        raise fail("no export has a schedule", EXIT_INVALID)
    names = _select(ctx, loaded, names, run_all=False)
    state = _state(loaded)

    async def run() -> int:
        stop = asyncio.Event()
        _stop_on_signals(stop)

        async def run_due(due: list[str]) -> int:
            reports = await _run_exports(loaded, due, state, RunOptions(), stop)
            for report in reports:
                typer.echo(f"{datetime.now().isoformat(timespec='seconds')} {redact_text(_summary(report))}")
            return combined_exit_code(report.outcome for report in reports)

        return await run_schedule({name: loaded.exports[name].schedule for name in names}, run_due, stop,
                                  once=once)

    raise typer.Exit(event_loop.run(run()))
