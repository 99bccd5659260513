"""Commands that plan, run and explain exports: plan, export, schedule, runs, rejects, connections test."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand

from segship import event_loop, network
from segship.cli import plan_format, rejects_format
from segship.cli.app import (
    CommandFailed,
    GlobalOptions,
    app,
    check_each,
    fail,
    fail_with,
    fail_with_config,
    load_config_or_exit,
    names_to_check,
)
from segship.cli.exit_codes import (
    EXIT_ABORTED,
    EXIT_CHANGES,
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_SAFEGUARD,
    OUTCOME_EXIT_CODES,
    combined_exit_code,
)
from segship.cli.progress import progress_for_terminal
from segship.config import Config, ConfigError
from segship.config.validate import resolve_connection_settings, role_issues
from segship.destination import ConnectionContext
from segship.errors import SegshipError
from segship.log import redact_text
from segship.plugins import get_plugins

if TYPE_CHECKING:
    from segship.engine.report import ExportPlan, RunReport
    from segship.metrics import RunMetrics
    from segship.engine.run import RunOptions
    from segship.engine.state import StateStore

# The engine (DuckDB, Arrow) is imported by the commands that run it, so that
# `segship validate` and friends start fast.

connections_app = typer.Typer(help="Check destination connections.", no_args_is_help=True)
app.add_typer(connections_app, name="connections")
console = Console(width=160)
DETAILED_EXITCODE = "--detailed-exitcode"


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
        raise fail_with_config(ConfigError(issues))
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
        ConnectionContext(connection.name, connection.unresolved_settings()), export.context())
    return safeguard_problem(plan, config, plan.export, destination.limits.max_profiles)


def _plan_one(config: Config, name: str, state: StateStore, verbose: bool) -> ExportPlan:
    from segship.engine.planning import plan_export

    return plan_export(config, name, get_plugins(), state, changed_fields=verbose)


class PlanCommand(TyperCommand):
    """``segship plan``: with ``--detailed-exitcode``, a mistake on the command line exits 1, like any
    other error (2 means changes to send)."""

    def make_context(self, info_name: str | None, args: list[str], parent: typer.Context | None = None,
                     **extra: Any) -> typer.Context:
        detailed = DETAILED_EXITCODE in args  # before parsing, which consumes them
        try:
            return super().make_context(info_name, args, parent, **extra)
        except typer.TyperException as error:  # typer's usage errors, which exit 2
            if detailed and getattr(error, "exit_code", None) == EXIT_INVALID:
                error.exit_code = EXIT_FAILED
            raise


@contextmanager
def _errors_exit_1() -> Iterator[None]:
    """For ``plan --detailed-exitcode``: an error is shown as usual and exits 1, whatever its usual code."""
    try:
        yield
    except SegshipError as error:
        fail_with(error)  # prints it
        raise typer.Exit(EXIT_FAILED) from None
    except typer.Exit as exit_:
        raise typer.Exit(EXIT_FAILED if exit_.exit_code else EXIT_OK) from None


@app.command("plan", cls=PlanCommand)
def plan_command(
    ctx: typer.Context,
    exports: Annotated[list[str] | None, typer.Argument(help="Exports to plan (default: all).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the changed fields of example keys.")] = False,
    output: Annotated[plan_format.PlanFormat, typer.Option(
        "--format", help="text, json, or markdown (a pull-request comment).")] = plan_format.PlanFormat.text,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.", hidden=True)] = False,
    detailed_exitcode: Annotated[bool, typer.Option(
        DETAILED_EXITCODE, help="For CI gates: exit 0 when there is nothing to do, 2 when an export has changes "
                                "to send, 4 when a safeguard would stop a run, 1 on any error.")] = False,
) -> None:
    """Show what a run would add, update, remove and leave alone; sends nothing, opens no connection.

    Without EXPORT, exports gone from the config that left members in their destination are listed
    too (segship retire removes them).
    """
    from segship.engine.retire import retired_exports

    with _errors_exit_1() if detailed_exitcode else nullcontext():
        loaded = load_config_or_exit(ctx)
        names = _select(ctx, loaded, exports, run_all=not exports)
        state = _state(loaded)
        plans = []
        try:
            for name in names:
                try:
                    plans.append(_plan_one(loaded, name, state, verbose))
                except SegshipError as exc:  # an unset ${env:…} of a source is usage (2), as for export
                    raise fail_with(exc, name) from None
            # planning them all: those gone from the config that left members behind too
            retired = [] if exports else retired_exports(loaded, state)
        finally:
            state.close()
        stops = {plan.export: _safeguard_stop(loaded, plan) for plan in plans}
    if as_json or output is plan_format.PlanFormat.json:
        typer.echo(plan_format.as_json(plans, stops, retired))
    elif output is plan_format.PlanFormat.markdown:
        typer.echo(redact_text(plan_format.as_markdown(plans, stops, retired)), nl=False)
    else:
        plan_format.print_text(plans, stops, console, retired)
    if detailed_exitcode:
        raise typer.Exit(EXIT_SAFEGUARD if any(stops.values()) else
                         EXIT_CHANGES if any(map(plan_format.has_changes, plans)) else EXIT_OK)


# -- export ---------------------------------------------------------------------------------------

def _summary(report: RunReport) -> str:
    from segship.engine.report import ExportPlan

    plan = report.plan or {}
    # removals: leavers, and the identities a move (or a replaced identity) leaves in earlier targets
    planned = (f"plan +{plan.get('add', 0)} ~{plan.get('update', 0)} -{plan.get('removals', 0)} "
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
                f"{plan.get('removals', 0)} removals; {report.rejected} row(s) would be rejected")
    moves = ExportPlan(report.export, target=plan.get("target", {}), instance=plan.get("instance", {}),
                       connection=plan.get("connection", ""), moves=plan.get("moves", [])).move_lines()
    details = [*moves, *rejects_format.run_detail_lines(report.as_dict())]
    if report.rejected or plan.get("refused") or report.dropped:
        details.append(f"`segship rejects {report.export} --summary` tells them all")
    return line + "".join(f"\n  {detail}" for detail in details) + (f"\n  {report.message}" if report.message else "")


def stop_on_signals(stop: asyncio.Event) -> None:
    """First Ctrl-C (or SIGTERM): finish the batches in flight, commit, stop. A second: abort now."""
    loop = asyncio.get_running_loop()

    def interrupted() -> None:
        if stop.is_set():  # state stays consistent: it only ever holds acknowledged rows
            typer.echo("aborting: the batches in flight are cut off; state holds every acknowledged record "
                       "(run the same command again to continue)", err=True)
            raise KeyboardInterrupt  # typer exits 130 on it
        typer.echo("stopping: finishing the batches in flight (Ctrl-C again to abort them)", err=True)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted)


async def _run_exports(loaded: Config, names: list[str], state: StateStore, run_options: RunOptions,
                       stop: asyncio.Event, reports: list[RunReport]) -> list[RunReport]:
    """Run exports one after the other, each report into ``reports`` as its run starts (a second Ctrl-C
    cuts the run, whose report says so); a Ctrl-C ends the current one and starts no other."""
    from segship.engine.run import ExportRun

    for name in names:
        if stop.is_set():
            break
        run = ExportRun(loaded, name, get_plugins(), state, run_options, progress_for_terminal(), stop)
        reports.append(run.report)  # the run fills it in
        await run.run()
    return reports


def _write_report(path: Path, code: int, reports: Iterable[RunReport], error: str | None = None) -> None:
    """``export --report``: the exit code and each run's report; ``error``: why no run could start."""
    document = {"exit_code": code, **({"error": error} if error is not None else {}),
                "exports": [report.as_dict() for report in reports]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(redact_text(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()) + "\n")


@contextmanager
def _reported_if_not_started(path: Path | None, names: list[str]) -> Iterator[None]:
    """``export --report``: written even when no run can start (the config, the exports named, state),
    with each export named failed for that reason, then the error goes on as usual."""
    from segship.engine.report import RunReport

    try:
        yield
    except (SegshipError, CommandFailed) as error:
        if path is not None:
            if isinstance(error, CommandFailed):  # printed already: a usage or config error, or another
                code, message = error.exit_code, error.message
                outcome = "invalid" if code == EXIT_INVALID else "failed"
            else:
                code, message, outcome = OUTCOME_EXIT_CODES[error.outcome], str(error), error.outcome
            _write_report(path, code, [RunReport(name, outcome=outcome, message=message) for name in names], message)
        raise


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
    allow_empty_state: Annotated[bool, typer.Option(
        "--allow-empty-state", help="Let this run send every member as new though state holds none of an "
                                    "export's members and its destination already holds some (lost state; see "
                                    "`segship state rebuild`), once, deliberately.")] = False,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Exit 3 when any row is refused, rows still refused as before too (by default only "
                         "rows refused for the first time or for a new reason do).")] = False,
) -> None:
    """Run exports now: plan, safeguards, send changes, commit as acknowledged, report.

    Exit 0 when all succeeded (rows known to be refused, unchanged, don't change that), 3 when rows were
    refused for the first time or for a new reason (--strict: any refused row), 1 when a run failed or was
    stopped, 130 when a second Ctrl-C aborted it.
    """
    from segship.engine.run import RunOptions

    names = list(exports or [])  # as named until selected: the report of runs that can't start lists them
    with _reported_if_not_started(report_file, names):
        loaded = load_config_or_exit(ctx)
        names[:] = _select(ctx, loaded, exports, run_all)
        state = _state(loaded)
    reports: list[RunReport] = []

    async def run() -> list[RunReport]:
        stop = asyncio.Event()
        stop_on_signals(stop)
        run_options = RunOptions(dry_run=dry_run, full_resync=full_resync, allow_mass_removal=allow_mass_removal,
                                 allow_empty_state=allow_empty_state, strict=strict)
        return await _run_exports(loaded, names, state, run_options, stop, reports)

    try:
        event_loop.run(run())
    except KeyboardInterrupt:  # a second Ctrl-C: the report says what was done, then typer exits 130
        if report_file is not None:
            _write_report(report_file, EXIT_ABORTED, reports)
        raise
    finally:  # before the interpreter exits: a connection collected before its cursor complains on stderr
        state.close()
    code = combined_exit_code(report.outcome for report in reports)
    for report in reports:
        typer.echo(redact_text(_summary(report)))
    if report_file is not None:
        _write_report(report_file, code, reports)
    raise typer.Exit(code)


# -- history --------------------------------------------------------------------------------------

class HistoryFormat(str, Enum):
    text = "text"
    json = "json"


@app.command("runs")
def runs_command(
    ctx: typer.Context,
    export: Annotated[str | None, typer.Argument(help="Only this export's runs.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many recent runs.")] = 20,
    output: Annotated[HistoryFormat, typer.Option(
        "--format", help="text: one line per run, long messages cut; json: every run's whole report.")
                      ] = HistoryFormat.text,
) -> None:
    """Recent runs: when, outcome, counts (rows refused, fields left out of records). An export neither in the config nor in state is an error (exit 2)."""
    loaded = load_config_or_exit(ctx)
    state = _state(loaded)
    try:
        if export is not None and export not in loaded.exports and not state.summary(export):
            raise fail(f"unknown export {export!r} (exports: {', '.join(sorted(loaded.exports)) or 'none'})",
                       EXIT_INVALID)
        runs = state.runs(export, limit)
        total = state.count_runs(export)
    finally:
        state.close()
    if output is HistoryFormat.json:
        typer.echo(redact_text(orjson.dumps(runs, option=orjson.OPT_INDENT_2).decode()))
        return
    # the dropped column only when a run shown left fields out: the message keeps the width otherwise
    dropped = [_dropped_cell(run["report"] or {}) for run in runs]
    show_dropped = any(cell not in ("", "0") for cell in dropped)
    table = Table("run", "export", "started", "seconds", "outcome", "upserted", "removed", "rejected",
                  *(["dropped"] if show_dropped else []), "message")
    for column in table.columns[:-1]:  # one line per run: the message gets the width left, and is cut to it
        column.no_wrap = True
    for run, dropped_cell in zip(runs, dropped, strict=True):
        report = run["report"] or {}
        outcome = run["outcome"] + (" (dry run)" if run["dry_run"] else "")
        table.add_row(str(run["id"]), run["export"], run["started_at"], str(report.get("seconds", "")), outcome,
                      str(report.get("upserted", "")), str(report.get("removed", "")),
                      str(report.get("rejected", "")), *([dropped_cell] if show_dropped else []),
                      Text(" ".join(redact_text(report.get("message", "")).split()), no_wrap=True, overflow="ellipsis"))
    console.print(table)
    shown = rejects_format.shown_line(len(runs), total, "runs", "--limit N shows more")
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
    ctx: typer.Context,
    export: Annotated[str, typer.Argument(help="The export whose rejected rows to show.")],
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many rows.")] = 100,
    reason: Annotated[str | None, typer.Option("--reason", help="Only rows whose reason holds this text "
                                                                "(any case).")] = None,
    summary: Annotated[bool, typer.Option("--summary", help="Counts and example keys by reason, and the fields "
                                                            "left out of members' records by field and reason.")
                       ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Rows the destination or its mapping rules refused, with the reason. The destination's are retried on
    the next run; the mapping rules' when the row or the mapping changes."""
    loaded = load_config_or_exit(ctx)
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
    # a budget of its own, not the run's: the test answers within 10 s whatever the network does
    context = ConnectionContext(name, resolve_connection_settings(loaded, name, get_plugins()),
                                connection.resolved_network().for_connection_test())
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


@connections_app.command("test", epilog=(
        "Its requests get a budget of their own, shorter than a run's (a connection's network.retries "
        f"and network.timeouts): at most {network.CONNECTION_TEST_MAX_ATTEMPTS} attempts within "
        f"{network.CONNECTION_TEST_MAX_SECONDS:g} s, each with {network.CONNECTION_TEST_CONNECT_SECONDS:g} s to "
        f"connect and {network.CONNECTION_TEST_READ_SECONDS:g} s to answer, so a connection that fails is "
        "named with its cause within 10 s."))
def connections_test_command(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="The connection to test.", show_default=False)] = None,
    test_all: Annotated[bool, typer.Option("--all", help="Test every connection, each in turn.")] = False,
) -> None:
    """Check the connection's API key and endpoint (and each export's target) without changing any data.

    With --all, every connection: a line for each, and exit 1 (2 for an unset secret) if any fails.
    """
    loaded = load_config_or_exit(ctx)
    names = names_to_check("connection", name, test_all, loaded.connections)
    raise check_each(names, lambda each: event_loop.run(_test_connection(loaded, each)), name_errors=True)


# -- schedule -------------------------------------------------------------------------------------

@app.command("schedule")
def schedule_command(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Run what is due now, then exit (for cron or CI).")] = False,
    metrics_port: Annotated[int | None, typer.Option(
        "--metrics-port", min=0, max=65535, help="Serve Prometheus metrics at http://HOST:PORT/metrics while "
                                                 "scheduling (0: a free port; the URL is printed first).")] = None,
    metrics_host: Annotated[str, typer.Option(
        "--metrics-host", help="The address --metrics-port listens on; 0.0.0.0 lets a scraper on another host "
                               "(a Kubernetes pod's) reach it.")] = "127.0.0.1",
) -> None:
    """Run exports on their cron schedules until stopped (Ctrl-C or SIGTERM end the run in progress cleanly).

    One run at a time; a tick missed during a run runs once when it ends; a failed run doesn't stop the
    scheduler. Between runs, an export with no successful run for its alerts.stale_after is alerted on.
    With --once, run what is due now and exit with the exports' combined exit code.
    """
    from segship.alerts import deliver, stale_alerts
    from segship.engine.run import RunOptions
    from segship.engine.schedule import run_schedule

    loaded = load_config_or_exit(ctx)
    names = [name for name, export in loaded.exports.items() if export.schedule]
    if not names:
        raise fail("no export has a schedule", EXIT_INVALID)
    if once and metrics_port is not None:
        raise fail("--metrics-port serves metrics while the scheduler runs: not with --once", EXIT_INVALID)
    names = _select(ctx, loaded, names, run_all=False)
    state = _state(loaded)
    metrics = _schedule_metrics(loaded, names, state) if metrics_port is not None else None

    async def run() -> int:
        stop = asyncio.Event()
        stop_on_signals(stop)
        watching_since: datetime | None = None  # by the scheduler's clock: an export never run is stale from it

        async def run_due(due: list[str]) -> int:
            reports = await _run_exports(loaded, due, state, RunOptions(), stop, [])
            for report in reports:
                typer.echo(f"{datetime.now().isoformat(timespec='seconds')} {redact_text(_summary(report))}")
                if metrics is not None:
                    metrics.observe(report)
            return combined_exit_code(report.outcome for report in reports)

        async def watch(now: datetime) -> None:
            nonlocal watching_since
            watching_since = watching_since or now
            await deliver(loaded.notifications.values(), get_plugins(),
                          stale_alerts(loaded, state, names, watching_since, now))

        return await run_schedule({name: loaded.exports[name].schedule for name in names}, run_due, stop,
                                  once=once, watch=watch)

    try:
        if metrics is None:
            code = event_loop.run(run())
        else:
            with metrics.served(metrics_host, metrics_port) as url:
                typer.echo(f"serving Prometheus metrics at {url}")
                code = event_loop.run(run())
    finally:
        state.close()
    raise typer.Exit(code)


def _schedule_metrics(config: Config, names: list[str], state: StateStore) -> RunMetrics:
    """The scheduler's metrics: a series per scheduled export, the last successes state knows."""
    from segship.metrics import RunMetrics

    # each export's destination by its plugin's name (a connection may use an alias: brevo for sendinblue)
    destinations = {name: get_plugins().destination(config.connections[config.exports[name].connection].type).name
                    for name in names}
    return RunMetrics(destinations, {name: (state.last_success(name) or {}).get("finished_at") for name in names})
