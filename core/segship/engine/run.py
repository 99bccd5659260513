"""Running an export: plan, safeguards, send in paced batches, commit as acknowledged, report.

The order: resolve settings -> plan (local, in DuckDB) -> safeguards -> the destination's
instance, asked of the destination only when it observes its account and the connection's
settings changed since it was last asked (see ``instances``; planned again if the members turn
out to be elsewhere) -> check the connection -> (state empty: does the target hold members
already?) -> prepare -> joins and changes -> leavers and stale identities (from earlier targets
too: see ``targets``) -> finish; then the run is recorded and its alerts judged
(``segship.alerts``) and sent. Planning first means a run with nothing to send makes no
request at all (but the account check above, when the connection's settings changed), and a run that breaks a safeguard stops before touching the destination (or,
for the empty-state one, before sending to it). State is committed as batches are answered (a
group of them at a time, see ``in_flight``), so a run stopped at any point (Ctrl-C, a failure,
kill -9) and started again sends what was not acknowledged, and sends again at most what was
in flight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import pyarrow as pa
import structlog

from segship.alerts import alerts_after_run, deliver
from segship.config import Config
from segship.config.validate import resolve_connection_settings
from segship.destination import (
    ConnectionContext,
    Destination,
    Member,
    RecordResult,
)
from segship.engine.digest import DigestTally
from segship.engine.gc_tuning import streaming_gc
from segship.engine.in_flight import Answer, Commit, InFlight
from segship.engine.instances import assumed_instance, known_instance, observe
from segship.engine.planning import mapping_fingerprint, plan_against_state
from segship.engine.report import BatchReport, ExportPlan, RunReport, left_behind_line, reason_kind
from segship.engine.mapping import MappedRows, map_rows, mapped_batches
from segship.engine.safeguards import check_empty_state, check_safeguards
from segship.engine.snapshot import Snapshot, export_fingerprint
from segship.engine.state import DroppedFields, LoggedChanges, RecordedDestination, Rejected, StateError, StateStore, chunks
from segship.engine.sync_log import removal_changes
from segship.engine.targets import EarlierInstances, InstanceUnreachable, TargetDestinations
from segship.engine.warehouse_state import WarehouseState, planned_state, snapshot_for
from segship.errors import SegshipError
from segship.http import RequestInterrupted
from segship.log import redact_text
from segship.notifiers.contract import Alert
from segship.plugins import Plugins

log = structlog.get_logger("segship.engine")


class Progress(Protocol):
    """Where a run reports how far it is (a rich bar on a terminal, log lines otherwise)."""

    def start(self, export: str, total: int) -> None: ...
    def advance(self, count: int) -> None: ...
    def set_remaining(self, count: int) -> None: ...  # the work left, once known exactly: the total follows
    def finish(self) -> None: ...


class NoProgress:
    def start(self, export: str, total: int) -> None:
        pass

    def advance(self, count: int) -> None:
        pass

    def set_remaining(self, count: int) -> None:
        pass

    def finish(self) -> None:
        pass


class RunStopped(Exception):
    """Sending stopped part-way (failure or Ctrl-C); what was acknowledged is committed."""


@dataclass(frozen=True)
class RunOptions:
    dry_run: bool = False
    full_resync: bool = False
    allow_mass_removal: bool = False  # one deliberate run past the removal safeguard
    allow_empty_state: bool = False   # one deliberate run from empty state to a target that holds members
    strict: bool = False    # any refused row, known or new, is the "rejects" outcome (exit 3)


class ExportRun:
    """One run of one export. ``stop`` (set by Ctrl-C) ends it after the batches in flight."""

    def __init__(self, config: Config, export_name: str, plugins: Plugins, state: StateStore,
                 options: RunOptions, progress: Progress | None = None, stop: asyncio.Event | None = None) -> None:
        self.config = config
        self.export = config.exports[export_name]
        self.connection = config.connections[self.export.connection]
        self.plugins = plugins
        self.state = state
        self.options = options
        self.progress = progress or NoProgress()
        self.stop = stop or asyncio.Event()
        self.report = RunReport(export_name, dry_run=options.dry_run, full_resync=options.full_resync)
        self.cls = plugins.destination(self.connection.type)
        self.columns = self.cls.source_columns(self.export.mapping)
        self._failure: BaseException | None = None
        self.target_id = 1  # the export's target in state, known once planned
        self._ready_to_send = False  # the connection checked and the destination prepared
        self._log_run: int | None = None  # the run whose changes the commits log (None: no sync log)

    # -- the whole run ------------------------------------------------------------------------------

    async def run(self) -> RunReport:
        report = self.report
        started = time.monotonic()
        report.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        log.info("export.started", export=self.export.name, dry_run=self.options.dry_run,
                 full_resync=self.options.full_resync)
        destination: Destination | None = None
        snapshot: Snapshot | None = None
        alerts: list[Alert] = []
        try:
            with self.state.export_lock(self.export.name):
                report.run_id = self.state.start_run(self.export.name, self.options.dry_run)
                if self.config.sync_log.retention_days and not self.options.dry_run:
                    self._log_run = report.run_id
                try:
                    # the export's members where its config plans them (a warehouse planner's schema)
                    self.state = planned_state(self.config, self.plugins, self.export.name, self.state,
                                               write=not self.options.dry_run)
                    destination = self._destination()
                    instances = self._instance(destination)
                    snapshot = snapshot_for(self.config, self.export, self.plugins, self.columns, self.state)
                    plan = self._plan(snapshot, destination, instances)
                    if not instances.known and not self.options.dry_run:
                        instances = await self._observe(destination)
                        if not self._confirm_target(plan, instances):
                            # the members are in another instance than assumed: planned again, as a move
                            snapshot.close()
                            snapshot = snapshot_for(self.config, self.export, self.plugins, self.columns,
                                                    self.state)
                            plan = self._plan(snapshot, destination, instances)
                    if self.options.dry_run:
                        await self._dry_run(snapshot, destination)
                    else:
                        self.plugins.export_started(self.export.name, plan)
                        if plan.to_send or plan.remove or plan.stale_identities:
                            # the plan is local: an unchanged run makes no request at all
                            await self._send(snapshot, destination, plan, instances)
                        self.state.prune_sync_log(self.export.name, self.config.sync_log.retention_days)
                    report.outcome = self._outcome(plan)
                except BaseException as exc:  # noqa: BLE001 - every ending is reported, then re-raised if fatal
                    self._fail(exc)
                    if not isinstance(exc, Exception):
                        raise
                finally:
                    if destination is not None:
                        try:
                            await destination.finish()
                        except Exception as exc:  # noqa: BLE001 - the run's own outcome matters more
                            log.warning("destination.finish_failed", error=str(exc))
                        # set by the sending already when earlier targets' destinations sent too
                        report.http = report.http or destination.http_stats.as_dict()
                    if snapshot is not None:
                        snapshot.close()
                    if isinstance(self.state, WarehouseState):
                        self.state.close()
                    report.message = redact_text(report.message)  # it is stored and printed
                    report.seconds = round(time.monotonic() - started, 3)
                    report.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
                    self.state.finish_run(report.run_id, report.outcome, report.as_dict())
                # judged under the lock: no other run of the export judges its conditions meanwhile
                alerts = alerts_after_run(self.config, self.state, report)
        except StateError as exc:
            self._fail(exc)
        log.info("export.finished", export=self.export.name, outcome=report.outcome, upserted=report.upserted,
                 removed=report.removed, rejected=report.rejected, seconds=report.seconds)
        self.plugins.export_finished(self.export.name, report)
        # after the lock is let go: a slow channel holds up no other run
        await deliver(self.config.notifications.values(), self.plugins, alerts)
        return report

    def _outcome(self, plan: ExportPlan) -> str:
        """"rejects" when rows were refused for the first time or for a new kind of reason (with
        ``strict``: when any row is refused, still refused ones too), else "succeeded"."""
        report = self.report
        # a dry run records no reject: each it maps and refuses is one a run would record
        report.new_rejects = report.rejected if self.options.dry_run else \
            self.state.new_rejects(self.export.name, report.run_id)
        if self.options.strict:
            return "rejects" if report.rejected or plan.refused else "succeeded"
        return "rejects" if report.new_rejects else "succeeded"

    def _fail(self, exc: BaseException) -> None:
        report = self.report
        if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError, RequestInterrupted)) or (
                isinstance(exc, RunStopped) and (self._failure is None or isinstance(self._failure, RequestInterrupted))):
            report.outcome = "interrupted"
            # state doesn't keep a resync going: a plain run would send only what changed
            again = (f"run `segship export {self.export.name} --full-resync` again to resync every member "
                     "(a plain run sends only what changed)" if self.options.full_resync else
                     "run the export again to continue")
            report.message = (f"interrupted: {report.upserted + report.removed} record(s) acknowledged and saved; "
                              f"{again}")
        elif isinstance(exc, SegshipError):
            report.outcome, report.message = exc.outcome, _describe(exc)
        elif isinstance(exc, RunStopped) and self._failure is not None:
            report.outcome, report.message = "failed", _describe(self._failure)
        else:
            report.outcome, report.message = "failed", f"{type(exc).__name__}: {exc}"
            log.error("export.crashed", export=self.export.name, error=report.message)
            log.debug("export.crash_traceback", exc_info=exc)

    async def _timed(self, phase: str, work: Awaitable[object]) -> object:
        started = time.monotonic()
        try:
            return await work
        finally:
            self.report.phase_seconds[phase] = round(time.monotonic() - started, 3)

    def _destination(self) -> Destination:
        if self.options.dry_run:  # opens no connection, so needs no secret (a dry run works in CI)
            connection = ConnectionContext(self.connection.name, self.connection.unresolved_settings())
        else:
            connection = ConnectionContext(
                self.connection.name, resolve_connection_settings(self.config, self.connection.name, self.plugins),
                self.connection.resolved_network(), stop=self.stop)
        return self.cls(connection, self.export.context())

    def _instance(self, destination: Destination) -> EarlierInstances:
        """The destination instance the run is against, as far as it is known without a request (see
        ``engine/instances.py``), recorded then; else as assumed (the account the last run found), to
        plan with before the destination is asked (``_observe``). A dry run resolves no secret: it
        assumes."""
        name = self.export.name
        recorded = self.state.recorded_instance(name)
        known = None if self.options.dry_run else known_instance(destination, recorded)
        if known is None:
            return EarlierInstances(self.config, self.plugins, self.connection.name,
                                    assumed_instance(self.cls, self.connection, recorded), known=False)
        if recorded is None or recorded.instance != known:
            self.state.record_instance(name, known, recorded.credentials if recorded is not None else None)
        return EarlierInstances(self.config, self.plugins, self.connection.name, known, known=True)

    async def _observe(self, destination: Destination) -> EarlierInstances:
        """Ask the destination which account it reaches (the plan showed the run may go on), and record it."""
        instance, credentials = await self._timed("observe_instance", observe(destination))
        self.state.record_instance(self.export.name, instance, credentials)
        return EarlierInstances(self.config, self.plugins, self.connection.name, instance, known=True)

    def _confirm_target(self, plan: ExportPlan, instances: EarlierInstances) -> bool:
        """Whether the instance the destination said (``_observe``) holds the target the plan assumed;
        if so, the target is recorded in it (targets from before instances adopt it)."""
        name = self.export.name
        if self.state.target_id(name, plan.target, record=False, instance=instances.instance) != self.target_id:
            return False
        self.state.target_id(name, plan.target, record=True, instance=instances.instance,
                             connection=instances.connection)
        plan.instance = instances.instance
        self.report.plan = plan.as_dict()
        return True

    def _plan(self, snapshot: Snapshot, destination: Destination, instances: EarlierInstances) -> ExportPlan:
        started = time.monotonic()
        plan = plan_against_state(snapshot, self.state, self.cls, self.export, self.columns, instances,
                                  full_resync=self.options.full_resync, write=not self.options.dry_run)
        self.target_id = self.state.target_id(self.export.name, plan.target, record=False,
                                              instance=instances.instance)
        if not self.options.dry_run:  # what `segship retire` rebuilds the destination from once the export is gone
            self.state.record_destination(self.export.name, RecordedDestination(
                self.connection.name, self.cls.name, self.export.settings, self.export.mapping))
        self._forget_settled_rejects(snapshot)
        self.report.plan = plan.as_dict()
        self.report.phase_seconds["plan"] = round(time.monotonic() - started, 3)
        log.info("export.planned", export=self.export.name, add=plan.add, retry=plan.retry, update=plan.update,
                 remove=plan.remove, unchanged=plan.unchanged, still_refused=plan.refused, moves=plan.move_lines(),
                 left_behind=plan.left_behind_lines())
        if plan.left_out:
            log.info("export.identity_conflicts", export=self.export.name, left_out=plan.left_out,
                     reason="their destination identity is a lower key's (identity_conflicts: first)")
        check_safeguards(plan, self.config, self.export.name, destination.limits.max_profiles,
                         allow_mass_removal=self.options.allow_mass_removal)
        return plan

    async def _check_empty_state(self, destination: Destination, plan: ExportPlan) -> None:
        """Stop before sending when state holds none of the export's members but the target holds some."""
        if plan.empty_state_check and not self.options.allow_empty_state:
            held = await self._timed("count_members", destination.count_members())
            self.report.plan["destination_members"] = held
            check_empty_state(plan, self.export.name, held)

    def _forget_settled_rejects(self, snapshot: Snapshot) -> None:
        """Rejects of rows no longer in the export, or acknowledged as they are, have nothing to retry."""
        if self.options.dry_run:
            return
        rejected = self.state.rejected_keys(self.export.name)
        if rejected:
            self.state.forget_rejects(self.export.name, snapshot.settled(rejected))

    # -- mapping ----------------------------------------------------------------------------------------

    def _batches(self, snapshot: Snapshot, destination: Destination) -> AsyncGenerator[MappedRows, None]:
        full = self.options.full_resync
        mapping = mapping_fingerprint(self.plugins, self.cls, export_fingerprint(self.cls.name, self.export,
                                                                                  self.columns, self.cls.target_settings))
        refuse_invalid_fields = self.export.on_invalid_field == "reject"

        def previous(keys: list[str]) -> dict[str, tuple[str | None, str]]:
            return self.state.details(self.export.name, keys)

        return mapped_batches(snapshot, destination.limits.upsert_batch_size, previous,
                              lambda rows, before, size: map_rows(rows, destination, self.columns, before, full, size,
                                                                  mapping=mapping,
                                                                  refuse_invalid_fields=refuse_invalid_fields))

    # -- sending -----------------------------------------------------------------------------------------

    async def _dry_run(self, snapshot: Snapshot, destination: Destination) -> None:
        """Map every row that would be sent; send nothing, write nothing."""
        with streaming_gc():
            async for batch in self._batches(snapshot, destination):
                self._count_refused(redacted(batch.refused))
                self.report.count_dropped(redacted_fields((key, column, reason) for key, fields in batch.dropped.items()
                                                          for column, reason in fields))

    def _count_refused(self, refused: list[Rejected | tuple[str, str]]) -> None:
        self.report.rejected += len(refused)
        self.report.rejects_by_reason.update(reason_kind(rejected[1]) for rejected in refused)

    async def _ready(self, destination: Destination, plan: ExportPlan) -> None:
        """Check the connection, then that an empty state is not lost state, and prepare the run's
        destination, once, before its first request."""
        if not self._ready_to_send:
            self._ready_to_send = True
            await self._timed("check_connection", destination.check_connection())
            await self._check_empty_state(destination, plan)
            await self._timed("prepare", destination.prepare())

    async def _send(self, snapshot: Snapshot, destination: Destination, plan: ExportPlan,
                    instances: EarlierInstances) -> None:
        limits = destination.limits
        name = self.export.name
        if plan.to_send:
            await self._ready(destination, plan)
        # each member moved leaves its identity in its earlier target to remove: counted up front
        self.progress.start(name, plan.to_send + plan.removals)
        targets = TargetDestinations(destination, self.target_id, self.export, self.state.targets(name),
                                     self.state.target_instances(name), instances)
        try:
            with streaming_gc():
                started = time.monotonic()
                in_flight = InFlight(self.state, self.export.name, self.target_id)
                tally = snapshot.tally
                moving = bool(plan.move)
                try:
                    await self._pump(in_flight.recorded(self._batches(snapshot, destination)),
                                     lambda batch: self._upsert(destination, batch, in_flight, tally, moving=moving),
                                     limits.concurrency)
                finally:  # however sending ended, what was answered is committed
                    await self._commit_unfinished(in_flight, tally, moving=moving)
                self.report.phase_seconds["upsert"] = round(time.monotonic() - started, 3)
                started = time.monotonic()
                # leavers, then identities to remove (replaced ones, and those of moved members), each
                # from the target it is in
                unreachable: dict[int, str] = {}
                removals = ((False, self._leavers(snapshot)), (True, self.state.stale_identities(name)))
                # what is left to remove is known exactly now (an identity a member replaced during the
                # run is one more, a moving member refused one less): the progress's total follows
                self.progress.set_remaining(sum(len(members) for _, by_target in removals
                                                for members in by_target.values()))
                for stale, by_target in removals:
                    for target, members in by_target.items():
                        if not targets.elsewhere(target):
                            await self._ready(destination, plan)
                            await self._remove_all(await targets.get(target), target, members, stale=stale)
                        elif target not in unreachable:
                            problem = await self._remove_elsewhere(targets, target, members, stale=stale)
                            if problem is not None:
                                unreachable[target] = problem
                self.report.phase_seconds["remove"] = round(time.monotonic() - started, 3)
                if unreachable:
                    self._report_left_behind(snapshot, targets, unreachable)
                # every row planned acknowledged (digest: None if not) and every leaver removed: state
                # holds the tally
                digest = tally.digest()
                if digest is not None and not self.report.rejected and not self.report.unacknowledged and \
                        not self.report.left_behind:
                    self.state.record_members_digest(name, digest)
        finally:
            self.report.http = targets.http_stats()
            await targets.finish()
            self.progress.finish()

    async def _remove_all(self, destination: Destination, target: int, members: list[Member], *, stale: bool) -> None:
        members = self._still_held_aside(members, target, stale=stale)
        await self._pump(_aiter(chunks(members, destination.limits.remove_batch_size)),
                         lambda batch: self._remove(destination, batch, target, stale=stale),
                         destination.limits.concurrency)

    async def _remove_elsewhere(self, targets: TargetDestinations, target: int, members: list[Member], *,
                                stale: bool) -> str | None:
        """Remove members from a target in another instance. When the instance can't be reached (see
        ``TargetDestinations``) or its destination fails, what is not removed stays to remove, the
        run goes on, and the reason is returned; a Ctrl-C, or state failing, still ends the run."""
        try:
            await self._remove_all(await targets.get(target), target, members, stale=stale)
        except InstanceUnreachable as exc:
            return str(exc)
        except RunStopped:
            failure = self._failure
            if self.stop.is_set() or not isinstance(failure, SegshipError) or isinstance(failure, StateError):
                raise
            self._failure = None  # this instance's failure, not the run's
            return _describe(failure)
        return None

    def _report_left_behind(self, snapshot: Snapshot, targets: TargetDestinations,
                            unreachable: dict[int, str]) -> None:
        """What the run left in earlier targets it couldn't reach: leavers still members there, and
        identities still to remove from there."""
        name = self.export.name
        leavers = self.state.members_by_target(name, snapshot.keys_to_remove())
        for target, reason in unreachable.items():
            left = len(leavers.get(target, ())) + self.state.count_stale_identities(name, target)
            if left:
                self.report.left_behind.append({**targets.source(target), "members": left, "reason": reason})
        lines = [left_behind_line(left) for left in self.report.left_behind]
        for line in lines:
            log.warning("export.left_behind", export=name, detail=line)
        self.report.message = "; ".join(lines)

    def _still_held_aside(self, members: list[Member], target: int, *, stale: bool) -> list[Member]:
        """Forget, without a request, the removals whose identity a staying member still holds there."""
        leaving = [] if stale else [member.key for member in members]
        held = self.state.identities_held(self.export.name, [m.identity for m in members], target, excluding=leaving)
        kept = [member for member in members if member.identity in held]
        if kept:
            log.info("export.removal_skipped", export=self.export.name, count=len(kept),
                     reason="the identity belongs to a staying member too")
            self.state.commit_removals(self.export.name, kept, [], stale=stale, target=target)
        return [member for member in members if member.identity not in held]

    def _leavers(self, snapshot: Snapshot) -> dict[int, list[Member]]:
        """Members who left the export, by the target they are in."""
        return self.state.members_by_target(self.export.name, snapshot.keys_to_remove())

    async def _pump(self, batches: AsyncGenerator, send: Callable[[object], Awaitable[None]], concurrency: int) -> None:
        """Send batches with at most ``concurrency`` in flight; stop feeding on Ctrl-C or a failure."""
        in_flight: set[asyncio.Task[None]] = set()

        def settle(done: set[asyncio.Task[None]]) -> None:
            for task in done:
                exc = task.exception()
                if exc is not None and self._failure is None:
                    self._failure = exc  # ends this run only: ``stop`` is the user's, shared by the runs

        def stopping() -> bool:
            return self.stop.is_set() or self._failure is not None

        try:
            async with aclosing(batches):  # closed at once when feeding stops (see InFlight.recorded)
                async for batch in batches:
                    if stopping():
                        break
                    while len(in_flight) >= concurrency:
                        done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                        settle(done)
                    if stopping():
                        break
                    in_flight.add(asyncio.create_task(send(batch)))
        finally:
            # whatever ended the feeding, batches already sent are answered and committed
            if in_flight:
                done, _ = await asyncio.wait(in_flight)
                settle(done)
        if stopping():
            raise RunStopped()

    def _acknowledge(self, results: Sequence[RecordResult], expected: set[str]) -> tuple[list[str], list[tuple[str, str]]]:
        """Split a destination's answer into acknowledged keys and refused (key, reason)."""
        ok: list[str] = []
        refused: list[tuple[str, str]] = []
        for result in results:
            if result.key not in expected:
                continue  # an answer for a record we didn't send: ignore rather than trust
            expected.discard(result.key)
            if result.error is None:
                ok.append(result.key)
            else:
                refused.append((result.key, result.error))
        self.report.unacknowledged += len(expected)  # no answer: not committed, sent again next run
        return ok, refused

    async def _upsert(self, destination: Destination, batch: MappedRows, in_flight: InFlight, tally: DigestTally,
                      *, moving: bool) -> None:
        started = time.monotonic()
        # nothing to send when the mapping refused every row
        acknowledged, refused, missing = batch.answered(await destination.upsert(batch.records)
                                                        if batch.records else ())
        self.report.unacknowledged += missing  # no answer: not committed, sent again next run
        dropped = batch.dropped_fields(acknowledged)
        if dropped.fields:
            dropped.fields = redacted_fields(dropped.fields)
        refused = redacted([*refused, *batch.refused])
        logged = batch.changes(refused) if self._log_run is not None else None
        commit = in_flight.answered(batch, Answer(acknowledged, batch.replaced_identities(acknowledged), refused,
                                                  batch.size, time.monotonic() - started, dropped, logged), missing)
        if commit is not None:  # the group's last answer
            await self._commit(commit, tally, moving=moving)

    async def _commit_unfinished(self, in_flight: InFlight, tally: DigestTally, *, moving: bool) -> None:
        """Commit what the groups a stopped run left unfinished had answered: each of them, even
        after one fails (its rows are sent again next run); the first failure is raised after."""
        failure: Exception | None = None
        for commit in in_flight.unfinished():
            try:
                await self._commit(commit, tally, moving=moving)
            except Exception as exc:  # noqa: BLE001 - the others are still committed, then it is raised
                failure = failure or exc
        if failure is not None:
            raise failure

    async def _commit(self, commit: Commit, tally: DigestTally, *, moving: bool) -> None:
        acknowledged, dropped = commit.acknowledged, commit.dropped
        # off the event loop: it goes on sending while state writes
        await asyncio.to_thread(self._commit_upserts, commit, acknowledged, dropped, moving)
        self.report.upserted += len(acknowledged)
        self.report.count_dropped(dropped.fields)
        tally.add(acknowledged)
        for answer in commit.answers:
            self._finish_batch("upsert", answer.size, len(answer.acknowledged), answer.refused, answer.seconds)

    def _commit_upserts(self, commit: Commit, acknowledged: pa.RecordBatch, dropped: DroppedFields,
                        moving: bool) -> None:
        """Commit a group, with its changes for the sync log (built here, on the commit's thread)."""
        changes = commit.changes() if self._log_run is not None else None
        self.state.commit_upserts(self.export.name, acknowledged, commit.replaced, commit.refused,
                                  target=self.target_id, moving=moving, in_flight=commit.in_flight,
                                  dropped=dropped, log=self._logged(changes))

    def _logged(self, changes: pa.RecordBatch | None) -> LoggedChanges | None:
        return LoggedChanges(self._log_run, changes) if self._log_run is not None and changes is not None else None

    async def _remove(self, destination: Destination, members: Sequence[Member], target: int, *,
                      stale: bool) -> None:
        started = time.monotonic()
        results = await destination.remove(members)
        seconds = time.monotonic() - started
        by_key = {member.key: member for member in members}
        ok_keys, refused = self._acknowledge(results, set(by_key))
        refused = redacted(refused)
        removed = [by_key[key] for key in ok_keys]
        changes = removal_changes(removed, refused, {key: by_key[key].identity for key, _ in refused}, stale=stale) \
            if self._log_run is not None else None
        await asyncio.to_thread(self.state.commit_removals, self.export.name, removed, refused, stale=stale,
                                target=target, log=self._logged(changes))
        self.report.removed += len(ok_keys)
        self._finish_batch("remove", len(members), len(ok_keys), refused, seconds)

    def _finish_batch(self, kind: str, records: int, acknowledged: int, refused: list[tuple[str, str]],
                      seconds: float) -> None:
        """A batch committed: counted, shown, and told to the plugins."""
        self._count_refused(refused)
        self.report.batches += 1
        self.progress.advance(records)
        self.plugins.batch_done(self.export.name, BatchReport(kind, records, acknowledged, len(refused),
                                                              round(seconds, 4)))


def redacted(refused: Iterable[Rejected | tuple[str, str]]) -> list[Rejected]:
    """Refused rows, their reasons redacted: a destination may quote the API key it was given (in an
    answer, or its mapping in a reason), and reasons are stored and printed."""
    return [Rejected(*item)._replace(reason=redact_text(item[1])) for item in refused]


def redacted_fields(fields: Iterable[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Dropped (key, column, reason) fields, their reasons redacted as :func:`redacted` does."""
    return [(key, column, redact_text(reason)) for key, column, reason in fields]


async def _aiter(items):
    for item in items:
        yield item


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
